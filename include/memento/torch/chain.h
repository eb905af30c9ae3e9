#pragma once
/// \file
/// `Chain`: a model as an ordered list of stages. A stage maps a tuple of tensors to a
/// tuple of tensors (the tuple carries residual streams, masks, ...). The planners see a
/// Chain as its `ChainProfile`; the `Executor` runs it under a `Schedule`.
///
/// Example:
/// \code
///   auto net = torch::nn::Sequential(torch::nn::Linear(8, 16), torch::nn::ReLU(), torch::nn::Linear(16, 4));
///   std::shared_ptr<memento::Chain> chain = memento::Chain::from_sequential(net);
///   memento::TensorList out = chain->forward({torch::randn({2, 8})});  // plain forward, all stages
/// \endcode

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace memento {

using TensorList = std::vector<torch::Tensor>;

/// One training batch: what the chain's first stage reads, and what the loss compares to.
struct Batch {
  TensorList inputs;
  TensorList targets;
};

/// One stage: a module whose forward maps a tuple of tensors to a tuple of tensors.
/// Subclass it for model blocks; `LambdaStage` wraps a function.
class StageModule : public torch::nn::Module {
 public:
  virtual TensorList forward(const TensorList& inputs) = 0;
};

/// A stage made from a function and the module that owns its parameters (may be null).
class LambdaStage : public StageModule {
 public:
  using Function = std::function<TensorList(const TensorList&)>;
  LambdaStage(Function function, std::shared_ptr<torch::nn::Module> owner = nullptr);
  TensorList forward(const TensorList& inputs) override;

 private:
  Function function_;
};

/// Computes the scalar loss from the chain's outputs and the batch targets.
using LossFunction = std::function<torch::Tensor(const TensorList& outputs, const TensorList& targets)>;

/// An ordered list of named stages; a torch::nn::Module so that parameters, train/eval,
/// `to(device)` and serialization work as usual. Stages are registered as submodules
/// named "stage<i>".
class Chain : public torch::nn::Module {
 public:
  Chain() = default;

  /// Appends a stage; `kind` is one of embed, attention, attention_core, mlp, conv,
  /// norm, head, ... (it reaches ChainProfile::kind).
  void add_stage(const std::string& name, const std::string& kind, std::shared_ptr<StageModule> stage);

  /// Wraps every child of a Sequential as a single-tensor stage, kind "layer".
  static std::shared_ptr<Chain> from_sequential(torch::nn::Sequential sequential);

  int length() const { return static_cast<int>(stages_.size()); }
  const std::string& stage_name(int index) const;
  const std::string& stage_kind(int index) const;
  StageModule& stage(int index) const;

  /// Runs stage `index` on `inputs`.
  TensorList forward_stage(int index, const TensorList& inputs) const;
  /// Runs every stage in order (plain autograd, no checkpointing).
  TensorList forward(TensorList inputs) const;

 private:
  struct Entry {
    std::string name;
    std::string kind;
    std::shared_ptr<StageModule> module;
  };
  std::vector<Entry> stages_;
};

}  // namespace memento
