// The two budget-independent extremes: keep every graph, or keep only stage inputs.
#include <algorithm>
#include <chrono>
#include <optional>
#include <utility>
#include <vector>

#include "memento/core/simulate.h"
#include "planners.h"

namespace memento {

namespace {

class FixedSchedulePlanner : public Planner {
 public:
  FixedSchedulePlanner(std::string name, std::string description, Schedule (*build)(int),
                       Schedule (*build_lossy)(int, Codec) = nullptr)
      : name_(std::move(name)),
        description_(std::move(description)),
        build_(build),
        build_lossy_(build_lossy) {}

  std::string name() const override { return name_; }
  std::string description() const override { return description_; }
  bool supports_codecs() const override { return build_lossy_ != nullptr; }

  // With codecs, the exact schedule and one packed with each codec are the candidates:
  // the fastest that fits wins, and the least of their peaks is the least budget.
  Plan make_plan(const ChainProfile& profile, const PlannerOptions& options) const override {
    const auto start = std::chrono::steady_clock::now();
    std::vector<Schedule> candidates = {build_(profile.length())};
    for (Codec codec : options.codecs()) candidates.push_back(build_lossy_(profile.length(), codec));
    int64_t least_peak_bytes = 0;
    std::optional<std::pair<double, size_t>> fastest;  // (time, candidate)
    for (size_t k = 0; k < candidates.size(); ++k) {
      const SimulationResult result = simulate(profile, candidates[k]);
      least_peak_bytes = k == 0 ? result.peak_bytes : std::min(least_peak_bytes, result.peak_bytes);
      if (result.peak_bytes <= options.budget_bytes() && (!fastest || result.time_s < fastest->first)) {
        fastest.emplace(result.time_s, k);
      }
    }
    const double solve_time_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!fastest) return infeasible_plan(name_, options, solve_time_s, least_peak_bytes);
    return finish_plan(name_, profile, options, std::move(candidates[fastest->second]), solve_time_s,
                       least_peak_bytes);
  }

 private:
  std::string name_;
  std::string description_;
  Schedule (*build_)(int);
  Schedule (*build_lossy_)(int, Codec);
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
      "store-all",
      "keep every stage's autograd graph: no recomputation, the largest peak (with codecs: every stage "
      "packed with the fastest codec that fits, as GACT/ActNN do)",
      store_all_schedule, lossy_store_all_schedule);
}

std::unique_ptr<Planner> make_recompute_all_planner() {
  return std::make_unique<FixedSchedulePlanner>(
      "recompute-all",
      "keep only each stage's input and recompute every stage once in the backward (checkpoint every stage)",
      recompute_all_schedule);
}

}  // namespace memento
