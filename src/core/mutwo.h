#pragma once
// Internal to the core: the greedy recomputation order of the `mutwo` planner, exposed
// for its tests.

#include <cstdint>
#include <vector>

#include "memento/core/profile.h"

namespace memento {
namespace detail {

// One greedy step: `stage` was marked for recomputation; the decisions made so far
// (this one included) give a schedule with these simulated figures.
struct MutwoStep {
  int stage = 0;
  int64_t peak_bytes = 0;
  double recompute_s = 0;
};

// The whole greedy trajectory, independent of the budget: from store-all (peak
// `store_all_peak_bytes`), repeatedly mark the kept stage with the best recompute ratio
// (bytes the peak drops by, per second of recomputation the schedule gains) until every
// stage but the last is recomputed. A step that lowers the peak always beats one that
// does not; where none does, the step with the lowest resulting peak is taken (then the
// least recomputation), so the walk continues to recompute-all. Ties go to the larger
// drop, then the lower stage index. The last stage is never a candidate: recomputing it
// cannot lower the peak (its Fg then runs with d_L alive, at least the Loss op's peak).
struct MutwoTrajectory {
  int64_t store_all_peak_bytes = 0;
  std::vector<MutwoStep> steps;
};

MutwoTrajectory mutwo_trajectory(const ChainProfile& profile);

}  // namespace detail
}  // namespace memento
