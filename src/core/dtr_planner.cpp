// The `dtr` planner: replays the store-all step under the budget with the DTR controller
// (dtr.h) deciding evictions and on-demand recomputation, and emits what it did as a
// Schedule that simulate() validates. The runtime (PlanRunner) drives the same controller
// with measured memory; docs/planners.md compares the two.
#include <algorithm>
#include <chrono>
#include <optional>
#include <string>
#include <utility>

#include "memento/core/dtr.h"
#include "memento/core/error.h"
#include "memento/core/simulate.h"
#include "planners.h"

namespace memento {

namespace {

// Emits ops and counts bytes with the profile. Shrinking graph j cannot be written as an
// op (the IR has no "drop the graph, keep its output"), so the forward that built it is
// rewritten into ForwardCheckpoint(j): from that op to the eviction the schedule holds
// a_{j+1} instead of the whole graph, never more bytes than DTR's own state (saved_bytes
// >= output_bytes, and op_bytes() reserved room for either form of that forward).
class PlanningBackend : public DtrBackend {
 public:
  explicit PlanningBackend(DtrController& controller)
      : controller_(controller), graph_op_(controller.chain().length(), -1) {}

  int64_t live_bytes() override { return controller_.chain().model_live_bytes(); }
  double now_s() override { return clock_s_; }

  void evict(const DtrEviction& eviction) override {
    if (eviction.kind == DtrEviction::Kind::FreeActivation) {
      schedule_.push_back(Op::free(eviction.index));
      return;
    }
    const int index = graph_op_.at(eviction.index);
    // Only a stage's first forward can be shrunk: a rebuilt graph is pinned until its
    // Backward, which follows it at once. A first forward never finds its output
    // available, so ForwardCheckpoint is valid in its place.
    if (index < 0 || schedule_[index] != Op::forward_with_graph(eviction.index) ||
        forward_count_.at(eviction.index) != 1) {
      throw ScheduleError("dtr planner: graph of stage " + std::to_string(eviction.index) +
                          " was evicted but not built by the stage's first forward");
    }
    schedule_[index] = Op::forward_checkpoint(eviction.index);
    graph_op_[eviction.index] = -1;
    if (eviction.kind == DtrEviction::Kind::DropGraph) schedule_.push_back(Op::free(eviction.index + 1));
  }

  bool recompute(int stage) override {
    const Op op = Op::forward_checkpoint(stage);
    if (!controller_.prepare(op, *this)) return false;
    run(op);
    return true;
  }

  void run(const Op& op) {
    const ChainProfile& profile = controller_.chain().profile();
    if (op.is_forward()) {
      clock_s_ += profile.stages[op.stage].forward_s;
      ++forward_count_[op.stage];
      if (op.kind == OpKind::ForwardWithGraph) graph_op_[op.stage] = static_cast<int>(schedule_.size());
    } else if (op.kind == OpKind::Backward) {
      clock_s_ += profile.stages[op.stage].backward_s;
      graph_op_[op.stage] = -1;
    }
    schedule_.push_back(op);
    controller_.completed(op, clock_s_);
  }

  Schedule take_schedule() { return std::move(schedule_); }

 private:
  DtrController& controller_;
  Schedule schedule_;
  std::vector<int> graph_op_;  // index of the op that built each live graph
  std::vector<int> forward_count_ = std::vector<int>(graph_op_.size(), 0);
  double clock_s_ = 0;
};

// The DTR replay of one step at `budget_bytes`; nullopt when some op cannot fit.
std::optional<Schedule> replay(const ChainProfile& profile, int64_t budget_bytes) {
  DtrController controller(profile, budget_bytes);
  PlanningBackend backend(controller);
  for (const Op& op : store_all_schedule(profile.length())) {
    if (!controller.prepare(op, backend)) return std::nullopt;
    if (op.kind == OpKind::Backward && !controller.chain().graph_alive(op.stage)) {
      // What the executor does inside Backward when a hook evicted the graph.
      const Op rebuild = Op::forward_with_graph(op.stage);
      if (!controller.prepare(rebuild, backend)) return std::nullopt;
      backend.run(rebuild);
    }
    backend.run(op);
  }
  Schedule schedule = backend.take_schedule();
  if (simulate(profile, schedule).peak_bytes > budget_bytes) return std::nullopt;
  return schedule;
}

// DTR is greedy, so success is not monotone in the budget; this is the bisection's
// boundary between the profile's fixed bytes (a failure unless the chain holds nothing)
// and the store-all peak as op_bytes() counts it (a success: nothing needs evicting).
int64_t bisect_min_feasible(const ChainProfile& profile) {
  int64_t high = profile.fixed_bytes;
  DtrController sizes(profile, 0);
  for (const Op& op : store_all_schedule(profile.length())) {
    high = std::max(high, sizes.chain().model_live_bytes() + sizes.op_bytes(op));
    sizes.chain().on_op(op, 0);
  }
  int64_t low = profile.fixed_bytes;
  if (replay(profile, low)) return low;
  while (high - low > 1) {
    const int64_t middle = low + (high - low) / 2;
    (replay(profile, middle) ? high : low) = middle;
  }
  return high;
}

class DtrPlanner : public Planner {
 public:
  std::string name() const override { return "dtr"; }
  std::string description() const override {
    return "Dynamic Tensor Rematerialization: run store-all, evict by h = (cost + evicted neighbourhood) / "
           "(bytes x staleness) when over budget, recompute on demand (executed at run time on measured "
           "memory)";
  }

  Plan make_plan(const ChainProfile& profile, const PlannerOptions& options) const override {
    validate_profile(profile);
    const auto start = std::chrono::steady_clock::now();
    auto elapsed_s = [&] {
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    };
    const int64_t min_feasible_bytes = bisect_min_feasible(profile);
    std::optional<Schedule> schedule = replay(profile, options.budget_bytes());
    int64_t reported_min_bytes = std::min(min_feasible_bytes, options.budget_bytes());
    if (!schedule && options.budget_bytes() >= min_feasible_bytes) {
      // Greedy eviction can fail at a budget above one where it succeeds; the run at that
      // smaller budget also fits this one, so feasibility stays monotone for callers.
      schedule = replay(profile, min_feasible_bytes);
      reported_min_bytes = min_feasible_bytes;
    }
    if (!schedule) return infeasible_plan(name(), options, elapsed_s(), min_feasible_bytes);
    Plan plan = finish_plan(name(), profile, options, std::move(*schedule), elapsed_s(), reported_min_bytes);
    plan.runtime_policy = "dtr";
    return plan;
  }
};

}  // namespace

std::unique_ptr<Planner> make_dtr_planner() {
  return std::make_unique<DtrPlanner>();
}

}  // namespace memento
