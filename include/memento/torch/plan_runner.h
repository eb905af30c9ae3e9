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
/// `gac` (memento/core/gac.h) measures the gradient proxies of every `every_steps`-th
/// step's backward (GradientProxyRecorder) and hands them to a GacController, whose
/// decisions are the next step's schedule; validation losses reach it through
/// observe_validation().
///
/// Example:
/// \code
///   memento::Executor executor(chain, loss);
///   memento::Plan plan = memento::make_planner("optimal")->plan(profile, memento::PlannerOptions(budget));
///   memento::PlanRunner runner(executor, plan, profile);
///   memento::StepResult result = runner.step(batch);  // gradients accumulate in .grad()
/// \endcode

#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "memento/core/dtr.h"
#include "memento/core/gac.h"
#include "memento/core/planner.h"
#include "memento/core/profile.h"
#include "memento/torch/executor.h"

namespace memento {

namespace detail {
class DtrRuntime;
struct StepReplay;
}  // namespace detail

class PlanRunner {
 public:
  /// Throws InvalidArgument when the plan is infeasible (it has no schedule), names a
  /// run-time policy this build does not know, or its profile's length differs from the
  /// executor's chain.
  PlanRunner(Executor& executor, Plan plan, ChainProfile profile);
  ~PlanRunner();
  PlanRunner(const PlanRunner&) = delete;
  PlanRunner& operator=(const PlanRunner&) = delete;

  /// Runs one training step of the plan (forward, loss, backward). With `feed_policy`
  /// false (a side measurement) a `gac` plan runs its current schedule without measuring
  /// proxies or counting the step.
  StepResult step(const Batch& batch, bool feed_policy = true);

  const Plan& plan() const { return plan_; }
  const ChainProfile& profile() const { return profile_; }
  /// The schedule each step hands the executor (store-all for `dtr`).
  const Schedule& executed_schedule() const { return executed_; }
  /// Counters of the last step's run-time policy (evictions, recomputations, ops that
  /// could not be fitted); nullopt for a static plan.
  std::optional<DtrStats> policy_stats() const;

  /// The GAC controller of a `gac` plan (thresholds, decisions, history); nullptr otherwise.
  const GacController* gac() const { return gac_.get(); }
  /// Wall seconds spent computing gradient proxies over every step so far (gac only).
  double proxy_s() const { return proxy_s_; }
  /// Feeds a validation loss to the policy (gac: temporal adaptation, unfreezing); no
  /// effect for other plans.
  void observe_validation(int64_t step, double loss);
  /// Leading stages the current schedule freezes (ForwardFrozen: their parameters get no
  /// gradient and are not to be updated).
  int frozen_stages() const;
  /// The policy's state for a training checkpoint ("" for a plan without one), and its
  /// inverse (throws DataError when it does not fit).
  std::string policy_state() const;
  void restore_policy_state(const std::string& state);

  /// Hooks installed on the executor for each training step only (not for side
  /// measurements with `feed_policy` false, nor for the steps the sensitivity proxy
  /// repeats): a data-parallel gradient averager launching buckets from `Backward(i)`.
  void set_training_hooks(ExecutorHooks hooks);
  /// Maps one measured step's proxy per stage (NaN: none) to the values the policy decides
  /// from, e.g. their mean over the ranks of a data-parallel run so that every rank takes
  /// the same decisions. Must return one value per stage.
  using StatisticsReducer = std::function<std::vector<double>(const std::vector<double>&)>;
  void set_statistics_reducer(StatisticsReducer reducer);

 private:
  StepResult gac_step(const Batch& batch, bool feed_policy);
  StepResult run_executor(const Batch& batch, bool training_step);
  // GACT's sensitivity of the stages measured at this step (all of them the first time,
  // then the next in turn), by repeating the step that just ran.
  void measure_sensitivities(const Batch& batch, const detail::StepReplay& before);

  Executor& executor_;
  Plan plan_;
  ChainProfile profile_;
  Schedule executed_;
  std::unique_ptr<detail::DtrRuntime> dtr_;
  std::unique_ptr<GacController> gac_;
  int64_t gac_steps_ = 0;
  double proxy_s_ = 0;
  std::vector<double> sensitivity_;  // latest estimate per stage (NaN: not measured yet)
  int next_sensitivity_stage_ = 0;
  std::optional<ExecutorHooks> training_hooks_;
  StatisticsReducer statistics_reducer_;
};

}  // namespace memento
