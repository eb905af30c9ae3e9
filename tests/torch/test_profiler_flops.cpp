// FlopCounter and StageProfile::flops: exact counts of matrix products and convolutions,
// each leaf product counted once, nothing for elementwise work.
#include <gtest/gtest.h>

#include <ATen/record_function.h>
#include <torch/torch.h>

#include "memento/core/profile.h"
#include "memento/torch/chain.h"
#include "memento/torch/memory.h"
#include "memento/torch/profiler.h"

namespace memento {
namespace {

LossFunction mse_loss() {
  return [](const TensorList& outputs, const TensorList& targets) {
    return torch::mse_loss(outputs[0], targets[0]);
  };
}

ChainProfile quick_profile(Chain& chain, const Batch& batch) {
  return profile_chain(chain, batch, mse_loss(), ProfilerOptions().warmup_runs(0).timed_runs(1));
}

TEST(ProfilerFlops, LinearStageCountsTwoPerMultiplyAddWithoutBias) {
  MemoryTracker::instance();
  torch::manual_seed(3);
  torch::nn::Sequential net(torch::nn::Linear(64, 128), torch::nn::ReLU(), torch::nn::Linear(128, 16));
  auto chain = Chain::from_sequential(net);
  const Batch batch{{torch::randn({32, 64})}, {torch::randn({32, 16})}};
  const ChainProfile profile = quick_profile(*chain, batch);
  ASSERT_EQ(profile.length(), 3);
  EXPECT_EQ(profile.stages[0].flops, 2.0 * 32 * 64 * 128);
  EXPECT_EQ(profile.stages[1].flops, 0.0) << "ReLU is elementwise";
  EXPECT_EQ(profile.stages[2].flops, 2.0 * 32 * 128 * 16);
}

TEST(ProfilerFlops, ConvolutionStagesFollowTheFormula) {
  MemoryTracker::instance();
  torch::manual_seed(4);
  // 3 -> 8 channels, 3x3, stride 2, padding 1: 16x16 -> 8x8. Then a grouped 3x3 conv
  // (8 -> 16 channels, 4 groups, weight [16, 2, 3, 3]) keeping 8x8.
  torch::nn::Sequential net(
      torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 8, 3).stride(2).padding(1)), torch::nn::ReLU(),
      torch::nn::Conv2d(torch::nn::Conv2dOptions(8, 16, 3).padding(1).groups(4)), torch::nn::Flatten());
  auto chain = Chain::from_sequential(net);
  const Batch batch{{torch::randn({4, 3, 16, 16})}, {torch::randn({4, 16 * 8 * 8})}};
  const ChainProfile profile = quick_profile(*chain, batch);
  ASSERT_EQ(profile.length(), 4);
  // 2 * batch * C_out * (C_in / groups) * kh * kw * H_out * W_out.
  EXPECT_EQ(profile.stages[0].flops, 2.0 * 4 * 8 * 3 * 3 * 3 * 8 * 8);
  EXPECT_EQ(profile.stages[1].flops, 0.0);
  EXPECT_EQ(profile.stages[2].flops, 2.0 * 4 * 16 * 2 * 3 * 3 * 8 * 8);
  EXPECT_EQ(profile.stages[3].flops, 0.0);
}

TEST(ProfilerFlops, TransposedAndOneDimensionalConvolutions) {
  torch::manual_seed(5);
  torch::NoGradGuard no_grad;
  // Transposed: every input position meets the whole kernel: 2 * batch * prod(weight) * H_in * W_in
  // with weight [C_in, C_out / groups, kh, kw] = [6, 4, 2, 2].
  torch::nn::ConvTranspose2d up(torch::nn::ConvTranspose2dOptions(6, 4, 2).stride(2));
  const torch::Tensor image = torch::randn({2, 6, 5, 7});
  {
    FlopCounter counter;
    const torch::Tensor out = up->forward(image);
    EXPECT_EQ(out.sizes(), (std::vector<int64_t>{2, 4, 10, 14}));
    EXPECT_EQ(counter.flops(), 2.0 * 2 * 6 * 4 * 2 * 2 * 5 * 7);
  }
  torch::nn::Conv1d conv(torch::nn::Conv1dOptions(5, 7, 4).dilation(2));  // 30 -> 30 - 2*3 = 24
  {
    FlopCounter counter;
    conv->forward(torch::randn({3, 5, 30}));
    EXPECT_EQ(counter.flops(), 2.0 * 3 * 7 * 5 * 4 * 24);
  }
}

