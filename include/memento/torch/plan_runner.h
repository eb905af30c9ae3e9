#pragma once
/// \file
/// `PlanRunner`: executes a `Plan` step after step on an `Executor`. Every command that
/// runs a plan (train, verify, bench, profile --timeline) goes through it, so a planner
/// whose decisions are made at run time works everywhere a static one does.
///
/// A static plan runs its schedule as is. A plan with a run-time policy (its
/// `Plan::runtime_policy` is not empty, e.g. `dtr`) installs that policy's hooks on the
/// executor for the runner's lifetime; the policy then reacts to measured memory.
///
/// Example:
/// \code
///   memento::Executor executor(chain, loss);
///   memento::Plan plan = memento::make_planner("optimal")->plan(profile, memento::PlannerOptions(budget));
///   memento::PlanRunner runner(executor, plan, profile);
///   memento::StepResult result = runner.step(batch);  // gradients accumulate in .grad()
/// \endcode

#include <memory>

#include "memento/core/planner.h"
#include "memento/core/profile.h"
#include "memento/torch/executor.h"

namespace memento {

class PlanRunner {
 public:
  /// Throws InvalidArgument when the plan is infeasible (it has no schedule) or names a
  /// run-time policy this build does not know.
  PlanRunner(Executor& executor, Plan plan, ChainProfile profile);
  ~PlanRunner();
  PlanRunner(const PlanRunner&) = delete;
  PlanRunner& operator=(const PlanRunner&) = delete;

  /// Runs one training step of the plan (forward, loss, backward).
  StepResult step(const Batch& batch);

  const Plan& plan() const { return plan_; }
  const ChainProfile& profile() const { return profile_; }

 private:
  Executor& executor_;
  Plan plan_;
  ChainProfile profile_;
};

}  // namespace memento
