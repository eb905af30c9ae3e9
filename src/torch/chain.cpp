#include "memento/torch/chain.h"

#include "memento/core/error.h"

namespace memento {

LambdaStage::LambdaStage(Function function, std::shared_ptr<torch::nn::Module> owner)
    : function_(std::move(function)) {
  if (!function_) throw InvalidArgument("LambdaStage needs a function");
  if (owner) register_module("owner", owner);
}

TensorList LambdaStage::forward(const TensorList& inputs) {
  return function_(inputs);
}

void Chain::add_stage(const std::string& name, const std::string& kind, std::shared_ptr<StageModule> stage) {
  if (!stage) throw InvalidArgument("stage \"" + name + "\" is null");
  register_module("stage" + std::to_string(stages_.size()), stage);
  stages_.push_back({name, kind, std::move(stage)});
}

std::shared_ptr<Chain> Chain::from_sequential(torch::nn::Sequential sequential) {
  auto chain = std::make_shared<Chain>();
  const auto children = sequential->named_children();
  size_t index = 0;
  for (const torch::nn::AnyModule& any_module : *sequential) {
    torch::nn::AnyModule any = any_module;
    auto function = [any](const TensorList& inputs) mutable -> TensorList {
      if (inputs.size() != 1) {
        throw InvalidArgument("a stage wrapped from torch::nn::Sequential takes one tensor, got " +
                              std::to_string(inputs.size()));
      }
      return {any.forward(inputs[0])};
    };
    chain->add_stage(children[index].key(), "layer", std::make_shared<LambdaStage>(function, any.ptr()));
    ++index;
  }
  if (chain->length() == 0) throw InvalidArgument("cannot make a Chain from an empty torch::nn::Sequential");
  return chain;
}

const std::string& Chain::stage_name(int index) const {
  return stages_.at(index).name;
}
const std::string& Chain::stage_kind(int index) const {
  return stages_.at(index).kind;
}
StageModule& Chain::stage(int index) const {
  return *stages_.at(index).module;
}

TensorList Chain::forward_stage(int index, const TensorList& inputs) const {
  if (index < 0 || index >= length()) {
    throw InvalidArgument("stage " + std::to_string(index) + " is outside the chain of " +
                          std::to_string(length()) + " stages");
  }
  return stages_[index].module->forward(inputs);
}

TensorList Chain::forward(TensorList inputs) const {
  for (int index = 0; index < length(); ++index) inputs = forward_stage(index, inputs);
  return inputs;
}

}  // namespace memento
