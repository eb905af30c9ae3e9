#pragma once
/// \file
/// `checkpoint(fn, inputs)`: function-level activation checkpointing for code that is not
/// a `Chain` — LibTorch's missing `torch.utils.checkpoint`. The forward runs `fn` without
/// autograd and keeps only `inputs`; the backward re-runs `fn` with autograd (same CPU and
/// CUDA generator states, so dropout draws the same mask) and back-propagates through it.
///
/// Semantics:
/// - any number of inputs and outputs; undefined tensors and tensors that are not
///   floating point (masks, token ids) pass through and get no gradient;
/// - parameters used by `fn` receive gradients even when no input requires grad (the
///   outputs require grad whenever autograd is enabled, unlike Python's reentrant mode);
/// - calls nest (a checkpointed function may checkpoint parts of itself);
/// - gradients reach parameters through `.grad()` during the outer backward, so use
///   `loss.backward()` (as in Python's reentrant checkpoint, `torch::autograd::grad` with
///   respect to parameters used inside `fn` does not see them);
/// - with autograd disabled (NoGradGuard, inference) `fn` simply runs;
/// - `fn` may modify its inputs in place (`in[0].mul_(2)`, an in-place ReLU): the write is
///   seen at the operator's start and the kept input is copied first (copy-on-write), so
///   the recomputation reads the values `fn` was called with. The caller's tensor is
///   modified, as without checkpoint. Writes through raw pointers cannot be seen; when one
///   moved an input's version counter, checkpoint raises RuntimeError;
/// - module state `fn` updates in place (BatchNorm running statistics, any buffer written
///   by an in-place operator) is updated once, by the first run: the recomputation's update
///   is undone, with no module pointer needed (PyTorch's reentrant checkpoint updates it
///   twice, pytorch/pytorch#96136);
/// - double backward (`create_graph = true`, gradient penalties) raises RuntimeError: the
///   recomputed graph is local to the backward and would give wrong higher-order gradients;
/// - `fn` must return tensors of the same shape, dtype and device when re-run
///   (RuntimeError otherwise); errors raised inside `fn` come out as one RuntimeError line
///   saying whether the first run or the recomputation raised them.
///
/// Example:
/// \code
///   auto block = torch::nn::Sequential(torch::nn::Linear(64, 256), torch::nn::GELU(), torch::nn::Linear(256,
///   64)); memento::TensorList out = memento::checkpoint(
///       [&](const memento::TensorList& in) { return memento::TensorList{in[0] + block->forward(in[0])}; },
///       {x});
///   out[0].sum().backward();  // block's parameters get the same gradients as without checkpoint
/// \endcode

#include <functional>

#include "memento/torch/chain.h"

namespace memento {

/// Options of `checkpoint`.
struct CheckpointOptions {
  /// Restore the generator states on recomputation (default true). Turn off only for
  /// functions that draw no random numbers, to save the state copies.
  bool preserve_rng_state = true;
  /// A module whose running statistics (`running_mean`, `running_var`,
  /// `num_batches_tracked` buffers) the recomputation must leave alone, in addition to the
  /// state found automatically (what `fn` writes in place). Rarely needed: null by default.
  torch::nn::Module* running_stats_module = nullptr;
};

using CheckpointFunction = std::function<TensorList(const TensorList&)>;

/// Runs `fn(inputs)` keeping only `inputs` for the backward; see the file comment.
TensorList checkpoint(const CheckpointFunction& fn, const TensorList& inputs,
                      const CheckpointOptions& options = {});

/// `torch.utils.checkpoint.checkpoint_sequential` for LibTorch: splits `sequential` into
/// `segments` runs of `size / segments` modules, checkpoints every run but the last (which
/// also takes the remainder and keeps its graph), and returns the output. Gradients,
/// random draws and BatchNorm statistics are those of `sequential->forward(input)` bit for
/// bit; memory is one segment's graph plus the segment boundaries. For the user's own loop:
/// call backward on a loss of the output. Throws InvalidArgument unless
/// 1 <= segments <= the number of modules.
///
/// Example:
/// \code
///   torch::Tensor out = memento::checkpoint_sequential(net, /*segments=*/4, x);
///   torch::nn::functional::cross_entropy(out, y).backward();
/// \endcode
torch::Tensor checkpoint_sequential(const torch::nn::Sequential& sequential, int segments,
                                    const torch::Tensor& input, const CheckpointOptions& options = {});

}  // namespace memento
