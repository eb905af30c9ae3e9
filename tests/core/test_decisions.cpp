#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "core/decisions.h"
#include "core/mutwo.h"
#include "core/test_support.h"
#include "memento/core/budget.h"
#include "memento/core/error.h"
#include "memento/core/planner.h"
#include "memento/core/simulate.h"

namespace memento {
namespace {

using detail::StageDecision;

std::vector<StageDecision> decisions_from_mask(int length, unsigned mask) {
  std::vector<StageDecision> decisions(length, StageDecision::Keep);
  for (int i = 0; i < length; ++i) {
    if (mask & (1u << i)) decisions[i] = StageDecision::Recompute;
  }
  return decisions;
}

// Per stage: how many times it runs forward (any kind), and whether its one Fg comes
// after Loss (recomputed right before its backward) rather than in the forward pass.
struct StageRuns {
  std::vector<int> forwards;
  std::vector<int> graphs;
  std::vector<bool> graph_after_loss;
};

StageRuns stage_runs(const Schedule& schedule, int length) {
  StageRuns runs{std::vector<int>(length, 0), std::vector<int>(length, 0), std::vector<bool>(length, false)};
  bool after_loss = false;
  for (const Op& op : schedule) {
    if (op.kind == OpKind::Loss) after_loss = true;
    if (!op.is_forward()) continue;
    ++runs.forwards[op.stage];
    if (op.kind == OpKind::ForwardWithGraph) {
      ++runs.graphs[op.stage];
      runs.graph_after_loss[op.stage] = after_loss;
    }
  }
  return runs;
}

// Random chain whose stages are attention_core with probability 1/3.
ChainProfile random_profile_with_cores(std::mt19937_64& rng, int length) {
  ChainProfile profile = testing::random_profile(rng, length);
  std::bernoulli_distribution core(1.0 / 3.0);
  for (StageProfile& stage : profile.stages) {
    if (core(rng)) stage.kind = "attention_core";
  }
  return profile;
}

StageProfile stage(const std::string& kind, double forward_s, int64_t saved_bytes) {
  StageProfile result;
  result.name = kind;
  result.kind = kind;
  result.forward_s = forward_s;
  result.backward_s = 2 * forward_s;
  result.input_bytes = 10;
  result.output_bytes = 10;
  result.saved_bytes = saved_bytes;
  return result;
}

// ---- decisions ---------------------------------------------------------------------

TEST(Decisions, EveryDecisionVectorReplaysOnSmallChains) {
  std::mt19937_64 rng(31);
  for (int length = 1; length <= 8; ++length) {
    for (int trial = 0; trial < 3; ++trial) {
      testing::RandomProfileOptions options;
      options.zero_probability = trial == 2 ? 0.2 : 0.0;
      const ChainProfile profile = testing::random_profile(rng, length, options);
      const SimulationResult store_all = simulate(profile, store_all_schedule(length));
      for (unsigned mask = 0; mask < (1u << length); ++mask) {
        SCOPED_TRACE("length " + std::to_string(length) + ", mask " + std::to_string(mask));
        const auto decisions = decisions_from_mask(length, mask);
        const Schedule schedule = detail::schedule_from_decisions(profile, decisions);
        SimulationResult result;
        ASSERT_NO_THROW(result = simulate(profile, schedule)) << to_string(schedule);
        // Every recomputed stage runs forward twice (its Fg after Loss), every kept one
        // once, and the schedule costs exactly the recomputed stages' forwards on top of
        // store-all.
        double recomputed_forward_s = 0;
        const StageRuns runs = stage_runs(schedule, length);
        for (int i = 0; i < length; ++i) {
          const bool recomputed = decisions[i] == StageDecision::Recompute;
          EXPECT_EQ(runs.forwards[i], recomputed ? 2 : 1) << "stage " << i;
          EXPECT_EQ(runs.graphs[i], 1) << "stage " << i;
          EXPECT_EQ(runs.graph_after_loss[i], recomputed) << "stage " << i;
          if (recomputed) recomputed_forward_s += profile.stages[i].forward_s;
        }
        EXPECT_EQ(detail::decisions_peak_bytes(profile, decisions), result.peak_bytes);
        EXPECT_EQ(result.recompute_count, detail::count_recomputed(decisions));
        EXPECT_NEAR(result.recompute_s, recomputed_forward_s, 1e-12);
        EXPECT_NEAR(result.time_s, store_all.time_s + recomputed_forward_s, 1e-12);
      }
    }
  }
}

TEST(Decisions, ExtremesAreStoreAllAndRecomputeAll) {
  std::mt19937_64 rng(32);
  for (int length = 1; length <= 12; ++length) {
    const ChainProfile profile = testing::random_profile(rng, length);
    EXPECT_EQ(
        detail::schedule_from_decisions(profile, std::vector<StageDecision>(length, StageDecision::Keep)),
        store_all_schedule(length));
    std::vector<StageDecision> all_but_last(length, StageDecision::Recompute);
    all_but_last.back() = StageDecision::Keep;
    EXPECT_EQ(detail::schedule_from_decisions(profile, all_but_last),
              make_planner("recompute-all")->plan(profile, PlannerOptions(int64_t{1} << 50)).schedule);
  }
}

TEST(Decisions, OpForOp) {
  ChainProfile profile;
  for (int i = 0; i < 4; ++i) profile.stages.push_back(stage("mlp", 1, 30));
  const std::vector<StageDecision> decisions = {StageDecision::Recompute, StageDecision::Keep,
                                                StageDecision::Recompute, StageDecision::Recompute};
  EXPECT_EQ(to_string(detail::schedule_from_decisions(profile, decisions)),
            "Fc0 Fg1 Fc2 Fc3 L Fg3 B3 Fg2 B2 B1 Fg0 B0");
}

TEST(Decisions, PeakFormulaMatchesSimulateOnLongChains) {
  std::mt19937_64 rng(33);
  std::bernoulli_distribution recompute(0.5);
  for (int trial = 0; trial < 200; ++trial) {
    testing::RandomProfileOptions options;
    options.zero_probability = trial % 3 == 0 ? 0.2 : 0.0;
    const ChainProfile profile = testing::random_profile(rng, 9 + trial % 40, options);
    std::vector<StageDecision> decisions;
    for (int i = 0; i < profile.length(); ++i) {
      decisions.push_back(recompute(rng) ? StageDecision::Recompute : StageDecision::Keep);
    }
    EXPECT_EQ(detail::decisions_peak_bytes(profile, decisions),
              simulate(profile, detail::schedule_from_decisions(profile, decisions)).peak_bytes)
        << "trial " << trial;
  }
}

TEST(Decisions, RejectsAVectorOfTheWrongLength) {
  ChainProfile profile;
  for (int i = 0; i < 3; ++i) profile.stages.push_back(stage("mlp", 1, 30));
  try {
    detail::schedule_from_decisions(profile, std::vector<StageDecision>(2, StageDecision::Keep));
    FAIL() << "expected InvalidArgument";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("2 decisions for a chain of 3 stages"), std::string::npos)
        << e.what();
  }
}

// ---- mutwo -------------------------------------------------------------------------

// 10-byte activations, no temporaries, no fixed bytes. Store-all peaks at B3 with every
// graph alive: 110 + 60 + 210 + 20 + d4 + d3 = 420.
ChainProfile greedy_example() {
  ChainProfile profile;
  profile.stages = {stage("a", 1, 110), stage("b", 1, 60), stage("c", 4, 210), stage("d", 1, 20)};
  return profile;
}

TEST(Mutwo, GreedyOrderFollowsTheRecomputeRatioAtTheSimulatedPeak) {
  // Step 1: stage 0 frees 100 at the peak for 1 s (ratio 100); stage 1 frees 50 for 1 s;
  // stage 2 would free 200 for 4 s (also 50 per s, and the larger drop) if its graph were
  // all that counted, but its recompute Fg2 runs with graph 1 and d3 alive, and B2 then
  // peaks at 300: it frees 20 for 4 s. Step 2: stage 1 (50 per s) beats stage 2 (20 for
  // 4 s). Step 3: stage 2, whose B2 (a1, a2, graph 2, d3, d2) sets the peak at 250.
  const detail::MutwoTrajectory trajectory = detail::mutwo_trajectory(greedy_example());
  EXPECT_EQ(trajectory.store_all_peak_bytes, 420);
  ASSERT_EQ(trajectory.steps.size(), 3u);
  EXPECT_EQ(trajectory.steps[0].stage, 0);
  EXPECT_EQ(trajectory.steps[0].peak_bytes, 320);
  EXPECT_EQ(trajectory.steps[1].stage, 1);
  EXPECT_EQ(trajectory.steps[1].peak_bytes, 270);
  EXPECT_EQ(trajectory.steps[2].stage, 2);
  EXPECT_EQ(trajectory.steps[2].peak_bytes, 250);
  EXPECT_DOUBLE_EQ(trajectory.steps[2].recompute_s, 6.0);
}

TEST(Mutwo, StopsAtTheFirstStepThatFits) {
  const ChainProfile profile = greedy_example();
  const auto planner = make_planner("mutwo");
  const std::vector<std::pair<int64_t, std::string>> expected = {
      {420, "Fg0 Fg1 Fg2 Fg3 L B3 B2 B1 B0"},
      {419, "Fc0 Fg1 Fg2 Fg3 L B3 B2 B1 Fg0 B0"},
      {320, "Fc0 Fg1 Fg2 Fg3 L B3 B2 B1 Fg0 B0"},
      {300, "Fc0 Fc1 Fg2 Fg3 L B3 B2 Fg1 B1 Fg0 B0"},
      {250, "Fc0 Fc1 Fc2 Fg3 L B3 Fg2 B2 Fg1 B1 Fg0 B0"},
  };
  for (const auto& [budget_bytes, schedule] : expected) {
    const Plan plan = planner->plan(profile, PlannerOptions(budget_bytes));
    ASSERT_TRUE(plan.feasible) << budget_bytes;
    EXPECT_EQ(to_string(plan.schedule), schedule) << budget_bytes;
    EXPECT_EQ(plan.min_feasible_budget_bytes, 250);
  }
  const Plan tight = planner->plan(profile, PlannerOptions(249));
  EXPECT_FALSE(tight.feasible);
  EXPECT_EQ(tight.min_feasible_budget_bytes, 250);
}

TEST(Mutwo, SoundOnRandomChainsAndNeverSlowerThanRecomputeAll) {
  std::mt19937_64 rng(41);
  const auto mutwo = make_planner("mutwo");
  const auto recompute_all = make_planner("recompute-all");
  int both_fit = 0;
  for (int trial = 0; trial < 200; ++trial) {
    const ChainProfile profile = random_profile_with_cores(rng, 1 + trial % 20);
    const int64_t budget_bytes = testing::random_budget(rng, profile);
    SCOPED_TRACE("trial " + std::to_string(trial) + ", budget " + std::to_string(budget_bytes));
    const Plan plan = mutwo->plan(profile, PlannerOptions(budget_bytes));
    const Plan baseline = recompute_all->plan(profile, PlannerOptions(budget_bytes));
    // The walk ends at recompute-all, so mutwo fits wherever recompute-all does.
    EXPECT_LE(plan.min_feasible_budget_bytes, baseline.min_feasible_budget_bytes);
    EXPECT_LE(plan.min_feasible_budget_bytes, store_all_peak_bytes(profile));
    if (!plan.feasible) {
      EXPECT_GT(plan.min_feasible_budget_bytes, budget_bytes);
      continue;
    }
    const SimulationResult result = simulate(profile, plan.schedule);
    EXPECT_LE(result.peak_bytes, budget_bytes);
    EXPECT_EQ(result.peak_bytes, plan.predicted_peak_bytes);
    if (baseline.feasible) {
      ++both_fit;
      EXPECT_LE(plan.predicted_time_s, baseline.predicted_time_s * (1 + 1e-12));
    }
  }
  EXPECT_GT(both_fit, 20);
}

TEST(Mutwo, FollowsTheTrajectoryPrefixForEveryBudgetOnTheWay) {
  std::mt19937_64 rng(42);
  const auto planner = make_planner("mutwo");
  for (int trial = 0; trial < 30; ++trial) {
    const ChainProfile profile = random_profile_with_cores(rng, 2 + trial % 12);
    const detail::MutwoTrajectory trajectory = detail::mutwo_trajectory(profile);
    ASSERT_EQ(static_cast<int>(trajectory.steps.size()), profile.length() - 1);
    std::vector<int64_t> peaks = {trajectory.store_all_peak_bytes};
    std::vector<StageDecision> decisions(profile.length(), StageDecision::Keep);
    for (const detail::MutwoStep& step : trajectory.steps) {
      peaks.push_back(step.peak_bytes);
      decisions[step.stage] = StageDecision::Recompute;
      const SimulationResult result = simulate(profile, detail::schedule_from_decisions(profile, decisions));
      EXPECT_EQ(step.peak_bytes, result.peak_bytes);
      EXPECT_NEAR(step.recompute_s, result.recompute_s, 1e-12);
    }
    for (int64_t budget_bytes : peaks) {
      const int first_fitting = static_cast<int>(
          std::find_if(peaks.begin(), peaks.end(), [&](int64_t peak) { return peak <= budget_bytes; }) -
          peaks.begin());
      const Plan plan = planner->plan(profile, PlannerOptions(budget_bytes));
      ASSERT_TRUE(plan.feasible);
      EXPECT_EQ(plan.recompute_count, first_fitting);
      EXPECT_EQ(plan.predicted_peak_bytes, peaks[first_fitting]);
      EXPECT_EQ(plan.min_feasible_budget_bytes, *std::min_element(peaks.begin(), peaks.end()));
    }
  }
}

TEST(Mutwo, EveryStepThatLowersThePeakHasTheBestRatio) {
  // Replays the greedy's choices: at each step, no other candidate has a strictly
  // better bytes-per-second ratio (checked by simulating every alternative).
  std::mt19937_64 rng(43);
  for (int trial = 0; trial < 20; ++trial) {
    const ChainProfile profile = random_profile_with_cores(rng, 3 + trial % 8);
    const int length = profile.length();
    const detail::MutwoTrajectory trajectory = detail::mutwo_trajectory(profile);
    std::vector<StageDecision> decisions(length, StageDecision::Keep);
    int64_t peak_bytes = trajectory.store_all_peak_bytes;
    for (const detail::MutwoStep& step : trajectory.steps) {
      const double before_s =
          simulate(profile, detail::schedule_from_decisions(profile, decisions)).recompute_s;
      const int64_t chosen_freed = peak_bytes - step.peak_bytes;
      const double chosen_s = step.recompute_s - before_s;
      for (int i = 0; i + 1 < length; ++i) {
        if (decisions[i] != StageDecision::Keep || i == step.stage) continue;
        decisions[i] = StageDecision::Recompute;
        const SimulationResult other = simulate(profile, detail::schedule_from_decisions(profile, decisions));
        decisions[i] = StageDecision::Keep;
        const int64_t freed = peak_bytes - other.peak_bytes;
        if (freed <= 0) continue;
        ASSERT_GT(chosen_freed, 0) << "stage " << i
                                   << " lowers the peak but the greedy took one that does not";
        EXPECT_LE(static_cast<double>(freed) * chosen_s,
                  static_cast<double>(chosen_freed) * (other.recompute_s - before_s) * (1 + 1e-9))
            << "stage " << i << " has a better ratio than the chosen stage " << step.stage;
      }
      decisions[step.stage] = StageDecision::Recompute;
      peak_bytes = step.peak_bytes;
    }
  }
}

// ---- selective ---------------------------------------------------------------------

TEST(Selective, RecomputesExactlyTheAttentionCoreStages) {
  std::mt19937_64 rng(51);
  const auto planner = make_planner("selective");
  for (int trial = 0; trial < 100; ++trial) {
    const ChainProfile profile = random_profile_with_cores(rng, 1 + trial % 24);
    const int64_t budget_bytes = testing::random_budget(rng, profile);
    const Plan plan = planner->plan(profile, PlannerOptions(budget_bytes));
    const Plan unlimited = planner->plan(profile, PlannerOptions(int64_t{1} << 60));
    ASSERT_TRUE(unlimited.feasible);
    const StageRuns runs = stage_runs(unlimited.schedule, profile.length());
    int cores = 0;
    for (int i = 0; i < profile.length(); ++i) {
      const bool core = profile.stages[i].kind == "attention_core";
      cores += core;
      EXPECT_EQ(runs.forwards[i], core ? 2 : 1) << "stage " << i << " (" << profile.stages[i].kind << ")";
      EXPECT_EQ(runs.graphs[i], 1) << "stage " << i;
      EXPECT_EQ(runs.graph_after_loss[i], core) << "stage " << i << " (" << profile.stages[i].kind << ")";
    }
    EXPECT_EQ(unlimited.recompute_count, cores);
    EXPECT_EQ(unlimited.min_feasible_budget_bytes, unlimited.predicted_peak_bytes);
    EXPECT_EQ(plan.feasible, unlimited.predicted_peak_bytes <= budget_bytes);
    EXPECT_EQ(plan.min_feasible_budget_bytes, unlimited.predicted_peak_bytes);
    if (plan.feasible) {
      EXPECT_EQ(plan.schedule, unlimited.schedule);
    }
  }
}

TEST(Selective, WithoutAttentionCoresItIsStoreAll) {
  std::mt19937_64 rng(52);
  const ChainProfile profile = testing::random_profile(rng, 9);  // attention and mlp kinds only
  const int64_t store_all_bytes = store_all_peak_bytes(profile);
  const Plan fits = make_planner("selective")->plan(profile, PlannerOptions(store_all_bytes));
  ASSERT_TRUE(fits.feasible);
  EXPECT_EQ(fits.schedule, store_all_schedule(profile.length()));
  const Plan tight = make_planner("selective")->plan(profile, PlannerOptions(store_all_bytes - 1));
  EXPECT_FALSE(tight.feasible);
  EXPECT_EQ(tight.min_feasible_budget_bytes, store_all_bytes);
}

TEST(Selective, SavesTheCoreGraphOnATransformerBlock) {
  // norm, qkv, core (large saved scores), proj, norm, mlp: recomputing the core keeps
  // only its 10-byte output across the step instead of its 500-byte graph.
  ChainProfile profile;
  profile.stages = {stage("norm", 1, 20),      stage("attention", 2, 40), stage("attention_core", 1, 500),
                    stage("attention", 2, 40), stage("norm", 1, 20),      stage("mlp", 4, 80)};
  const Plan plan = make_planner("selective")->plan(profile, PlannerOptions(int64_t{1} << 40));
  ASSERT_TRUE(plan.feasible);
  EXPECT_EQ(to_string(plan.schedule), "Fg0 Fg1 Fc2 Fg3 Fg4 Fg5 L B5 B4 B3 Fg2 B2 B1 B0");
  EXPECT_LT(plan.predicted_peak_bytes, store_all_peak_bytes(profile));
  EXPECT_DOUBLE_EQ(plan.recompute_s, 1.0);
}

}  // namespace
}  // namespace memento
