// `uniform`: PyTorch 1.13's torch.utils.checkpoint.checkpoint_sequential, op for op.
#include <chrono>
#include <utility>
#include <vector>

#include "planners.h"
#include "segments.h"

namespace memento {

namespace {

class UniformPlanner : public Planner {
 public:
  std::string name() const override { return "uniform"; }
  std::string description() const override {
    return "PyTorch checkpoint_sequential: N equal segments, all but the last recomputed in the backward "
           "(--segments N, or 0 for the fastest N that fits)";
  }

  Plan make_plan(const ChainProfile& profile, const PlannerOptions& options) const override {
    const auto start = std::chrono::steady_clock::now();
    const int length = profile.length();
    std::vector<detail::ScoredSchedule> candidates;
    if (options.segments() != 0) {
      // A forced N is the user's choice, so its own peak is the least budget that works.
      candidates.push_back(detail::score_schedule(
          profile,
          detail::segment_schedule(length, detail::uniform_segment_starts(length, options.segments()))));
    } else {
      // checkpoint_sequential fails for N > L (segment_size 0), so 1..L is every choice.
      for (int segments = 1; segments <= length; ++segments) {
        candidates.push_back(detail::score_schedule(
            profile, detail::segment_schedule(length, detail::uniform_segment_starts(length, segments))));
      }
    }
    return detail::plan_from_candidates(name(), profile, options, std::move(candidates), start);
  }
};

}  // namespace

std::unique_ptr<Planner> make_uniform_planner() {
  return std::make_unique<UniformPlanner>();
}

}  // namespace memento
