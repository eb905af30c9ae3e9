// The optimal planner and its dynamic programs, checked against brute force:
// reference DP == exhaustive persistent search (1-byte slots), fast DP == reference DP on
// thousands of random chains, and the persistent optimum never beats an unrestricted
// search over all op sequences.
//
// Measured with OptimalDp.PersistentNeverBeatsUnrestricted's settings (600 chains of 1..4
// stages, 5 budgets each from just below the persistent minimum to store-all, 1230 cases
// where a persistent schedule fits): the unrestricted search never found a strictly
// faster schedule, and never a feasible one where no persistent schedule fits (the test
// records both counts as properties). The assertion below is the one that must hold:
// the persistent optimum is never better than the unrestricted one.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "core/optimal_dp.h"
#include "exhaustive.h"
#include "memento/core/error.h"
#include "memento/core/planner.h"
#include "memento/core/simulate.h"
#include "test_support.h"

namespace memento {
namespace {

using optimal_dp::DiscreteChain;

// Tiny integer sizes so budgets hit every boundary and 1-byte slots stay small.
testing::RandomProfileOptions small_sizes() {
  testing::RandomProfileOptions options;
  options.min_activation_bytes = 1;
  options.max_activation_bytes = 12;
  options.max_saved_factor = 3.0;
  options.zero_probability = 0.1;
  options.max_fixed_bytes = 5;
  return options;
}

int64_t store_all_peak(const ChainProfile& profile) {
  return simulate(profile, store_all_schedule(profile.length())).peak_bytes;
}

bool near(double a, double b) {
  return std::fabs(a - b) <= 1e-9 * std::max({1.0, std::fabs(a), std::fabs(b)});
}

TEST(OptimalDp, DiscretizeWithOneByteSlotsIsExact) {
  std::mt19937_64 rng(11);
  for (int trial = 0; trial < 50; ++trial) {
    const ChainProfile profile = testing::random_profile(rng, 1 + trial % 6, small_sizes());
    const int room = 1 + static_cast<int>(testing::uniform_int(rng, 0, 200));
    const DiscreteChain slots = optimal_dp::discretize(profile, room, room);
    DiscreteChain exact = optimal_dp::exact_chain(profile, room);
    // Sizes beyond the room never fit; discretize() clamps them to room + 1.
    for (auto* sizes :
         {&exact.activation, &exact.saved, &exact.forward_temp, &exact.no_grad_temp, &exact.backward_extra}) {
      for (int64_t& size : *sizes) size = std::min<int64_t>(size, room + 1);
    }
    EXPECT_EQ(slots.activation, exact.activation);
    EXPECT_EQ(slots.saved, exact.saved);
    EXPECT_EQ(slots.forward_temp, exact.forward_temp);
    EXPECT_EQ(slots.no_grad_temp, exact.no_grad_temp);
    EXPECT_EQ(slots.backward_extra, exact.backward_extra);
    EXPECT_EQ(slots.capacity, exact.capacity);
  }
}

TEST(OptimalDp, DiscretizeRoundsUpAndClamps) {
  ChainProfile profile;
  profile.stages = {{"s0", "mlp", 1.0, 1.0, 10, 25, 100, 0, 1000, 0, std::nullopt, 0}};
  const DiscreteChain chain = optimal_dp::discretize(profile, 100, 10);  // 10 bytes per slot
  EXPECT_EQ(chain.activation[0], 1);
  EXPECT_EQ(chain.activation[1], 3);       // 25 bytes -> 3 slots
  EXPECT_EQ(chain.saved[0], 10);           // exactly the room
  EXPECT_EQ(chain.backward_extra[0], 11);  // larger than the room: slots + 1
  EXPECT_THROW(optimal_dp::discretize(profile, 100, 0), InvalidArgument);
}

TEST(OptimalDp, ReferenceMatchesExhaustivePersistentSearch) {
  std::mt19937_64 rng(2024);
  int feasible_cases = 0;
  for (int length = 1; length <= 6; ++length) {
    for (int trial = 0; trial < 25; ++trial) {
      const ChainProfile profile = testing::random_profile(rng, length, small_sizes());
      // Replay every persistent schedule once, then answer every budget from the list.
      std::vector<std::pair<int64_t, double>> replays;
      for (const Schedule& schedule : testing::enumerate_persistent_schedules(length)) {
        const SimulationResult result = simulate(profile, schedule);
        replays.emplace_back(result.peak_bytes, result.time_s);
      }
      int64_t min_peak = replays.front().first;
      for (const auto& [peak, time_s] : replays) min_peak = std::min(min_peak, peak);
      const optimal_dp::MinPeak dp_min = optimal_dp::min_peak(optimal_dp::exact_chain(profile, 0));
      ASSERT_EQ(profile.fixed_bytes + dp_min.peak_units, min_peak)
          << "length " << length << " trial " << trial;
      ASSERT_EQ(simulate(profile, dp_min.schedule).peak_bytes, min_peak);
      EXPECT_TRUE(near(simulate(profile, dp_min.schedule).time_s, dp_min.time_s));

      // Budgets from just below the minimum to just above store-all: both sides of every boundary.
      const int64_t low = std::max(profile.fixed_bytes, min_peak - 3);
      const int64_t high = store_all_peak(profile) + 2;
      for (int pick = 0; pick < 6; ++pick) {
        const int64_t budget = testing::uniform_int(rng, low, high);
        bool brute_feasible = false;
        double brute_time_s = 0;
        for (const auto& [peak, time_s] : replays) {
          if (peak <= budget && (!brute_feasible || time_s < brute_time_s)) {
            brute_feasible = true;
            brute_time_s = time_s;
          }
        }
        const optimal_dp::Solution dp =
            optimal_dp::solve_reference(optimal_dp::exact_chain(profile, budget - profile.fixed_bytes));
        ASSERT_EQ(dp.feasible, brute_feasible) << "length " << length << " budget " << budget;
        if (!dp.feasible) continue;
        ++feasible_cases;
        ASSERT_TRUE(near(dp.time_s, brute_time_s)) << dp.time_s << " vs " << brute_time_s;
        const SimulationResult replay = simulate(profile, dp.schedule);
        EXPECT_LE(replay.peak_bytes, budget) << to_string(dp.schedule);
        EXPECT_TRUE(near(replay.time_s, dp.time_s));
      }
    }
  }
  EXPECT_GT(feasible_cases, 500);
}

// Both solvers on `profile` discretized at `budget` into `slots`: same feasibility, same
// optimum, and the fast schedule replayed by simulate() within the budget at the time it
// claims. `feasible` says whether a schedule was found (a void function, for ASSERT).
void expect_fast_matches_reference(const ChainProfile& profile, int64_t budget, int slots, int trial,
                                   bool& feasible) {
  const DiscreteChain chain = optimal_dp::discretize(profile, budget - profile.fixed_bytes, slots);
  const optimal_dp::Solution reference = optimal_dp::solve_reference(chain);
  const optimal_dp::Solution fast = optimal_dp::solve_fast(chain, 1);
  ASSERT_EQ(fast.feasible, reference.feasible) << "trial " << trial;
  feasible = fast.feasible;
  if (!feasible) return;
  ASSERT_TRUE(near(fast.time_s, reference.time_s))
      << "trial " << trial << ": " << fast.time_s << " vs " << reference.time_s;
  const SimulationResult replay = simulate(profile, fast.schedule);
  EXPECT_LE(replay.peak_bytes, budget) << "trial " << trial;
  EXPECT_TRUE(near(replay.time_s, fast.time_s)) << "trial " << trial;
}

TEST(OptimalDp, FastMatchesReferenceOnRandomChains) {
  std::mt19937_64 rng(7);
  int feasible_cases = 0;
  int infeasible_cases = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    const int length = 1 + trial % 12;
    testing::RandomProfileOptions options;
    options.zero_probability = trial % 5 == 0 ? 0.15 : 0.0;
    options.homogeneous = trial % 17 == 0;
    const ChainProfile profile = testing::random_profile(rng, length, options);
    const int64_t budget =
        testing::uniform_int(rng, profile.fixed_bytes - 10, store_all_peak(profile) * 11 / 10);
    const int slots = static_cast<int>(testing::uniform_int(rng, 1, 120));
    bool feasible = false;
    expect_fast_matches_reference(profile, budget, slots, trial, feasible);
    if (HasFatalFailure()) return;
    ++(feasible ? feasible_cases : infeasible_cases);
  }
  EXPECT_GT(feasible_cases, 1000);
  EXPECT_GT(infeasible_cases, 100);
}

// Chains longer than one 8 x 8 tile of the fast solver's fill order, so that its far
// phase (split points between a tile's rows and columns) and the near phase that
// follows it meet every shape of tile: full, cut by the loss stage, one row or column.
TEST(OptimalDp, TiledFastSolverMatchesReferenceOnLongerChains) {
  std::mt19937_64 rng(31);
  int feasible_cases = 0;
  for (int trial = 0; trial < 150; ++trial) {
    const int length = 8 + trial % 33;
    testing::RandomProfileOptions options;
    options.zero_probability = trial % 4 == 0 ? 0.1 : 0.0;
    options.homogeneous = trial % 13 == 0;
    const ChainProfile profile = testing::random_profile(rng, length, options);
    const int64_t budget = profile.fixed_bytes + (store_all_peak(profile) - profile.fixed_bytes) *
                                                     testing::uniform_int(rng, 25, 75) / 100;
    const int slots = static_cast<int>(testing::uniform_int(rng, 20, 150));
    bool feasible = false;
    expect_fast_matches_reference(profile, budget, slots, trial, feasible);
    if (HasFatalFailure()) return;
    if (feasible) ++feasible_cases;
  }
  EXPECT_GT(feasible_cases, 75);
}

TEST(OptimalDp, ThreadedFastSolverMatchesReference) {
  std::mt19937_64 rng(99);
  for (int trial = 0; trial < 4; ++trial) {
    const ChainProfile profile = testing::random_profile(rng, 40 + 5 * trial);
    const int64_t budget =
        profile.fixed_bytes + (store_all_peak(profile) - profile.fixed_bytes) * (2 + trial) / 8;
    const DiscreteChain chain = optimal_dp::discretize(profile, budget - profile.fixed_bytes, 300);
    const optimal_dp::Solution reference = optimal_dp::solve_reference(chain);
    const optimal_dp::Solution threaded = optimal_dp::solve_fast(chain, 2);
    ASSERT_EQ(threaded.feasible, reference.feasible) << "trial " << trial;
    if (!threaded.feasible) continue;
    EXPECT_TRUE(near(threaded.time_s, reference.time_s)) << threaded.time_s << " vs " << reference.time_s;
    EXPECT_EQ(threaded.schedule, optimal_dp::solve_fast(chain, 1).schedule);
    EXPECT_LE(simulate(profile, threaded.schedule).peak_bytes, budget);
  }
}

// From 256 stages the min-peak DP also runs on the solver's threads (a span at a time):
// the threaded solves must see exactly the same row ranges and find the same schedule, and
// the least feasible capacity must stay exactly the single-threaded min peak.
TEST(OptimalDp, ThreadedMinPeakOnLongChainsMatchesOneThread) {
  std::mt19937_64 rng(2026);
  const ChainProfile profile = testing::random_profile(rng, 300);
  const int64_t budget = profile.fixed_bytes + (store_all_peak(profile) - profile.fixed_bytes) / 4;
  const DiscreteChain chain = optimal_dp::discretize(profile, budget - profile.fixed_bytes, 120);
  const optimal_dp::Solution one = optimal_dp::solve_fast(chain, 1);
  ASSERT_TRUE(one.feasible);
  for (int threads : {2, 3}) {
    const optimal_dp::Solution many = optimal_dp::solve_fast(chain, threads);
    ASSERT_TRUE(many.feasible) << threads << " threads";
    EXPECT_EQ(many.time_s, one.time_s) << threads << " threads";
    EXPECT_EQ(many.schedule, one.schedule) << threads << " threads";
  }
  const optimal_dp::MinPeak least = optimal_dp::min_peak(chain, 1);
  for (int threads : {2, 3}) {
    const optimal_dp::MinPeak shared = optimal_dp::min_peak(chain, threads);
    EXPECT_EQ(shared.peak_units, least.peak_units) << threads << " threads";
    EXPECT_EQ(shared.time_s, least.time_s) << threads << " threads";
    EXPECT_EQ(shared.schedule, least.schedule) << threads << " threads";
  }
  DiscreteChain at_min = chain;
  at_min.capacity = least.peak_units;
  EXPECT_TRUE(optimal_dp::solve_fast(at_min, 2).feasible);
  at_min.capacity -= 1;
  EXPECT_FALSE(optimal_dp::solve_fast(at_min, 2).feasible);
}

TEST(OptimalDp, PersistentNeverBeatsUnrestricted) {
  std::mt19937_64 rng(5);
  int feasible_cases = 0;
  int strictly_faster = 0;
  int only_unrestricted = 0;
  for (int trial = 0; trial < 600; ++trial) {
    const int length = 1 + trial % 4;
    const ChainProfile profile = testing::random_profile(rng, length, small_sizes());
    const int64_t low = std::max(profile.fixed_bytes, testing::min_persistent_peak(profile) - 6);
    for (int pick = 0; pick < 5; ++pick) {
      const int64_t budget = testing::uniform_int(rng, low, store_all_peak(profile));
      const testing::SearchResult persistent = testing::best_persistent(profile, budget);
      const testing::SearchResult unrestricted = testing::best_unrestricted(profile, budget);
      if (persistent.feasible) {
        ASSERT_TRUE(unrestricted.feasible) << "trial " << trial << " budget " << budget;
      }
      if (!unrestricted.feasible) continue;
      const SimulationResult replay = simulate(profile, unrestricted.schedule);
      ASSERT_LE(replay.peak_bytes, budget) << to_string(unrestricted.schedule);
      ASSERT_TRUE(near(replay.time_s, unrestricted.time_s)) << to_string(unrestricted.schedule);
      if (!persistent.feasible) {
        ++only_unrestricted;  // only a non-persistent schedule fits at all
        continue;
      }
      ++feasible_cases;
      ASSERT_LE(unrestricted.time_s, persistent.time_s * (1 + 1e-12) + 1e-15)
          << "persistent " << to_string(persistent.schedule) << " beats the search's "
          << to_string(unrestricted.schedule);
      if (unrestricted.time_s < persistent.time_s * (1 - 1e-9)) ++strictly_faster;
    }
  }
  RecordProperty("feasible_cases", feasible_cases);
  RecordProperty("persistent_infeasible_unrestricted_feasible", only_unrestricted);
  RecordProperty("unrestricted_strictly_faster", strictly_faster);
  EXPECT_GT(feasible_cases, 1000);
}

// ---- the planner ---------------------------------------------------------------------

TEST(OptimalPlanner, RegisteredUnderItsName) {
  const auto planner = make_planner("optimal");
  EXPECT_EQ(planner->name(), "optimal");
  EXPECT_FALSE(planner->description().empty());
}

TEST(OptimalPlanner, RejectsNonPositiveSlots) {
  std::mt19937_64 rng(1);
  const ChainProfile profile = testing::random_profile(rng, 4);
  const auto planner = make_planner("optimal");
  EXPECT_THROW(planner->plan(profile, PlannerOptions(store_all_peak(profile)).memory_slots(0)),
               InvalidArgument);
  EXPECT_THROW(planner->plan(profile, PlannerOptions(store_all_peak(profile)).memory_slots(-3)),
               InvalidArgument);
}

TEST(OptimalPlanner, EqualsExhaustiveOptimumWithOneByteSlots) {
  std::mt19937_64 rng(31);
  const auto planner = make_planner("optimal");
  for (int trial = 0; trial < 120; ++trial) {
    const ChainProfile profile = testing::random_profile(rng, 1 + trial % 5, small_sizes());
    const int64_t budget = testing::uniform_int(rng, profile.fixed_bytes, store_all_peak(profile) + 2);
    const int slots = static_cast<int>(std::max<int64_t>(1, budget - profile.fixed_bytes));
    const Plan plan = planner->plan(profile, PlannerOptions(budget).memory_slots(slots));
    const testing::SearchResult brute = testing::best_persistent(profile, budget);
    ASSERT_EQ(plan.feasible, brute.feasible) << "trial " << trial;
    EXPECT_EQ(plan.min_feasible_budget_bytes, testing::min_persistent_peak(profile));
    if (plan.feasible) {
      EXPECT_TRUE(near(plan.predicted_time_s, brute.time_s)) << "trial " << trial;
    }
  }
}

TEST(OptimalPlanner, SchedulesAreValidAndWithinBudget) {
  std::mt19937_64 rng(17);
  const auto planner = make_planner("optimal");
  for (int trial = 0; trial < 200; ++trial) {
    const ChainProfile profile = testing::random_profile(rng, 1 + trial % 30);
    const int64_t budget = testing::random_budget(rng, profile);
    const int slots = trial % 3 == 0 ? 500 : static_cast<int>(testing::uniform_int(rng, 1, 200));
    const Plan plan = planner->plan(profile, PlannerOptions(budget).memory_slots(slots));
    EXPECT_EQ(plan.planner, "optimal");
    EXPECT_EQ(plan.feasible, budget >= plan.min_feasible_budget_bytes) << "trial " << trial;
    if (!plan.feasible) {
      EXPECT_TRUE(plan.schedule.empty());
      continue;
    }
    const SimulationResult replay = simulate(profile, plan.schedule);  // throws if invalid
    EXPECT_LE(replay.peak_bytes, budget);
    EXPECT_EQ(replay.peak_bytes, plan.predicted_peak_bytes);
    EXPECT_DOUBLE_EQ(replay.time_s, plan.predicted_time_s);
  }
}

TEST(OptimalPlanner, MinFeasibleBudgetIsTight) {
  std::mt19937_64 rng(23);
  const auto planner = make_planner("optimal");
  for (int trial = 0; trial < 60; ++trial) {
    const ChainProfile profile = testing::random_profile(rng, 1 + trial % 20);
    const Plan probe = planner->plan(profile, PlannerOptions(profile.fixed_bytes));
    const int64_t minimum = probe.min_feasible_budget_bytes;
    ASSERT_GT(minimum, profile.fixed_bytes);
    const Plan at = planner->plan(profile, PlannerOptions(minimum));
    const Plan below = planner->plan(profile, PlannerOptions(minimum - 1));
    EXPECT_TRUE(at.feasible) << "trial " << trial;
    EXPECT_EQ(at.predicted_peak_bytes, minimum);
    EXPECT_FALSE(below.feasible) << "trial " << trial;
    EXPECT_EQ(below.min_feasible_budget_bytes, minimum);
  }
}

TEST(OptimalPlanner, MoreBudgetNeverSlower) {
  std::mt19937_64 rng(29);
  const auto planner = make_planner("optimal");
  for (int trial = 0; trial < 25; ++trial) {
    const ChainProfile profile = testing::random_profile(rng, 2 + trial % 16);
    const int64_t minimum = planner->plan(profile, PlannerOptions(0)).min_feasible_budget_bytes;
    const int64_t top = store_all_peak(profile);
    const int slots = trial % 2 == 0 ? 500 : 37;
    double previous_s = std::numeric_limits<double>::infinity();
    for (int step = 0; step <= 40; ++step) {
      const int64_t budget = minimum + (top - minimum) * step / 40;
      const Plan plan = planner->plan(profile, PlannerOptions(budget).memory_slots(slots));
      ASSERT_TRUE(plan.feasible) << "trial " << trial << " step " << step;
      EXPECT_LE(plan.predicted_time_s, previous_s * (1 + 1e-12)) << "trial " << trial << " step " << step;
      previous_s = plan.predicted_time_s;
    }
  }
}

TEST(OptimalPlanner, StoreAllPeakGivesStoreAllTime) {
  std::mt19937_64 rng(37);
  const auto planner = make_planner("optimal");
  for (int trial = 0; trial < 40; ++trial) {
    const ChainProfile profile = testing::random_profile(rng, 1 + trial % 25);
    const SimulationResult store_all = simulate(profile, store_all_schedule(profile.length()));
    const Plan plan = planner->plan(profile, PlannerOptions(store_all.peak_bytes).memory_slots(50));
    ASSERT_TRUE(plan.feasible);
    EXPECT_DOUBLE_EQ(plan.predicted_time_s, store_all.time_s);
    EXPECT_EQ(plan.recompute_count, 0);
  }
}

}  // namespace
}  // namespace memento
