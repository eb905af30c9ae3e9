#pragma once
// Internal helpers shared by the Executor and checkpoint(): what must be replayed so a
// recomputation is bit-identical to the first run (generator states) and what must not
// be applied twice (BatchNorm running statistics).

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/autograd/engine.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/torch.h>

#include "memento/core/error.h"
#include "write_watch.h"

namespace memento::detail {

// Generator states of the CPU generator and of the CUDA devices that `tensors` live on.
// The CPU generator's state is copied as the C++ engine object (about 2.5 KB on the heap,
// like autograd's own nodes), not through get_state(): that returns a 5,056-byte tensor,
// which the step's tensor memory would count for every stage that draws random numbers.
class RngSnapshot {
 public:
  static RngSnapshot capture(const std::vector<torch::Tensor>& tensors) {
    RngSnapshot snapshot;
    snapshot.capture_cpu();
    std::vector<c10::DeviceIndex> cuda_devices;
    for (const torch::Tensor& tensor : tensors) {
      if (!tensor.defined() || !tensor.is_cuda()) continue;
      const c10::DeviceIndex index = tensor.device().index();
      bool seen = false;
      for (c10::DeviceIndex known : cuda_devices) seen = seen || known == index;
      if (seen) continue;
      cuda_devices.push_back(index);
      snapshot.add(at::globalContext().defaultGenerator(c10::Device(c10::DeviceType::CUDA, index)));
    }
    return snapshot;
  }

  // The current states of the same generators (to put back after a replay).
  RngSnapshot current() const {
    RngSnapshot snapshot;
    snapshot.capture_cpu();
    for (const auto& entry : states_) snapshot.add(entry.first);
    return snapshot;
  }

  void restore() const {
    {
      at::Generator generator = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(generator.mutex());
      auto* cpu = at::check_generator<at::CPUGeneratorImpl>(generator);
      cpu->set_engine(cpu_.engine);
      cpu->set_next_float_normal_sample(cpu_.next_float);
      cpu->set_next_double_normal_sample(cpu_.next_double);
    }
    for (const auto& entry : states_) {
      at::Generator generator = entry.first;
      std::lock_guard<std::mutex> lock(generator.mutex());
      generator.set_state(entry.second);
    }
  }

  // True when no generator advanced since the snapshot (the stage draws no random numbers).
  bool unchanged() const {
    RngSnapshot now;
    now.capture_cpu();
    if (!(now.cpu_ == cpu_)) return false;
    for (const auto& entry : states_) {
      at::Generator generator = entry.first;
      torch::Tensor state;
      {
        std::lock_guard<std::mutex> lock(generator.mutex());
        state = generator.get_state();
      }
      if (!torch::equal(state, entry.second)) return false;
    }
    return true;
  }

 private:
  struct CpuState {
    at::mt19937 engine;
    c10::optional<float> next_float;
    c10::optional<double> next_double;

    bool operator==(const CpuState& other) const {
      const at::mt19937_data_pod a = engine.data();
      const at::mt19937_data_pod b = other.engine.data();
      return a.seed_ == b.seed_ && a.left_ == b.left_ && a.seeded_ == b.seeded_ && a.next_ == b.next_ &&
             a.state_ == b.state_ && next_float == other.next_float && next_double == other.next_double;
    }
  };

  void capture_cpu() {
    at::Generator generator = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(generator.mutex());
    auto* cpu = at::check_generator<at::CPUGeneratorImpl>(generator);
    cpu_ = {cpu->engine(), cpu->next_float_normal_sample(), cpu->next_double_normal_sample()};
  }

  void add(const at::Generator& generator_ref) {
    at::Generator generator = generator_ref;
    std::lock_guard<std::mutex> lock(generator.mutex());
    states_.emplace_back(generator, generator.get_state());
  }

  CpuState cpu_;
  std::vector<std::pair<at::Generator, torch::Tensor>> states_;  // CUDA generators
};

// Puts the generators in `replay` state for the lifetime of the guard, then back to
// where they were (so a recomputation does not shift the random stream of later stages).
class RngReplayGuard {
 public:
  explicit RngReplayGuard(const RngSnapshot* replay) {
    if (replay == nullptr) return;
    previous_ = replay->current();
    active_ = true;
    replay->restore();
  }
  ~RngReplayGuard() {
    if (active_) previous_->restore();
  }
  RngReplayGuard(const RngReplayGuard&) = delete;
  RngReplayGuard& operator=(const RngReplayGuard&) = delete;

