#pragma once
// The run-time side of the `dtr` policy: Executor hooks that drive the core DtrController
// (memento/core/dtr.h) with the MemoryTracker's live bytes and measured stage times while
// the executor runs the store-all schedule. Internal to the runtime; PlanRunner owns it.

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "memento/core/dtr.h"
#include "memento/core/profile.h"
#include "memento/torch/executor.h"

namespace memento::detail {

class DtrRuntime {
 public:
  DtrRuntime(Executor& executor, ChainProfile profile, int64_t budget_bytes);
  ~DtrRuntime();
  DtrRuntime(const DtrRuntime&) = delete;
  DtrRuntime& operator=(const DtrRuntime&) = delete;

  /// Call right before Executor::step: a fresh controller, the step's start bytes and
  /// clock, and the hooks installed on the executor until end_step().
  void begin_step();
  /// Removes the hooks (other runners may share the executor between steps).
  void end_step();
  /// Counters of the step begun last.
  DtrStats stats() const;

 private:
  class Backend;
  void before_op(const OpEvent& event);
  void after_op(const OpEvent& event);
  double now_s() const;
  int64_t live_bytes() const;

  Executor& executor_;
  ChainProfile profile_;
  int64_t budget_bytes_;
  int hooks_id_ = -1;
  std::unique_ptr<DtrController> controller_;
  std::unique_ptr<Backend> backend_;
  std::chrono::steady_clock::time_point start_;
  int64_t start_bytes_ = 0;
  bool last_prepare_ok_ = true;
  std::vector<double> forward_start_s_;     // per stage, while its forward runs
  std::vector<double> measured_forward_s_;  // per stage: sum of measured forwards
  std::vector<int> measured_count_;
};

}  // namespace memento::detail
