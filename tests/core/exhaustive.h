#pragma once
/// \file
/// Brute-force oracles for the checkpointing planners, for tiny chains only.
///
/// - enumerate_persistent_schedules(): every persistent schedule (Rotor's recursive
///   family: leaf, graph first, checkpoint at j), enumerated without memoization and
///   without looking at memory, so each can be replayed by simulate().
/// - best_persistent(): the fastest of those whose simulated peak fits a budget.
/// - best_unrestricted(): Dijkstra over simulator states reached by ALL op sequences
///   (every Fn/Fc/Fg/Loss/B/Free at every step), fastest complete schedule within budget.
///
/// Example:
/// \code
///   auto best = memento::testing::best_persistent(profile, budget_bytes);
///   if (best.feasible) EXPECT_NEAR(plan.predicted_time_s, best.time_s, 1e-12);
/// \endcode

#include <cstdint>
#include <vector>

#include "memento/core/profile.h"
#include "memento/core/schedule.h"

namespace memento {
namespace testing {

/// Every persistent schedule of a chain of `length` stages (1806 for length 6).
/// With `codecs`, each stage may also run lossy with any of them (ForwardLossy).
std::vector<Schedule> enumerate_persistent_schedules(int length, const std::vector<Codec>& codecs = {});

/// The fastest schedule of a search, as replayed by simulate().
struct SearchResult {
  bool feasible = false;
  double time_s = 0;
  int64_t peak_bytes = 0;
  Schedule schedule;
};

/// Fastest persistent schedule with simulated peak <= budget_bytes (ties: lowest peak).
SearchResult best_persistent(const ChainProfile& profile, int64_t budget_bytes,
                             const std::vector<Codec>& codecs = {});

/// Smallest simulated peak over all persistent schedules.
int64_t min_persistent_peak(const ChainProfile& profile);

/// Fastest complete schedule over all op sequences whose every op peak fits
/// budget_bytes (Dijkstra on the simulator's state; length <= 8).
SearchResult best_unrestricted(const ChainProfile& profile, int64_t budget_bytes);

}  // namespace testing
}  // namespace memento