 private:
  std::optional<RngSnapshot> previous_;
  bool active_ = false;
};

// A forward updates BatchNorm (and InstanceNorm with tracked statistics) running buffers
// in place; a recomputation must leave them as the first run left them. Other buffers are
// constants and are not copied.
inline std::vector<torch::Tensor> running_statistics(torch::nn::Module* module) {
  std::vector<torch::Tensor> tensors;
  if (module == nullptr) return tensors;
  auto ends_with = [](const std::string& text, const std::string& suffix) {
    return text.size() >= suffix.size() &&
           text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  for (const auto& item : module->named_buffers(/*recurse=*/true)) {
    const std::string& name = item.key();
    if (!item.value().defined()) continue;
    if (ends_with(name, "running_mean") || ends_with(name, "running_var") ||
        ends_with(name, "num_batches_tracked"))
      tensors.push_back(item.value());
  }
  return tensors;
}

// The end of a local graph (a stage's, or a checkpointed function's): the local inputs'
// grad_fn is this node, so the engine delivers their gradients here exactly as it sums them
// for the producing node in plain autograd (same InputBuffer, same order), without the
// copy or layout change that AccumulateGrad on a detached leaf could make.
class GradientSink : public torch::autograd::Node {
 public:
  explicit GradientSink(std::shared_ptr<std::vector<torch::Tensor>> sink) : sink_(std::move(sink)) {}
  torch::autograd::variable_list apply(torch::autograd::variable_list&& gradients) override {
    *sink_ = std::move(gradients);
    return {};
  }
  std::string name() const override { return "memento::GradientSink"; }

 private:
  std::shared_ptr<std::vector<torch::Tensor>> sink_;
};

// Index of the first slot before `k` holding the same tensor (same TensorImpl), or -1.
// A tensor can sit in several slots of a boundary tuple (a stage returning h twice);
// keeping one local tensor for all of them keeps plain autograd's single gradient buffer
// for it, and so its summation order.
inline int alias_of(const std::vector<torch::Tensor>& tensors, size_t k) {
  if (!tensors[k].defined()) return -1;
  for (size_t j = 0; j < k; ++j) {
    if (tensors[j].defined() && tensors[j].unsafeGetTensorImpl() == tensors[k].unsafeGetTensorImpl()) {
      return static_cast<int>(j);
    }
  }
  return -1;
}

// Detached copies of `tensors` (no autograd history), aliases kept as aliases.
inline std::vector<torch::Tensor> detach_all(const std::vector<torch::Tensor>& tensors) {
  std::vector<torch::Tensor> result;
  result.reserve(tensors.size());
  for (size_t k = 0; k < tensors.size(); ++k) {
    const int alias = alias_of(tensors, k);
    if (alias >= 0) {
      result.push_back(result[alias]);
    } else {
      result.push_back(tensors[k].defined() ? tensors[k].detach() : tensors[k]);
    }
  }
  return result;
}

// The local inputs of a graph: detached copies of `tensors` whose grad_fn is `sink`
// where `needs_grad[k]` (missing entries: true) and the tensor is differentiable; slot k of
// the sink receives the gradient of slot k (nothing for aliases and no-grad slots). `sink`
// is a GradientSink, or any node that takes the gradients of `tensors` (the outputs a
// checkpointed function or a PlannedChain hands to the caller's graph).
inline std::vector<torch::Tensor> make_boundary(const std::vector<torch::Tensor>& tensors,
                                                const std::vector<char>& needs_grad,
                                                torch::autograd::Node& sink) {
  std::vector<torch::Tensor> local;
  local.reserve(tensors.size());
  for (size_t k = 0; k < tensors.size(); ++k) {
    const int alias = alias_of(tensors, k);
    if (alias >= 0) {
      sink.add_input_metadata(torch::autograd::Node::undefined_input());
      local.push_back(local[alias]);
      continue;
    }
    torch::Tensor tensor = tensors[k].defined() ? tensors[k].detach() : tensors[k];
    const bool wants_grad = k < needs_grad.size() ? needs_grad[k] != 0 : true;
    if (tensor.defined() && wants_grad && torch::autograd::isDifferentiableType(tensor.scalar_type())) {
      const uint32_t slot = sink.add_input_metadata(tensor);
      torch::autograd::impl::set_gradient_edge(tensor, {sink.shared_from_this(), slot});
    } else {
      sink.add_input_metadata(torch::autograd::Node::undefined_input());
    }
    local.push_back(std::move(tensor));
  }
  return local;
}

struct TensorSignature {
  bool defined = false;
  std::vector<int64_t> sizes;
  c10::ScalarType dtype = c10::ScalarType::Undefined;
  c10::Device device = c10::Device(c10::DeviceType::CPU);

  static TensorSignature of(const torch::Tensor& tensor) {
    TensorSignature signature;
    if (!tensor.defined()) return signature;
    signature.defined = true;
    signature.sizes = tensor.sizes().vec();
    signature.dtype = tensor.scalar_type();
    signature.device = tensor.device();
    return signature;
  }
  bool operator==(const TensorSignature& other) const {
    return defined == other.defined && sizes == other.sizes && dtype == other.dtype && device == other.device;
  }
  std::string str() const {
    if (!defined) return "undefined";
    std::string text = std::string(c10::toString(dtype)) + "[";
    for (size_t k = 0; k < sizes.size(); ++k) text += (k ? ", " : "") + std::to_string(sizes[k]);
    return text + "] on " + device.str();
  }
};

inline std::vector<TensorSignature> signatures_of(const std::vector<torch::Tensor>& tensors) {
  std::vector<TensorSignature> signatures;
  signatures.reserve(tensors.size());
  for (const torch::Tensor& tensor : tensors) signatures.push_back(TensorSignature::of(tensor));
  return signatures;
}

// A recomputation must give what the first run gave, in number, shape, dtype and device;
// RuntimeError naming `who` (a stage, a checkpointed function) otherwise.
inline void check_recomputed_signatures(const std::vector<TensorSignature>& first,
                                        const std::vector<torch::Tensor>& outputs, const std::string& who) {
  if (outputs.size() != first.size()) {
    throw RuntimeError(who + " returned " + std::to_string(outputs.size()) + " tensors when recomputed but " +
                       std::to_string(first.size()) + " in its first run; it must be deterministic in shape");
  }
  for (size_t k = 0; k < first.size(); ++k) {
    const TensorSignature now = TensorSignature::of(outputs[k]);
    if (!(now == first[k])) {
      throw RuntimeError(who + " output " + std::to_string(k) + " is " + now.str() +
                         " when recomputed but was " + first[k].str() +
                         " in its first run; it must be deterministic in shape, dtype and device");
    }
  }
}

// Runs the autograd engine on one stage's local graph, from its outputs with the incoming
// gradients d_{i+1}. Consumes both lists first: only the graph then holds what its
// backward needs, so the engine frees outputs and d_{i+1} as soon as it is done with them
// (the Executor's measured peak and the Profiler's backward_temp_bytes rely on it).
// Parameter gradients accumulate as in plain autograd.
inline void run_stage_backward(torch::autograd::edge_list& output_edges,
                               std::vector<torch::Tensor>& incoming) {
  torch::autograd::edge_list roots;
  torch::autograd::variable_list root_gradients;
  for (size_t k = 0; k < output_edges.size() && k < incoming.size(); ++k) {
    if (!output_edges[k].is_valid() || !incoming[k].defined()) continue;
    roots.push_back(std::move(output_edges[k]));
    root_gradients.push_back(std::move(incoming[k]));
  }
  output_edges.clear();
  incoming.clear();
  if (!roots.empty()) {
    torch::autograd::Engine::get_default_engine().execute(roots, root_gradients, /*keep_graph=*/false,
                                                          /*create_graph=*/false, /*accumulate_grad=*/true);
  }
}

// Where the gradients of `outputs` enter their graph; an invalid edge for an output
// without history. The edges keep the graph (and what it saved) alive without the
// outputs' own storage: what a graph needs once nothing reads its outputs any more.
inline torch::autograd::edge_list output_edges(const std::vector<torch::Tensor>& outputs) {
  torch::autograd::edge_list edges;
  edges.reserve(outputs.size());
  for (const torch::Tensor& output : outputs) {
    edges.push_back(output.defined() && output.requires_grad() ? torch::autograd::impl::gradient_edge(output)
                                                               : torch::autograd::Edge());
  }
  return edges;
}

inline void run_stage_backward(std::vector<torch::Tensor>& outputs, std::vector<torch::Tensor>& incoming) {
  torch::autograd::edge_list edges = output_edges(outputs);
  outputs.clear();
  run_stage_backward(edges, incoming);
}

// A graph's outputs, or, once dropped, only their gradient edges (the last stage after the
// loss, and every lossy graph: the Executor and the profiler keep them this way).
struct GraphOutputs {
  std::vector<torch::Tensor> tensors;  // empty once dropped
  std::optional<torch::autograd::edge_list> dropped_edges;

  bool dropped() const { return dropped_edges.has_value(); }
  void drop() {
    if (dropped()) return;  // a lossy last stage is dropped at its forward, then again after the loss
    dropped_edges = output_edges(tensors);
    tensors.clear();
  }
  // run_stage_backward on whichever of the two the graph holds; consumes both.
  void run_backward(std::vector<torch::Tensor>& incoming) {
    if (dropped_edges) {
      run_stage_backward(*dropped_edges, incoming);
    } else {
      run_stage_backward(tensors, incoming);
    }
  }
};

}  // namespace memento::detail
