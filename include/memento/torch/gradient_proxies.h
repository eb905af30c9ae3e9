#pragma once
/// \file
/// Gradient-magnitude proxies per stage, measured while a schedule runs: in Backward(i),
/// from d_{i+1} (the gradient of stage i's output) before the stage's backward consumes
/// it. They are what gradient-aware checkpointing decides from; this header measures them
/// and changes nothing in the step (gradients stay bit-identical).
///
/// Example:
/// \code
///   memento::Executor executor(chain, loss);
///   memento::GradientProxyRecorder proxies(executor, /*every_steps=*/10);
///   for (int step = 0; step < 100; ++step) executor.step(plan, next_batch());
///   for (const memento::GradientProxy& p : proxies.history())
///     std::cout << p.step << " " << p.stage << " " << p.mean_abs << "\n";
/// \endcode

#include <cstdint>
#include <limits>
#include <vector>

#include "memento/torch/chain.h"

namespace memento {

class Executor;

/// The proxies of one stage's output gradient d_{i+1} at one step, over every floating-point
/// tensor of the boundary tuple.
struct GradientProxy {
  int64_t step = 0;      ///< the recorder's step counter (0 for the first step it saw)
  int stage = 0;         ///< i: the stage whose output gradient this is
  double mean_abs = 0;   ///< MAG: mean of |d| over every value
  double frobenius = 0;  ///< ||d||_F
  double trace = 0;      ///< Tr(dᵀd) as the design documents list it; it equals ||d||_F²
  int64_t values = 0;    ///< number of values of d_{i+1}
  /// MAG and Frobenius norm of the stage's parameter gradients right after its Backward
  /// (the parameter-group proxies); NaN for a stage without parameters.
  double parameter_mean_abs = std::numeric_limits<double>::quiet_NaN();
  double parameter_frobenius = std::numeric_limits<double>::quiet_NaN();
};

/// The proxies of `gradients` (undefined and non-floating tensors skipped); step and stage 0.
GradientProxy gradient_proxy(const TensorList& gradients);

/// Records GradientProxy (output gradient and parameter gradients) for every stage of every `every_steps`-th
/// step an Executor runs, through a hook added to it (removed again by the destructor; the executor must
/// outlive the recorder). Stages whose output gradient holds no floating-point value (an integer output) are
/// left out.
class GradientProxyRecorder {
 public:
  /// Throws InvalidArgument when `every_steps` < 1.
  explicit GradientProxyRecorder(Executor& executor, int every_steps = 1);
  ~GradientProxyRecorder();
  GradientProxyRecorder(const GradientProxyRecorder&) = delete;
  GradientProxyRecorder& operator=(const GradientProxyRecorder&) = delete;

  /// Every record so far, in the order measured (stages from the last backward down).
  const std::vector<GradientProxy>& history() const { return history_; }
  /// The records of the most recent recorded step.
  std::vector<GradientProxy> last_step() const;
  /// Steps seen (recorded or not).
  int64_t steps_seen() const { return steps_seen_; }
  /// Wall seconds spent computing proxies, over every recorded step.
  double proxy_s() const { return proxy_s_; }

 private:
  Executor& executor_;
  int hook_id_ = -1;
  int every_steps_ = 1;
  int64_t steps_seen_ = 0;
  bool recording_ = false;
  double proxy_s_ = 0;
  std::vector<GradientProxy> history_;
};

}  // namespace memento
