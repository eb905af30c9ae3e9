// The gac run-time policy (PlanRunner, policy "gac"): exact GAC is bit-identical to plain
// autograd while its schedule changes from step to step, within the budget; a frozen prefix
// (ForwardFrozen) gives its parameters no gradient and the rest exactly what autograd gives
// them with the prefix outside the graph.
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "memento/core/error.h"
#include "memento/core/gac.h"
#include "memento/core/planner.h"
#include "memento/core/simulate.h"
#include "support.h"
#include "torch/runtime_support.h"

namespace memento {
namespace {

using testing::Outcome;
using testing::TinyModel;

TEST(GacRuntime, ExactStepsEqualPlainAutogradWhileTheScheduleChanges) {
  testing::seed_all(5);
  TinyModel model = testing::sequential_chain(/*batch_size=*/256, /*width=*/128, /*dropout=*/0.2);
  const ChainProfile profile = testing::profile_of(model);
  const auto initial = testing::buffers(*model.chain);
  GacOptions options;
  options.threshold = GacThreshold::NormMedian;
  options.fill_spare_memory = false;  // decisions follow the proxies, not the spare memory
  const int64_t budget = store_all_peak_bytes(profile);
  const Plan plan = make_planner("gac")->plan(profile, PlannerOptions(budget).gac(options));
  ASSERT_TRUE(plan.feasible);
  Executor executor(model.chain, model.loss);
  PlanRunner runner(executor, plan, profile);
  std::set<std::string> schedules;
  for (uint64_t seed = 0; seed < 6; ++seed) {
    const Outcome plain = testing::run(model, initial, seed, nullptr);
    schedules.insert(to_string(runner.executed_schedule()));
    EXPECT_LE(simulate(profile, runner.executed_schedule()).peak_bytes, budget);
    const Outcome gac = testing::run(model, initial, seed, &runner);
    testing::expect_identical(plain, gac, "gac step " + std::to_string(seed));
  }
  ASSERT_NE(runner.gac(), nullptr);
  EXPECT_EQ(runner.gac()->history().size(), 6u * static_cast<size_t>(profile.length()));
  EXPECT_GE(schedules.size(), 2u) << "the first step stores everything; proxies then recompute some stages";
  EXPECT_GT(runner.proxy_s(), 0);
  const std::string state = runner.policy_state();
  PlanRunner resumed(executor, plan, profile);
  resumed.restore_policy_state(state);
  EXPECT_EQ(to_string(resumed.executed_schedule()), to_string(runner.executed_schedule()));
  EXPECT_THROW(resumed.restore_policy_state("{\"policy\": \"dtr\", \"steps\": 0, \"state\": \"{}\"}"),
               DataError);
}

TEST(GacRuntime, EveryStepsMeasuresOnlyEveryNthStepAndSideMeasurementsAreNotCounted) {
  testing::seed_all(6);
  TinyModel model = testing::sequential_chain(8, 6, 0.0);
  const ChainProfile profile = testing::profile_of(model);
  GacOptions options;
  options.every_steps = 3;
  const Plan plan =
      make_planner("gac")->plan(profile, PlannerOptions(store_all_peak_bytes(profile)).gac(options));
  Executor executor(model.chain, model.loss);
  PlanRunner runner(executor, plan, profile);
  for (uint64_t seed = 0; seed < 7; ++seed) runner.step(model.batch(seed));
  runner.step(model.batch(99), /*feed_policy=*/false);
  std::set<int64_t> steps;
  for (const GacRecord& record : runner.gac()->history()) steps.insert(record.step);
  EXPECT_EQ(steps, (std::set<int64_t>{1, 4, 7}));
}

TEST(GacRuntime, AFrozenPrefixGetsNoGradientAndTheRestWhatAutogradGivesIt) {
  testing::seed_all(7);
  TinyModel model = testing::sequential_chain(16, 8, /*dropout=*/0.0);
  const int length = model.chain->length();
  const ChainProfile profile = testing::profile_of(model);
  const Batch batch = model.batch(3);
  // Plain autograd with the first two stages outside the graph.
  testing::clear_gradients(*model.chain);
  TensorList activation = batch.inputs;
  {
    torch::NoGradGuard no_grad;
    for (int i = 0; i < 2; ++i) activation = model.chain->forward_stage(i, activation);
  }
  for (int i = 2; i < length; ++i) activation = model.chain->forward_stage(i, activation);
  model.loss(activation, batch.targets).backward();
  std::vector<torch::Tensor> expected;
  for (int i = 2; i < length; ++i) {
    for (const auto& parameter : model.chain->stage(i).parameters())
      expected.push_back(parameter.grad().clone());
  }

  std::vector<GacDecision> decisions(static_cast<size_t>(length), GacDecision::Store);
  decisions[0] = decisions[1] = GacDecision::Freeze;
  decisions[3] = GacDecision::Recompute;
  const Schedule schedule = gac_schedule(profile, decisions, std::vector<Codec>(static_cast<size_t>(length)));
  testing::clear_gradients(*model.chain);
  Executor executor(model.chain, model.loss);
  executor.step(schedule, batch);
  std::vector<torch::Tensor> got;
  for (int i = 2; i < length; ++i) {
    for (const auto& parameter : model.chain->stage(i).parameters()) got.push_back(parameter.grad());
  }
  EXPECT_TRUE(testing::bitwise_equal(expected, got));
  for (int i = 0; i < 2; ++i) {
    for (const auto& parameter : model.chain->stage(i).parameters()) {
      EXPECT_FALSE(parameter.grad().defined() && parameter.grad().abs().sum().item<double>() != 0)
          << "frozen stage " << i << " got a gradient";
    }
  }
}

// GACT's sensitivity repeats the step with one stage packed: the step that trains must
// come out as if nothing had been repeated (gradients, dropout generator, buffers), and
// every stage that keeps a graph gets an estimate at the first measured step.
TEST(GacRuntime, SensitivityProxyRepeatsTheStepWithoutATrace) {
  testing::seed_all(8);
  TinyModel model = testing::sequential_chain(/*batch_size=*/64, /*width=*/32, /*dropout=*/0.2);
  const ChainProfile profile = testing::profile_of(model, {Codec::Int8});
  const auto initial = testing::buffers(*model.chain);
  GacOptions options;
  options.mode = GacMode::Lossy;
  options.proxy = GacProxy::Sensitivity;
  options.threshold = GacThreshold::NormMedian;
  options.fill_spare_memory = false;
  const Plan plan = make_planner("gac")->plan(
      // Room above store-all: a lossy graph plus its stored exact output can outweigh the exact
      // graph, and the repeated step must fit the budget.
      profile, PlannerOptions(2 * store_all_peak_bytes(profile)).gac(options).codecs({Codec::Int8}));
  ASSERT_TRUE(plan.feasible);
  Executor executor(model.chain, model.loss);
  PlanRunner runner(executor, plan, profile);
  PlanRunner same_schedule(executor, plan, profile);  // never measures: feed_policy false
  const Schedule first = runner.executed_schedule();
  const Outcome measured = testing::run(model, initial, 3, &runner);
  EXPECT_EQ(to_string(same_schedule.executed_schedule()), to_string(first));
  testing::restore_buffers(*model.chain, initial);
  const Outcome plain = testing::run(model, initial, 3, nullptr);
  testing::expect_identical(plain, measured, "the step measured for sensitivity");
  size_t estimated = 0;
  for (const GacRecord& record : runner.gac()->history()) {
    if (std::isfinite(record.proxy)) ++estimated;
    EXPECT_GE(record.proxy, 0.0);
  }
  EXPECT_EQ(estimated, static_cast<size_t>(profile.length())) << "every stage stores a graph in step 0";
  EXPECT_GT(runner.proxy_s(), 0);
  // The estimates travel with the policy state.
  PlanRunner resumed(executor, plan, profile);
  resumed.restore_policy_state(runner.policy_state());
  EXPECT_EQ(resumed.policy_state(), runner.policy_state());
}

}  // namespace
}  // namespace memento
