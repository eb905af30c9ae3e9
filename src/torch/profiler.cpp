#include "memento/torch/profiler.h"

#include "replay_state.h"
#include "stage_errors.h"
#include "write_watch.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <optional>
#include <unordered_map>
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
#include "memento/torch/saved_tensor_hooks.h"

namespace memento {

namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t middle = values.size() / 2;
  return values.size() % 2 == 1 ? values[middle] : 0.5 * (values[middle - 1] + values[middle]);
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

// One stage's autograd graph as ForwardWithGraph keeps it: the stage's boundary inputs
// (detached aliases of a_i whose gradients a sink collects, as in the Executor) and its
// outputs, whose history holds what was saved.
struct StageGraph {
  TensorList inputs;
  detail::GraphOutputs outputs;  // dropped for the last stage after the loss, as in the Executor
  std::shared_ptr<TensorList> input_gradients;
};

std::vector<char> requires_grad_flags(const TensorList& tensors) {
  std::vector<char> flags;
  for (const torch::Tensor& tensor : tensors) flags.push_back(tensor.defined() && tensor.requires_grad());
  return flags;
}

// The boundary is a graph node, not a leaf: a stage whose first op is in place (an
// in-place ReLU) runs on it as it does in the Executor, where a leaf would be refused.
StageGraph forward_with_graph(Chain& chain, int stage, const TensorList& inputs) {
  StageGraph graph;
  graph.input_gradients = std::make_shared<TensorList>();
  auto sink = std::make_shared<detail::GradientSink>(graph.input_gradients);
  graph.inputs = detail::make_boundary(inputs, requires_grad_flags(inputs), *sink);
  torch::AutoGradMode enable_grad(true);
  graph.outputs.tensors = chain.forward_stage(stage, graph.inputs);
  return graph;
}

TensorList forward_no_grad(Chain& chain, int stage, const TensorList& inputs) {
  torch::NoGradGuard no_grad;
  return chain.forward_stage(stage, detail::detach_all(inputs));
}

// Backward of one stage the way Executor::run_backward runs it: only the graph keeps what
// its backward needs (the caller's references to the outputs and to d_{i+1} are gone
// before the engine starts), parameter gradients accumulate, and d_i is what the boundary
// collected. Consumes `graph` and `incoming`.
TensorList backward_stage(StageGraph& graph, TensorList incoming) {
  graph.outputs.run_backward(incoming);
  TensorList input_gradients = std::move(*graph.input_gradients);
  input_gradients.resize(graph.inputs.size());
  graph.inputs.clear();
  return input_gradients;
}

// A measuring run that must leave its inputs as it found them: a stage that writes into
// its input in place would otherwise change what the next run of it reads.
template <class Body>
decltype(auto) leaving_inputs_unchanged(const TensorList& inputs, Body&& body) {
  detail::WriteWatch watch(inputs);
  struct Restore {
    detail::WriteWatch& watch;
    ~Restore() { watch.restore(); }
  } restore{watch};
  return std::forward<Body>(body)();
}

// The outputs that are input storages, split by whether the stage wrote into them in place.
// Written ones the Executor copies aside whenever a later op reads the input again, so the
// stage then costs them anew; the others are passed through (shared by a_i and a_{i+1}),
// grouped by the activation that first held them (`origin_of`, by storage).
struct SharedOutputs {
  int64_t written_bytes = 0;
  std::vector<StageProfile::Passthrough> passthrough;
  std::vector<const void*> new_storages;  // allocated, or written in place, by the stage
};

SharedOutputs shared_outputs(const TensorList& inputs, const std::vector<int64_t>& versions_before,
                             const TensorList& outputs,
                             const std::unordered_map<const void*, int>& origin_of) {
  SharedOutputs shared;
  std::vector<const void*> seen;
  for (const torch::Tensor& output : outputs) {
    const void* key = detail::storage_key(output);
    if (key == nullptr || std::find(seen.begin(), seen.end(), key) != seen.end()) continue;
    seen.push_back(key);
    bool is_input = false, written = false;
    for (size_t k = 0; k < inputs.size(); ++k) {
      if (detail::storage_key(inputs[k]) != key) continue;
      is_input = true;
      written = written || (!inputs[k].is_inference() &&
                            static_cast<int64_t>(inputs[k]._version()) != versions_before[k]);
    }
    const int64_t bytes = static_cast<int64_t>(output.storage().nbytes());
    if (!is_input || written) {
      shared.new_storages.push_back(key);
      if (written) shared.written_bytes += bytes;
      continue;
    }
    const auto origin = origin_of.find(key);
    const int from = origin == origin_of.end() ? 0 : origin->second;
    auto part = std::find_if(shared.passthrough.begin(), shared.passthrough.end(),
                             [from](const StageProfile::Passthrough& p) { return p.from == from; });
    if (part == shared.passthrough.end()) {
      shared.passthrough.push_back({from, bytes});
    } else {
      part->bytes += bytes;
    }
  }
  std::sort(
      shared.passthrough.begin(), shared.passthrough.end(),
      [](const StageProfile::Passthrough& a, const StageProfile::Passthrough& b) { return a.from < b.from; });
  return shared;
}

TensorList copies_of(const TensorList& tensors) {
  torch::NoGradGuard no_grad;
  TensorList copies;
  for (const torch::Tensor& tensor : tensors) {
    copies.push_back(tensor.defined() ? tensor.detach().clone().requires_grad_(tensor.requires_grad())
                                      : tensor);
  }
  return copies;
}

std::vector<int64_t> versions_of(const TensorList& tensors) {
  std::vector<int64_t> versions;
  for (const torch::Tensor& tensor : tensors) {
    versions.push_back(tensor.defined() && !tensor.is_inference() ? static_cast<int64_t>(tensor._version())
                                                                  : -1);
  }
  return versions;
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

// Bytes of the distinct storages of `outputs` that none of `inputs` holds.
int64_t new_storage_bytes(const TensorList& outputs, const TensorList& inputs) {
  std::vector<const void*> seen;
  for (const torch::Tensor& input : inputs) {
    if (input.defined() && input.has_storage()) seen.push_back(input.storage().unsafeGetStorageImpl());
  }
  int64_t bytes = 0;
  for (const torch::Tensor& output : outputs) {
    if (!output.defined() || !output.has_storage()) continue;
    const void* key = output.storage().unsafeGetStorageImpl();
    if (std::find(seen.begin(), seen.end(), key) != seen.end()) continue;
    seen.push_back(key);
    bytes += static_cast<int64_t>(output.storage().nbytes());
  }
  return bytes;
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

namespace {

// One profiling pass over a chain: the forward of every stage as in a store-all step, the
// loss, the backward of every stage, then the step-time scale and the fixed bytes.
class ProfileRun {
 public:
  ProfileRun(Chain& chain, const Batch& batch, const LossFunction& loss, const ProfilerOptions& options)
      : chain_(chain),
        batch_(batch),
        loss_(loss),
        options_(options),
        probe_(cuda_device_of(batch)),
        length_(chain.length()),
        runs_(options.warmup_runs() + options.timed_runs()),
        graphs_(length_),
        activations_(length_ + 1) {
    profile_.model = options.model();
    profile_.stages.resize(length_);
    activations_[0] = batch.inputs;
    for (const torch::Tensor& input : batch.inputs) origin_of_.emplace(detail::storage_key(input), 0);
  }

  ChainProfile run() {
    for (int i = 0; i < length_; ++i) measure_forward(i);
    TensorList incoming = measure_loss();
    for (int i = length_ - 1; i >= 0; --i) incoming = measure_backward(i, std::move(incoming));
    scale_to_step_time();
    measure_fixed_bytes();
    for (int i = 0; i + 1 < length_; ++i) {
      if (profile_.stages[i].output_bytes != profile_.stages[i + 1].input_bytes) {
        throw RuntimeError("profile_chain: " + stage_label(chain_, i) + " produced " +
                           std::to_string(profile_.stages[i].output_bytes) + " bytes but " +
                           stage_label(chain_, i + 1) + " read " +
                           std::to_string(profile_.stages[i + 1].input_bytes) + " bytes");
      }
    }
    validate_profile(profile_, "measured profile of " + options_.model());
    return std::move(profile_);
  }

 private:
  double timed(const std::function<void()>& body) {
    probe_.synchronize();
    const auto start = Clock::now();
    body();
    probe_.synchronize();
    return std::chrono::duration<double>(Clock::now() - start).count();
  }

  // Stage i runs on a_i = the outputs of graph i-1, as in a store-all step. Every run but
  // the measured last one leaves a_i as it found it (a stage may write into it in place).
  void measure_forward(int i) {
    StageProfile& stage = profile_.stages[i];
    stage.name = chain_.stage_name(i);
    stage.kind = chain_.stage_kind(i);
    const TensorList& inputs = activations_[i];
    stage.input_bytes = tensor_bytes(inputs);
    MemoryPhase phase("forward of stage " + std::to_string(i));
    MemoryScope scope(MemoryCategory::Activations);
    const std::string where = "profile_chain: forward of " + stage_label(chain_, i);

    std::vector<double> times;
    for (int run = 0; run < runs_; ++run) {
      const double seconds = detail::with_context(where, [&] {
        return leaving_inputs_unchanged(inputs, [&] {
          return timed([&] { StageGraph discarded = forward_with_graph(chain_, i, inputs); });
        });
      });
      if (run >= options_.warmup_runs()) times.push_back(seconds);
    }
    stage.forward_s = median(times);

    detail::with_context(where, [&] {
      leaving_inputs_unchanged(inputs, [&] {
        FlopCounter counter;
        StageGraph discarded = forward_with_graph(chain_, i, inputs);
        stage.flops = counter.flops();
      });
    });

    int64_t no_grad_temp_bytes = 0;
    detail::with_context(where + " without grad", [&] {
      leaving_inputs_unchanged(inputs, [&] {
        probe_.reset_peak();
        TensorList output = forward_no_grad(chain_, i, inputs);
        no_grad_temp_bytes = probe_.peak() - probe_.live();
      });
    });

    const std::vector<int64_t> versions = versions_of(inputs);
    const int64_t before = probe_.live();
    probe_.reset_peak();
    graphs_[i] = detail::with_context(where, [&] { return forward_with_graph(chain_, i, inputs); });
    const int64_t after = probe_.live();
    const int64_t peak = probe_.peak();
    stage.output_bytes = tensor_bytes(graphs_[i].outputs.tensors);
    const SharedOutputs shared = shared_outputs(inputs, versions, graphs_[i].outputs.tensors, origin_of_);
    writes_its_input_[i] = versions_of(inputs) != versions;
    stage.output_passthrough = shared.passthrough;
    stage.saved_bytes = std::max(after - before + shared.written_bytes, stage.output_new_bytes());
    for (const void* key : shared.new_storages) origin_of_[key] = i + 1;
    stage.forward_temp_bytes = std::max<int64_t>(peak - after, 0);
    stage.forward_no_grad_temp_bytes = std::max<int64_t>(no_grad_temp_bytes, 0);
    activations_[i + 1] = graphs_[i].outputs.tensors;
  }

  // The simulator gives the Loss op no time of its own: its forward and backward are
  // charged to the last stage's backward, which like Loss runs exactly once per step.
  double time_loss() {
    std::vector<double> times;
    const TensorList& outputs = activations_[length_];
    for (int run = 0; run < runs_; ++run) {
      const double seconds = detail::with_context("profile_chain: the loss function", [&] {
        return leaving_inputs_unchanged(outputs, [&] {
          return timed([&] {
            auto sink_gradients = std::make_shared<TensorList>();
            auto sink = std::make_shared<detail::GradientSink>(sink_gradients);
            const TensorList local = detail::make_boundary(outputs, requires_grad_flags(outputs), *sink);
            torch::AutoGradMode enable_grad(true);
            torch::Tensor value = loss_(local, batch_.targets);
            if (value.defined() && value.numel() == 1 && value.requires_grad())
              torch::autograd::backward({value});
          });
        });
      });
      if (run >= options_.warmup_runs()) times.push_back(seconds);
    }
    return median(times);
  }

  // Loss, as the Executor runs it: the loss reads a_L through a boundary that collects d_L,
  // graph L-1 then drops its outputs (what they free is output_droppable_bytes), and the
  // loss's backward runs; its transients above d_L are loss_temp_bytes. Returns d_L.
  TensorList measure_loss() {
    loss_s_ = time_loss();
    MemoryPhase phase("loss");
    activations_[length_].clear();
    StageGraph& last = graphs_[length_ - 1];
    const size_t output_count = last.outputs.tensors.size();
    const int64_t before = probe_.live();
    probe_.reset_peak();
    auto gradients = std::make_shared<TensorList>();
    torch::Tensor value;
    {
      MemoryScope scope(MemoryCategory::Activations);
      auto sink = std::make_shared<detail::GradientSink>(gradients);
      // Only outputs with history take a gradient, as in the Executor's boundary.
      const TensorList local =
          detail::make_boundary(last.outputs.tensors, requires_grad_flags(last.outputs.tensors), *sink);
      torch::AutoGradMode enable_grad(true);
      value = detail::with_context("profile_chain: the loss function",
                                   [&] { return loss_(local, batch_.targets); });
    }
    if (!value.defined() || value.numel() != 1) {
      throw RuntimeError("profile_chain: the loss function must return a scalar tensor");
    }
    if (!value.requires_grad()) {
      throw RuntimeError(
          "profile_chain: the loss does not require grad; the chain has no trainable parameter on the path "
          "to the loss (check requires_grad of the parameters)");
    }
    const int64_t with_outputs = probe_.live();
    last.outputs.drop();
    StageProfile& last_stage = profile_.stages[length_ - 1];
    last_stage.output_droppable_bytes =
        std::clamp<int64_t>(with_outputs - probe_.live(), 0, last_stage.output_bytes);
    {
      MemoryScope scope(MemoryCategory::Gradients);
      detail::with_context("profile_chain: the backward of the loss function",
                           [&] { torch::autograd::backward({value}); });
    }
    value = torch::Tensor();
    TensorList incoming = std::move(*gradients);
    incoming.resize(output_count);
    profile_.loss_temp_bytes = std::max<int64_t>(probe_.peak() - before - last_stage.output_bytes, 0);
    return incoming;
  }

  // Backward(i) on the graph kept by measure_forward; timed on freshly built graphs.
  TensorList measure_backward(int i, TensorList incoming) {
    StageProfile& stage = profile_.stages[i];
    MemoryPhase phase("backward of stage " + std::to_string(i));
    MemoryScope scope(MemoryCategory::Gradients);
    const std::string where = "profile_chain: backward of " + stage_label(chain_, i);

    // A stage that writes into its input in place runs its timed graphs on copies: a run
    // on the kept input would move the version of what the kept graph saved.
    const TensorList timing_inputs = writes_its_input_[i] ? copies_of(graphs_[i].inputs) : graphs_[i].inputs;
    std::vector<double> times;
    for (int run = 0; run < runs_; ++run) {
      StageGraph fresh;
      {
        MemoryScope activations_scope(MemoryCategory::Activations);
        fresh = detail::with_context("profile_chain: forward of " + stage_label(chain_, i), [&] {
          return leaving_inputs_unchanged(timing_inputs,
                                          [&] { return forward_with_graph(chain_, i, timing_inputs); });
        });
      }
      TensorList gradients = incoming;
      const double seconds = detail::with_context(where, [&] {
        return timed([&] { TensorList discarded = backward_stage(fresh, std::move(gradients)); });
      });
      if (run >= options_.warmup_runs()) times.push_back(seconds);
    }
    stage.backward_s = median(times) + (i == length_ - 1 ? loss_s_ : 0.0);
    for (Codec codec : options_.codecs())
      stage.lossy.push_back(measure_lossy(i, codec, timing_inputs, incoming));

    // Only graph i, d_{i+1} and a_i may hold the step's bytes here, as in the Executor.
    activations_[i + 1].clear();
    const int64_t before = probe_.live();
    probe_.reset_peak();
    TensorList produced =
        detail::with_context(where, [&] { return backward_stage(graphs_[i], std::move(incoming)); });
    const int64_t peak = probe_.peak();
    graphs_[i] = StageGraph();
    const int64_t input_gradient_bytes = i > 0 ? stage.input_bytes : 0;
    // A backward may free part of its graph (an output it does not need) before it
    // allocates d_i; then the peak stays below before + d_i and the gap is "released".
    const int64_t excess_bytes = peak - before - input_gradient_bytes;
    stage.backward_temp_bytes = std::max<int64_t>(excess_bytes, 0);
    stage.backward_released_bytes =
        std::min(std::max<int64_t>(-excess_bytes, 0), stage.saved_bytes + stage.output_bytes);
    if (i == 0) produced.clear();
    return produced;
  }

  // ForwardLossy(i, codec) and its Backward as the Executor runs them: the forward packs what
  // autograd saves, the output is held apart (detached) and the graph keeps only where the
  // output's gradient enters it. Memory from the last run, pack and unpack times the median.
  StageProfile::LossyCost measure_lossy(int i, Codec codec, const TensorList& inputs,
                                        const TensorList& incoming) {
    const std::string where =
        std::string("profile_chain: lossy (") + codec_name(codec) + ") run of " + stage_label(chain_, i);
    StageProfile::LossyCost cost;
    cost.codec = codec;
    std::vector<double> pack_times;
    std::vector<double> unpack_times;
    for (int run = 0; run < runs_; ++run) {
      auto stats = std::make_shared<SaveAsStats>();
      detail::with_context(where, [&] {
        leaving_inputs_unchanged(inputs, [&] {
          SaveAsOptions save_options;
          save_options.keep = kept_by_lossy();
          save_options.stats = stats;
          const int64_t before = probe_.live();
          probe_.reset_peak();
          StageGraph graph;
          {
            MemoryScope scope(MemoryCategory::Activations);
            SavedTensorHooks packing(save_as(codec, std::move(save_options)));
            graph = forward_with_graph(chain_, i, inputs);
          }
          const int64_t forward_peak = probe_.peak();
          TensorList output = detail::detach_all(graph.outputs.tensors);
          graph.outputs.drop();
          const int64_t after = probe_.live();
          const int64_t output_new_bytes = new_storage_bytes(output, inputs);
          cost.saved_bytes = std::max<int64_t>(after - before - output_new_bytes, 0);
          cost.forward_temp_bytes = std::max<int64_t>(forward_peak - after, 0);
          output.clear();
          MemoryScope scope(MemoryCategory::Gradients);
          const int64_t backward_before = probe_.live();
          probe_.reset_peak();
          TensorList produced = backward_stage(graph, incoming);
          const int64_t input_gradient_bytes = i > 0 ? profile_.stages[i].input_bytes : 0;
          cost.backward_temp_bytes =
              std::max<int64_t>(probe_.peak() - backward_before - input_gradient_bytes, 0);
        });
      });
      if (run >= options_.warmup_runs()) {
        pack_times.push_back(stats->pack_s);
        unpack_times.push_back(stats->unpack_s);
      }
    }
    cost.pack_s = median(pack_times);
    cost.unpack_s = median(unpack_times);
    return cost;
  }

  // What a lossy forward never packs, as in the Executor: parameters, buffers, the batch.
  TensorList kept_by_lossy() const {
    TensorList kept = batch_.inputs;
    for (const torch::Tensor& parameter : chain_.parameters()) kept.push_back(parameter);
    for (const torch::Tensor& buffer : chain_.buffers()) kept.push_back(buffer);
    return kept;
  }

  // Stages timed one at a time run with their inputs and weights hot in cache; a whole
  // step does not, and measured steps came out 15-20% slower than the sum of the stage
  // times. Scaling every stage time by (median plain step) / (sum of stage times) keeps
  // the per-stage proportions and makes the profile predict the time of a real step.
  void scale_to_step_time() {
    double stage_sum_s = 0;
    for (const StageProfile& stage : profile_.stages) stage_sum_s += stage.forward_s + stage.backward_s;
    TensorList step_inputs;
    for (const torch::Tensor& input : batch_.inputs) {
      step_inputs.push_back(input.defined() ? input.detach().requires_grad_(input.requires_grad()) : input);
    }
    std::vector<double> times;
    for (int run = 0; run < runs_; ++run) {
      const double seconds = detail::with_context("profile_chain: a plain step of the chain", [&] {
        return leaving_inputs_unchanged(step_inputs, [&] {
          return timed([&] {
            torch::AutoGradMode enable_grad(true);
            torch::Tensor value = loss_(chain_.forward(step_inputs), batch_.targets);
            torch::autograd::backward({value});
          });
        });
      });
      if (run >= options_.warmup_runs()) times.push_back(seconds);
    }
    const double step_s = median(times);
    if (stage_sum_s > 0 && step_s > 0) {
      const double scale = step_s / stage_sum_s;
      for (StageProfile& stage : profile_.stages) {
        stage.forward_s *= scale;
        stage.backward_s *= scale;
        for (StageProfile::LossyCost& cost : stage.lossy) {
          cost.pack_s *= scale;
          cost.unpack_s *= scale;
        }
      }
    }
  }

  void measure_fixed_bytes() {
    FixedBytes& fixed = profile_.fixed_breakdown;
    TensorList held = distinct_parameters(chain_);
    for (const torch::Tensor& parameter : held) {
      if (parameter.requires_grad()) {
        fixed.gradients_bytes += parameter.numel() * static_cast<int64_t>(parameter.element_size());
      }
    }
    for (const torch::Tensor& buffer : chain_.buffers()) held.push_back(buffer);
    fixed.parameters_bytes = tensor_bytes(held);
    fixed.optimizer_bytes = options_.optimizer_bytes();
    TensorList inputs = batch_.inputs;
    inputs.insert(inputs.end(), batch_.targets.begin(), batch_.targets.end());
    fixed.inputs_bytes = tensor_bytes(inputs);
    profile_.fixed_bytes = fixed.total();
  }

  Chain& chain_;
  const Batch& batch_;
  const LossFunction& loss_;
  const ProfilerOptions& options_;
  MemoryProbe probe_;
  const int length_;
  const int runs_;
  ChainProfile profile_;
  std::vector<StageGraph> graphs_;
  std::vector<TensorList> activations_;
  std::vector<bool> writes_its_input_ = std::vector<bool>(length_, false);
  std::unordered_map<const void*, int> origin_of_;  // storage -> the activation that first held it
  double loss_s_ = 0;
};

}  // namespace

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

  ModelStateGuard state_guard(chain);
  return ProfileRun(chain, batch, loss, options).run();
}

}  // namespace memento
