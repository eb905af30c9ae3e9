#include "memento/torch/profiler.h"

#include "replay_state.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <optional>
#include <unordered_set>
#include <utility>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/record_function.h>
#include <torch/csrc/autograd/engine.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/variable.h>

#include "memento/core/error.h"
#include "memento/torch/memory.h"

namespace memento {

namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t middle = values.size() / 2;
  return values.size() % 2 == 1 ? values[middle] : 0.5 * (values[middle - 1] + values[middle]);
}

bool is_differentiable(const torch::Tensor& tensor) {
  return tensor.defined() && torch::autograd::isDifferentiableType(tensor.scalar_type());
}

// Live and peak bytes from the MemoryTracker, or from the CUDA caching allocator when
// the batch lives on a GPU (the CPU allocator then sees none of the step's tensors).
class MemoryProbe {
 public:
  explicit MemoryProbe(std::optional<int> cuda_device) : cuda_device_(cuda_device) {}

  int64_t live() const {
    if (cuda_device_) return tracker_.cuda_stats(*cuda_device_).allocated_bytes;
    return tracker_.live_bytes();
  }
  int64_t peak() const {
    if (cuda_device_) return tracker_.cuda_stats(*cuda_device_).peak_allocated_bytes;
    return tracker_.peak_bytes();
  }
  void reset_peak() {
    if (cuda_device_) {
      tracker_.reset_cuda_peak(*cuda_device_);
    } else {
      tracker_.reset_peak();
    }
  }
  // Kernels run asynchronously on a GPU: wall times need the device to finish first.
  void synchronize() const {
    if (cuda_device_) torch::cuda::synchronize(*cuda_device_);
  }

 private:
  std::optional<int> cuda_device_;
  MemoryTracker& tracker_ = MemoryTracker::instance();
};

// One stage's autograd graph as ForwardWithGraph keeps it: the stage's own detached
// inputs (leaves that collect d_i) and its outputs, whose history holds what was saved.
struct StageGraph {
  TensorList inputs;
  detail::GraphOutputs outputs;  // dropped for the last stage after the loss, as in the Executor
};

// Detached copies share the storage of `inputs`, so they cost no bytes; a copy is a
// gradient-collecting leaf where the original carries a gradient.
TensorList local_inputs(const TensorList& inputs) {
  TensorList local;
  local.reserve(inputs.size());
  for (const torch::Tensor& input : inputs) {
    if (!input.defined()) {
      local.push_back(input);
      continue;
    }
    torch::Tensor copy = input.detach();
    if (input.requires_grad() && is_differentiable(copy)) copy.requires_grad_(true);
    local.push_back(std::move(copy));
  }
  return local;
}

StageGraph forward_with_graph(Chain& chain, int stage, const TensorList& inputs) {
  StageGraph graph;
  graph.inputs = local_inputs(inputs);
  torch::AutoGradMode enable_grad(true);
  graph.outputs.tensors = chain.forward_stage(stage, graph.inputs);
  return graph;
}

TensorList forward_no_grad(Chain& chain, int stage, const TensorList& inputs) {
  torch::NoGradGuard no_grad;
  TensorList detached;
  detached.reserve(inputs.size());
  for (const torch::Tensor& input : inputs) detached.push_back(input.defined() ? input.detach() : input);
  return chain.forward_stage(stage, detached);
}

// Backward of one stage the way Executor::run_backward runs it: only the graph keeps what
// its backward needs (the caller's references to the outputs and to d_{i+1} are gone
// before the engine starts), parameter gradients accumulate, and d_i is taken from the
// input leaves. Consumes `graph` and `incoming`.
TensorList backward_stage(StageGraph& graph, TensorList incoming) {
  graph.outputs.run_backward(incoming);
  TensorList input_gradients;
  input_gradients.reserve(graph.inputs.size());
  for (torch::Tensor& input : graph.inputs) {
    torch::Tensor gradient;
    if (input.defined() && input.requires_grad()) {
      gradient = input.grad();
      input.mutable_grad().reset();
    }
    input_gradients.push_back(std::move(gradient));
  }
  graph.inputs.clear();
  return input_gradients;
}

std::vector<torch::Tensor> distinct_parameters(const torch::nn::Module& module) {
  std::vector<torch::Tensor> parameters;
  std::unordered_set<const void*> seen;
  for (const torch::Tensor& parameter : module.parameters()) {
    if (seen.insert(parameter.unsafeGetTensorImpl()).second) parameters.push_back(parameter);
  }
  return parameters;
}

