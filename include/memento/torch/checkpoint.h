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
/// - `fn` must not modify its inputs in place, and must return tensors of the same shape,
///   dtype and device when re-run (RuntimeError otherwise).
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
  /// Module whose BatchNorm running statistics must not be updated twice (the
  /// recomputation's update is undone); null when `fn` has none.
  torch::nn::Module* running_stats_module = nullptr;
};

using CheckpointFunction = std::function<TensorList(const TensorList&)>;

/// Runs `fn(inputs)` keeping only `inputs` for the backward; see the file comment.
TensorList checkpoint(const CheckpointFunction& fn, const TensorList& inputs,
                      const CheckpointOptions& options = {});

}  // namespace memento
