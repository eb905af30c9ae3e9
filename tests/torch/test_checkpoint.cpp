#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "memento/core/error.h"
#include "memento/torch/checkpoint.h"
#include "support.h"

namespace memento {
namespace {

// A block with two inputs and three outputs: a float pair that needs gradients, a mask
// that takes none and passes through, dropout, and a parameter-free branch.
struct Block : torch::nn::Module {
  torch::nn::Linear first{nullptr}, second{nullptr};
  torch::nn::LayerNorm norm{nullptr};
  torch::nn::Dropout dropout{nullptr};
  Block() {
    first = register_module("first", torch::nn::Linear(6, 12));
    second = register_module("second", torch::nn::Linear(12, 6));
    norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({6})));
    dropout = register_module("dropout", torch::nn::Dropout(0.3));
  }
  TensorList run(const TensorList& in) {
    torch::Tensor h = dropout->forward(torch::gelu(first->forward(norm->forward(in[0]))));
    torch::Tensor out = in[0] + second->forward(h) * in[2];
    torch::Tensor side = torch::tanh(in[1]) * in[0];
    return {out, side, in[2]};
  }
};

struct Grads {
  std::vector<torch::Tensor> parameters;
  std::vector<torch::Tensor> inputs;
  torch::Tensor next_random;
  double loss = 0;
};

// One forward/backward through `block`, checkpointed or not, from the same state.
Grads run(Block& block, bool checkpointed, bool inputs_need_grad, uint64_t seed) {
  testing::clear_gradients(block);
  torch::manual_seed(seed);
  torch::Tensor x = torch::randn({4, 6}).requires_grad_(inputs_need_grad);
  torch::Tensor y = torch::randn({4, 6}).requires_grad_(inputs_need_grad);
  torch::Tensor mask = (torch::rand({4, 1}) > 0.3).to(torch::kFloat32);
  torch::manual_seed(seed + 1);
  auto fn = [&block](const TensorList& in) { return block.run(in); };
  TensorList out = checkpointed ? checkpoint(fn, {x, y, mask}) : fn({x, y, mask});
  torch::Tensor loss = (out[0] * out[0]).sum() + out[1].sum() * 0.5;
  loss.backward();
  Grads grads;
  grads.parameters = testing::gradients(block);
  grads.inputs = {x.grad(), y.grad()};
  grads.next_random = torch::rand({3});
  grads.loss = loss.item<double>();
  return grads;
}

void expect_same(const Grads& plain, const Grads& checkpointed) {
  EXPECT_EQ(plain.loss, checkpointed.loss);
  EXPECT_TRUE(testing::bitwise_equal(plain.parameters, checkpointed.parameters))
      << testing::max_abs_diff(plain.parameters, checkpointed.parameters);
  EXPECT_TRUE(testing::bitwise_equal(plain.inputs, checkpointed.inputs))
      << testing::max_abs_diff(plain.inputs, checkpointed.inputs);
  EXPECT_TRUE(testing::bitwise_equal(plain.next_random, checkpointed.next_random)) << "generator state";
}

TEST(Checkpoint, MatchesPlainAutogradWithSeveralInputsAndOutputs) {
  torch::manual_seed(0);
  Block block;
  const Grads plain = run(block, false, true, 3);
  const Grads checkpointed = run(block, true, true, 3);
  expect_same(plain, checkpointed);
  ASSERT_TRUE(checkpointed.inputs[0].defined());
  ASSERT_TRUE(checkpointed.inputs[1].defined());
}

TEST(Checkpoint, ParametersGetGradientsWhenNoInputRequiresGrad) {
  torch::manual_seed(1);
  Block block;
  const Grads plain = run(block, false, false, 4);
  const Grads checkpointed = run(block, true, false, 4);
  expect_same(plain, checkpointed);
  for (const torch::Tensor& grad : checkpointed.parameters) EXPECT_TRUE(grad.defined());
}

