#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/exhaustive.h"
#include "core/test_support.h"
#include "memento/core/budget.h"
#include "memento/core/dtr.h"
#include "memento/core/planner.h"
#include "memento/core/simulate.h"

namespace memento {
namespace {

// ---- the pool: h and the equivalence classes -----------------------------------------

DtrPool line_pool(int count, double cost_s, int64_t bytes) {
  DtrPool pool(count);
  for (int id = 0; id + 1 < count; ++id) pool.add_neighbours(id, id + 1);
  for (int id = 0; id < count; ++id) {
    pool.set_cost(id, cost_s);
    pool.set_bytes(id, bytes);
    pool.materialize(id, 0.0);
  }
  return pool;
}

TEST(DtrPool, ScoreIsCostOverBytesTimesStaleness) {
  DtrPool pool = line_pool(3, 2.0, 100);
  pool.access(1, 1.0);
  EXPECT_DOUBLE_EQ(pool.score(0, 4.0), 2.0 / (100 * 4.0));
  EXPECT_DOUBLE_EQ(pool.score(1, 4.0), 2.0 / (100 * 3.0));
  EXPECT_DOUBLE_EQ(pool.evicted_neighbourhood_cost(1), 0.0);
}

TEST(DtrPool, EvictedNeighboursFormOneClassWhoseCostCountsOnce) {
  // 0 - 1 - 2 - 3 - 4: evicting 1 and 3 makes two classes next to 2; evicting 2 joins them.
  DtrPool pool(5);
  for (int id = 0; id < 4; ++id) pool.add_neighbours(id, id + 1);
  const double costs[] = {1, 2, 4, 8, 16};
  for (int id = 0; id < 5; ++id) {
    pool.set_cost(id, costs[id]);
    pool.set_bytes(id, 10);
    pool.materialize(id, 0);
  }
  pool.evict(1);
  pool.evict(3);
  EXPECT_DOUBLE_EQ(pool.evicted_neighbourhood_cost(2), 2 + 8);
  EXPECT_DOUBLE_EQ(pool.evicted_neighbourhood_cost(0), 2);
  pool.evict(2);
  EXPECT_DOUBLE_EQ(pool.evicted_neighbourhood_cost(0), 2 + 4 + 8);
  EXPECT_DOUBLE_EQ(pool.evicted_neighbourhood_cost(4), 2 + 4 + 8);
  // Recomputing 2 cannot split the class: it keeps 1 and 3 and loses 2's cost.
  pool.materialize(2, 5);
  EXPECT_DOUBLE_EQ(pool.evicted_neighbourhood_cost(0), 2 + 8);
  EXPECT_DOUBLE_EQ(pool.evicted_neighbourhood_cost(2), 2 + 8);
  // Evicted again, 2 starts a fresh record and joins the old class once more.
  pool.evict(2);
  EXPECT_DOUBLE_EQ(pool.evicted_neighbourhood_cost(4), 2 + 8 + 4);
  pool.release(3);
  EXPECT_DOUBLE_EQ(pool.evicted_neighbourhood_cost(4), 0);
  EXPECT_DOUBLE_EQ(pool.evicted_neighbourhood_cost(0), 2 + 4);
}

TEST(DtrPool, ChoosesTheSmallestScoreAmongEvictableResidentTensors) {
  DtrPool pool(4);
  const double costs[] = {1.0, 1.0, 0.1, 0.01};
  const int64_t bytes[] = {100, 1000, 100, 0};
  for (int id = 0; id < 4; ++id) {
    pool.set_cost(id, costs[id]);
    pool.set_bytes(id, bytes[id]);
    pool.materialize(id, 0);
  }
  // 3 is cheapest but frees nothing; 1 (1 / 1000) and 2 (0.1 / 100) tie: the larger wins.
  EXPECT_EQ(pool.choose(1.0, [](int) { return true; }), 1);
  EXPECT_EQ(pool.choose(1.0, [](int id) { return id != 1; }), 2);
  pool.evict(2);
  EXPECT_EQ(pool.choose(1.0, [](int id) { return id != 1; }), 0);
  EXPECT_EQ(pool.choose(1.0, [](int) { return false; }), -1);
}

// ---- the chain state ------------------------------------------------------------------

ChainProfile flat_chain(int length) {
  ChainProfile profile;
  profile.model = "flat";
  profile.fixed_bytes = 1000;
  for (int i = 0; i < length; ++i) {
    StageProfile stage;
    stage.name = "s" + std::to_string(i);
    stage.kind = "mlp";
    stage.forward_s = 1.0;
    stage.backward_s = 2.0;
    stage.input_bytes = stage.output_bytes = 10;
    stage.saved_bytes = 40;
    profile.stages.push_back(stage);
  }
  return profile;
}

TEST(DtrChainState, ModelBytesFollowTheSimulator) {
  std::mt19937_64 rng(3);
  for (int trial = 0; trial < 20; ++trial) {
    const ChainProfile profile = testing::random_profile(rng, 1 + trial % 9);
    const Schedule schedule = store_all_schedule(profile.length());
    const SimulationResult result = simulate(profile, schedule);
    DtrChainState state(profile);
    for (size_t k = 0; k < schedule.size(); ++k) {
      state.on_op(schedule[k], 0);
      EXPECT_EQ(state.model_live_bytes(), result.timeline[k].live_bytes) << to_string(schedule[k]);
    }
  }
}

TEST(DtrChainState, ShrinkKeepsTheOutputAndPinsFollowLiveGraphs) {
  DtrChainState state(flat_chain(4));
  for (int i = 0; i < 3; ++i) state.on_op(Op::forward_with_graph(i), i + 1.0);
  EXPECT_EQ(state.model_live_bytes(), 1000 + 3 * 40);
  state.on_evicted({DtrEviction::Kind::ShrinkGraph, 0});
  EXPECT_TRUE(state.stored(1));
  EXPECT_TRUE(state.available(1));
  EXPECT_EQ(state.model_live_bytes(), 1000 + 10 + 2 * 40);
  // Nothing reads a_3 yet: dropping graph 2 whole (40 B for one forward) beats shrinking.
  const auto whole = state.choose_eviction({}, {}, 10.0);
  ASSERT_TRUE(whole.has_value());
  EXPECT_EQ(*whole, (DtrEviction{DtrEviction::Kind::DropGraph, 2}));
  // With a_3 pinned (the next op's input), a_1 still pinned by live graph 1: only the
  // residuals of graphs 1 and 2 are candidates.
  for (int k = 0; k < 4; ++k) {
    const auto eviction = state.choose_eviction({3}, {}, 10.0);
    ASSERT_TRUE(eviction.has_value());
    EXPECT_EQ(eviction->kind, DtrEviction::Kind::ShrinkGraph) << k;
    if (k == 0) {
      EXPECT_NE(eviction->index, 0);
    }
    state.on_evicted(*eviction);
    if (!state.graph_alive(1) && !state.graph_alive(2)) break;
  }
  // Now a_1, a_2 and a_3 are stored copies; pins keep a_3 (the next input).
  const auto eviction = state.choose_eviction({3}, {}, 10.0);
  ASSERT_TRUE(eviction.has_value());
  EXPECT_EQ(eviction->kind, DtrEviction::Kind::FreeActivation);
  EXPECT_NE(eviction->index, 3);
  EXPECT_FALSE(state.choose_eviction({1, 2, 3}, {}, 10.0).has_value());
}

// ---- the planner -------------------------------------------------------------------------

TEST(DtrPlanner, GenerousBudgetIsStoreAll) {
  std::mt19937_64 rng(5);
  for (int trial = 0; trial < 20; ++trial) {
    const ChainProfile profile = testing::random_profile(rng, 1 + trial % 12);
    const Plan plan = make_planner("dtr")->plan(profile, PlannerOptions(int64_t{1} << 50));
    ASSERT_TRUE(plan.feasible);
    EXPECT_EQ(plan.schedule, store_all_schedule(profile.length()));
    EXPECT_EQ(plan.runtime_policy, "dtr");
    EXPECT_EQ(plan.recompute_count, 0);
  }
}

TEST(DtrPlanner, TightBudgetEvictsAndRecomputes) {
  const ChainProfile profile = flat_chain(8);
  const int64_t store_all = store_all_peak_bytes(profile);
  const Plan plan = make_planner("dtr")->plan(profile, PlannerOptions(1000 + (store_all - 1000) / 2));
  ASSERT_TRUE(plan.feasible);
  EXPECT_LE(plan.predicted_peak_bytes, plan.budget_bytes);
  EXPECT_GT(plan.recompute_count, 0);
  EXPECT_TRUE(std::any_of(plan.schedule.begin(), plan.schedule.end(), [](const Op& op) {
    return op.kind == OpKind::ForwardCheckpoint;
  })) << to_string(plan.schedule);
  EXPECT_EQ(plan_to_json(plan).at("runtime_policy"), "dtr");
  EXPECT_FALSE(plan_to_json(make_planner("optimal")->plan(profile, PlannerOptions(store_all)))
                   .contains("runtime_policy"));
}

TEST(DtrPlanner, SoundOnRandomChains) {
  std::mt19937_64 rng(20261123);
  const auto planner = make_planner("dtr");
  int feasible = 0;
  int recomputing = 0;
  for (int trial = 0; trial < 200; ++trial) {
    testing::RandomProfileOptions options;
    options.zero_probability = trial % 5 == 0 ? 0.15 : 0.0;
    options.homogeneous = trial % 6 == 0;
    const ChainProfile profile = testing::random_profile(rng, 1 + trial % 20, options);
    const int64_t budget_bytes = testing::random_budget(rng, profile);
    SCOPED_TRACE("trial " + std::to_string(trial) + ", budget " + std::to_string(budget_bytes));
    const Plan plan = planner->plan(profile, PlannerOptions(budget_bytes));
    if (!plan.feasible) {
      EXPECT_GT(plan.min_feasible_budget_bytes, budget_bytes);
      EXPECT_TRUE(planner->plan(profile, PlannerOptions(plan.min_feasible_budget_bytes)).feasible);
      continue;
    }
    ++feasible;
    SimulationResult result;
    ASSERT_NO_THROW(result = simulate(profile, plan.schedule)) << to_string(plan.schedule);
    EXPECT_LE(result.peak_bytes, budget_bytes);
    EXPECT_LE(plan.min_feasible_budget_bytes, budget_bytes);
    EXPECT_EQ(plan.recompute_count, result.recompute_count);
    recomputing += plan.recompute_count > 0;
    if (::testing::Test::HasFailure()) return;
  }
  EXPECT_GT(feasible, 50);
  EXPECT_GT(recomputing, 10);
}

TEST(DtrPlanner, NeverFasterThanTheBestPersistentSchedule) {
  // The exact optimum among persistent schedules (brute force, tests/core/exhaustive.h),
  // not the optimal planner: its memory slots round sizes up, and on trial 35 of this seed
  // DTR found the brute-force best schedule 45 bytes under the budget, which optimal missed
  // even at 100000 slots. Beating this oracle would take a non-persistent schedule that
  // is faster than every persistent one; DTR's greedy has not found one on these chains.
  std::mt19937_64 rng(77);
  int compared = 0;
  int ties = 0;
  for (int trial = 0; trial < 80; ++trial) {
    const ChainProfile profile = testing::random_profile(rng, 2 + trial % 5);
    const int64_t budget_bytes = testing::random_budget(rng, profile);
    const Plan dtr = make_planner("dtr")->plan(profile, PlannerOptions(budget_bytes));
    const testing::SearchResult best = testing::best_persistent(profile, budget_bytes);
    if (dtr.feasible) {
      EXPECT_TRUE(best.feasible) << "trial " << trial << ": DTR fits where nothing persistent does";
    }
    if (!dtr.feasible || !best.feasible) continue;
    ++compared;
    ties += dtr.predicted_time_s <= best.time_s * (1 + 1e-12);
    EXPECT_GE(dtr.predicted_time_s, best.time_s * (1 - 1e-12))
        << "trial " << trial << "\ndtr:  " << to_string(dtr.schedule)
        << "\nbest: " << to_string(best.schedule);
  }
  EXPECT_GT(compared, 30);
  EXPECT_GT(ties, 0);
}

TEST(DtrPlanner, OptimalIsNeverSlowerAwayFromTheBudgetEdge) {
  // Against the optimal planner on longer chains: optimal gets DTR's budget plus the bytes
  // its slot rounding can lose (a slot per item it rounds), so the comparison is about
  // the search, not the discretization.
  std::mt19937_64 rng(78);
  int compared = 0;
  for (int trial = 0; trial < 60; ++trial) {
    const ChainProfile profile = testing::random_profile(rng, 2 + trial % 12);
    const int64_t budget_bytes = testing::random_budget(rng, profile);
    const Plan dtr = make_planner("dtr")->plan(profile, PlannerOptions(budget_bytes));
    if (!dtr.feasible) continue;
    const int slots = 4000;
    const int64_t slack = 4 * profile.length() * ((budget_bytes - profile.fixed_bytes) / slots + 1);
    const Plan optimal =
        make_planner("optimal")->plan(profile, PlannerOptions(budget_bytes + slack).memory_slots(slots));
    ASSERT_TRUE(optimal.feasible) << "trial " << trial;
    ++compared;
    EXPECT_GE(dtr.predicted_time_s, optimal.predicted_time_s * (1 - 1e-9))
        << "trial " << trial << "\ndtr:     " << to_string(dtr.schedule)
        << "\noptimal: " << to_string(optimal.schedule);
  }
  EXPECT_GT(compared, 20);
}

TEST(DtrPlanner, MinimumBudgetIsStableAndFeasible) {
  std::mt19937_64 rng(9);
  const ChainProfile profile = testing::random_profile(rng, 10);
  const auto planner = make_planner("dtr");
  const Plan impossible = planner->plan(profile, PlannerOptions(profile.fixed_bytes));
  ASSERT_FALSE(impossible.feasible);
  const Plan at_minimum = planner->plan(profile, PlannerOptions(impossible.min_feasible_budget_bytes));
  ASSERT_TRUE(at_minimum.feasible);
  EXPECT_EQ(at_minimum.min_feasible_budget_bytes, impossible.min_feasible_budget_bytes);
  EXPECT_LE(at_minimum.predicted_peak_bytes, impossible.min_feasible_budget_bytes);
  // Above the minimum, plans stay feasible (the fallback keeps feasibility monotone).
  for (int64_t extra : {1, 100, 10000}) {
    EXPECT_TRUE(
        planner->plan(profile, PlannerOptions(impossible.min_feasible_budget_bytes + extra)).feasible);
  }
}

// ---- the controller with a scripted backend -----------------------------------------

class RecordingBackend : public DtrBackend {
 public:
  explicit RecordingBackend(DtrController& controller) : controller_(controller) {}
  int64_t live_bytes() override { return controller_.chain().model_live_bytes() + extra_bytes; }
  double now_s() override { return clock_s; }
  void evict(const DtrEviction& eviction) override { evictions.push_back(eviction); }
  bool recompute(int stage) override {
    const Op op = Op::forward_checkpoint(stage);
    if (!controller_.prepare(op, *this)) return false;
    clock_s += 1;
    controller_.completed(op, clock_s);
    recomputed.push_back(stage);
    return true;
  }
  int64_t extra_bytes = 0;  // memory the profile does not know about (what the runtime measures)
  double clock_s = 0;
  std::vector<DtrEviction> evictions;
  std::vector<int> recomputed;

