#include "memento/torch/gradient_proxies.h"

#include <chrono>
#include <cmath>
#include <string>

#include "memento/core/error.h"
#include "memento/torch/executor.h"

namespace memento {

GradientProxy gradient_proxy(const TensorList& gradients) {
  torch::NoGradGuard no_grad;
  GradientProxy proxy;
  double abs_sum = 0;
  double square_sum = 0;
  for (const torch::Tensor& gradient : gradients) {
    if (!gradient.defined() || !gradient.is_floating_point() || gradient.numel() == 0) continue;
    // Norms are reductions: no tensor of the gradient's size is allocated, so the step's
    // measured peak stays what the plan predicts.
    abs_sum += torch::linalg_vector_norm(gradient, 1).item<double>();
    const double norm = torch::linalg_vector_norm(gradient, 2).item<double>();
    square_sum += norm * norm;
    proxy.values += gradient.numel();
  }
  if (proxy.values == 0) return proxy;
  proxy.mean_abs = abs_sum / static_cast<double>(proxy.values);
  proxy.frobenius = std::sqrt(square_sum);
  proxy.trace = square_sum;
  return proxy;
}

GradientProxyRecorder::GradientProxyRecorder(Executor& executor, int every_steps)
    : executor_(executor), every_steps_(every_steps) {
  if (every_steps < 1) {
    throw InvalidArgument("GradientProxyRecorder: every_steps must be at least 1, got " +
                          std::to_string(every_steps));
  }
  ExecutorHooks hooks;
  hooks.before_op = [this](Executor& running, const OpEvent& event) {
    if (event.op_index == 0) {  // the first op of a step
      recording_ = steps_seen_ % every_steps_ == 0;
      ++steps_seen_;
    }
    if (!recording_ || event.op.kind != OpKind::Backward) return;
    const TensorList* gradients = running.activation_gradient(event.op.stage + 1);
    if (gradients == nullptr) return;
    const auto start = std::chrono::steady_clock::now();
    GradientProxy proxy = gradient_proxy(*gradients);
    proxy_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (proxy.values == 0) return;
    proxy.step = steps_seen_ - 1;
    proxy.stage = event.op.stage;
    history_.push_back(proxy);
  };
  // After Backward(i) the stage's parameters hold their gradient (this step's, when the
  // gradients were zeroed before it, as the Trainer does; a weight tied to a later stage
  // holds both stages' parts by then).
  hooks.after_op = [this](Executor& running, const OpEvent& event) {
    if (!recording_ || event.op.kind != OpKind::Backward || history_.empty()) return;
    GradientProxy& proxy = history_.back();
    if (proxy.step != steps_seen_ - 1 || proxy.stage != event.op.stage) return;
    const auto start = std::chrono::steady_clock::now();
    TensorList gradients;
    for (const torch::Tensor& parameter : running.chain().stage(event.op.stage).parameters()) {
      gradients.push_back(parameter.grad());
    }
    const GradientProxy parameters = gradient_proxy(gradients);
    proxy_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (parameters.values == 0) return;
    proxy.parameter_mean_abs = parameters.mean_abs;
    proxy.parameter_frobenius = parameters.frobenius;
  };
  hooks.observe_only = true;
  hook_id_ = executor_.add_hooks(std::move(hooks));
}

GradientProxyRecorder::~GradientProxyRecorder() {
  executor_.remove_hooks(hook_id_);
}

std::vector<GradientProxy> GradientProxyRecorder::last_step() const {
  std::vector<GradientProxy> last;
  if (history_.empty()) return last;
  const int64_t step = history_.back().step;
  for (const GradientProxy& proxy : history_) {
    if (proxy.step == step) last.push_back(proxy);
  }
  return last;
}

}  // namespace memento
