#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <stdexcept>
#include <vector>

#include "core/revolve.h"
#include "core/segments.h"
#include "core/test_support.h"
#include "memento/core/budget.h"
#include "memento/core/error.h"
#include "memento/core/planner.h"
#include "memento/core/simulate.h"

namespace memento {
namespace {

// Planners that are registered and implemented; a planner still being written (its
// factory or plan() throws std::logic_error) is left out until it lands.
std::vector<std::unique_ptr<Planner>> implemented_planners(const ChainProfile& probe) {
  std::vector<std::unique_ptr<Planner>> planners;
  for (const std::string& name : planner_names()) {
    try {
      auto planner = make_planner(name);
      planner->plan(probe, PlannerOptions(store_all_peak_bytes(probe)));
      planners.push_back(std::move(planner));
    } catch (const std::logic_error&) {
    }
  }
  return planners;
}

int count_forward_steps(const Schedule& schedule) {
  return static_cast<int>(std::count_if(schedule.begin(), schedule.end(), [](const Op& op) {
    return op.kind == OpKind::ForwardNoGrad || op.kind == OpKind::ForwardCheckpoint;
  }));
}

Schedule parse_ops(const std::string& text) {
  Schedule schedule;
  size_t index = 0;
  while (index < text.size()) {
    if (text[index] == ' ') {
      ++index;
      continue;
    }
    const char kind = text[index];
    size_t end = index + 1;
    if (kind == 'F') ++end;
    const size_t digits = end;
    while (end < text.size() && text[end] != ' ') ++end;
    const int stage = end > digits ? std::stoi(text.substr(digits, end - digits)) : -1;
    if (kind == 'L')
      schedule.push_back(Op::loss());
    else if (kind == 'B')
      schedule.push_back(Op::backward(stage));
    else if (text[index + 1] == 'c')
      schedule.push_back(Op::forward_checkpoint(stage));
    else if (text[index + 1] == 'n')
      schedule.push_back(Op::forward_no_grad(stage));
    else
      schedule.push_back(Op::forward_with_graph(stage));
    index = end;
  }
  return schedule;
}

void expect_sound_plan(const Planner& planner, const ChainProfile& profile, int64_t budget_bytes) {
  SCOPED_TRACE("planner " + planner.name() + ", " + std::to_string(profile.length()) + " stages, budget " +
               std::to_string(budget_bytes));
  const Plan plan = planner.plan(profile, PlannerOptions(budget_bytes));
  EXPECT_EQ(plan.planner, planner.name());
  EXPECT_EQ(plan.budget_bytes, budget_bytes);
  if (plan.feasible) {
    SimulationResult result;
    ASSERT_NO_THROW(result = simulate(profile, plan.schedule)) << to_string(plan.schedule);
    EXPECT_LE(result.peak_bytes, budget_bytes);
    EXPECT_EQ(plan.predicted_peak_bytes, result.peak_bytes);
    EXPECT_DOUBLE_EQ(plan.predicted_time_s, result.time_s);
    EXPECT_EQ(plan.recompute_count, result.recompute_count);
    EXPECT_LE(plan.min_feasible_budget_bytes, budget_bytes);
  } else {
    EXPECT_TRUE(plan.schedule.empty());
    EXPECT_GT(plan.min_feasible_budget_bytes, budget_bytes);
    const Plan again = planner.plan(profile, PlannerOptions(plan.min_feasible_budget_bytes));
    EXPECT_TRUE(again.feasible) << "planning again at min_feasible_budget_bytes "
                                << plan.min_feasible_budget_bytes << " failed";
    EXPECT_EQ(again.min_feasible_budget_bytes, plan.min_feasible_budget_bytes);
  }
}

TEST(PlannersRegistry, EveryImplementedPlannerIsSoundOnRandomChains) {
  std::mt19937_64 rng(20240611);
  const auto planners = implemented_planners(testing::random_profile(rng, 4));
  ASSERT_GE(planners.size(), 6u)
      << "store-all, recompute-all, uniform, sqrt-n, chen-greedy and revolve must plan";
  for (int trial = 0; trial < 300; ++trial) {
    testing::RandomProfileOptions options;
    options.zero_probability = trial % 4 == 0 ? 0.15 : 0.0;
    options.homogeneous = trial % 7 == 0;
    const ChainProfile profile = testing::random_profile(rng, 1 + trial % 24, options);
    const int64_t budget_bytes = testing::random_budget(rng, profile);
    for (const auto& planner : planners) expect_sound_plan(*planner, profile, budget_bytes);
    if (::testing::Test::HasFailure()) return;  // one chain's failures are enough to read
  }
}

TEST(PlannersRegistry, StoreAllPeakIsEnoughWhereStoreAllIsACandidate) {
  // uniform (N = 1) and chen-greedy (b = infinity) can always fall back to store-all;
  // recompute-all, sqrt-n and revolve cannot: recomputation can raise the peak on
  // chains whose graphs are small next to their activations.
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 50; ++trial) {
    const ChainProfile profile = testing::random_profile(rng, 1 + trial % 16);
    const int64_t store_all_bytes = store_all_peak_bytes(profile);
    for (const char* name : {"store-all", "uniform", "chen-greedy"}) {
      EXPECT_TRUE(make_planner(name)->plan(profile, PlannerOptions(store_all_bytes)).feasible) << name;
    }
  }
}

TEST(PlannersRegistry, ImpossibleBudgetIsInfeasibleNotAnError) {
  std::mt19937_64 rng(11);
  const ChainProfile profile = testing::random_profile(rng, 9);
  for (const auto& planner : implemented_planners(profile)) {
    const Plan plan = planner->plan(profile, PlannerOptions(profile.fixed_bytes));
    EXPECT_FALSE(plan.feasible) << planner->name();
    EXPECT_GT(plan.min_feasible_budget_bytes, profile.fixed_bytes) << planner->name();
  }
}

// ---- uniform -----------------------------------------------------------------------

ChainProfile flat_profile(int length) {
  ChainProfile profile;
  profile.fixed_bytes = 100;
  for (int i = 0; i < length; ++i) {
    profile.stages.push_back(
        {"s" + std::to_string(i), "mlp", 1.0, 2.0, 10, 10, 30, 0, 0, 0, std::nullopt, 0});
  }
  return profile;
}

TEST(PlannersUniform, MatchesCheckpointSequentialOpForOp) {
  // checkpoint_sequential(7 functions, 3 segments): segment_size 2, checkpointed [0,1]
  // and [2,3], the rest [4,6] with graph.
  const Plan plan = make_planner("uniform")->plan(flat_profile(7), PlannerOptions(1 << 30).segments(3));
  ASSERT_TRUE(plan.feasible);
  EXPECT_EQ(to_string(plan.schedule), "Fc0 Fn1 Fc2 Fn3 Fg4 Fg5 Fg6 L B6 B5 B4 Fg2 Fg3 B3 B2 Fg0 Fg1 B1 B0");
  EXPECT_EQ(plan.schedule, parse_ops("Fc0 Fn1 Fc2 Fn3 Fg4 Fg5 Fg6 L B6 B5 B4 Fg2 Fg3 B3 B2 Fg0 Fg1 B1 B0"));
  EXPECT_EQ(plan.recompute_count, 4);
}

TEST(PlannersUniform, UnevenSplitPutsTheRemainderLast) {
  // 10 // 4 = 2: three checkpointed segments of 2 stages, the last holds 4.
  EXPECT_EQ(detail::uniform_segment_starts(10, 4), (std::vector<int>{0, 2, 4, 6}));
  EXPECT_EQ(detail::uniform_segment_starts(5, 2), (std::vector<int>{0, 2}));
  EXPECT_EQ(to_string(detail::segment_schedule(5, {0, 2})), "Fc0 Fn1 Fg2 Fg3 Fg4 L B4 B3 B2 Fg0 Fg1 B1 B0");
}

TEST(PlannersUniform, OneSegmentIsStoreAllAndLSegmentsIsRecomputeAll) {
  std::mt19937_64 rng(3);
  for (int length = 1; length <= 12; ++length) {
    const ChainProfile profile = testing::random_profile(rng, length);
    const Plan one = make_planner("uniform")->plan(profile, PlannerOptions(int64_t{1} << 50).segments(1));
    EXPECT_EQ(one.schedule, store_all_schedule(length));
    const Plan all =
        make_planner("uniform")->plan(profile, PlannerOptions(int64_t{1} << 50).segments(length));
    EXPECT_EQ(all.schedule,
              make_planner("recompute-all")->plan(profile, PlannerOptions(int64_t{1} << 50)).schedule);
  }
}

TEST(PlannersUniform, RejectsSegmentCountsCheckpointSequentialRejects) {
  const auto planner = make_planner("uniform");
  try {
    planner->plan(flat_profile(4), PlannerOptions(1 << 30).segments(5));
    FAIL() << "expected InvalidArgument";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("segments 5 is outside 1..4"), std::string::npos) << e.what();
  }
  EXPECT_THROW(planner->plan(flat_profile(4), PlannerOptions(1 << 30).segments(-1)), InvalidArgument);
}