 private:
  DtrController& controller_;
};

TEST(DtrController, ReactsToMeasuredBytesBeyondTheProfile) {
  const ChainProfile profile = flat_chain(6);
  const int64_t budget = 1000 + 6 * 40 + 100;  // store-all fits by the profile
  DtrController controller(profile, budget);
  RecordingBackend backend(controller);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(controller.prepare(Op::forward_with_graph(i), backend));
    backend.clock_s += 1;
    controller.completed(Op::forward_with_graph(i), backend.clock_s);
  }
  EXPECT_TRUE(backend.evictions.empty());
  backend.extra_bytes = 150;  // e.g. an allocator's slack the profile did not see
  ASSERT_TRUE(controller.prepare(Op::forward_with_graph(4), backend));
  EXPECT_FALSE(backend.evictions.empty());
  EXPECT_LE(backend.live_bytes() + controller.op_bytes(Op::forward_with_graph(4)), budget);
  // The stalest residual goes first: graph 0 (equal cost and bytes, oldest access).
  EXPECT_EQ(backend.evictions.front(), (DtrEviction{DtrEviction::Kind::ShrinkGraph, 0}));
}

TEST(DtrController, RecomputesMissingInputsOneCheckpointAtATime) {
  const ChainProfile profile = flat_chain(5);
  DtrController controller(profile, int64_t{1} << 40);
  RecordingBackend backend(controller);
  for (int i = 0; i < 5; ++i) controller.completed(Op::forward_with_graph(i), i + 1.0);
  controller.completed(Op::loss(), 6);
  controller.completed(Op::backward(4), 7);
  // Shrink graphs 0..3 and drop a_1..a_3 (a_4 stays stored, unused): B3 must rebuild graph 3
  // from a_3, so a_1, a_2, a_3 are recomputed from a_0 with ForwardCheckpoint.
  for (int i = 0; i < 4; ++i) controller.chain().on_evicted({DtrEviction::Kind::ShrinkGraph, i});
  for (int i = 1; i <= 3; ++i) controller.chain().on_evicted({DtrEviction::Kind::FreeActivation, i});
  ASSERT_TRUE(controller.prepare(Op::backward(3), backend));
  EXPECT_EQ(backend.recomputed, (std::vector<int>{0, 1, 2}));
  EXPECT_TRUE(controller.chain().available(3));
  EXPECT_EQ(controller.stats().recomputations, 3);
}

}  // namespace
}  // namespace memento
