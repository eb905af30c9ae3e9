#pragma once
/// \file
/// `profile_chain()`: measures the `ChainProfile` of one training step of a `Chain` —
/// per-stage times (median of timed runs after warm-up) and exact sizes from the
/// `MemoryTracker` (on CUDA tensors: the caching allocator's statistics).
///
/// Definitions. They are the memory model of memento/core/simulate.h, measured the way
/// the `Executor` runs each op, so that simulating a schedule predicts the peak the
/// Executor measures for it. Stage i runs on its own detached copy of a_i (stage 0 on
/// the batch inputs themselves), exactly as `ForwardWithGraph(i)` does.
/// - `input_bytes`, `output_bytes`: bytes of the storages of a_i and a_{i+1}, each
///   distinct storage counted once (a view costs its whole base storage, as in memory).
///   `output_bytes[i] == input_bytes[i+1]` always holds: both measure the same tensors.
/// - `output_passthrough_bytes`: bytes of output storages that are input storages the
///   stage did not write (a residual stream or token ids carried in the tuple).
/// - `saved_bytes`: live bytes after the stage's forward with grad minus live bytes
///   before it, with the input alive on both sides and the output included: exactly what
///   the Executor holds for a `ForwardWithGraph(i)`. Outputs the stage wrote into its
///   input in place count as new (the Executor copies such an input aside whenever a
///   later op reads it again); at least `output_bytes - output_passthrough_bytes`.
/// - `forward_temp_bytes`: peak during the forward with grad minus what stays after it
///   (saved_bytes), and `forward_no_grad_temp_bytes`: the same for the forward without
///   grad (what stays: the output). Kept apart because a with-grad forward keeps what the
///   no-grad one frees at once (a dropout mask): simulate's `+ saved + forward_temp` for
///   ForwardWithGraph and `+ output + forward_no_grad_temp` for ForwardNoGrad and
///   ForwardCheckpoint then each match the measured peak.
/// - `backward_temp_bytes`: peak during `Backward(i)` above the state before it (graph i,
///   d_{i+1}, a_i alive; parameter gradients already allocated, so accumulating into them
///   is a transient) and the produced input gradient d_i (i >= 1). When the peak stays
///   below before + d_i (the backward freed part of its graph first), the shortfall is
///   `backward_released_bytes` and the temporary is 0. The loss's own
///   transient bytes (its forward and backward inside the `Loss` op) are charged to the
///   last stage: its backward_temp_bytes is at least the loss transient minus d_{L-1}, so
///   that the Backward(L-1) peak simulate predicts covers the Loss op's measured peak.
/// - `forward_s`: median wall time of the forward with grad; `backward_s`: median wall
///   time of the stage's backward (each timed backward runs on a freshly built graph).
///   The last stage's `backward_s` also holds the median time of the loss's forward and
///   backward, since the simulator gives the `Loss` op no time of its own. Finally every
///   stage time is scaled by (median time of a plain forward/loss/backward step) / (sum of
///   the stage times): stages timed alone run hot in cache, a real step does not.
/// - `flops`: forward floating point operations of the stage, counted by a `FlopCounter`
///   around one extra (untimed) forward with grad: matrix products and convolutions only,
///   2 per multiply-add, bias additions and elementwise ops not counted (see FlopCounter).
/// - `fixed_bytes` = parameters + gradients + optimizer state + inputs, with
///   `fixed_breakdown`: parameters_bytes (parameters and buffers, distinct storages),
///   gradients_bytes (one gradient per parameter that requires grad),
///   optimizer_bytes (`ProfilerOptions::optimizer_bytes`), inputs_bytes (batch inputs
///   and targets, distinct storages).
///
/// Side effects: none visible. Parameter gradients are swapped for zero tensors while
/// profiling and put back afterwards; module buffers (BatchNorm running statistics) and
/// the CPU random generator state are restored.
///
/// Example:
/// \code
///   auto net = torch::nn::Sequential(torch::nn::Linear(64, 64), torch::nn::ReLU(), torch::nn::Linear(64,
///   8)); auto chain = memento::Chain::from_sequential(net); memento::Batch batch{{torch::randn({32, 64})},
///   {torch::randn({32, 8})}}; memento::LossFunction loss = [](const memento::TensorList& out, const
///   memento::TensorList& target) {
///     return torch::mse_loss(out[0], target[0]);
///   };
///   memento::ChainProfile profile =
///       memento::profile_chain(*chain, batch, loss, memento::ProfilerOptions().timed_runs(5).model("mlp"));
///   memento::write_profile(profile, "mlp.json");
/// \endcode

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "memento/core/profile.h"
#include "memento/torch/chain.h"

namespace memento {

/// How `profile_chain` measures. Chainable setters, like `torch::nn::*Options`.
class ProfilerOptions {
 public:
  ProfilerOptions() = default;

