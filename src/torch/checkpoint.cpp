#include "memento/torch/checkpoint.h"

#include <algorithm>
#include <optional>
#include <string>
#include <utility>

#include <torch/csrc/autograd/engine.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/variable.h>

#include "memento/core/error.h"
#include "replay_state.h"
#include "stage_errors.h"
#include "write_watch.h"

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
                     std::vector<torch::Tensor> module_state, std::vector<detail::TensorSignature> signatures)
      : Node(std::move(next_edges)),
        fn_(std::move(fn)),
        inputs_(std::move(inputs)),
        inputs_need_grad_(std::move(inputs_need_grad)),
        rng_(std::move(rng)),
        module_state_(std::move(module_state)),
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
    if (torch::GradMode::is_enabled()) {
      throw RuntimeError(
          "checkpoint: backward with create_graph=true (double backward, gradient penalties) through a "
          "checkpointed function is not supported: its recomputed graph is local and would give wrong "
          "higher-order gradients; call the function without checkpoint where you need them");
    }
    auto input_gradients = std::make_shared<TensorList>();
    auto sink = std::make_shared<detail::GradientSink>(input_gradients);
    TensorList local = detail::make_boundary(inputs_, inputs_need_grad_, *sink);
    TensorList outputs;
    {
      detail::RngReplayGuard rng(rng_ ? &*rng_ : nullptr);
      // The first run updated the module state (BatchNorm running statistics) already.
      detail::StateRestoreGuard module_state(module_state_);
      // A function that writes into its inputs must find them unchanged in a second backward.
      detail::WriteWatch watch(inputs_);
      torch::AutoGradMode enable_grad(true);
      outputs = detail::with_context("checkpoint: the function, recomputed in backward",
                                     [&] { return fn_(local); });
      inputs_ = watch.pristine(inputs_);
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
      detail::with_context("checkpoint: the backward of the recomputed function", [&] {
        torch::autograd::Engine::get_default_engine().execute(roots, root_gradients, /*keep_graph=*/false,
                                                              /*create_graph=*/false,
                                                              /*accumulate_grad=*/true);
      });
    }
    torch::autograd::variable_list result = std::move(*input_gradients);
    result.resize(inputs_.size());
    return result;
  }

 private:
  void check_signatures(const TensorList& outputs) const {
    detail::check_recomputed_signatures(signatures_, outputs, "checkpoint: the function");
  }

  CheckpointFunction fn_;
  TensorList inputs_;
  std::vector<char> inputs_need_grad_;
  std::optional<detail::RngSnapshot> rng_;
  std::vector<torch::Tensor> module_state_;
  std::vector<detail::TensorSignature> signatures_;
  bool released_ = false;
};

// The tensors `fn` wrote in place that live on after it (module buffers, running
// statistics), except its inputs and outputs; with the options' module's statistics.
std::vector<torch::Tensor> module_state_written(const detail::WriteWatch& watch, const TensorList& inputs,
                                                const TensorList& outputs, const CheckpointOptions& options) {
  std::vector<const void*> excluded;
  for (const TensorList* list : {&inputs, &outputs}) {
    for (const torch::Tensor& tensor : *list) excluded.push_back(detail::storage_key(tensor));
  }
  std::vector<torch::Tensor> state = detail::running_statistics(options.running_stats_module);
  for (const torch::Tensor& tensor : watch.written_tensors()) {
    const void* key = detail::storage_key(tensor);
    if (key == nullptr || std::find(excluded.begin(), excluded.end(), key) != excluded.end()) continue;
    excluded.push_back(key);
    state.push_back(tensor);
  }
  return state;
}

}  // namespace

TensorList checkpoint(const CheckpointFunction& fn, const TensorList& inputs,
                      const CheckpointOptions& options) {
  if (!fn) throw InvalidArgument("checkpoint needs a function, got an empty std::function");
  if (!torch::GradMode::is_enabled()) return fn(inputs);

  std::optional<detail::RngSnapshot> rng;
  if (options.preserve_rng_state) rng = detail::RngSnapshot::capture(inputs);

  std::vector<char> needs_grad;
  torch::autograd::edge_list next_edges;
  for (const torch::Tensor& input : inputs) {
    const bool wants_grad = input.defined() && input.requires_grad();
    needs_grad.push_back(wants_grad);
    next_edges.push_back(wants_grad ? torch::autograd::impl::gradient_edge(input) : torch::autograd::Edge());
  }
  TensorList kept = detail::detach_all(inputs);

  TensorList outputs;
  std::vector<torch::Tensor> module_state;
  {
    torch::NoGradGuard no_grad;
    // Copy-on-write of the inputs the recomputation reads, and the module state fn updates.
    detail::WriteWatch watch(kept, /*record_writes=*/true);
    outputs = detail::with_context("checkpoint: the function", [&] { return fn(kept); });
    if (!watch.unseen_writes().empty()) {
      throw RuntimeError(
          "checkpoint: the function modified an input in place without an operator memento can see (a write "
          "through data_ptr()?); its recomputation would read the modified values: write it out of place");
    }
    module_state = module_state_written(watch, kept, outputs, options);
    kept = watch.pristine(kept);
  }
  if (rng && rng->unchanged()) rng.reset();  // fn draws no random numbers

  std::vector<detail::TensorSignature> signatures = detail::signatures_of(outputs);
  auto node =
      std::make_shared<CheckpointBackward>(std::move(next_edges), fn, std::move(kept), std::move(needs_grad),
                                           std::move(rng), std::move(module_state), std::move(signatures));
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

torch::Tensor checkpoint_sequential(const torch::nn::Sequential& sequential, int segments,
                                    const torch::Tensor& input, const CheckpointOptions& options) {
  std::vector<torch::nn::AnyModule> modules(sequential->begin(), sequential->end());
  const int count = static_cast<int>(modules.size());
  if (count == 0) throw InvalidArgument("checkpoint_sequential: the Sequential has no modules");
  if (segments < 1 || segments > count) {
    throw InvalidArgument("checkpoint_sequential: segments is " + std::to_string(segments) + "; use 1 to " +
                          std::to_string(count) + " (the number of modules in the Sequential)");
  }
  auto run = [modules](int first, int end, torch::Tensor x) mutable {
    for (int k = first; k < end; ++k) x = modules[k].forward(x);
    return x;
  };
  torch::Tensor x = input;
  if (!torch::GradMode::is_enabled()) return run(0, count, x);
  // As torch.utils.checkpoint.checkpoint_sequential: segments of count / segments modules,
  // all checkpointed but the last, which also takes the remainder and keeps its graph.
  const int segment_size = count / segments;
  int first = 0;
  for (int segment = 0; segment + 1 < segments; ++segment) {
    const int end = first + segment_size;
    x = checkpoint(
        [run, first, end](const TensorList& in) mutable { return TensorList{run(first, end, in[0])}; }, {x},
        options)[0];
    first = end;
  }
  return run(first, count, x);
}

}  // namespace memento