TEST(Checkpoint, KeepsOnlyInputsAndRecomputesInBackward) {
  torch::manual_seed(2);
  Block block;
  int calls = 0;
  torch::Tensor x = torch::randn({4, 6}, torch::requires_grad());
  torch::Tensor mask = torch::ones({4, 1});
  TensorList out = checkpoint(
      [&](const TensorList& in) {
        ++calls;
        EXPECT_EQ(torch::GradMode::is_enabled(), calls == 2);  // no graph in the first run
        return block.run(in);
      },
      {x, x, mask});
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(out[0].requires_grad());
  (out[0].sum() + out[1].sum()).backward();
  EXPECT_EQ(calls, 2);
  EXPECT_TRUE(x.grad().defined());
}

TEST(Checkpoint, NestedCallsMatchPlainAutograd) {
  torch::manual_seed(5);
  Block inner, outer;
  auto compute = [&](bool checkpointed) {
    testing::clear_gradients(inner);
    testing::clear_gradients(outer);
    torch::manual_seed(9);
    torch::Tensor x = torch::randn({4, 6}, torch::requires_grad());
    torch::Tensor mask = torch::ones({4, 1});
    auto inner_fn = [&](const TensorList& in) { return inner.run(in); };
    auto outer_fn = [&](const TensorList& in) {
      TensorList mid = checkpointed ? checkpoint(inner_fn, in) : inner_fn(in);
      return outer.run({mid[0], mid[1], in[2]});
    };
    TensorList out = checkpointed ? checkpoint(outer_fn, {x, x * 0.5, mask}) : outer_fn({x, x * 0.5, mask});
    (out[0].pow(2).sum() + out[1].sum()).backward();
    std::vector<torch::Tensor> grads = testing::gradients(inner);
    for (const torch::Tensor& grad : testing::gradients(outer)) grads.push_back(grad);
    grads.push_back(x.grad());
    return grads;
  };
  const auto plain = compute(false);
  const auto checkpointed = compute(true);
  EXPECT_TRUE(testing::bitwise_equal(plain, checkpointed)) << testing::max_abs_diff(plain, checkpointed);
}

TEST(Checkpoint, RunsPlainlyWithoutAutograd) {
  torch::Tensor x = torch::randn({3}, torch::requires_grad());
  torch::NoGradGuard no_grad;
  TensorList out = checkpoint([](const TensorList& in) { return TensorList{in[0] * 2}; }, {x});
  EXPECT_FALSE(out[0].requires_grad());
}

TEST(Checkpoint, RunningStatisticsMoveOnce) {
  torch::manual_seed(6);
  torch::nn::BatchNorm1d bn(5);
  torch::nn::Linear linear(5, 5);
  auto reset_statistics = [&] {
    torch::NoGradGuard no_grad;
    bn->running_mean.zero_();
    bn->running_var.fill_(1);
    bn->num_batches_tracked.zero_();
  };
  auto compute = [&](bool checkpointed) {
    reset_statistics();
    testing::clear_gradients(*linear);
    torch::manual_seed(1);
    torch::Tensor x = torch::randn({8, 5});
    auto fn = [&](const TensorList& in) { return TensorList{bn->forward(linear->forward(in[0]))}; };
    CheckpointOptions options;
    options.running_stats_module = bn.ptr().get();
    TensorList out = checkpointed ? checkpoint(fn, {x}, options) : fn({x});
    out[0].pow(2).sum().backward();
    return std::vector<torch::Tensor>{bn->running_mean.clone(), bn->running_var.clone(),
                                      bn->num_batches_tracked.clone(), linear->weight.grad().clone()};
  };
  const auto plain = compute(false);
  const auto checkpointed = compute(true);
  EXPECT_TRUE(testing::bitwise_equal(plain, checkpointed)) << testing::max_abs_diff(plain, checkpointed);
  EXPECT_EQ(checkpointed[2].item<int64_t>(), 1);
}

TEST(Checkpoint, ShapeChangeOnRecomputeThrows) {
  int calls = 0;
  torch::Tensor x = torch::randn({4}, torch::requires_grad());
  TensorList out = checkpoint(
      [&](const TensorList& in) { return TensorList{++calls == 1 ? in[0] * 2 : in[0].narrow(0, 0, 2) * 2}; },
      {x});
  EXPECT_THROW(out[0].sum().backward(), std::exception);
}

TEST(Checkpoint, RejectsAnEmptyFunction) {
  EXPECT_THROW(checkpoint(CheckpointFunction(), {torch::ones({1})}), InvalidArgument);
}

}  // namespace
}  // namespace memento