  /// Untimed runs of each stage's forward and backward before timing (default 1).
  ProfilerOptions& warmup_runs(int runs) {
    warmup_runs_ = runs;
    return *this;
  }
  int warmup_runs() const { return warmup_runs_; }

  /// Timed runs whose median is reported (default 3, at least 1).
  ProfilerOptions& timed_runs(int runs) {
    timed_runs_ = runs;
    return *this;
  }
  int timed_runs() const { return timed_runs_; }

  /// Optimizer state bytes for the fixed bytes (see optimizer_state_bytes(); default 0).
  ProfilerOptions& optimizer_bytes(int64_t bytes) {
    optimizer_bytes_ = bytes;
    return *this;
  }
  int64_t optimizer_bytes() const { return optimizer_bytes_; }

  /// `ChainProfile::model`, a free-form description (default "chain").
  ProfilerOptions& model(std::string description) {
    model_ = std::move(description);
    return *this;
  }
  const std::string& model() const { return model_; }

  /// Lossy codecs whose costs to measure per stage (StageProfile::lossy; default none:
  /// an exact profile). Each codec adds one lossy forward and backward per stage and run.
  ProfilerOptions& codecs(std::vector<Codec> codecs) {
    codecs_ = std::move(codecs);
    return *this;
  }
  const std::vector<Codec>& codecs() const { return codecs_; }

 private:
  std::vector<Codec> codecs_;
  int warmup_runs_ = 1;
  int timed_runs_ = 3;
  int64_t optimizer_bytes_ = 0;
  std::string model_ = "chain";
};

/// Measures the profile of one training step of `chain` on `batch` with `loss`.
/// Throws InvalidArgument for bad options or an empty batch, RuntimeError when the loss
/// is not a scalar or the chain has no parameter on the path to the loss, and
/// ProfileError when the measured profile fails validation (naming the stage).
ChainProfile profile_chain(Chain& chain, const Batch& batch, const LossFunction& loss,
                           const ProfilerOptions& options = ProfilerOptions());

/// Counts the floating point operations of the matrix products and convolutions that the
/// current thread runs while the counter is alive, from the shapes the operators receive
/// (an `at::RecordFunction` callback; nothing is timed or synchronized).
///
/// Convention (that of `torch.utils.flop_counter`): a multiply-add is 2 flops and only the
/// leaf products are counted, once each. `aten::mm`, `addmm`, `bmm`, `baddbmm`, `addbmm`:
/// 2*M*N*K (times the batch); `mv`, `addmv`: 2*M*N; `dot`, `vdot`: 2*N;
/// `aten::convolution`: 2 * batch * prod(weight shape) * prod(output spatial size)
/// (prod(input spatial size) when transposed); the fused attention kernels of LibTorch 2.x:
/// the two products Q*K^T and P*V. Bias and `beta * self` additions, elementwise ops,
/// reductions and normalizations count 0: they are memory-bound and a small share of a
/// block's work. Wrappers (`linear`, `matmul`, `conv2d`, `einsum`) are not counted
/// themselves; the products they dispatch to are, and an operator called from inside a
/// counted one (a convolution lowered to a matrix product) is not counted again.
/// Counters may nest on one thread: an outer counter includes what inner ones count.
/// Construct and destroy a counter on the same thread.
///
/// Example:
/// \code
///   torch::nn::Linear linear(64, 128);
///   memento::FlopCounter counter;
///   linear->forward(torch::randn({32, 64}));
///   double flops = counter.flops();  // 2 * 32 * 64 * 128 = 524288
/// \endcode
class FlopCounter {
 public:
  FlopCounter();
  ~FlopCounter();
  FlopCounter(const FlopCounter&) = delete;
  FlopCounter& operator=(const FlopCounter&) = delete;

  /// Flops counted since construction.
  double flops() const;

  struct State;  ///< internal: what the operator callback adds to

 private:
  std::unique_ptr<State> state_;
};

/// Bytes of the storages behind `tensors`, each distinct storage counted once
/// (undefined tensors count 0).
///
/// Example:
/// \code
///   torch::Tensor x = torch::empty({1024});
///   int64_t bytes = memento::tensor_bytes({x, x.view({32, 32})});  // 4096
/// \endcode
int64_t tensor_bytes(const TensorList& tensors);

/// Bytes the named optimizer keeps per step for `module`'s trainable parameters:
/// "sgd" 0, "momentum" (SGD with momentum) 1x, "adam" / "adamw" 2x, "adagrad" 1x,
/// "rmsprop" 1x the parameter bytes. Throws InvalidArgument listing the names.
///
/// Example:
/// \code
///   int64_t bytes = memento::optimizer_state_bytes("adam", *chain);
///   auto options = memento::ProfilerOptions().optimizer_bytes(bytes);
/// \endcode
int64_t optimizer_state_bytes(const std::string& optimizer, const torch::nn::Module& module);

}  // namespace memento
