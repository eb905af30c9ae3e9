// `sqrt-n`: Chen et al. 2016's sqrt(n) strategy, checkpoint_sequential with
// N = ceil(sqrt(L)) segments of about sqrt(L) stages each.
#include <chrono>
#include <utility>
#include <vector>

#include "planners.h"
#include "segments.h"

namespace memento {

namespace {

// Integer ceil(sqrt(n)), free of floating-point rounding for any int n >= 1.
int ceil_sqrt(int n) {
  int root = 0;
  while (static_cast<int64_t>(root) * root < n) ++root;
  return root;
}

class SqrtNPlanner : public Planner {
 public:
  std::string name() const override { return "sqrt-n"; }
  std::string description() const override {
    return "Chen et al. sqrt(n): ceil(sqrt(L)) equal segments, all but the last recomputed in the backward";
  }

  Plan make_plan(const ChainProfile& profile, const PlannerOptions& options) const override {
    const auto start = std::chrono::steady_clock::now();
    const int length = profile.length();
    std::vector<detail::ScoredSchedule> candidates;
    candidates.push_back(detail::score_schedule(
        profile,
        detail::segment_schedule(length, detail::uniform_segment_starts(length, ceil_sqrt(length)))));
    return detail::plan_from_candidates(name(), profile, options, std::move(candidates), start);
  }
};

}  // namespace

std::unique_ptr<Planner> make_sqrt_n_planner() {
  return std::make_unique<SqrtNPlanner>();
}

}  // namespace memento