TEST(PlannersUniform, AutomaticChoiceIsTheFastestSegmentCountThatFits) {
  std::mt19937_64 rng(99);
  const auto planner = make_planner("uniform");
  for (int trial = 0; trial < 60; ++trial) {
    const ChainProfile profile = testing::random_profile(rng, 2 + trial % 15);
    const int64_t budget_bytes = testing::random_budget(rng, profile);
    const Plan chosen = planner->plan(profile, PlannerOptions(budget_bytes));
    double best_time_s = 0;
    int64_t best_peak_bytes = 0;
    int64_t smallest_peak_bytes = std::numeric_limits<int64_t>::max();
    bool any = false;
    for (int segments = 1; segments <= profile.length(); ++segments) {
      const auto result = simulate(
          profile, detail::segment_schedule(profile.length(),
                                            detail::uniform_segment_starts(profile.length(), segments)));
      smallest_peak_bytes = std::min(smallest_peak_bytes, result.peak_bytes);
      if (result.peak_bytes > budget_bytes) continue;
      if (!any || result.time_s < best_time_s - 1e-12 * best_time_s ||
          (std::abs(result.time_s - best_time_s) <= 1e-12 * best_time_s &&
           result.peak_bytes < best_peak_bytes)) {
        best_time_s = result.time_s;
        best_peak_bytes = result.peak_bytes;
      }
      any = true;
    }
    EXPECT_EQ(chosen.min_feasible_budget_bytes, smallest_peak_bytes);
    ASSERT_EQ(chosen.feasible, any);
    if (any) {
      EXPECT_NEAR(chosen.predicted_time_s, best_time_s, 1e-9 * best_time_s);
      EXPECT_EQ(chosen.predicted_peak_bytes, best_peak_bytes);
    }
  }
}

