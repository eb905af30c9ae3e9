#include "memento/torch/plan_runner.h"

#include <utility>

#include "dtr_runtime.h"
#include "memento/core/error.h"

namespace memento {

PlanRunner::PlanRunner(Executor& executor, Plan plan, ChainProfile profile)
    : executor_(executor), plan_(std::move(plan)), profile_(std::move(profile)) {
  require_feasible(plan_);
  if (profile_.length() != executor_.chain().length()) {
    throw InvalidArgument("the plan's profile has " + std::to_string(profile_.length()) +
                          " stages but the executor's chain has " +
                          std::to_string(executor_.chain().length()) +
                          "; profile the same chain (and granularity) that runs the plan");
  }
  if (plan_.runtime_policy.empty()) {
    executed_ = plan_.schedule;
  } else if (plan_.runtime_policy == "dtr") {
    executed_ = store_all_schedule(profile_.length());
    dtr_ = std::make_unique<detail::DtrRuntime>(executor_, profile_, plan_.budget_bytes);
  } else {
    throw InvalidArgument("plan of planner " + plan_.planner + " asks for the run-time policy \"" +
                          plan_.runtime_policy + "\", which this build does not know (known: dtr)");
  }
}

PlanRunner::~PlanRunner() = default;

StepResult PlanRunner::step(const Batch& batch) {
  if (!dtr_) return executor_.step(executed_, batch);
  dtr_->begin_step();
  struct EndStep {
    detail::DtrRuntime& runtime;
    ~EndStep() { runtime.end_step(); }
  } end_step{*dtr_};
  return executor_.step(executed_, batch);
}

std::optional<DtrStats> PlanRunner::policy_stats() const {
  if (!dtr_) return std::nullopt;
  return dtr_->stats();
}

}  // namespace memento
