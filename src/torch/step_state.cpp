#include "memento/torch/step_state.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "memento/core/error.h"

namespace memento {

namespace {

bool same_bits(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.defined() != b.defined()) return false;
  if (!a.defined()) return true;
  if (a.sizes() != b.sizes() || a.scalar_type() != b.scalar_type()) return false;
  const torch::Tensor x = a.contiguous().cpu();
  const torch::Tensor y = b.contiguous().cpu();
  return std::memcmp(x.data_ptr(), y.data_ptr(), x.numel() * x.element_size()) == 0;
}

}  // namespace

GradientComparison compare_gradients(const std::vector<torch::Tensor>& grads,
                                     const std::vector<torch::Tensor>& reference) {
  if (grads.size() != reference.size()) {
    throw RuntimeError("a step produced " + std::to_string(grads.size()) +
                       " parameter gradients but the reference step produced " +
                       std::to_string(reference.size()));
  }
  GradientComparison out;
  out.bitwise_equal = true;
  // Doubles, so that identical gradients give exactly cosine 1 and relative error 0.
  double dot = 0, norm2 = 0, reference_norm2 = 0, diff_norm2 = 0;
  for (size_t k = 0; k < grads.size(); ++k) {
    out.bitwise_equal = out.bitwise_equal && same_bits(grads[k], reference[k]);
    const bool has = grads[k].defined(), has_reference = reference[k].defined();
    if (!has && !has_reference) continue;
    if (has && has_reference && grads[k].sizes() != reference[k].sizes()) {
      out.max_abs_diff = INFINITY;
      continue;
    }
    const torch::Tensor g =
        has ? grads[k].cpu().to(torch::kFloat64) : torch::zeros_like(reference[k].cpu(), torch::kFloat64);
    const torch::Tensor r = has_reference ? reference[k].cpu().to(torch::kFloat64)
                                          : torch::zeros_like(grads[k].cpu(), torch::kFloat64);
    if (g.numel() > 0) out.max_abs_diff = std::max(out.max_abs_diff, (g - r).abs().max().item<double>());
    dot += (g * r).sum().item<double>();
    norm2 += (g * g).sum().item<double>();
    reference_norm2 += (r * r).sum().item<double>();
    diff_norm2 += (g - r).pow(2).sum().item<double>();
  }
  if (norm2 == 0 || reference_norm2 == 0) {
    out.cosine = norm2 == reference_norm2 ? 1.0 : 0.0;
  } else {
    out.cosine = std::clamp(dot / std::sqrt(norm2 * reference_norm2), -1.0, 1.0);
  }
  out.rel_l2 =
      reference_norm2 > 0 ? std::sqrt(diff_norm2 / reference_norm2) : (diff_norm2 == 0 ? 0.0 : INFINITY);
  return out;
}

}  // namespace memento
