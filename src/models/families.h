#pragma once
// Internal to the model zoo: the resolved configuration of a model and the builders of
// each family. zoo.cpp resolves names and options into a ModelConfig; transformer.cpp
// (gpt, bert, vit) and convnet.cpp (resnet, mlp) build the networks.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "memento/torch/chain.h"

namespace memento::models {

/// Every field a family needs, with defaults already applied and options validated.
struct ModelConfig {
  std::string name;
  std::string family;  // gpt, bert, resnet, vit, mlp
  bool fine = false;
  uint64_t seed = 0;
  double dropout = 0;
  int64_t batch_size = 0;
  // transformers and mlp
  int64_t num_layers = 0;
  int64_t hidden_size = 0;
  int64_t num_heads = 0;
  int64_t mlp_size = 0;
  double norm_eps = 1e-5;
  // language models
  int64_t vocab_size = 0;
  int64_t context = 0;  // learned positions
  int64_t seq_len = 0;
  int64_t type_vocab_size = 0;  // bert segments
  int64_t mask_token = 0;       // bert [MASK]
  // vision and classifiers
  int64_t image_size = 0;
  int64_t channels = 3;
  int64_t patch_size = 0;
  int64_t num_classes = 0;
  int64_t input_features = 0;          // mlp
  std::vector<int64_t> resnet_blocks;  // blocks per stage
  bool bottleneck = false;             // resnet50-style blocks
};

/// A network as a chain plus its direct (boundary-free) forward over the same parameters.
struct BuiltNetwork {
  std::shared_ptr<Chain> chain;
  std::function<TensorList(const TensorList&)> reference_forward;
};

BuiltNetwork build_gpt(const ModelConfig& config);
BuiltNetwork build_bert(const ModelConfig& config);
BuiltNetwork build_vit(const ModelConfig& config);
BuiltNetwork build_resnet(const ModelConfig& config);
BuiltNetwork build_mlp(const ModelConfig& config);

/// Analytic parameter counts (must equal the numel sum of the built networks).
int64_t count_transformer_parameters(const ModelConfig& config);
int64_t count_convnet_parameters(const ModelConfig& config);

/// Fills `tensor` in place from `generator` (under NoGradGuard): seeded init that does not
/// touch the global RNG.
inline void init_normal(torch::Tensor tensor, double std_dev, at::Generator& generator) {
  torch::NoGradGuard no_grad;
  tensor.normal_(0.0, std_dev, generator);
}
inline void init_uniform(torch::Tensor tensor, double bound, at::Generator& generator) {
  torch::NoGradGuard no_grad;
  tensor.uniform_(-bound, bound, generator);
}
inline void init_constant(torch::Tensor tensor, double value) {
  torch::NoGradGuard no_grad;
  tensor.fill_(value);
}

/// Registers existing modules under new names; used where a fine-grained stage must own
/// several modules of a block (each module is owned by exactly one stage of a chain).
class BundleImpl : public torch::nn::Module {
 public:
  explicit BundleImpl(
      const std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>>& children) {
    for (const auto& [child_name, child] : children) {
      if (child) register_module(child_name, child);
    }
  }
};

inline std::shared_ptr<StageModule> make_stage(LambdaStage::Function function,
                                               std::shared_ptr<torch::nn::Module> owner = nullptr) {
  return std::make_shared<LambdaStage>(std::move(function), std::move(owner));
}

}  // namespace memento::models