TEST(PlannersUniform, ForcedSegmentsReportTheirOwnPeakAsMinimum) {
  const ChainProfile profile = flat_profile(8);
  const Plan plan = make_planner("uniform")->plan(profile, PlannerOptions(0).segments(2));
  EXPECT_FALSE(plan.feasible);
  EXPECT_EQ(plan.min_feasible_budget_bytes,
            simulate(profile, detail::segment_schedule(8, detail::uniform_segment_starts(8, 2))).peak_bytes);
}

// ---- sqrt-n ------------------------------------------------------------------------

TEST(PlannersSqrtN, UsesCeilSqrtSegments) {
  for (int length : {1, 2, 4, 5, 9, 10, 16, 17, 30}) {
    int segments = 1;
    while (segments * segments < length) ++segments;
    const ChainProfile profile = flat_profile(length);
    const Plan plan = make_planner("sqrt-n")->plan(profile, PlannerOptions(int64_t{1} << 40));
    const Plan uniform =
        make_planner("uniform")->plan(profile, PlannerOptions(int64_t{1} << 40).segments(segments));
    EXPECT_EQ(plan.schedule, uniform.schedule) << length << " stages";
  }
  // L = 10: N = 4, segment_size 2.
  EXPECT_EQ(
      to_string(make_planner("sqrt-n")->plan(flat_profile(10), PlannerOptions(1 << 30)).schedule),
      "Fc0 Fn1 Fc2 Fn3 Fc4 Fn5 Fg6 Fg7 Fg8 Fg9 L B9 B8 B7 B6 Fg4 Fg5 B5 B4 Fg2 Fg3 B3 B2 Fg0 Fg1 B1 B0");
}

// ---- chen-greedy -------------------------------------------------------------------