// Profiling runs every stage several times: this puts back what those runs change
// (parameter gradients, buffers such as BatchNorm running statistics, the CPU RNG).
class ModelStateGuard {
 public:
  explicit ModelStateGuard(Chain& chain)
      : parameters_(distinct_parameters(chain)), buffers_(chain.buffers()) {
    torch::NoGradGuard no_grad;
    MemoryScope scope(MemoryCategory::Gradients);
    for (torch::Tensor& parameter : parameters_) {
      saved_gradients_.push_back(parameter.grad());
      // Existing gradients make accumulation a transient, as in every step after the first.
      if (parameter.requires_grad()) parameter.mutable_grad() = torch::zeros_like(parameter);
    }
    for (const torch::Tensor& buffer : buffers_)
      saved_buffers_.push_back(buffer.defined() ? buffer.clone() : buffer);
    auto generator = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(generator.mutex());
    rng_state_ = generator.get_state();
  }

  ~ModelStateGuard() {
    torch::NoGradGuard no_grad;
    for (size_t k = 0; k < parameters_.size(); ++k) parameters_[k].mutable_grad() = saved_gradients_[k];
    for (size_t k = 0; k < buffers_.size(); ++k) {
      if (buffers_[k].defined()) buffers_[k].copy_(saved_buffers_[k]);
    }
    auto generator = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(rng_state_);
  }

  ModelStateGuard(const ModelStateGuard&) = delete;
  ModelStateGuard& operator=(const ModelStateGuard&) = delete;

 private:
  std::vector<torch::Tensor> parameters_;
  std::vector<torch::Tensor> saved_gradients_;
  std::vector<torch::Tensor> buffers_;
  std::vector<torch::Tensor> saved_buffers_;
  torch::Tensor rng_state_;
};

std::optional<int> cuda_device_of(const Batch& batch) {
  for (const torch::Tensor& input : batch.inputs) {
    if (input.defined() && input.is_cuda()) return input.device().index() < 0 ? 0 : input.device().index();
  }
  return std::nullopt;
}

std::string stage_label(const Chain& chain, int stage) {
  return "stage " + std::to_string(stage) + " (\"" + chain.stage_name(stage) + "\")";
}

}  // namespace

struct FlopCounter::State {
  double flops = 0;
};

