#include "memento/torch/planned_chain.h"

#include <utility>

#include "memento/core/error.h"
#include "memento/torch/executor.h"

namespace memento {

namespace {

torch::Tensor refuse_loss(const TensorList&, const TensorList&) {
  throw RuntimeError("PlannedChain computes no loss: the caller does, from forward()'s output");
}

}  // namespace

PlannedChain::PlannedChain(std::shared_ptr<Chain> chain, const Plan& plan)
    : chain_(std::move(chain)), executor_(std::make_shared<Executor>(chain_, refuse_loss)) {
  set_plan(plan);
}

PlannedChain::~PlannedChain() = default;

void PlannedChain::set_plan(const Plan& plan) {
  require_feasible(plan);
  if (!plan.runtime_policy.empty()) {
    throw InvalidArgument("plan of planner " + plan.planner + " decides at run time (runtime_policy \"" +
                          plan.runtime_policy +
                          "\"); PlannedChain runs static schedules: choose an exact planner, or run the plan "
                          "with PlanRunner");
  }
  check_schedule(*chain_, plan.schedule);
  plan_ = plan;
}

TensorList PlannedChain::forward(const TensorList& inputs) {
  if (!torch::GradMode::is_enabled()) return chain_->forward(inputs);
  return executor_->forward_in_caller_graph(executor_, plan_.schedule, inputs);
}

torch::Tensor PlannedChain::forward(const torch::Tensor& input) {
  TensorList outputs = forward(TensorList{input});
  if (outputs.size() != 1) {
    throw InvalidArgument("PlannedChain::forward(Tensor): the chain returns " +
                          std::to_string(outputs.size()) + " tensors; call forward(TensorList) instead");
  }
  return outputs[0];
}

}  // namespace memento
