// The two budget-independent extremes: keep every graph, or keep only stage inputs.
#include <chrono>

#include "memento/core/simulate.h"
#include "planners.h"

namespace memento {

namespace {

class FixedSchedulePlanner : public Planner {
 public:
  FixedSchedulePlanner(std::string name, std::string description, Schedule (*build)(int))
      : name_(std::move(name)), description_(std::move(description)), build_(build) {}

  std::string name() const override { return name_; }
  std::string description() const override { return description_; }

  Plan plan(const ChainProfile& profile, const PlannerOptions& options) const override {
    const auto start = std::chrono::steady_clock::now();
    Schedule schedule = build_(profile.length());
    const int64_t peak_bytes = simulate(profile, schedule).peak_bytes;
    const double solve_time_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return finish_plan(name_, profile, options, std::move(schedule), solve_time_s, peak_bytes);
  }

 private:
  std::string name_;
  std::string description_;
  Schedule (*build_)(int);
};

// Every stage is its own checkpointed segment: the forward keeps only stage inputs, and
// the backward of each stage first recomputes it with its graph (Megatron's "full"
// recomputation, Hugging Face's gradient checkpointing).
Schedule recompute_all_schedule(int length) {
  Schedule schedule;
  for (int i = 0; i < length - 1; ++i) schedule.push_back(Op::forward_checkpoint(i));
  schedule.push_back(Op::forward_with_graph(length - 1));
  schedule.push_back(Op::loss());
  schedule.push_back(Op::backward(length - 1));
  for (int i = length - 2; i >= 0; --i) {
    schedule.push_back(Op::forward_with_graph(i));
    schedule.push_back(Op::backward(i));
  }
  return schedule;
}

}  // namespace

std::unique_ptr<Planner> make_store_all_planner() {
  return std::make_unique<FixedSchedulePlanner>(
      "store-all", "keep every stage's autograd graph: no recomputation, the largest peak",
      store_all_schedule);
}

std::unique_ptr<Planner> make_recompute_all_planner() {
  return std::make_unique<FixedSchedulePlanner>(
      "recompute-all",
      "keep only each stage's input and recompute every stage once in the backward (checkpoint every stage)",
      recompute_all_schedule);
}

}  // namespace memento