TEST(ProfilerFlops, WrappersCountTheirProductsOnce) {
  torch::manual_seed(6);
  const torch::Tensor x = torch::randn({4, 10, 24});
  const torch::Tensor w = torch::randn({24, 40});
  {
    FlopCounter counter;
    torch::matmul(x, w);  // folded into one mm [40, 24] x [24, 40]
    EXPECT_EQ(counter.flops(), 2.0 * 4 * 10 * 24 * 40);
  }
  {
    torch::nn::Linear linear(24, 40);
    FlopCounter counter;
    linear->forward(x);  // linear on a 3-d input, with bias
    EXPECT_EQ(counter.flops(), 2.0 * 4 * 10 * 24 * 40);
  }
  {
    // Attention scores q k^T over [batch 2, heads 3, 10 tokens, 8 features]: bmm leaves.
    const torch::Tensor q = torch::randn({2, 3, 10, 8});
    const torch::Tensor k = torch::randn({2, 3, 10, 8});
    FlopCounter counter;
    torch::matmul(q, k.transpose(-2, -1));
    EXPECT_EQ(counter.flops(), 2.0 * 2 * 3 * 10 * 8 * 10);
  }
  {
    const torch::Tensor a = torch::randn({6, 5});
    const torch::Tensor v = torch::randn({5});
    FlopCounter counter;
    torch::matmul(a, v);  // mv
    torch::dot(v, v);
    torch::einsum("bij,bjk->bik", {torch::randn({2, 3, 4}), torch::randn({2, 4, 5})});
    EXPECT_EQ(counter.flops(), 2.0 * 6 * 5 + 2.0 * 5 + 2.0 * 2 * 3 * 4 * 5);
  }
}

TEST(ProfilerFlops, ElementwiseWorkCountsNothing) {
  MemoryTracker::instance();
  torch::manual_seed(7);
  torch::nn::Sequential net(torch::nn::Linear(16, 16),
                            torch::nn::LayerNorm(torch::nn::LayerNormOptions({16})), torch::nn::GELU(),
                            torch::nn::Dropout(0.1), torch::nn::Softmax(1));
  auto chain = Chain::from_sequential(net);
  const Batch batch{{torch::randn({8, 16})}, {torch::randn({8, 16})}};
  const ChainProfile profile = quick_profile(*chain, batch);
  ASSERT_EQ(profile.length(), 5);
  EXPECT_EQ(profile.stages[0].flops, 2.0 * 8 * 16 * 16);
  for (int i = 1; i < 5; ++i) EXPECT_EQ(profile.stages[i].flops, 0.0) << profile.stages[i].name;
}

TEST(ProfilerFlops, CountersNestAndStopWhenDestroyed) {
  const torch::Tensor a = torch::randn({8, 4});
  const torch::Tensor b = torch::randn({4, 2});
  const double one_mm = 2.0 * 8 * 4 * 2;
  FlopCounter outer;
  torch::mm(a, b);
  {
    FlopCounter inner;
    torch::mm(a, b);
    EXPECT_EQ(inner.flops(), one_mm);
  }
  EXPECT_EQ(outer.flops(), 2 * one_mm);
  {
    FlopCounter later;
    EXPECT_EQ(later.flops(), 0.0);
  }
  torch::mm(a, b);
  EXPECT_EQ(outer.flops(), 3 * one_mm);
}

TEST(ProfilerFlops, NoCounterMeansNoCallbackLeftBehind) {
  {
    FlopCounter counter;
    torch::mm(torch::randn({2, 2}), torch::randn({2, 2}));
    EXPECT_EQ(counter.flops(), 16.0);
  }
  EXPECT_FALSE(at::hasThreadLocalCallbacks()) << "the counter must remove its callback";
}

}  // namespace
}  // namespace memento
