#pragma once
/// \file
/// `Executor`: runs one training step (forward, loss, backward) of a `Chain` under any
/// `Schedule` from the core, with the op semantics of memento/core/schedule.h. For the
/// exact ops, parameter and input gradients equal plain LibTorch autograd bit for bit.
///
/// Example:
/// \code
///   memento::Executor executor(chain, loss_function);
///   memento::Plan plan = memento::make_planner("optimal")->plan(profile, memento::PlannerOptions(budget));
///   memento::StepResult result = executor.step(plan.schedule, batch);  // grads accumulate in .grad()
/// \endcode

#include <cstdint>
#include <memory>

#include "memento/core/schedule.h"
#include "memento/torch/chain.h"

namespace memento {

/// What one executed step measured.
struct StepResult {
  double loss = 0;               ///< value of the loss
  double step_s = 0;             ///< wall time of forward + loss + backward
  int64_t start_bytes = 0;       ///< tracker live bytes when the step began
  int64_t peak_bytes = 0;        ///< tracker peak bytes during the step (absolute)
  double recompute_s = 0;        ///< wall time spent in forwards beyond the first per stage
  int recompute_count = 0;       ///< number of such forwards
};

/// Interprets schedules for one chain and loss. See the implementation notes in
/// docs/architecture.md for how recomputation, RNG and BatchNorm statistics are handled.
class Executor {
 public:
  Executor(std::shared_ptr<Chain> chain, LossFunction loss);

  /// Runs `schedule` on `batch`, accumulating parameter (and input) gradients.
  /// Throws ScheduleError for an invalid schedule and RuntimeError when a recomputed stage
  /// differs in shape, dtype or device from its first run.
  StepResult step(const Schedule& schedule, const Batch& batch);

  Chain& chain() const { return *chain_; }

 private:
  std::shared_ptr<Chain> chain_;
  LossFunction loss_;
};

}  // namespace memento
