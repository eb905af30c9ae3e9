#pragma once
// Internal to the core: what the segment-based planners (uniform, sqrt-n, chen-greedy)
// share: building a checkpointed-segments schedule and choosing among candidate
// schedules by simulated time and peak.

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "memento/core/planner.h"
#include "memento/core/profile.h"
#include "memento/core/schedule.h"

namespace memento {
namespace detail {

// The schedule of PyTorch's checkpoint_sequential generalised to arbitrary segment
// boundaries. `segment_starts` is strictly increasing, starts with 0 and ends below
// `length`; segment k covers stages [starts[k], starts[k+1] - 1]. Every segment but the
// last is checkpointed: forward Fc(s) Fn(s+1..e), and when the backward reaches it
// Fg(s..e) then B(e..s). The last segment runs with its graph: Fg(..), L, B(..).
// With one segment this is store-all; with `length` segments it is recompute-all.
Schedule segment_schedule(int length, const std::vector<int>& segment_starts);

// Starts of PyTorch's checkpoint_sequential(functions, segments): segment_size =
// length / segments; segments-1 checkpointed segments of that size, the rest last.
// Requires 1 <= segments <= length.
std::vector<int> uniform_segment_starts(int length, int segments);

// A candidate schedule with its simulated figures.
struct ScoredSchedule {
  Schedule schedule;
  int64_t peak_bytes = 0;
  double time_s = 0;
};

ScoredSchedule score_schedule(const ChainProfile& profile, Schedule schedule);

// Index of the fastest candidate whose peak fits `budget_bytes` (ties, within rounding
// of the summed times: the smaller peak, then the earlier candidate); -1 when none fits.
int select_fastest_fitting(const std::vector<ScoredSchedule>& candidates, int64_t budget_bytes);

// The smallest peak over the candidates: the least budget at which a planner that picks
// among exactly these candidates succeeds.
int64_t smallest_peak_bytes(const std::vector<ScoredSchedule>& candidates);

// Finishes a plan from budget-independent candidates: the fastest that fits, or an
// infeasible plan whose min_feasible_budget_bytes is the smallest candidate peak.
Plan plan_from_candidates(const std::string& planner, const ChainProfile& profile,
                          const PlannerOptions& options, std::vector<ScoredSchedule> candidates,
                          std::chrono::steady_clock::time_point start);

double seconds_since(std::chrono::steady_clock::time_point start);

}  // namespace detail
}  // namespace memento