namespace {

// One operator callback per thread serves every live counter on it; the depth of counted
// operators is per thread too, so a product dispatched from inside a counted convolution
// (or from a fused kernel's fallback) is not counted twice.
struct FlopThreadState {
  std::vector<FlopCounter::State*> counters;
  at::CallbackHandle handle = 0;
  int counted_depth = 0;
};

FlopThreadState& flop_thread_state() {
  thread_local FlopThreadState state;
  return state;
}

// What the end callback needs: whether the op was counted (to unwind the depth) and, for a
// convolution, the factor that the output's spatial size multiplies.
struct CountedOp : at::ObserverContext {
  double pending_conv_factor = 0;
};

std::vector<int64_t> shape_of(const c10::IValue& value) {
  if (!value.isTensor()) return {};
  const at::Tensor& tensor = value.toTensor();
  if (!tensor.defined()) return {};
  return tensor.sizes().vec();
}

double product(const std::vector<int64_t>& values, size_t from = 0) {
  double result = 1;
  for (size_t k = from; k < values.size(); ++k) result *= static_cast<double>(values[k]);
  return result;
}

double mm_flops(const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
  if (a.size() != 2 || b.size() != 2) return 0;
  return 2.0 * static_cast<double>(a[0]) * static_cast<double>(a[1]) * static_cast<double>(b[1]);
}

double bmm_flops(const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
  if (a.size() != 3 || b.size() != 3) return 0;
  return 2.0 * static_cast<double>(a[0]) * static_cast<double>(a[1]) * static_cast<double>(a[2]) *
         static_cast<double>(b[2]);
}

double mv_flops(const std::vector<int64_t>& matrix) {
  return matrix.size() == 2 ? 2.0 * static_cast<double>(matrix[0]) * static_cast<double>(matrix[1]) : 0;
}

// q [..., L, E], k [..., S, E], v [..., S, Ev]: Q*K^T and P*V.
double attention_flops(const std::vector<int64_t>& q, const std::vector<int64_t>& k,
                       const std::vector<int64_t>& v) {
  if (q.size() < 2 || k.size() != q.size() || v.size() != q.size()) return 0;
  const size_t n = q.size();
  const double batch = product(std::vector<int64_t>(q.begin(), q.end() - 2));
  const double queries = static_cast<double>(q[n - 2]);
  const double keys = static_cast<double>(k[n - 2]);
  return 2.0 * batch * queries * keys * (static_cast<double>(q[n - 1]) + static_cast<double>(v[n - 1]));
}

bool name_is(const char* name, const char* expected) {
  return std::strcmp(name, expected) == 0;
}

bool is_convolution(const char* name) {
  return name_is(name, "aten::convolution") || name_is(name, "aten::_convolution");
}

bool is_counted(const char* name) {
  static const char* const kCounted[] = {"aten::mm",
                                         "aten::addmm",
                                         "aten::_addmm_activation",
                                         "aten::bmm",
                                         "aten::baddbmm",
                                         "aten::addbmm",
                                         "aten::mv",
                                         "aten::addmv",
                                         "aten::dot",
                                         "aten::vdot",
                                         "aten::convolution",
                                         "aten::_convolution",
                                         "aten::_scaled_dot_product_flash_attention",
                                         "aten::_scaled_dot_product_flash_attention_for_cpu",
                                         "aten::_scaled_dot_product_efficient_attention",
                                         "aten::_scaled_dot_product_cudnn_attention"};
  for (const char* counted : kCounted) {
    if (name_is(name, counted)) return true;
  }
  return false;
}

void add_flops(FlopThreadState& state, double flops) {
  for (FlopCounter::State* counter : state.counters) counter->flops += flops;
}

std::unique_ptr<at::ObserverContext> on_operator_start(const at::RecordFunction& fn) {
  FlopThreadState& state = flop_thread_state();
  const char* name = fn.name();
  if (state.counters.empty() || name == nullptr || !is_counted(name)) return nullptr;
  auto counted = std::make_unique<CountedOp>();
  if (state.counted_depth++ > 0) return counted;

  const c10::ArrayRef<const c10::IValue> inputs = fn.inputs();
  auto input_shape = [&inputs](size_t index) {
    return index < inputs.size() ? shape_of(inputs[index]) : std::vector<int64_t>{};
  };
  double flops = 0;
  if (name_is(name, "aten::mm")) {
    flops = mm_flops(input_shape(0), input_shape(1));
  } else if (name_is(name, "aten::addmm") || name_is(name, "aten::_addmm_activation")) {
    flops = mm_flops(input_shape(1), input_shape(2));
  } else if (name_is(name, "aten::bmm")) {
    flops = bmm_flops(input_shape(0), input_shape(1));
  } else if (name_is(name, "aten::baddbmm") || name_is(name, "aten::addbmm")) {
    flops = bmm_flops(input_shape(1), input_shape(2));
  } else if (name_is(name, "aten::mv")) {
    flops = mv_flops(input_shape(0));
  } else if (name_is(name, "aten::addmv")) {
    flops = mv_flops(input_shape(1));
  } else if (name_is(name, "aten::dot") || name_is(name, "aten::vdot")) {
    flops = 2.0 * product(input_shape(0));
  } else if (is_convolution(name)) {
    const std::vector<int64_t> input = input_shape(0);
    const std::vector<int64_t> weight = input_shape(1);
    const bool transposed = inputs.size() > 6 && inputs[6].isBool() && inputs[6].toBool();
    if (input.size() >= 3 && weight.size() == input.size()) {
      // weight is [C_out, C_in / groups, k...] (transposed: [C_in, C_out / groups, k...]):
      // each output (transposed: input) position costs prod(weight) / C_out multiply-adds
      // per output channel, so the layer costs 2 * batch * prod(weight) * positions.
      const double factor = 2.0 * static_cast<double>(input[0]) * product(weight);
      if (transposed) {
        flops = factor * product(input, 2);
      } else {
        counted->pending_conv_factor = factor;  // times the output's spatial size, at the end
      }
    }
  } else {
    flops = attention_flops(input_shape(0), input_shape(1), input_shape(2));
  }
  add_flops(state, flops);
  return counted;
}

void on_operator_end(const at::RecordFunction& fn, at::ObserverContext* context) {
  if (context == nullptr) return;
  FlopThreadState& state = flop_thread_state();
  --state.counted_depth;
  const auto* counted = static_cast<const CountedOp*>(context);
  if (counted->pending_conv_factor == 0) return;
  const std::vector<c10::IValue>& outputs = fn.outputs();
  if (outputs.empty()) return;
  const std::vector<int64_t> output = shape_of(outputs[0]);
  if (output.size() >= 3) add_flops(state, counted->pending_conv_factor * product(output, 2));
}

}  // namespace

