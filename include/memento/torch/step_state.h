#pragma once
/// \file
/// `StepState`: the state every compared step starts from, so that several schedules of
/// the same chain compute the same step (used by `memento verify` and `memento bench`):
/// zero-filled parameter gradients (allocated, so they count as fixed bytes as in the
/// profile), the module buffers as they were when the StepState was made (BatchNorm
/// running statistics), and one RNG seed.
///
/// Example:
/// \code
///   memento::StepState state(*chain);
///   state.reset(7);
///   executor.step(schedule_a, batch);
///   auto grads_a = state.gradients();
///   state.reset(7);
///   executor.step(schedule_b, batch);  // same step, other schedule
///   memento::GradientComparison diff = memento::compare_gradients(state.gradients(), grads_a);
///   // diff.bitwise_equal for exact schedules; diff.cosine, diff.rel_l2 for lossy ones
/// \endcode

#include <cstdint>
#include <vector>

#include <torch/torch.h>

#include "memento/torch/chain.h"

namespace memento {

class StepState {
 public:
  /// Snapshots the chain's buffers.
  explicit StepState(Chain& chain) : chain_(chain) {
    torch::NoGradGuard no_grad;
    for (const torch::Tensor& buffer : chain.buffers()) buffers_.push_back(buffer.clone());
  }

  /// Zeroes (or allocates) every trainable parameter's gradient, restores the buffers and
  /// seeds the CPU generator.
  void reset(uint64_t seed) {
    torch::NoGradGuard no_grad;
    for (torch::Tensor& parameter : chain_.parameters()) {
      if (!parameter.requires_grad()) continue;
      if (parameter.grad().defined()) {
        parameter.mutable_grad().zero_();
      } else {
        parameter.mutable_grad() = torch::zeros_like(parameter);
      }
    }
    auto current = chain_.buffers();
    for (size_t k = 0; k < current.size(); ++k) current[k].copy_(buffers_[k]);
    torch::manual_seed(seed);
  }

  /// Copies of the trainable parameters' gradients, in parameter order.
  std::vector<torch::Tensor> gradients() const {
    std::vector<torch::Tensor> grads;
    for (const torch::Tensor& parameter : chain_.parameters()) {
      if (parameter.requires_grad()) grads.push_back(parameter.grad().detach().clone());
    }
    return grads;
  }

 private:
  Chain& chain_;
  std::vector<torch::Tensor> buffers_;
};

/// How far one step's parameter gradients are from a reference step's, over all
/// parameters flattened into one vector.
struct GradientComparison {
  bool bitwise_equal = false;  ///< same count, and every tensor's shape, type and bits equal
  double max_abs_diff = 0;     ///< largest |g - g_ref| of any value (infinity on a shape mismatch)
  double cosine = 0;           ///< cosine similarity (exactly 1 when identical; 1 when both are zero)
  double rel_l2 = 0;           ///< ||g - g_ref|| / ||g_ref|| (exactly 0 when identical)
};

/// Compares `grads` with `reference` (as StepState::gradients() returns them; an undefined
/// tensor counts as zeros), in double precision. Throws RuntimeError when the two lists
/// differ in length.
GradientComparison compare_gradients(const std::vector<torch::Tensor>& grads,
                                     const std::vector<torch::Tensor>& reference);

}  // namespace memento
