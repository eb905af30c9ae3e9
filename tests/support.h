#pragma once
/// \file
/// Helpers shared by the LibTorch tests: seeding, tensor comparison (bitwise and
/// approximate), gradient snapshots of a module, and tiny hand-written chains that
/// exercise what the runtime must handle (multi-tensor boundaries, masks and token ids
/// that take no gradient, pass-through tensors, stages without parameters, dropout,
/// BatchNorm).
///
/// Example:
/// \code
///   memento::testing::seed_all(7);
///   memento::testing::TinyModel model = memento::testing::residual_mask_chain({});
///   memento::Batch batch = model.batch(/*seed=*/1);
///   auto grads = memento::testing::gradients(*model.chain);
///   EXPECT_TRUE(memento::testing::bitwise_equal(grads[0], grads[0]));
/// \endcode

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "memento/torch/chain.h"

namespace memento {
namespace testing {

/// Seeds LibTorch's generators (CPU, and CUDA when present).
inline void seed_all(uint64_t seed) {
  torch::manual_seed(seed);
}

/// True when both are undefined, or both have the same shape and dtype and the same
/// bytes (NaNs with equal bits compare equal; -0.0 differs from 0.0).
inline bool bitwise_equal(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.defined() != b.defined()) return false;
  if (!a.defined()) return true;
  if (a.sizes() != b.sizes() || a.scalar_type() != b.scalar_type()) return false;
  const torch::Tensor x = a.detach().cpu().contiguous();
  const torch::Tensor y = b.detach().cpu().contiguous();
  return std::memcmp(x.data_ptr(), y.data_ptr(), x.numel() * x.element_size()) == 0;
}

/// Largest |a - b| (as double); 0 when both are undefined, infinity when only one is,
/// or when the shapes differ.
inline double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.defined() != b.defined()) return INFINITY;
  if (!a.defined()) return 0;
  if (a.sizes() != b.sizes()) return INFINITY;
  if (a.numel() == 0) return 0;
  return (a.detach().cpu().to(torch::kFloat64) - b.detach().cpu().to(torch::kFloat64))
      .abs()
      .max()
      .item<double>();
}

/// Element-wise bitwise equality of two lists.
inline bool bitwise_equal(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (size_t k = 0; k < a.size(); ++k) {
    if (!bitwise_equal(a[k], b[k])) return false;
  }
  return true;
}

/// Largest max_abs_diff over two lists (infinity when their lengths differ).
inline double max_abs_diff(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  if (a.size() != b.size()) return INFINITY;
  double largest = 0;
  for (size_t k = 0; k < a.size(); ++k) largest = std::max(largest, max_abs_diff(a[k], b[k]));
  return largest;
}

/// Copies of the gradients of every parameter (undefined where a parameter has none).
inline std::vector<torch::Tensor> gradients(const torch::nn::Module& module) {
  std::vector<torch::Tensor> result;
  for (const torch::Tensor& parameter : module.parameters()) {
    result.push_back(parameter.grad().defined() ? parameter.grad().clone() : torch::Tensor());
  }
  return result;
}

/// Copies of every buffer (BatchNorm running statistics, ...).
inline std::vector<torch::Tensor> buffers(const torch::nn::Module& module) {
  std::vector<torch::Tensor> result;
  for (const torch::Tensor& buffer : module.buffers()) result.push_back(buffer.clone());
  return result;
}

/// Writes `values` (from buffers()) back into the module's buffers.
inline void restore_buffers(torch::nn::Module& module, const std::vector<torch::Tensor>& values) {
  torch::NoGradGuard no_grad;
  auto current = module.buffers();
  for (size_t k = 0; k < current.size() && k < values.size(); ++k) current[k].copy_(values[k]);
}

/// Drops every parameter gradient (the state before a first backward).
inline void clear_gradients(torch::nn::Module& module) {
  for (torch::Tensor& parameter : module.parameters()) parameter.mutable_grad() = torch::Tensor();
}

/// A tiny model for tests: its chain, loss and a seeded batch generator.
struct TinyModel {
  std::shared_ptr<Chain> chain;
  LossFunction loss;
  std::function<Batch(uint64_t seed)> batch;
};

/// Options of the tiny test chains.
struct TinyOptions {
  int64_t batch_size = 3;
  int64_t seq_len = 5;
  int64_t width = 8;
  int64_t vocab = 11;
  int blocks = 3;                   ///< residual blocks
  double dropout = 0.25;            ///< in every block (0: none)
  bool batch_norm = true;           ///< add a BatchNorm1d stage
  bool input_requires_grad = true;  ///< the float model input requires grad
};

