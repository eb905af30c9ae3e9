#include "segments.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "memento/core/error.h"
#include "memento/core/simulate.h"

namespace memento {
namespace detail {

Schedule segment_schedule(int length, const std::vector<int>& segment_starts) {
  if (length < 1 || segment_starts.empty() || segment_starts.front() != 0 ||
      segment_starts.back() >= length) {
    throw InvalidArgument(
        "segment schedule: segment starts must begin at 0 and stay below the chain length " +
        std::to_string(length));
  }
  for (size_t k = 1; k < segment_starts.size(); ++k) {
    if (segment_starts[k] <= segment_starts[k - 1]) {
      throw InvalidArgument("segment schedule: segment starts must be strictly increasing");
    }
  }
  const int checkpointed = static_cast<int>(segment_starts.size()) - 1;
  auto segment_end = [&](int k) {
    return k + 1 < static_cast<int>(segment_starts.size()) ? segment_starts[k + 1] - 1 : length - 1;
  };

  Schedule schedule;
  for (int k = 0; k < checkpointed; ++k) {
    schedule.push_back(Op::forward_checkpoint(segment_starts[k]));
    for (int i = segment_starts[k] + 1; i <= segment_end(k); ++i) schedule.push_back(Op::forward_no_grad(i));
  }
  const int last_start = segment_starts.back();
  for (int i = last_start; i < length; ++i) schedule.push_back(Op::forward_with_graph(i));
  schedule.push_back(Op::loss());
  for (int i = length - 1; i >= last_start; --i) schedule.push_back(Op::backward(i));
  for (int k = checkpointed - 1; k >= 0; --k) {
    for (int i = segment_starts[k]; i <= segment_end(k); ++i) schedule.push_back(Op::forward_with_graph(i));
    for (int i = segment_end(k); i >= segment_starts[k]; --i) schedule.push_back(Op::backward(i));
  }
  return schedule;
}

std::vector<int> uniform_segment_starts(int length, int segments) {
  if (segments < 1 || segments > length) {
    throw InvalidArgument(
        "uniform: segments " + std::to_string(segments) + " is outside 1.." + std::to_string(length) +
        " for this chain of " + std::to_string(length) +
        " stages; pass --segments between 1 and the number of stages (0 picks the fastest)");
  }
  // checkpoint_sequential: `for start in range(0, segment_size * (segments - 1), segment_size)`,
  // then the remainder [end + 1, L - 1] runs normally.
  const int segment_size = length / segments;
  std::vector<int> starts;
  for (int start = 0; start < segment_size * (segments - 1); start += segment_size) starts.push_back(start);
  starts.push_back(segment_size * (segments - 1));
  return starts;
}

ScoredSchedule score_schedule(const ChainProfile& profile, Schedule schedule) {
  const SimulationResult result = simulate(profile, schedule);
  return {std::move(schedule), result.peak_bytes, result.time_s};
}

int select_fastest_fitting(const std::vector<ScoredSchedule>& candidates, int64_t budget_bytes) {
  int best = -1;
  for (int k = 0; k < static_cast<int>(candidates.size()); ++k) {
    const ScoredSchedule& candidate = candidates[k];
    if (candidate.peak_bytes > budget_bytes) continue;
    if (best < 0) {
      best = k;
      continue;
    }
    const ScoredSchedule& incumbent = candidates[best];
    // Schedules that recompute the same stages sum the same times in a different order;
    // a relative tolerance keeps such equal times a tie, decided by the peak.
    const double tolerance = 1e-12 * std::max(std::fabs(candidate.time_s), std::fabs(incumbent.time_s));
    const bool faster = candidate.time_s < incumbent.time_s - tolerance;
    const bool tied = std::fabs(candidate.time_s - incumbent.time_s) <= tolerance;
    if (faster || (tied && candidate.peak_bytes < incumbent.peak_bytes)) best = k;
  }
  return best;
}

int64_t smallest_peak_bytes(const std::vector<ScoredSchedule>& candidates) {
  int64_t smallest = std::numeric_limits<int64_t>::max();
  for (const ScoredSchedule& candidate : candidates) smallest = std::min(smallest, candidate.peak_bytes);
  return smallest;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

Plan plan_from_candidates(const std::string& planner, const ChainProfile& profile,
                          const PlannerOptions& options, std::vector<ScoredSchedule> candidates,
                          std::chrono::steady_clock::time_point start) {
  const int64_t min_feasible_bytes = smallest_peak_bytes(candidates);
  const int best = select_fastest_fitting(candidates, options.budget_bytes());
  if (best < 0) return infeasible_plan(planner, options, seconds_since(start), min_feasible_bytes);
  return finish_plan(planner, profile, options, std::move(candidates[best].schedule), seconds_since(start),
                     min_feasible_bytes);
}

}  // namespace detail
}  // namespace memento
