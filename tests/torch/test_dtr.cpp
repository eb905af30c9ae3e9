#include <algorithm>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "memento/core/budget.h"
#include "memento/core/error.h"
#include "memento/core/planner.h"
#include "memento/torch/executor.h"
#include "memento/torch/memory.h"
#include "memento/torch/plan_runner.h"
#include "memento/torch/profiler.h"
#include "support.h"
#include "torch/runtime_support.h"

namespace memento {
namespace {

using testing::budget_at;
using testing::expect_identical;
using testing::Outcome;
using testing::profile_of;
using testing::run;
using testing::TinyModel;

TEST(DtrRuntime, TightBudgetMatchesPlainAutogradBitwiseWithDropout) {
  testing::seed_all(3);
  TinyModel model = testing::residual_mask_chain({});  // dropout 0.25, BatchNorm
  const ChainProfile profile = profile_of(model);
  const auto initial = testing::buffers(*model.chain);
  int tested = 0;
  for (double fraction : {0.7, 0.45}) {
    const Plan plan = make_planner("dtr")->plan(profile, PlannerOptions(budget_at(profile, fraction)));
    if (!plan.feasible) continue;
    ASSERT_EQ(plan.runtime_policy, "dtr");
    Executor executor(model.chain, model.loss);
    PlanRunner runner(executor, plan, profile);
    EXPECT_EQ(runner.executed_schedule(), store_all_schedule(profile.length()));
    const Outcome plain = run(model, initial, 21, nullptr);
    for (int step = 0; step < 2; ++step) {  // the second step uses the measured stage times
      const Outcome dtr = run(model, initial, 21, &runner);
      expect_identical(plain, dtr, "dtr at " + std::to_string(fraction) + ", step " + std::to_string(step));
      ASSERT_TRUE(runner.policy_stats().has_value());
      EXPECT_GT(runner.policy_stats()->evictions, 0);
      EXPECT_GT(dtr.step.recompute_count, 0);
    }
    ++tested;
  }
  EXPECT_GE(tested, 1);
}

// Memory follows the budget: the measured peak above the step's start plus the profile's
// fixed bytes (how `memento verify` counts it) stays within the budget + 5%, and DTR
// actually evicts and recomputes to get there.
TEST(DtrRuntime, MeasuredPeakStaysWithinTheBudget) {
  testing::seed_all(5);
  TinyModel model = testing::sequential_chain(/*batch_size=*/1024, /*width=*/512, /*dropout=*/0.2);
  const ChainProfile profile = profile_of(model);
  const auto initial = testing::buffers(*model.chain);
  const Outcome plain = run(model, initial, 4, nullptr);
  const int64_t plain_peak = plain.step.peak_bytes - plain.step.start_bytes + profile.fixed_bytes;
  int tested = 0;
  for (double fraction : {0.75, 0.62}) {
    const int64_t budget = budget_at(profile, fraction);
    const Plan plan = make_planner("dtr")->plan(profile, PlannerOptions(budget));
    if (!plan.feasible) continue;
    Executor executor(model.chain, model.loss);
    PlanRunner runner(executor, plan, profile);
    for (int step = 0; step < 2; ++step) {
      const Outcome dtr = run(model, initial, 4, &runner);
      const std::string what = "dtr at " + std::to_string(fraction) + " step " + std::to_string(step);
      expect_identical(plain, dtr, what);
      const int64_t measured = dtr.step.peak_bytes - dtr.step.start_bytes + profile.fixed_bytes;
      EXPECT_LE(static_cast<double>(measured), 1.05 * static_cast<double>(budget)) << what;
      EXPECT_LT(measured, plain_peak) << what;
      EXPECT_GT(runner.policy_stats()->evictions, 0) << what;
      EXPECT_GT(dtr.step.recompute_count, 0) << what;
      EXPECT_EQ(dtr.step.end_bytes, dtr.step.start_bytes)
          << what << ": the step must release all it allocated";
    }
    ++tested;
  }
  EXPECT_EQ(tested, 2);
  EXPECT_GT(store_all_peak_bytes(profile) - profile.fixed_bytes, 16 * 1024 * 1024);
}

TEST(DtrRuntime, StaticPlansRunTheirScheduleAndUnknownPoliciesAreRejected) {
  testing::seed_all(7);
  TinyModel model = testing::sequential_chain();
  const ChainProfile profile = profile_of(model);
  Executor executor(model.chain, model.loss);
  const Plan optimal = make_planner("optimal")->plan(profile, PlannerOptions(store_all_peak_bytes(profile)));
  PlanRunner runner(executor, optimal, profile);
  EXPECT_EQ(runner.executed_schedule(), optimal.schedule);
  EXPECT_FALSE(runner.policy_stats().has_value());
  Plan unknown = optimal;
  unknown.runtime_policy = "lru";
  EXPECT_THROW(PlanRunner(executor, unknown, profile), InvalidArgument);
  ChainProfile shorter = profile;
  shorter.stages.pop_back();
  EXPECT_THROW(PlanRunner(executor, optimal, shorter), InvalidArgument);
}

TEST(DtrRuntime, ShrinkGraphKeepsTheOutputAndFreesTheRest) {
  testing::seed_all(9);
  TinyModel model = testing::sequential_chain(/*batch_size=*/256, /*width=*/64, /*dropout=*/0.0);
  Executor executor(model.chain, model.loss);
  int64_t freed = -1;
  ExecutorHooks hooks;
  hooks.after_op = [&](Executor& ex, const OpEvent& event) {
    // Graph 1 is the BatchNorm: besides its output it saved the batch statistics.
    if (event.op == Op::forward_with_graph(2) && event.op_index >= 0) {
      const int64_t before = MemoryTracker::instance().live_bytes();
      const int64_t output_bytes = ex.activation_bytes(2);
      ex.shrink_graph(1);
      EXPECT_TRUE(ex.stored(2));
      EXPECT_FALSE(ex.graph_alive(1));
      EXPECT_EQ(ex.activation_bytes(2), output_bytes);
      freed = before - MemoryTracker::instance().live_bytes();
      EXPECT_THROW(ex.shrink_graph(1), ScheduleError);
    }
  };
  executor.set_hooks(hooks);
  MemoryTracker::instance();
  testing::clear_gradients(*model.chain);
  Batch batch = model.batch(3);
  const StepResult result = executor.step(store_all_schedule(model.chain->length()), batch);
  EXPECT_GT(freed, 0);
  EXPECT_EQ(result.on_demand_count, 1);  // graph 1 rebuilt for Backward(1)
}

}  // namespace
}  // namespace memento