TEST(PlannersChenGreedy, GenerousBudgetRecomputesNothing) {
  std::mt19937_64 rng(5);
  for (int trial = 0; trial < 30; ++trial) {
    const ChainProfile profile = testing::random_profile(rng, 1 + trial % 20);
    const Plan plan =
        make_planner("chen-greedy")->plan(profile, PlannerOptions(store_all_peak_bytes(profile)));
    ASSERT_TRUE(plan.feasible);
    EXPECT_EQ(plan.recompute_count, 0);
  }
}

TEST(PlannersChenGreedy, SearchReachesAtLeastRecomputeAllsPeak) {
  // b = 0 splits after every stage that saves bytes: the recompute-all segmentation.
  std::mt19937_64 rng(8);
  for (int trial = 0; trial < 40; ++trial) {
    const ChainProfile profile = testing::random_profile(rng, 2 + trial % 20);
    const Plan recompute_all = make_planner("recompute-all")->plan(profile, PlannerOptions(0));
    const Plan chen = make_planner("chen-greedy")->plan(profile, PlannerOptions(0));
    EXPECT_LE(chen.min_feasible_budget_bytes, recompute_all.min_feasible_budget_bytes);
  }
}

TEST(PlannersChenGreedy, TighterBudgetsNeverGetFaster) {
  std::mt19937_64 rng(13);
  const auto planner = make_planner("chen-greedy");
  for (int trial = 0; trial < 20; ++trial) {
    const ChainProfile profile = testing::random_profile(rng, 6 + trial % 20);
    const int64_t top_bytes = store_all_peak_bytes(profile);
    double previous_time_s = 0;
    for (int percent = 100; percent >= 10; percent -= 10) {
      const Plan plan = planner->plan(profile, PlannerOptions(top_bytes * percent / 100));
      if (!plan.feasible) break;
      EXPECT_GE(plan.predicted_time_s, previous_time_s * (1 - 1e-12));
      previous_time_s = plan.predicted_time_s;
    }
  }
}

// ---- revolve -----------------------------------------------------------------------

// t(l, s) by its defining recurrence (advance k, reverse the tail with s - 1 slots,
// then the head with s): the obviously-correct reference for the closed form.
std::vector<std::vector<int64_t>> revolve_reference(int max_steps, int max_slots) {
  const int64_t impossible = -1;
  std::vector<std::vector<int64_t>> t(max_steps + 1, std::vector<int64_t>(max_slots + 1, impossible));
  for (int s = 0; s <= max_slots; ++s) t[0][s] = t[1][s] = 0;
  for (int l = 2; l <= max_steps; ++l) {
    for (int s = 1; s <= max_slots; ++s) {
      for (int k = 1; k < l; ++k) {
        if (t[l - k][s - 1] < 0 || t[k][s] < 0) continue;
        const int64_t total = k + t[l - k][s - 1] + t[k][s];
        if (t[l][s] < 0 || total < t[l][s]) t[l][s] = total;
      }
    }
  }
  return t;
}

TEST(RevolveClosedForm, MatchesTheRecurrence) {
  const auto reference = revolve_reference(120, 10);
  for (int l = 0; l <= 120; ++l) {
    for (int s = 0; s <= 10; ++s) {
      EXPECT_EQ(detail::revolve_forward_steps(l, s), reference[l][s]) << "l=" << l << " s=" << s;
    }
  }
}

TEST(RevolveClosedForm, KnownValues) {
  EXPECT_EQ(detail::revolve_forward_steps(1, 1), 0);
  EXPECT_EQ(detail::revolve_forward_steps(2, 1), 1);
  EXPECT_EQ(detail::revolve_forward_steps(10, 1), 45);  // one slot: l (l - 1) / 2
  EXPECT_EQ(detail::revolve_forward_steps(10, 9), 9);   // every state kept: l - 1
  EXPECT_EQ(detail::revolve_forward_steps(10, 2), 20);  // r = 3: 30 - C(5, 2)
  EXPECT_EQ(detail::revolve_forward_steps(2, 0), -1);
  EXPECT_EQ(detail::revolve_forward_steps(22, 20), 22);  // r = 2: 44 - C(22, 1)
  // Large arguments (values from Python's math.comb) stay exact in int64.
  EXPECT_EQ(detail::revolve_forward_steps(1000000, 20), 6815960);
  EXPECT_EQ(detail::revolve_forward_steps(1000000, 3), 134787105);
  EXPECT_EQ(detail::revolve_forward_steps(100000, 1), int64_t{4999950000});
}

