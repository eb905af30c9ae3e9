#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "memento/core/error.h"
#include "memento/core/planner.h"
#include "memento/core/profile.h"
#include "memento/core/simulate.h"
#include "memento/torch/chain.h"
#include "memento/torch/executor.h"
#include "memento/torch/memory.h"
#include "memento/torch/profiler.h"

namespace memento {
namespace {

constexpr int64_t kMiB = 1 << 20;

LossFunction mse_loss() {
  return [](const TensorList& outputs, const TensorList& targets) {
    return torch::mse_loss(outputs[0], targets[0]);
  };
}

// One stage computing relu(linear(x)).
std::shared_ptr<StageModule> linear_relu(int64_t in_features, int64_t out_features) {
  torch::nn::Linear linear(in_features, out_features);
  return std::make_shared<LambdaStage>(
      [linear](const TensorList& inputs) mutable -> TensorList {
        return {torch::relu(linear->forward(inputs[0]))};
      },
      linear.ptr());
}

// A Linear / ReLU / LayerNorm chain whose activations are `batch` x `width` floats.
std::shared_ptr<Chain> mixed_chain(int64_t width, int64_t out_features) {
  torch::nn::Sequential net(
      torch::nn::Linear(width, width), torch::nn::ReLU(),
      torch::nn::LayerNorm(torch::nn::LayerNormOptions({width})), torch::nn::Linear(width, width),
      torch::nn::GELU(), torch::nn::Linear(width, width), torch::nn::Tanh(),
      torch::nn::LayerNorm(torch::nn::LayerNormOptions({width})), torch::nn::Linear(width, out_features));
  return Chain::from_sequential(net);
}

Batch regression_batch(int64_t batch, int64_t width, int64_t out_features) {
  return Batch{{torch::randn({batch, width})}, {torch::randn({batch, out_features})}};
}

void set_grads_to_zero(Chain& chain) {
  torch::NoGradGuard no_grad;
  for (torch::Tensor& parameter : chain.parameters()) parameter.mutable_grad() = torch::zeros_like(parameter);
}

// Peak above the start of one plain LibTorch forward + loss + backward (gradients
// already allocated, as in every step after the first).
int64_t measured_plain_step_bytes(Chain& chain, const LossFunction& loss, const Batch& batch) {
  MemoryTracker& tracker = MemoryTracker::instance();
  const int64_t start = tracker.live_bytes();
  tracker.reset_peak();
  {
    torch::Tensor value = loss(chain.forward(batch.inputs), batch.targets);
    value.backward();
  }
  EXPECT_EQ(tracker.live_bytes(), start) << "a plain step must return every activation";
  return tracker.peak_bytes() - start;
}

TEST(Profiler, LinearReluStageMatchesHandComputedBytes) {
  MemoryTracker::instance();
  torch::manual_seed(1);
  constexpr int64_t kBatch = 8;
  auto chain = std::make_shared<Chain>();
  chain->add_stage("block0", "mlp", linear_relu(32, 64));
  chain->add_stage("block1", "mlp", linear_relu(64, 64));
  chain->add_stage("head", "head", linear_relu(64, 8));
  const Batch batch = regression_batch(kBatch, 32, 8);
  const ChainProfile profile = profile_chain(*chain, batch, mse_loss(), ProfilerOptions().timed_runs(1));

  ASSERT_EQ(profile.length(), 3);
  EXPECT_EQ(profile.stages[0].name, "block0");
  EXPECT_EQ(profile.stages[0].kind, "mlp");
  EXPECT_EQ(profile.stages[2].kind, "head");
  EXPECT_EQ(profile.stages[0].input_bytes, kBatch * 32 * 4);
  const StageProfile& middle = profile.stages[1];
  EXPECT_EQ(middle.input_bytes, kBatch * 64 * 4);
  EXPECT_EQ(middle.output_bytes, kBatch * 64 * 4);
  // addmm saves its input (a_i, already counted) and the weight (a parameter); relu
  // saves its result, which is the output: nothing else stays.
  EXPECT_EQ(middle.saved_bytes, kBatch * 64 * 4);
  // The pre-activation h = x W^T + b lives only until relu has run.
  EXPECT_EQ(middle.forward_temp_bytes, kBatch * 64 * 4);
  // Backward allocates at least the weight gradient before accumulating it into .grad.
  EXPECT_GE(middle.backward_temp_bytes, 64 * 64 * 4);
  EXPECT_GT(middle.forward_s, 0);
  EXPECT_GT(middle.backward_s, 0);
  EXPECT_EQ(middle.flops, 2.0 * kBatch * 64 * 64);  // the product; bias and relu count 0
}

TEST(Profiler, ConsecutiveStagesAgreeAndProfileValidates) {
  MemoryTracker::instance();
  torch::manual_seed(2);
  auto chain = mixed_chain(48, 6);
  const Batch batch = regression_batch(16, 48, 6);
  const ChainProfile profile = profile_chain(*chain, batch, mse_loss(), ProfilerOptions().model("mixed"));
  ASSERT_EQ(profile.length(), 9);
  EXPECT_EQ(profile.model, "mixed");
  for (int i = 0; i + 1 < profile.length(); ++i) {
    EXPECT_EQ(profile.stages[i].output_bytes, profile.stages[i + 1].input_bytes) << "stage " << i;
  }
  for (const StageProfile& stage : profile.stages) {
    EXPECT_GE(stage.saved_bytes, stage.output_bytes) << stage.name;
    EXPECT_EQ(stage.kind, "layer");
  }
  EXPECT_NO_THROW(validate_profile(profile));
  const ChainProfile copy = profile_from_json(profile_to_json(profile), "round trip");
  EXPECT_EQ(copy.stages[3].saved_bytes, profile.stages[3].saved_bytes);
  EXPECT_EQ(copy.fixed_bytes, profile.fixed_bytes);
}

TEST(Profiler, FixedBytesBreakdown) {
  MemoryTracker::instance();
  torch::manual_seed(3);
  auto chain = Chain::from_sequential(
      torch::nn::Sequential(torch::nn::Linear(10, 20), torch::nn::ReLU(), torch::nn::BatchNorm1d(20)));
  const Batch batch = regression_batch(4, 10, 20);
  const int64_t adam_bytes = optimizer_state_bytes("adam", *chain);
  const ChainProfile profile =
      profile_chain(*chain, batch, mse_loss(), ProfilerOptions().timed_runs(1).optimizer_bytes(adam_bytes));
  const int64_t trainable_bytes =
      (10 * 20 + 20 + 20 + 20) * 4;                // linear weight, bias; batchnorm weight, bias
  const int64_t buffer_bytes = (20 + 20) * 4 + 8;  // running mean, var; num_batches_tracked (int64)
  EXPECT_EQ(profile.fixed_breakdown.parameters_bytes, trainable_bytes + buffer_bytes);
  EXPECT_EQ(profile.fixed_breakdown.gradients_bytes, trainable_bytes);
  EXPECT_EQ(profile.fixed_breakdown.optimizer_bytes, 2 * trainable_bytes);
  EXPECT_EQ(profile.fixed_breakdown.inputs_bytes, (4 * 10 + 4 * 20) * 4);
  EXPECT_EQ(profile.fixed_bytes, profile.fixed_breakdown.total());
}

// Blocks whose outputs plain autograd keeps too (saved by the block itself or by the next
// block's Linear), so that plain LibTorch holds every stage boundary, as a chain does.
std::shared_ptr<Chain> block_chain(int64_t width, int64_t out_features) {
  auto chain = std::make_shared<Chain>();
  chain->add_stage("block0", "mlp", linear_relu(width, width));
  chain->add_stage("norm0", "norm",
                   std::make_shared<LambdaStage>(
                       [norm = torch::nn::LayerNorm(torch::nn::LayerNormOptions({width}))](
                           const TensorList& in) mutable -> TensorList { return {norm(in[0])}; }));
  chain->add_stage("block1", "mlp", linear_relu(width, width));
  chain->add_stage("block2", "mlp", linear_relu(width, width));
  chain->add_stage("head", "head", linear_relu(width, out_features));
  return chain;
}

TEST(Profiler, StoreAllSimulationPredictsPlainStepPeak) {
  MemoryTracker::instance();
  torch::manual_seed(4);
  constexpr int64_t kBatch = 512;
  constexpr int64_t kWidth = 512;  // activations of 1 MiB
  auto chain = block_chain(kWidth, 64);
  const Batch batch = regression_batch(kBatch, kWidth, 64);
  const ChainProfile profile = profile_chain(*chain, batch, mse_loss(), ProfilerOptions().timed_runs(1));
  const SimulationResult simulated = simulate(profile, store_all_schedule(profile.length()));
  const int64_t predicted = simulated.peak_bytes - profile.fixed_bytes;

  set_grads_to_zero(*chain);
  const int64_t measured = measured_plain_step_bytes(*chain, mse_loss(), batch);
  RecordProperty("measured_bytes", std::to_string(measured));
  RecordProperty("predicted_bytes", std::to_string(predicted));
  ASSERT_GT(predicted, 4 * kMiB) << "the test needs activations well above the 1 MiB tolerance";
  // Simulate is conservative here: a chain keeps every stage output until its Backward,
  // while plain autograd drops an output as soon as nothing saved needs it.
  EXPECT_LE(measured, predicted);
  EXPECT_NEAR(static_cast<double>(measured), static_cast<double>(predicted),
              std::max(0.05 * static_cast<double>(predicted), static_cast<double>(kMiB)))
      << "measured " << measured << " bytes, simulate predicted " << predicted;
}

TEST(Profiler, SimulationPredictsExecutorPeaks) {
  MemoryTracker::instance();
  torch::manual_seed(5);
  constexpr int64_t kBatch = 256;
  constexpr int64_t kWidth = 512;
  auto chain = mixed_chain(kWidth, 64);
  const Batch batch = regression_batch(kBatch, kWidth, 64);
  const ChainProfile profile = profile_chain(*chain, batch, mse_loss(), ProfilerOptions().timed_runs(1));
  set_grads_to_zero(*chain);

  const int length = profile.length();
  std::vector<Schedule> schedules = {store_all_schedule(length)};
  for (const char* name : {"recompute-all", "sqrt-n"}) {
    const Plan plan = make_planner(name)->plan(profile, PlannerOptions(int64_t{1} << 40));
    ASSERT_FALSE(plan.schedule.empty()) << name;
    schedules.push_back(plan.schedule);
  }
  for (const Schedule& schedule : schedules) {
    SimulationResult simulated;
    try {
      simulated = simulate(profile, schedule);
    } catch (const ScheduleError& error) {
      FAIL() << to_string(schedule) << ": " << error.what();
    }
    const int64_t predicted = simulated.peak_bytes - profile.fixed_bytes;
    Executor executor(chain, mse_loss());
    const StepResult result = executor.step(schedule, batch);
    const int64_t measured = result.peak_bytes - result.start_bytes;
    RecordProperty("schedule_" + std::to_string(&schedule - schedules.data()),
                   to_string(schedule) + ": measured " + std::to_string(measured) + " predicted " +
                       std::to_string(predicted));
    EXPECT_NEAR(static_cast<double>(measured), static_cast<double>(predicted),
                std::max(0.01 * static_cast<double>(predicted), 64.0 * 1024))
        << to_string(schedule) << ": measured " << measured << " bytes, simulate predicted " << predicted;
  }
}

// A classifier head: relu blocks, then a Linear whose output (the logits) its backward does
// not read, under a cross-entropy loss whose log-softmax is as large as the logits.
std::shared_ptr<Chain> classifier_chain(int64_t width, int64_t classes, bool relu_head) {
  auto chain = std::make_shared<Chain>();
  chain->add_stage("block0", "mlp", linear_relu(width, width));
  chain->add_stage("block1", "mlp", linear_relu(width, width));
  if (relu_head) {
    chain->add_stage("head", "head", linear_relu(width, classes));
  } else {
    torch::nn::Linear head(width, classes);
    chain->add_stage(
        "head", "head",
        std::make_shared<LambdaStage>(
            [head](const TensorList& in) mutable -> TensorList { return {head->forward(in[0])}; },
            head.ptr()));
  }
  return chain;
}

LossFunction cross_entropy_loss() {
  return [](const TensorList& outputs, const TensorList& targets) {
    return torch::nn::functional::cross_entropy(outputs[0], targets[0]);
  };
}

TEST(Profiler, LinearHeadDropsItsLogitsAfterTheLoss) {
  MemoryTracker::instance();
  torch::manual_seed(7);
  constexpr int64_t kBatch = 256;
  constexpr int64_t kWidth = 256;
  constexpr int64_t kClasses = 2048;  // logits of 2 MiB
  const Batch batch{{torch::randn({kBatch, kWidth})}, {torch::randint(kClasses, {kBatch})}};
  const int64_t logits_bytes = kBatch * kClasses * 4;

  auto relu_chain = classifier_chain(kWidth, kClasses, /*relu_head=*/true);
  const ChainProfile relu_profile =
      profile_chain(*relu_chain, batch, cross_entropy_loss(), ProfilerOptions().timed_runs(1));
  // relu's backward reads its output: nothing to drop.
  EXPECT_EQ(relu_profile.stages.back().output_droppable_bytes, 0);

  auto chain = classifier_chain(kWidth, kClasses, /*relu_head=*/false);
  const ChainProfile profile =
      profile_chain(*chain, batch, cross_entropy_loss(), ProfilerOptions().timed_runs(1));
  EXPECT_EQ(profile.stages.back().output_bytes, logits_bytes);
  EXPECT_EQ(profile.stages.back().output_droppable_bytes, logits_bytes);
  // log-softmax's output stays until the loss's backward has used it.
  EXPECT_GE(profile.loss_temp_bytes, logits_bytes);
  set_grads_to_zero(*chain);

  // The executor's peaks follow simulate(), with the head kept (its logits dropped after
  // the loss) and with the head checkpointed (a stored copy of the logits at the Loss).
  const int length = profile.length();
  const Schedule checkpointed_head = {Op::forward_with_graph(0),
                                      Op::forward_with_graph(1),
                                      Op::forward_checkpoint(2),
                                      Op::loss(),
                                      Op::free(3),
                                      Op::forward_with_graph(2),
                                      Op::backward(2),
                                      Op::backward(1),
                                      Op::backward(0)};
  for (const Schedule& schedule : {store_all_schedule(length), checkpointed_head}) {
    const SimulationResult simulated = simulate(profile, schedule);
    const int64_t predicted = simulated.peak_bytes - profile.fixed_bytes;
    Executor executor(chain, cross_entropy_loss());
    const StepResult result = executor.step(schedule, batch);
    const int64_t measured = result.peak_bytes - result.start_bytes;
    EXPECT_LE(measured, predicted + 4096) << to_string(schedule);
    EXPECT_NEAR(static_cast<double>(measured), static_cast<double>(predicted),
                0.02 * static_cast<double>(predicted))
        << to_string(schedule) << ": measured " << measured << " bytes, simulate predicted " << predicted;
    EXPECT_EQ(result.end_bytes, result.start_bytes) << to_string(schedule);
  }

  // Store-all holds no more than plain autograd, which frees the logits once log-softmax
  // has read them.
  Executor executor(chain, cross_entropy_loss());
  const StepResult store_all = executor.step(store_all_schedule(length), batch);
  const int64_t plain = measured_plain_step_bytes(*chain, cross_entropy_loss(), batch);
  EXPECT_LE(store_all.peak_bytes - store_all.start_bytes, plain + 64 * 1024);
}

TEST(Profiler, MultiTensorStagesCountSharedStoragesOnce) {
  MemoryTracker::instance();
  torch::manual_seed(6);
  auto chain = std::make_shared<Chain>();
  torch::nn::Linear first(16, 16);
  torch::nn::Linear second(16, 4);
  chain->add_stage("masked", "mlp",
                   std::make_shared<LambdaStage>(
                       [first](const TensorList& in) mutable -> TensorList {
                         return {torch::relu(first->forward(in[0])) * in[1], in[1], in[1]};
                       },
                       first.ptr()));
  chain->add_stage(
      "head", "head",
      std::make_shared<LambdaStage>(
          [second](const TensorList& in) mutable -> TensorList { return {second->forward(in[0] * in[1])}; },
          second.ptr()));
  const Batch batch{{torch::randn({8, 16}), torch::ones({8, 16})}, {torch::randn({8, 4})}};
  const ChainProfile profile = profile_chain(*chain, batch, mse_loss(), ProfilerOptions().timed_runs(1));
  EXPECT_EQ(profile.stages[0].input_bytes, 2 * 8 * 16 * 4);
  EXPECT_EQ(profile.stages[0].output_bytes, 2 * 8 * 16 * 4) << "the mask is passed twice but stored once";
  EXPECT_EQ(profile.stages[1].input_bytes, profile.stages[0].output_bytes);
  EXPECT_EQ(profile.stages[1].output_bytes, 8 * 4 * 4);
}

TEST(Profiler, LeavesGradientsBuffersAndRandomStateAsTheyWere) {
  MemoryTracker::instance();
  torch::manual_seed(7);
  auto chain =
      Chain::from_sequential(torch::nn::Sequential(torch::nn::Linear(12, 12), torch::nn::Dropout(0.5),
                                                   torch::nn::BatchNorm1d(12), torch::nn::Linear(12, 3)));
  chain->train();
  const Batch batch = regression_batch(6, 12, 3);
  auto& first_linear = chain->stage(0);
  first_linear.parameters()[0].mutable_grad() = torch::full({12, 12}, 3.0);
  const torch::Tensor running_mean = chain->stage(2).buffers()[0].clone();
  const torch::Tensor generator_state = at::detail::getDefaultCPUGenerator().get_state();
  const int64_t live_before = MemoryTracker::instance().live_bytes();
  profile_chain(*chain, batch, mse_loss(), ProfilerOptions().timed_runs(2));
  const torch::Tensor draw_after_profile = torch::rand({4});
  at::Generator generator = at::detail::getDefaultCPUGenerator();
  generator.set_state(generator_state);
  const torch::Tensor draw_without_profile = torch::rand({4});
  EXPECT_TRUE(torch::equal(draw_after_profile, draw_without_profile));

  EXPECT_TRUE(torch::equal(first_linear.parameters()[0].grad(), torch::full({12, 12}, 3.0)));
  EXPECT_FALSE(first_linear.parameters()[1].grad().defined());
  EXPECT_FALSE(chain->stage(3).parameters()[0].grad().defined());
  EXPECT_TRUE(torch::equal(chain->stage(2).buffers()[0], running_mean));
  EXPECT_EQ(MemoryTracker::instance().live_bytes() - live_before, 2 * 4 * 4) << "only the two draws stay";
}

TEST(Profiler, RejectsBadOptionsAndLosses) {
  MemoryTracker::instance();
  auto chain = Chain::from_sequential(torch::nn::Sequential(torch::nn::Linear(4, 2)));
  const Batch batch = regression_batch(3, 4, 2);
  EXPECT_THROW(profile_chain(*chain, batch, mse_loss(), ProfilerOptions().timed_runs(0)), InvalidArgument);
  EXPECT_THROW(profile_chain(*chain, batch, mse_loss(), ProfilerOptions().warmup_runs(-1)), InvalidArgument);
  EXPECT_THROW(profile_chain(*chain, Batch{}, mse_loss(), ProfilerOptions()), InvalidArgument);
  const LossFunction not_scalar = [](const TensorList& outputs, const TensorList&) { return outputs[0] * 2; };
  EXPECT_THROW(profile_chain(*chain, batch, not_scalar, ProfilerOptions()), RuntimeError);
  for (torch::Tensor& parameter : chain->parameters()) parameter.requires_grad_(false);
  EXPECT_THROW(profile_chain(*chain, batch, mse_loss(), ProfilerOptions()), RuntimeError);
}

TEST(Profiler, TensorBytesAndOptimizerStateBytes) {
  torch::Tensor x = torch::empty({1024});
  EXPECT_EQ(tensor_bytes({x, x.view({32, 32}), x.slice(0, 0, 10), torch::Tensor()}), 4096);
  EXPECT_EQ(tensor_bytes({x, torch::empty({3}, torch::kInt64)}), 4096 + 24);
  torch::nn::Linear linear(8, 4);
  EXPECT_EQ(optimizer_state_bytes("sgd", *linear), 0);
  EXPECT_EQ(optimizer_state_bytes("momentum", *linear), (8 * 4 + 4) * 4);
  EXPECT_EQ(optimizer_state_bytes("adamw", *linear), 2 * (8 * 4 + 4) * 4);
  linear->bias.requires_grad_(false);
  EXPECT_EQ(optimizer_state_bytes("adam", *linear), 2 * 8 * 4 * 4);
  EXPECT_THROW(optimizer_state_bytes("lion", *linear), InvalidArgument);
}

}  // namespace
}  // namespace memento