/// A transformer-like chain whose boundaries are tuples (h, mask, ids, skip):
/// - "embed": (ids int64, x float) -> (h = E[ids] + x, mask = (ids != 0) as float, ids, skip = h);
/// - "block<k>": h + dropout(W2 gelu(W1 layernorm(h))) * mask; mask, ids, skip pass through;
/// - "mix" (no parameters): h * sigmoid(h) + 0.5 h, the rest passes through;
/// - "bn" (optional): BatchNorm1d over the width;
/// - "head": logits = W (h + skip); a single-tensor output.
/// Loss: cross entropy of the logits against next-token targets, masked by mask.
inline TinyModel residual_mask_chain(const TinyOptions& options) {
  struct Embed : StageModule {
    torch::nn::Embedding embedding{nullptr};
    explicit Embed(const TinyOptions& o) {
      embedding = register_module("embedding", torch::nn::Embedding(o.vocab, o.width));
    }
    TensorList forward(const TensorList& in) override {
      torch::Tensor h = embedding->forward(in[0]) + in[1];
      torch::Tensor mask = (in[0] != 0).to(torch::kFloat32).unsqueeze(-1);
      return {h, mask, in[0], h};
    }
  };
  struct Block : StageModule {
    torch::nn::LayerNorm norm{nullptr};
    torch::nn::Linear up{nullptr}, down{nullptr};
    torch::nn::Dropout dropout{nullptr};
    explicit Block(const TinyOptions& o) {
      norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({o.width})));
      up = register_module("up", torch::nn::Linear(o.width, 2 * o.width));
      down = register_module("down", torch::nn::Linear(2 * o.width, o.width));
      dropout = register_module("dropout", torch::nn::Dropout(o.dropout));
    }
    TensorList forward(const TensorList& in) override {
      torch::Tensor update = dropout->forward(down->forward(torch::gelu(up->forward(norm->forward(in[0])))));
      return {in[0] + update * in[1], in[1], in[2], in[3]};
    }
  };
  struct Mix : StageModule {
    TensorList forward(const TensorList& in) override {
      return {in[0] * torch::sigmoid(in[0]) + 0.5 * in[0], in[1], in[2], in[3]};
    }
  };
  struct Norm : StageModule {
    torch::nn::BatchNorm1d bn{nullptr};
    explicit Norm(const TinyOptions& o) { bn = register_module("bn", torch::nn::BatchNorm1d(o.width)); }
    TensorList forward(const TensorList& in) override {
      const auto sizes = in[0].sizes().vec();
      torch::Tensor h = bn->forward(in[0].reshape({-1, sizes.back()})).reshape(sizes);
      return {h, in[1], in[2], in[3]};
    }
  };
  struct Head : StageModule {
    torch::nn::Linear projection{nullptr};
    explicit Head(const TinyOptions& o) {
      projection = register_module("projection", torch::nn::Linear(o.width, o.vocab));
    }
    TensorList forward(const TensorList& in) override { return {projection->forward(in[0] + in[3]), in[1]}; }
  };

  auto chain = std::make_shared<Chain>();
  chain->add_stage("embed", "embed", std::make_shared<Embed>(options));
  for (int k = 0; k < options.blocks; ++k) {
    chain->add_stage("block" + std::to_string(k), "mlp", std::make_shared<Block>(options));
    if (k == 0) chain->add_stage("mix", "norm", std::make_shared<Mix>());
  }
  if (options.batch_norm) chain->add_stage("bn", "norm", std::make_shared<Norm>(options));
  chain->add_stage("head", "head", std::make_shared<Head>(options));
  chain->train();

  TinyModel model;
  model.chain = chain;
  model.loss = [](const TensorList& outputs, const TensorList& targets) {
    torch::Tensor logits = outputs[0];
    torch::Tensor per_token = torch::nn::functional::cross_entropy(
        logits.reshape({-1, logits.size(-1)}), targets[0].reshape({-1}),
        torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
    torch::Tensor mask = outputs[1].reshape({-1});
    return (per_token * mask).sum() / mask.sum().clamp_min(1);
  };
  model.batch = [options](uint64_t seed) {
    torch::manual_seed(seed);
    Batch batch;
    torch::Tensor ids =
        torch::randint(0, options.vocab, {options.batch_size, options.seq_len}, torch::kInt64);
    torch::Tensor x = torch::randn({options.batch_size, options.seq_len, options.width});
    if (options.input_requires_grad) x.requires_grad_(true);
    batch.inputs = {ids, x};
    batch.targets = {torch::randint(0, options.vocab, {options.batch_size, options.seq_len}, torch::kInt64)};
    return batch;
  };
  return model;
}

/// A single-tensor chain from torch::nn::Sequential: Linear, BatchNorm1d, ReLU, Dropout,
/// Linear, LayerNorm, Linear (seven stages; six without Dropout when `dropout` is 0),
/// with an MSE loss.
inline TinyModel sequential_chain(int64_t batch_size = 4, int64_t width = 6, double dropout = 0.3) {
  torch::nn::Sequential net(torch::nn::Linear(width, 2 * width), torch::nn::BatchNorm1d(2 * width),
                            torch::nn::ReLU());
  if (dropout > 0) net->push_back(torch::nn::Dropout(dropout));
  net->push_back(torch::nn::Linear(2 * width, width));
  net->push_back(torch::nn::LayerNorm(torch::nn::LayerNormOptions({width})));
  net->push_back(torch::nn::Linear(width, 3));
  TinyModel model;
  model.chain = Chain::from_sequential(net);
  model.chain->train();
  model.loss = [](const TensorList& outputs, const TensorList& targets) {
    return torch::mse_loss(outputs[0], targets[0]);
  };
  model.batch = [batch_size, width](uint64_t seed) {
    torch::manual_seed(seed);
    Batch batch;
    batch.inputs = {torch::randn({batch_size, width})};
    batch.targets = {torch::randn({batch_size, 3})};
    return batch;
  };
  return model;
}

}  // namespace testing
}  // namespace memento
