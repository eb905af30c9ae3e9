#pragma once
/// \file
/// `PlanRunner`: executes a `Plan` step after step on an `Executor`. Every command that
/// runs a plan (train, verify, bench, profile --timeline) goes through it, so a planner
/// whose decisions are made at run time works everywhere a static one does.
///
/// A static plan runs its schedule as is. A plan with a run-time policy (its
/// `Plan::runtime_policy` is not empty, e.g. `dtr`) installs that policy's hooks on the
/// executor while each of its steps runs (so several runners may share one executor);
/// the policy then reacts to measured memory.
/// `dtr` runs the store-all schedule while the core DtrController (memento/core/dtr.h),
/// fed with the MemoryTracker's live bytes and measured stage times, shrinks graphs,
/// frees activations and recomputes on demand to stay under `Plan::budget_bytes`.
///
/// Example:
/// \code
///   memento::Executor executor(chain, loss);
///   memento::Plan plan = memento::make_planner("optimal")->plan(profile, memento::PlannerOptions(budget));
///   memento::PlanRunner runner(executor, plan, profile);
///   memento::StepResult result = runner.step(batch);  // gradients accumulate in .grad()
/// \endcode

#include <memory>
#include <optional>

#include "memento/core/dtr.h"
#include "memento/core/planner.h"
#include "memento/core/profile.h"
#include "memento/torch/executor.h"

namespace memento {

namespace detail {
class DtrRuntime;
}

class PlanRunner {
 public:
  /// Throws InvalidArgument when the plan is infeasible (it has no schedule), names a
  /// run-time policy this build does not know, or its profile's length differs from the
  /// executor's chain.
  PlanRunner(Executor& executor, Plan plan, ChainProfile profile);
  ~PlanRunner();
  PlanRunner(const PlanRunner&) = delete;
  PlanRunner& operator=(const PlanRunner&) = delete;

  /// Runs one training step of the plan (forward, loss, backward).
  StepResult step(const Batch& batch);

  const Plan& plan() const { return plan_; }
  const ChainProfile& profile() const { return profile_; }
  /// The schedule each step hands the executor (store-all for `dtr`).
  const Schedule& executed_schedule() const { return executed_; }
  /// Counters of the last step's run-time policy (evictions, recomputations, ops that
  /// could not be fitted); nullopt for a static plan.
  std::optional<DtrStats> policy_stats() const;

 private:
  Executor& executor_;
  Plan plan_;
  ChainProfile profile_;
  Schedule executed_;
  std::unique_ptr<detail::DtrRuntime> dtr_;
};

}  // namespace memento