FlopCounter::FlopCounter() : state_(std::make_unique<State>()) {
  FlopThreadState& thread = flop_thread_state();
  if (thread.counters.empty()) {
    thread.counted_depth = 0;
    thread.handle =
        at::addThreadLocalCallback(at::RecordFunctionCallback(&on_operator_start, &on_operator_end)
                                       .needsInputs(true)
                                       .needsOutputs(true)
                                       .scopes({at::RecordScope::FUNCTION}));
  }
  thread.counters.push_back(state_.get());
}

FlopCounter::~FlopCounter() {
  FlopThreadState& thread = flop_thread_state();
  thread.counters.erase(std::remove(thread.counters.begin(), thread.counters.end(), state_.get()),
                        thread.counters.end());
  if (thread.counters.empty() && thread.handle != 0) {
    at::removeCallback(thread.handle);
    thread.handle = 0;
  }
}

double FlopCounter::flops() const {
  return state_->flops;
}

int64_t tensor_bytes(const TensorList& tensors) {
  std::unordered_set<const void*> seen;
  int64_t bytes = 0;
  for (const torch::Tensor& tensor : tensors) {
    if (!tensor.defined() || !tensor.has_storage()) continue;
    if (!seen.insert(tensor.storage().unsafeGetStorageImpl()).second) continue;
    bytes += static_cast<int64_t>(tensor.storage().nbytes());
  }
  return bytes;
}

int64_t optimizer_state_bytes(const std::string& optimizer, const torch::nn::Module& module) {
  int64_t factor = 0;
  if (optimizer == "sgd") {
    factor = 0;
  } else if (optimizer == "momentum" || optimizer == "adagrad" || optimizer == "rmsprop") {
    factor = 1;
  } else if (optimizer == "adam" || optimizer == "adamw") {
    factor = 2;
  } else {
    throw InvalidArgument("unknown optimizer \"" + optimizer +
                          "\"; choose one of sgd, momentum, adam, adamw, adagrad, rmsprop");
  }
  int64_t trainable_bytes = 0;
  for (const torch::Tensor& parameter : distinct_parameters(module)) {
    if (parameter.requires_grad())
      trainable_bytes += parameter.numel() * static_cast<int64_t>(parameter.element_size());
  }
  return factor * trainable_bytes;
}

