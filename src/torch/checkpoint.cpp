#include "memento/torch/checkpoint.h"

#include <optional>
#include <string>
#include <utility>

#include <torch/csrc/autograd/engine.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/variable.h>

#include "memento/core/error.h"
#include "replay_state.h"

namespace memento {

namespace {

bool is_differentiable(const torch::Tensor& tensor) {
  return tensor.defined() && torch::autograd::isDifferentiableType(tensor.scalar_type());
}

// The backward of a checkpointed call: re-runs `fn` with autograd from the kept inputs and
// back-propagates the incoming gradients through that fresh local graph (a reentrant call
// of the engine, as Python's reentrant checkpoint does).
class CheckpointBackward : public torch::autograd::Node {
 public:
  CheckpointBackward(torch::autograd::edge_list&& next_edges, CheckpointFunction fn, TensorList inputs,
                     std::vector<char> inputs_need_grad, std::optional<detail::RngSnapshot> rng,
                     torch::nn::Module* running_stats_module, std::vector<detail::TensorSignature> signatures)
      : Node(std::move(next_edges)),
        fn_(std::move(fn)),
        inputs_(std::move(inputs)),
        inputs_need_grad_(std::move(inputs_need_grad)),
        rng_(std::move(rng)),
        running_stats_module_(running_stats_module),
        signatures_(std::move(signatures)) {}

  std::string name() const override { return "memento::CheckpointBackward"; }

  void release_variables() override {
    inputs_.clear();
    released_ = true;
  }

  torch::autograd::variable_list apply(torch::autograd::variable_list&& gradients) override {
    if (released_) {
      throw RuntimeError(
          "checkpoint: a second backward through a checkpointed function whose inputs were already released; "
          "pass retain_graph=true to the first backward");
    }
    auto input_gradients = std::make_shared<TensorList>();
    auto sink = std::make_shared<detail::GradientSink>(input_gradients);
    TensorList local = detail::make_boundary(inputs_, inputs_need_grad_, *sink);
    TensorList outputs;
    {
      detail::RngReplayGuard rng(rng_ ? &*rng_ : nullptr);
      detail::RunningStatsGuard running_stats(running_stats_module_);
      torch::AutoGradMode enable_grad(true);
      outputs = fn_(local);
    }
    check_signatures(outputs);

    torch::autograd::edge_list roots;
    torch::autograd::variable_list root_gradients;
    for (size_t k = 0; k < outputs.size() && k < gradients.size(); ++k) {
      if (!outputs[k].defined() || !outputs[k].requires_grad() || !gradients[k].defined()) continue;
      roots.push_back(torch::autograd::impl::gradient_edge(outputs[k]));
      root_gradients.push_back(std::move(gradients[k]));
    }
    outputs.clear();
    local.clear();
    if (!roots.empty()) {
      torch::autograd::Engine::get_default_engine().execute(roots, root_gradients, /*keep_graph=*/false,
                                                            /*create_graph=*/false, /*accumulate_grad=*/true);
    }
    torch::autograd::variable_list result = std::move(*input_gradients);
    result.resize(inputs_.size());
    return result;
  }

 private:
  void check_signatures(const TensorList& outputs) const {
    if (outputs.size() != signatures_.size()) {
      throw RuntimeError("checkpoint: the function returned " + std::to_string(outputs.size()) +
                         " tensors when recomputed but " + std::to_string(signatures_.size()) +
                         " in its first run; a checkpointed function must be deterministic in shape");
    }
    for (size_t k = 0; k < outputs.size(); ++k) {
      const detail::TensorSignature now = detail::TensorSignature::of(outputs[k]);
      if (!(now == signatures_[k])) {
        throw RuntimeError("checkpoint: output " + std::to_string(k) + " is " + now.str() +
                           " when recomputed but was " + signatures_[k].str() +
                           " in the first run; a checkpointed function must be deterministic in shape, dtype "
                           "and device");
      }
    }
  }

  CheckpointFunction fn_;
  TensorList inputs_;
  std::vector<char> inputs_need_grad_;
  std::optional<detail::RngSnapshot> rng_;
  torch::nn::Module* running_stats_module_;
  std::vector<detail::TensorSignature> signatures_;
  bool released_ = false;
};

}  // namespace

TensorList checkpoint(const CheckpointFunction& fn, const TensorList& inputs,
                      const CheckpointOptions& options) {
  if (!fn) throw InvalidArgument("checkpoint needs a function, got an empty std::function");
  if (!torch::GradMode::is_enabled()) return fn(inputs);

  std::optional<detail::RngSnapshot> rng;
  if (options.preserve_rng_state) rng = detail::RngSnapshot::capture(inputs);

  TensorList kept;
  std::vector<char> needs_grad;
  torch::autograd::edge_list next_edges;
  for (const torch::Tensor& input : inputs) {
    const bool wants_grad = input.defined() && input.requires_grad();
    needs_grad.push_back(wants_grad);
    next_edges.push_back(wants_grad ? torch::autograd::impl::gradient_edge(input) : torch::autograd::Edge());
  }
  kept = detail::detach_all(inputs);

  TensorList outputs;
  {
    torch::NoGradGuard no_grad;
    outputs = fn(kept);
  }
  if (rng && rng->unchanged()) rng.reset();  // fn draws no random numbers

  std::vector<detail::TensorSignature> signatures;
  for (const torch::Tensor& output : outputs) signatures.push_back(detail::TensorSignature::of(output));
  auto node = std::make_shared<CheckpointBackward>(std::move(next_edges), fn, std::move(kept),
                                                   std::move(needs_grad), std::move(rng),
                                                   options.running_stats_module, std::move(signatures));
  TensorList wrapped;
  wrapped.reserve(outputs.size());
  for (torch::Tensor& output : outputs) {
    // A fresh tensor per output, so a pass-through input keeps its own history untouched.
    torch::Tensor result = output.defined() ? output.detach() : output;
    if (is_differentiable(result)) {
      torch::autograd::set_history(result, node);
    } else {
      node->add_input_metadata(torch::autograd::Node::undefined_input());
    }
    wrapped.push_back(std::move(result));
  }
  return wrapped;
}

}  // namespace memento
