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

namespace memento {
namespace {

using testing::TinyModel;

// Gradients, loss and the generator after one step from a fixed state (zeroed gradients,
// the initial buffers, the batch of `seed`, the generator seeded for dropout).
struct Outcome {
  std::vector<torch::Tensor> grads;
  std::vector<torch::Tensor> buffers;
  torch::Tensor next_random;
  StepResult step;
};

Outcome run(TinyModel& model, const std::vector<torch::Tensor>& initial_buffers, uint64_t seed,
            PlanRunner* runner) {
  {
    // Zero-filled, not cleared: the gradients stay allocated (fixed bytes, as in the profile)
    // so a step's memory above its start is activations and temporaries only.
    torch::NoGradGuard no_grad;
    for (torch::Tensor& parameter : model.chain->parameters()) {
      if (parameter.grad().defined()) {
        parameter.mutable_grad().zero_();
      } else {
        parameter.mutable_grad() = torch::zeros_like(parameter);
      }
    }
  }
  testing::restore_buffers(*model.chain, initial_buffers);
  Batch batch = model.batch(seed);
  testing::seed_all(seed + 1000);
  Outcome outcome;
  outcome.step = runner ? runner->step(batch) : plain_step(*model.chain, model.loss, batch);
  outcome.grads = testing::gradients(*model.chain);
  for (const torch::Tensor& input : batch.inputs) outcome.grads.push_back(input.grad());
  outcome.buffers = testing::buffers(*model.chain);
  outcome.next_random = torch::rand({4});
  return outcome;
}

void expect_identical(const Outcome& plain, const Outcome& dtr, const std::string& what) {
  EXPECT_EQ(plain.step.loss, dtr.step.loss) << what;
  ASSERT_EQ(plain.grads.size(), dtr.grads.size()) << what;
  for (size_t k = 0; k < plain.grads.size(); ++k) {
    EXPECT_TRUE(testing::bitwise_equal(plain.grads[k], dtr.grads[k])) << what << ": gradient " << k;
  }
  EXPECT_TRUE(testing::bitwise_equal(plain.buffers, dtr.buffers)) << what << ": buffers";
  EXPECT_TRUE(testing::bitwise_equal(plain.next_random, dtr.next_random)) << what << ": generator";
}

ChainProfile profile_of(TinyModel& model) {
  MemoryTracker::instance();
  Batch batch = model.batch(1);
  ChainProfile profile =
      profile_chain(*model.chain, batch, model.loss, ProfilerOptions().warmup_runs(0).timed_runs(1));
  plain_step(*model.chain, model.loss, batch);  // allocate the parameter gradients (fixed bytes)
  return profile;
}

// A budget `fraction` of the way from the fixed bytes to the store-all peak.
int64_t budget_at(const ChainProfile& profile, double fraction) {
  const int64_t room = store_all_peak_bytes(profile) - profile.fixed_bytes;
  return profile.fixed_bytes + static_cast<int64_t>(fraction * static_cast<double>(room));
}

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