ChainProfile profile_chain(Chain& chain, const Batch& batch, const LossFunction& loss,
                           const ProfilerOptions& options) {
  if (options.warmup_runs() < 0) {
    throw InvalidArgument("ProfilerOptions::warmup_runs is " + std::to_string(options.warmup_runs()) +
                          "; use 0 or more");
  }
  if (options.timed_runs() < 1) {
    throw InvalidArgument("ProfilerOptions::timed_runs is " + std::to_string(options.timed_runs()) +
                          "; use 1 or more");
  }
  if (options.optimizer_bytes() < 0) {
    throw InvalidArgument("ProfilerOptions::optimizer_bytes is negative; use 0 or optimizer_state_bytes()");
  }
  if (chain.length() == 0) throw InvalidArgument("cannot profile a chain with no stages");
  if (batch.inputs.empty())
    throw InvalidArgument("the batch has no input tensors for the chain's first stage");
  if (!loss) throw InvalidArgument("profile_chain needs a loss function");

  MemoryProbe probe(cuda_device_of(batch));
  ModelStateGuard state_guard(chain);
  const int length = chain.length();
  const int runs = options.warmup_runs() + options.timed_runs();

  ChainProfile profile;
  profile.model = options.model();
  profile.stages.resize(length);

  // Forward: stage i runs on a_i = the outputs of graph i-1, as in a store-all step.
  std::vector<StageGraph> graphs(length);
  std::vector<TensorList> activations(length + 1);
  activations[0] = batch.inputs;
  for (int i = 0; i < length; ++i) {
    StageProfile& stage = profile.stages[i];
    stage.name = chain.stage_name(i);
    stage.kind = chain.stage_kind(i);
    stage.input_bytes = tensor_bytes(activations[i]);
    MemoryPhase phase("forward of stage " + std::to_string(i));
    MemoryScope scope(MemoryCategory::Activations);

    std::vector<double> times;
    for (int run = 0; run < runs; ++run) {
      probe.synchronize();
      const auto start = Clock::now();
      StageGraph discarded = forward_with_graph(chain, i, activations[i]);
      probe.synchronize();
      if (run >= options.warmup_runs())
        times.push_back(std::chrono::duration<double>(Clock::now() - start).count());
    }
    stage.forward_s = median(times);

    {
      FlopCounter counter;
      StageGraph discarded = forward_with_graph(chain, i, activations[i]);
      stage.flops = counter.flops();
    }

    int64_t no_grad_temp_bytes = 0;
    {
      probe.reset_peak();
      TensorList output = forward_no_grad(chain, i, activations[i]);
      no_grad_temp_bytes = probe.peak() - probe.live();
    }

    const int64_t before = probe.live();
    probe.reset_peak();
    graphs[i] = forward_with_graph(chain, i, activations[i]);
    const int64_t after = probe.live();
    const int64_t peak = probe.peak();
    stage.output_bytes = tensor_bytes(graphs[i].outputs.tensors);
    stage.saved_bytes = std::max(after - before, stage.output_bytes);
    stage.forward_temp_bytes = std::max<int64_t>(peak - after, 0);
    stage.forward_no_grad_temp_bytes = std::max<int64_t>(no_grad_temp_bytes, 0);
    activations[i + 1] = graphs[i].outputs.tensors;
  }

  // The simulator gives the Loss op no time of its own: its forward and backward are
  // charged to the last stage's backward, which like Loss runs exactly once per step.
  double loss_s = 0;
  {
    std::vector<double> times;
    for (int run = 0; run < runs; ++run) {
      TensorList outputs = local_inputs(activations[length]);
      probe.synchronize();
      const auto start = Clock::now();
      {
        torch::AutoGradMode enable_grad(true);
        torch::Tensor value = loss(outputs, batch.targets);
        if (value.defined() && value.numel() == 1 && value.requires_grad())
          torch::autograd::backward({value});
      }
      probe.synchronize();
      if (run >= options.warmup_runs())
        times.push_back(std::chrono::duration<double>(Clock::now() - start).count());
    }
    loss_s = median(times);
  }

  // Loss, as the Executor runs it: the loss reads a_L through a boundary that collects d_L,
  // graph L-1 then drops its outputs (what they free is output_droppable_bytes), and the
  // loss's backward runs; its transients above d_L are loss_temp_bytes.
  TensorList incoming;
  {
    MemoryPhase phase("loss");
    activations[length].clear();
    StageGraph& last = graphs[length - 1];
    const size_t output_count = last.outputs.tensors.size();
    const int64_t before = probe.live();
    probe.reset_peak();
    auto gradients = std::make_shared<TensorList>();
    torch::Tensor value;
    {
      MemoryScope scope(MemoryCategory::Activations);
      auto sink = std::make_shared<detail::GradientSink>(gradients);
      // Only outputs with history take a gradient, as in the Executor's boundary.
      std::vector<char> needs_grad;
      for (const torch::Tensor& output : last.outputs.tensors)
        needs_grad.push_back(output.defined() && output.requires_grad());
      const TensorList local = detail::make_boundary(last.outputs.tensors, needs_grad, *sink);
      torch::AutoGradMode enable_grad(true);
      value = loss(local, batch.targets);
    }
    if (!value.defined() || value.numel() != 1) {
      throw RuntimeError("profile_chain: the loss function must return a scalar tensor");
    }
    if (!value.requires_grad()) {
      throw RuntimeError(
          "profile_chain: the loss does not require grad; the chain has no trainable parameter on the path "
          "to the loss (check requires_grad of the parameters)");
    }
    const int64_t with_outputs = probe.live();
    last.outputs.drop();
    StageProfile& last_stage = profile.stages[length - 1];
    last_stage.output_droppable_bytes =
        std::clamp<int64_t>(with_outputs - probe.live(), 0, last_stage.output_bytes);
    {
      MemoryScope scope(MemoryCategory::Gradients);
      torch::autograd::backward({value});
    }
    value = torch::Tensor();
    incoming = std::move(*gradients);
    incoming.resize(output_count);
    profile.loss_temp_bytes = std::max<int64_t>(probe.peak() - before - last_stage.output_bytes, 0);
  }

  // Backward: Backward(L-1) .. Backward(0) on the graphs kept above.
  for (int i = length - 1; i >= 0; --i) {
    StageProfile& stage = profile.stages[i];
    MemoryPhase phase("backward of stage " + std::to_string(i));
    MemoryScope scope(MemoryCategory::Gradients);

    std::vector<double> times;
    for (int run = 0; run < runs; ++run) {
      StageGraph fresh;
      {
        MemoryScope activations_scope(MemoryCategory::Activations);
        fresh = forward_with_graph(chain, i, graphs[i].inputs);
      }
      TensorList gradients = incoming;
      probe.synchronize();
      const auto start = Clock::now();
      TensorList discarded = backward_stage(fresh, std::move(gradients));
      probe.synchronize();
      if (run >= options.warmup_runs())
        times.push_back(std::chrono::duration<double>(Clock::now() - start).count());
    }
    stage.backward_s = median(times) + (i == length - 1 ? loss_s : 0.0);

    // Only graph i, d_{i+1} and a_i may hold the step's bytes here, as in the Executor.
    activations[i + 1].clear();
    const int64_t before = probe.live();
    probe.reset_peak();
    TensorList produced = backward_stage(graphs[i], std::move(incoming));
    const int64_t peak = probe.peak();
    graphs[i] = StageGraph();
    const int64_t input_gradient_bytes = i > 0 ? stage.input_bytes : 0;
    // A backward may free part of its graph (an output it does not need) before it
    // allocates d_i; then the peak stays below before + d_i and the gap is "released".
    const int64_t excess_bytes = peak - before - input_gradient_bytes;
    stage.backward_temp_bytes = std::max<int64_t>(excess_bytes, 0);
    stage.backward_released_bytes =
        std::min(std::max<int64_t>(-excess_bytes, 0), stage.saved_bytes + stage.output_bytes);
    incoming = std::move(produced);
  }
  incoming.clear();

  // Stages timed one at a time run with their inputs and weights hot in cache; a whole
  // step does not, and measured steps came out 15-20% slower than the sum of the stage
  // times. Scaling every stage time by (median plain step) / (sum of stage times) keeps
  // the per-stage proportions and makes the profile predict the time of a real step.
  {
    double stage_sum_s = 0;
    for (const StageProfile& stage : profile.stages) stage_sum_s += stage.forward_s + stage.backward_s;
    TensorList step_inputs;
    for (const torch::Tensor& input : batch.inputs) {
      step_inputs.push_back(input.defined() ? input.detach().requires_grad_(input.requires_grad()) : input);
    }
    std::vector<double> times;
    for (int run = 0; run < runs; ++run) {
      probe.synchronize();
      const auto start = Clock::now();
      {
        torch::AutoGradMode enable_grad(true);
        torch::Tensor value = loss(chain.forward(step_inputs), batch.targets);
        torch::autograd::backward({value});
      }
      probe.synchronize();
      if (run >= options.warmup_runs())
        times.push_back(std::chrono::duration<double>(Clock::now() - start).count());
    }
    const double step_s = median(times);
    if (stage_sum_s > 0 && step_s > 0) {
      const double scale = step_s / stage_sum_s;
      for (StageProfile& stage : profile.stages) {
        stage.forward_s *= scale;
        stage.backward_s *= scale;
      }
    }
  }

  FixedBytes& fixed = profile.fixed_breakdown;
  TensorList held = distinct_parameters(chain);
  for (const torch::Tensor& parameter : held) {
    if (parameter.requires_grad()) {
      fixed.gradients_bytes += parameter.numel() * static_cast<int64_t>(parameter.element_size());
    }
  }
  for (const torch::Tensor& buffer : chain.buffers()) held.push_back(buffer);
  fixed.parameters_bytes = tensor_bytes(held);
  fixed.optimizer_bytes = options.optimizer_bytes();
  TensorList inputs = batch.inputs;
  inputs.insert(inputs.end(), batch.targets.begin(), batch.targets.end());
  fixed.inputs_bytes = tensor_bytes(inputs);
  profile.fixed_bytes = fixed.total();

  for (int i = 0; i + 1 < length; ++i) {
    if (profile.stages[i].output_bytes != profile.stages[i + 1].input_bytes) {
      throw RuntimeError("profile_chain: " + stage_label(chain, i) + " produced " +
                         std::to_string(profile.stages[i].output_bytes) + " bytes but " +
                         stage_label(chain, i + 1) + " read " +
                         std::to_string(profile.stages[i + 1].input_bytes) + " bytes");
    }
  }
  validate_profile(profile, "measured profile of " + options.model());
  return profile;
}

}  // namespace memento
