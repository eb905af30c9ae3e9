// In-place ops under every schedule: stages that write into their inputs (in-place
// Dropout and ReLU, `x.mul_()`, BatchNorm followed by an in-place ReLU) give plain
// autograd's gradients, buffers and random stream bit for bit, for every persistent
// schedule of the chain and under DTR; checkpoint() and the profiler handle them too.

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/exhaustive.h"
#include "memento/core/budget.h"
#include "memento/core/error.h"
#include "memento/core/planner.h"
#include "memento/core/simulate.h"
#include "memento/torch/checkpoint.h"
#include "memento/torch/executor.h"
#include "memento/torch/plan_runner.h"
#include "memento/torch/profiler.h"
#include "support.h"

namespace memento {
namespace {

using testing::TinyModel;
namespace nn = torch::nn;

// Scales its input in place, then a Linear reads it.
struct ScaleLinearImpl : nn::Module {
  nn::Linear linear{nullptr};
  explicit ScaleLinearImpl(int64_t width) { linear = register_module("linear", nn::Linear(width, width)); }
  torch::Tensor forward(torch::Tensor x) {
    x.mul_(1.5);
    return linear->forward(x);
  }
};
TORCH_MODULE(ScaleLinear);

// BatchNorm, then an in-place ReLU on its output (the usual Conv-BN-ReLU block's tail).
struct NormReluImpl : nn::Module {
  nn::BatchNorm1d norm{nullptr};
  explicit NormReluImpl(int64_t width) { norm = register_module("norm", nn::BatchNorm1d(width)); }
  torch::Tensor forward(torch::Tensor x) {
    torch::Tensor h = norm->forward(x);
    return torch::relu_(h);
  }
};
TORCH_MODULE(NormRelu);

// Linear | ScaleLinear | Dropout(inplace) | ReLU(inplace) | NormRelu | Linear: stages 1, 2
// and 3 write into their input; each write is one plain autograd accepts.
TinyModel inplace_chain(bool input_requires_grad, int64_t batch_size = 6, int64_t width = 8) {
  nn::Sequential net(nn::Linear(width, 2 * width), ScaleLinear(2 * width),
                     nn::Dropout(nn::DropoutOptions(0.3).inplace(true)),
                     nn::ReLU(nn::ReLUOptions().inplace(true)), NormRelu(2 * width),
                     nn::Linear(2 * width, 3));
  TinyModel model;
  model.chain = Chain::from_sequential(net);
  model.chain->train();
  model.loss = [](const TensorList& outputs, const TensorList& targets) {
    return torch::mse_loss(outputs[0], targets[0]);
  };
  model.batch = [=](uint64_t seed) {
    torch::manual_seed(seed);
    Batch batch;
    batch.inputs = {torch::randn({batch_size, width}).requires_grad_(input_requires_grad)};
    batch.targets = {torch::randn({batch_size, 3})};
    return batch;
  };
  return model;
}

struct Outcome {
  std::vector<torch::Tensor> parameter_grads;
  torch::Tensor input_grad;
  std::vector<torch::Tensor> buffers;
  torch::Tensor next_random;
  double loss = 0;
};

// One step from a fixed state; `run` executes it (plain, a schedule, a plan runner).
template <class Run>
Outcome run_step(TinyModel& model, const std::vector<torch::Tensor>& initial_buffers, uint64_t seed,
                 Run&& run) {
  testing::clear_gradients(*model.chain);
  testing::restore_buffers(*model.chain, initial_buffers);
  Batch batch = model.batch(seed);
  testing::seed_all(seed + 1000);
  Outcome outcome;
  outcome.loss = run(batch).loss;
  outcome.parameter_grads = testing::gradients(*model.chain);
  outcome.input_grad = batch.inputs[0].grad();
  outcome.buffers = testing::buffers(*model.chain);
  outcome.next_random = torch::rand({4});
  return outcome;
}

::testing::AssertionResult identical(const Outcome& plain, const Outcome& other) {
  if (plain.loss != other.loss)
    return ::testing::AssertionFailure() << "loss " << other.loss << " vs " << plain.loss;
  if (!testing::bitwise_equal(plain.parameter_grads, other.parameter_grads)) {
    return ::testing::AssertionFailure()
           << "parameter gradients differ by up to "
           << testing::max_abs_diff(plain.parameter_grads, other.parameter_grads);
  }
  if (!testing::bitwise_equal(plain.input_grad, other.input_grad))
    return ::testing::AssertionFailure() << "input gradient";
  if (!testing::bitwise_equal(plain.buffers, other.buffers))
    return ::testing::AssertionFailure() << "BatchNorm buffers";
  if (!testing::bitwise_equal(plain.next_random, other.next_random))
    return ::testing::AssertionFailure() << "generator";
  return ::testing::AssertionSuccess();
}

TEST(InPlace, EveryPersistentScheduleMatchesPlainAutogradBitwise) {
  for (bool input_requires_grad : {false, true}) {
    testing::seed_all(11);
    TinyModel model = inplace_chain(input_requires_grad);
    const auto initial = testing::buffers(*model.chain);
    auto plain_run = [&](const Batch& batch) { return plain_step(*model.chain, model.loss, batch); };
    const Outcome plain = run_step(model, initial, 3, plain_run);
    Executor executor(model.chain, model.loss);
    const std::vector<Schedule> schedules = testing::enumerate_persistent_schedules(model.chain->length());
    ASSERT_EQ(schedules.size(), 1806u);
    int differing = 0;
    for (const Schedule& schedule : schedules) {
      const Outcome scheduled =
          run_step(model, initial, 3, [&](const Batch& batch) { return executor.step(schedule, batch); });
      const auto same = identical(plain, scheduled);
      if (!same && ++differing <= 3) ADD_FAILURE() << to_string(schedule) << ": " << same.message();
    }
    EXPECT_EQ(differing, 0) << "of " << schedules.size()
                            << " schedules (input requires grad: " << input_requires_grad << ")";
  }
}

// The case: an in-place Dropout as its own stage, recomputed from its own stored
// checkpoint (Fc2 keeps a_2, the dropout's input; B3 later reruns Fc2 from it).
TEST(InPlace, DropoutRecomputedFromItsOwnCheckpoint) {
  testing::seed_all(12);
  TinyModel model = inplace_chain(false);
  const auto initial = testing::buffers(*model.chain);
  const Outcome plain = run_step(
      model, initial, 4, [&](const Batch& batch) { return plain_step(*model.chain, model.loss, batch); });
  const Schedule schedule = {Op::forward_checkpoint(0),
                             Op::forward_checkpoint(1),
                             Op::forward_checkpoint(2),
                             Op::forward_no_grad(3),
                             Op::forward_with_graph(4),
                             Op::forward_with_graph(5),
                             Op::loss(),
                             Op::backward(5),
                             Op::backward(4),
                             Op::forward_checkpoint(2),
                             Op::forward_with_graph(3),
                             Op::backward(3),
                             Op::forward_with_graph(2),
                             Op::backward(2),
                             Op::forward_with_graph(1),
                             Op::backward(1),
                             Op::forward_with_graph(0),
                             Op::backward(0)};
  Executor executor(model.chain, model.loss);
  const Outcome scheduled =
      run_step(model, initial, 4, [&](const Batch& batch) { return executor.step(schedule, batch); });
  EXPECT_TRUE(identical(plain, scheduled)) << to_string(schedule);
}

TEST(InPlace, ProfilerMeasuresInPlaceStagesAndDtrMatchesPlain) {
  testing::seed_all(13);
  TinyModel model = inplace_chain(true, /*batch_size=*/64, /*width=*/64);
  const auto initial = testing::buffers(*model.chain);
  const Batch probe = model.batch(1);
  const ChainProfile profile =
      profile_chain(*model.chain, probe, model.loss, ProfilerOptions().warmup_runs(0).timed_runs(1));
  EXPECT_TRUE(testing::bitwise_equal(initial, testing::buffers(*model.chain)))
      << "profiling left buffers changed";
  const Outcome plain = run_step(
      model, initial, 5, [&](const Batch& batch) { return plain_step(*model.chain, model.loss, batch); });
  Executor executor(model.chain, model.loss);
  const int64_t store_all = store_all_peak_bytes(profile);
  for (const std::string planner : {"dtr", "optimal", "uniform", "recompute-all"}) {
    SCOPED_TRACE(planner);
    const int64_t least =
        make_planner(planner)->plan(profile, PlannerOptions(store_all)).min_feasible_budget_bytes;
    const Plan plan = make_planner(planner)->plan(profile, PlannerOptions(least + (store_all - least) / 4));
    ASSERT_TRUE(plan.feasible) << planner;
    PlanRunner runner(executor, plan, profile);
    const Outcome run = run_step(model, initial, 5, [&](const Batch& batch) { return runner.step(batch); });
    EXPECT_TRUE(identical(plain, run)) << planner << ": " << to_string(runner.executed_schedule());
  }
}

TEST(InPlace, ProfilerRunsConvBatchNormInPlaceRelu) {
  testing::seed_all(14);
  nn::Sequential net(nn::Conv2d(nn::Conv2dOptions(3, 8, 3).padding(1)), nn::BatchNorm2d(8),
                     nn::ReLU(nn::ReLUOptions().inplace(true)),
                     nn::Conv2d(nn::Conv2dOptions(8, 4, 3).padding(1)),
                     nn::ReLU(nn::ReLUOptions().inplace(true)), nn::Flatten(), nn::Linear(4 * 6 * 6, 5));
  auto chain = Chain::from_sequential(net);
  chain->train();
  Batch batch{{torch::randn({4, 3, 6, 6})}, {torch::randint(0, 5, {4}, torch::kInt64)}};
  LossFunction loss = [](const TensorList& out, const TensorList& target) {
    return torch::nn::functional::cross_entropy(out[0], target[0]);
  };
  ChainProfile profile;
  ASSERT_NO_THROW(profile =
                      profile_chain(*chain, batch, loss, ProfilerOptions().warmup_runs(1).timed_runs(2)));
  EXPECT_EQ(profile.length(), 7);
  // The in-place ReLU's output is its input's storage: it costs no new bytes in store-all.
  EXPECT_EQ(profile.stages[2].output_bytes, profile.stages[2].input_bytes);
}

TEST(InPlace, CheckpointedFunctionThatScalesItsInputInPlace) {
  testing::seed_all(15);
  nn::Linear first(6, 6), second(6, 4);
  auto fn = [&](const TensorList& in) {
    in[0].mul_(2);
    return TensorList{second->forward(torch::relu(in[0]))};
  };
  auto run = [&](bool checkpointed) {
    testing::clear_gradients(*first);
    testing::clear_gradients(*second);
    torch::manual_seed(2);
    torch::Tensor data = torch::randn({5, 6});
    torch::Tensor x = first->forward(data);  // not a leaf: in-place is allowed, as in plain autograd
    TensorList out = checkpointed ? checkpoint(fn, {x}) : fn({x});
    out[0].pow(2).sum().backward();
    std::vector<torch::Tensor> grads = testing::gradients(*first);
    for (const torch::Tensor& grad : testing::gradients(*second)) grads.push_back(grad);
    return grads;
  };
  const auto plain = run(false);
  const auto checkpointed = run(true);
  EXPECT_TRUE(testing::bitwise_equal(plain, checkpointed)) << testing::max_abs_diff(plain, checkpointed);
}

TEST(InPlace, CheckpointUpdatesBatchNormStatisticsOnceWithoutAModulePointer) {
  testing::seed_all(16);
  nn::Linear linear(6, 6);
  nn::BatchNorm1d norm(6);
  auto fn = [&](const TensorList& in) {
    torch::Tensor h = norm->forward(linear->forward(in[0]));
    return TensorList{torch::relu_(h)};
  };
  const std::vector<torch::Tensor> initial = testing::buffers(*norm);
  std::vector<std::vector<torch::Tensor>> results;
  for (bool checkpointed : {false, true}) {
    testing::restore_buffers(*norm, initial);
    testing::clear_gradients(*linear);
    testing::clear_gradients(*norm);
    torch::manual_seed(3);
    torch::Tensor x = torch::randn({8, 6}, torch::requires_grad());
    TensorList out = checkpointed ? checkpoint(fn, {x}) : fn({x});
    out[0].sum().backward();
    std::vector<torch::Tensor> result = testing::buffers(*norm);
    for (const torch::Tensor& grad : testing::gradients(*linear)) result.push_back(grad);
    result.push_back(x.grad());
    results.push_back(result);
  }
  EXPECT_TRUE(testing::bitwise_equal(results[0], results[1]))
      << testing::max_abs_diff(results[0], results[1]);
  EXPECT_EQ(norm->num_batches_tracked.item<int64_t>(), 1);
}

TEST(InPlace, CheckpointRefusesDoubleBackward) {
  nn::Linear linear(4, 4);
  torch::Tensor x = torch::randn({3, 4}, torch::requires_grad());
  TensorList out =
      checkpoint([&](const TensorList& in) { return TensorList{torch::tanh(linear->forward(in[0]))}; }, {x});
  try {
    torch::autograd::grad({out[0].sum()}, {x}, {}, /*retain_graph=*/true, /*create_graph=*/true);
    FAIL() << "double backward through checkpoint must raise";
  } catch (const std::exception& error) {
    EXPECT_NE(std::string(error.what()).find("create_graph"), std::string::npos) << error.what();
  }
}

TEST(InPlace, CheckpointSequentialMatchesPlainForEverySegmentCount) {
  testing::seed_all(17);
  nn::Sequential net(nn::Linear(6, 12), nn::BatchNorm1d(12), nn::ReLU(nn::ReLUOptions().inplace(true)),
                     nn::Dropout(0.25), nn::Linear(12, 12), nn::GELU(), nn::Linear(12, 3));
  net->train();
  std::vector<torch::Tensor> initial = testing::buffers(*net);
  auto run = [&](int segments) {
    testing::clear_gradients(*net);
    testing::restore_buffers(*net, initial);
    torch::manual_seed(4);
    torch::Tensor x = torch::randn({7, 6}, torch::requires_grad());
    torch::manual_seed(5);
    torch::Tensor out = segments == 0 ? net->forward(x) : checkpoint_sequential(net, segments, x);
    out.pow(2).mean().backward();
    std::vector<torch::Tensor> result = testing::gradients(*net);
    for (const torch::Tensor& buffer : testing::buffers(*net)) result.push_back(buffer);
    result.push_back(x.grad());
    result.push_back(torch::rand({3}));
    return result;
  };
  const auto plain = run(0);
  for (int segments = 1; segments <= static_cast<int>(net->size()); ++segments) {
    const auto checkpointed = run(segments);
    EXPECT_TRUE(testing::bitwise_equal(plain, checkpointed))
        << segments << " segments: " << testing::max_abs_diff(plain, checkpointed);
  }
  EXPECT_THROW(checkpoint_sequential(net, 0, torch::randn({2, 6})), InvalidArgument);
  EXPECT_THROW(checkpoint_sequential(net, 8, torch::randn({2, 6})), InvalidArgument);
}

}  // namespace
}  // namespace memento
