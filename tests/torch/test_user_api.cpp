// The APIs a LibTorch user drives from their own code: PlannedChain in their own training
// loop, Executor::step with a Plan, and the errors that name the stage and say what to do.

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "memento/core/budget.h"
#include "memento/core/error.h"
#include "memento/core/planner.h"
#include "memento/torch/executor.h"
#include "memento/torch/planned_chain.h"
#include "memento/torch/profiler.h"
#include "support.h"

namespace memento {
namespace {

using testing::TinyModel;

struct LoopResult {
  std::vector<torch::Tensor> parameter_grads;
  std::vector<torch::Tensor> input_grads;
  std::vector<torch::Tensor> buffers;
  torch::Tensor next_random;
};

// Two micro-batches accumulated before one look at the gradients, as a user's loop with
// gradient accumulation does; `forward` is the plain chain or a PlannedChain.
template <class Forward>
LoopResult accumulate_two_batches(TinyModel& model, const std::vector<torch::Tensor>& initial,
                                  Forward&& forward) {
  testing::clear_gradients(*model.chain);
  testing::restore_buffers(*model.chain, initial);
  Batch first = model.batch(21);
  Batch second = model.batch(22);
  testing::seed_all(23);
  torch::Tensor loss_first = model.loss(forward(first.inputs), first.targets);
  torch::Tensor loss_second = model.loss(forward(second.inputs), second.targets);
  (loss_first + 0.5 * loss_second).backward();
  LoopResult result;
  result.parameter_grads = testing::gradients(*model.chain);
  for (const Batch* batch : {&first, &second}) {
    for (const torch::Tensor& input : batch->inputs) result.input_grads.push_back(input.grad());
  }
  result.buffers = testing::buffers(*model.chain);
  result.next_random = torch::rand({4});
  return result;
}

TEST(PlannedChain, OwnTrainingLoopMatchesPlainAutogradForEveryExactPlanner) {
  testing::seed_all(31);
  TinyModel model = testing::residual_mask_chain({});
  const auto initial = testing::buffers(*model.chain);
  const ChainProfile profile =
      profile_chain(*model.chain, model.batch(1), model.loss, ProfilerOptions().warmup_runs(0).timed_runs(1));
  testing::restore_buffers(*model.chain, initial);
  const LoopResult plain = accumulate_two_batches(
      model, initial, [&](const TensorList& inputs) { return model.chain->forward(inputs); });
  const int64_t store_all = store_all_peak_bytes(profile);
  int checked = 0;
  for (const std::string& name : planner_names()) {
    const int64_t least =
        make_planner(name)->plan(profile, PlannerOptions(store_all)).min_feasible_budget_bytes;
    const Plan plan = make_planner(name)->plan(profile, PlannerOptions(least + (store_all - least) / 3));
    // dtr and gac decide at run time: PlanRunner, not PlannedChain.
    if (!plan.feasible || !plan.runtime_policy.empty()) continue;
    PlannedChain planned(model.chain, plan);
    const LoopResult run = accumulate_two_batches(
        model, initial, [&](const TensorList& inputs) { return planned.forward(inputs); });
    EXPECT_TRUE(testing::bitwise_equal(plain.parameter_grads, run.parameter_grads))
        << name << " " << to_string(plan.schedule) << ": "
        << testing::max_abs_diff(plain.parameter_grads, run.parameter_grads);
    EXPECT_TRUE(testing::bitwise_equal(plain.input_grads, run.input_grads)) << name << ": input gradients";
    EXPECT_TRUE(testing::bitwise_equal(plain.buffers, run.buffers)) << name << ": buffers";
    EXPECT_TRUE(testing::bitwise_equal(plain.next_random, run.next_random)) << name << ": generator";
    ++checked;
  }
  EXPECT_GE(checked, 8);
}

TEST(PlannedChain, SequentialWithOptimizerStepsLikePlainTraining) {
  std::vector<std::vector<torch::Tensor>> weights;
  for (bool planned_run : {false, true}) {
    testing::seed_all(32);
    TinyModel model = testing::sequential_chain(/*batch_size=*/16, /*width=*/12, /*dropout=*/0.2);
    const ChainProfile profile = profile_chain(*model.chain, model.batch(1), model.loss);
    const int64_t store_all = store_all_peak_bytes(profile);
    const int64_t least =
        make_planner("optimal")->plan(profile, PlannerOptions(store_all)).min_feasible_budget_bytes;
    const Plan plan = make_planner("optimal")->plan(profile, PlannerOptions(least + (store_all - least) / 4));
    ASSERT_GT(plan.recompute_count, 0);
    PlannedChain planned(model.chain, plan);
    torch::optim::SGD optimizer(model.chain->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
    for (int step = 0; step < 4; ++step) {
      Batch batch = model.batch(100 + step);
      optimizer.zero_grad();
      torch::Tensor out =
          planned_run ? planned.forward(batch.inputs[0]) : model.chain->forward(batch.inputs)[0];
      model.loss({out}, batch.targets).backward();
      optimizer.step();
    }
    std::vector<torch::Tensor> final_weights;
    for (const torch::Tensor& parameter : model.chain->parameters())
      final_weights.push_back(parameter.detach().clone());
    weights.push_back(final_weights);
  }
  EXPECT_TRUE(testing::bitwise_equal(weights[0], weights[1]))
      << testing::max_abs_diff(weights[0], weights[1]);
}

TEST(PlannedChain, RefusesInfeasibleAndRunTimePlansAndRepeatedBackward) {
  testing::seed_all(33);
  TinyModel model = testing::sequential_chain();
  const ChainProfile profile = profile_chain(*model.chain, model.batch(1), model.loss);
  const Plan infeasible = make_planner("optimal")->plan(profile, PlannerOptions(profile.fixed_bytes));
  ASSERT_FALSE(infeasible.feasible);
  try {
    PlannedChain planned(model.chain, infeasible);
    FAIL() << "an infeasible plan must be refused";
  } catch (const InvalidArgument& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("infeasible"), std::string::npos) << message;
    EXPECT_NE(message.find(std::to_string(infeasible.min_feasible_budget_bytes)), std::string::npos)
        << message;
    EXPECT_NE(message.find("raise"), std::string::npos) << message;
  }
  const Plan dtr = make_planner("dtr")->plan(profile, PlannerOptions(store_all_peak_bytes(profile)));
  EXPECT_THROW(PlannedChain(model.chain, dtr), InvalidArgument);

  const Plan plan =
      make_planner("recompute-all")->plan(profile, PlannerOptions(store_all_peak_bytes(profile)));
  PlannedChain planned(model.chain, plan);
  Batch batch = model.batch(2);
  torch::Tensor loss = model.loss({planned.forward(batch.inputs[0])}, batch.targets);
  loss.backward(/*gradient=*/{}, /*retain_graph=*/true);
  EXPECT_THROW(loss.backward(), std::exception);

  torch::Tensor out;
  {
    torch::NoGradGuard no_grad;
    out = planned.forward(batch.inputs[0]);
  }
  EXPECT_FALSE(out.requires_grad());
}

TEST(Executor, InfeasiblePlanAndEmptyScheduleSayWhatToDo) {
  testing::seed_all(34);
  TinyModel model = testing::sequential_chain();
  const ChainProfile profile = profile_chain(*model.chain, model.batch(1), model.loss);
  const Plan plan = make_planner("optimal")->plan(profile, PlannerOptions(profile.fixed_bytes));
  ASSERT_FALSE(plan.feasible);
  Executor executor(model.chain, model.loss);
  const Batch batch = model.batch(2);
  try {
    executor.step(plan, batch);
    FAIL() << "an infeasible plan must be refused";
  } catch (const InvalidArgument& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("min_feasible_budget_bytes"), std::string::npos) << message;
    EXPECT_NE(message.find(format_bytes(plan.min_feasible_budget_bytes)), std::string::npos) << message;
  }
  try {
    executor.step(plan.schedule, batch);
    FAIL() << "an empty schedule must be refused";
  } catch (const InvalidArgument& error) {
    EXPECT_NE(std::string(error.what()).find("Plan::feasible"), std::string::npos) << error.what();
  }
}

// A stage that fails inside LibTorch: one line naming the op and the stage, no backtrace.
TEST(Executor, ErrorsInsideAStageNameItOnOneLine) {
  torch::nn::Sequential net(torch::nn::Linear(4, 8), torch::nn::ReLU(), torch::nn::Linear(6, 2));
  auto chain = Chain::from_sequential(net);
  LossFunction loss = [](const TensorList& out, const TensorList& target) {
    return torch::mse_loss(out[0], target[0]);
  };
  Batch batch{{torch::randn({3, 4})}, {torch::randn({3, 2})}};
  auto expect_named = [](const std::string& message, const std::string& where) {
    EXPECT_NE(message.find("stage 2 (\"2\")"), std::string::npos) << where << ": " << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << where << ": " << message;
    EXPECT_EQ(message.find("Exception raised from"), std::string::npos) << where << ": " << message;
  };
  Executor executor(chain, loss);
  try {
    executor.step(store_all_schedule(3), batch);
    FAIL();
  } catch (const RuntimeError& error) {
    expect_named(error.what(), "executor");
  }
  try {
    profile_chain(*chain, batch, loss);
    FAIL();
  } catch (const RuntimeError& error) {
    expect_named(error.what(), "profiler");
    EXPECT_NE(std::string(error.what()).find("profile_chain"), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace memento
