#include "memento/torch/plan_runner.h"

#include <utility>

#include "memento/core/error.h"

namespace memento {

PlanRunner::PlanRunner(Executor& executor, Plan plan, ChainProfile profile)
    : executor_(executor), plan_(std::move(plan)), profile_(std::move(profile)) {
  if (!plan_.feasible) {
    throw InvalidArgument("planner " + plan_.planner +
                          " found no schedule within the budget; raise the budget to at least " +
                          std::to_string(plan_.min_feasible_budget_bytes) + " bytes");
  }
}

PlanRunner::~PlanRunner() = default;

StepResult PlanRunner::step(const Batch& batch) {
  return executor_.step(plan_.schedule, batch);
}

}  // namespace memento