TEST(RevolveSchedule, ForwardStepsEqualTheClosedForm) {
  // Counting is cheap for long chains; replaying through simulate() (quadratic in the
  // schedule) is kept to the shorter ones so the test stays fast under sanitizers.
  for (int l = 1; l <= 150; ++l) {
    const ChainProfile profile = flat_profile(l);
    for (int s = 1; s <= l + 1; ++s) {
      const Schedule schedule = detail::revolve_schedule(l, s);
      EXPECT_EQ(count_forward_steps(schedule), detail::revolve_forward_steps(l, s))
          << "l=" << l << " s=" << s;
      if (l > 30) continue;
      const SimulationResult result = simulate(profile, schedule);
      // Each stage runs with its graph exactly once (the youturn): every advance is a recompute.
      EXPECT_EQ(result.recompute_count, count_forward_steps(schedule));
      EXPECT_DOUBLE_EQ(result.time_s, 1.0 * (l + count_forward_steps(schedule)) + 2.0 * l);
    }
  }
}

TEST(RevolveSchedule, HoldsAtMostSlotsCheckpoints) {
  // Flat chain: 10-byte states, 30-byte graphs, no temporaries. With s slots the schedule
  // holds at most s - 1 checkpoints besides a_0, one advancing state and one gradient.
  for (int l = 2; l <= 40; ++l) {
    const ChainProfile profile = flat_profile(l);
    for (int s = 1; s < l; ++s) {
      const int64_t peak = simulate(profile, detail::revolve_schedule(l, s)).peak_bytes;
      EXPECT_LE(peak, 100 + (s + 1) * 10 + 30 + 10) << "l=" << l << " s=" << s;
    }
  }
}

TEST(RevolveSchedule, SmallCaseOpForOp) {
  EXPECT_EQ(to_string(detail::revolve_schedule(3, 1)), "Fc0 Fn1 Fg2 L B2 Fc0 Fg1 B1 Fg0 B0");
  EXPECT_EQ(to_string(detail::revolve_schedule(3, 2)), "Fc0 Fc1 Fg2 L B2 Fg1 B1 Fg0 B0");
}

TEST(RevolvePlanner, UsesTheMostSlotsTheBudgetAllows) {
  const ChainProfile profile = flat_profile(20);
  const auto planner = make_planner("revolve");
  int previous_steps = std::numeric_limits<int>::max();
  for (int64_t budget_bytes = 150; budget_bytes <= 400; budget_bytes += 10) {
    const Plan plan = planner->plan(profile, PlannerOptions(budget_bytes));
    if (!plan.feasible) {
      EXPECT_EQ(plan.min_feasible_budget_bytes,
                simulate(profile, detail::revolve_schedule(20, 1)).peak_bytes);
      continue;
    }
    const int steps = count_forward_steps(plan.schedule);
    EXPECT_LE(steps, previous_steps);
    previous_steps = steps;
  }
  EXPECT_EQ(previous_steps, 19);  // enough memory for every state: L - 1 advances
}

TEST(RevolvePlanner, ChoosesTheLargestSlotCountThatFitsOnHomogeneousChains) {
  std::mt19937_64 rng(21);
  testing::RandomProfileOptions options;
  options.homogeneous = true;
  const auto planner = make_planner("revolve");
  for (int trial = 0; trial < 40; ++trial) {
    const int length = 2 + trial % 25;
    const ChainProfile profile = testing::random_profile(rng, length, options);
    const int64_t budget_bytes = testing::random_budget(rng, profile);
    int largest_fitting = 0;
    for (int s = 1; s < length; ++s) {
      if (simulate(profile, detail::revolve_schedule(length, s)).peak_bytes <= budget_bytes)
        largest_fitting = s;
    }
    const Plan plan = planner->plan(profile, PlannerOptions(budget_bytes));
    ASSERT_EQ(plan.feasible, largest_fitting > 0) << "trial " << trial;
    if (plan.feasible) {
      EXPECT_EQ(count_forward_steps(plan.schedule), detail::revolve_forward_steps(length, largest_fitting))
          << "trial " << trial << ": expected " << largest_fitting << " slots";
    }
  }
}

}  // namespace
}  // namespace memento
