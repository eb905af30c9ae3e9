#include "dtr_runtime.h"

#include <utility>

#include "memento/torch/memory.h"

namespace memento::detail {

// Carries the controller's decisions out on the executor. Recomputation goes through
// Executor::recompute, one stage at a time, so the hooks see each ForwardCheckpoint and
// make room for it exactly as the planner's replay does.
class DtrRuntime::Backend : public DtrBackend {
 public:
  explicit Backend(DtrRuntime& runtime) : runtime_(runtime) {}
  int64_t live_bytes() override { return runtime_.live_bytes(); }
  double now_s() override { return runtime_.now_s(); }
  void evict(const DtrEviction& eviction) override {
    switch (eviction.kind) {
      case DtrEviction::Kind::ShrinkGraph:
        runtime_.executor_.shrink_graph(eviction.index);
        break;
      case DtrEviction::Kind::DropGraph:
        runtime_.executor_.evict_graph(eviction.index);
        break;
      case DtrEviction::Kind::FreeActivation:
        runtime_.executor_.evict(eviction.index);
        break;
    }
  }
  bool recompute(int stage) override {
    runtime_.executor_.recompute(stage + 1);
    return runtime_.last_prepare_ok_;
  }

 private:
  DtrRuntime& runtime_;
};

DtrRuntime::DtrRuntime(Executor& executor, ChainProfile profile, int64_t budget_bytes)
    : executor_(executor),
      profile_(std::move(profile)),
      budget_bytes_(budget_bytes),
      forward_start_s_(profile_.length(), 0.0),
      measured_forward_s_(profile_.length(), 0.0),
      measured_count_(profile_.length(), 0) {
  controller_ = std::make_unique<DtrController>(profile_, budget_bytes_);
  backend_ = std::make_unique<Backend>(*this);
}

DtrRuntime::~DtrRuntime() {
  end_step();
}

void DtrRuntime::begin_step() {
  controller_ = std::make_unique<DtrController>(profile_, budget_bytes_);
  backend_ = std::make_unique<Backend>(*this);
  // Costs measured in earlier steps replace the profile's: the heuristic follows the
  // machine as it runs now.
  for (int stage = 0; stage < profile_.length(); ++stage) {
    if (measured_count_[stage] > 0)
      controller_->chain().set_forward_cost(stage, measured_forward_s_[stage] / measured_count_[stage]);
  }
  end_step();
  ExecutorHooks hooks;
  hooks.before_op = [this](Executor&, const OpEvent& event) { before_op(event); };
  hooks.after_op = [this](Executor&, const OpEvent& event) { after_op(event); };
  hooks_id_ = executor_.add_hooks(std::move(hooks));
  start_bytes_ = MemoryTracker::instance().live_bytes();
  start_ = std::chrono::steady_clock::now();
}

void DtrRuntime::end_step() {
  if (hooks_id_ >= 0) executor_.remove_hooks(hooks_id_);
  hooks_id_ = -1;
}

DtrStats DtrRuntime::stats() const {
  return controller_->stats();
}

double DtrRuntime::now_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

// The budget counts the profile's fixed bytes; what the tracker held when the step began
// stands for them, as `memento verify` measures a step's peak.
int64_t DtrRuntime::live_bytes() const {
  return MemoryTracker::instance().live_bytes() - start_bytes_ + profile_.fixed_bytes;
}

void DtrRuntime::before_op(const OpEvent& event) {
  last_prepare_ok_ = controller_->prepare(event.op, *backend_);
  if (event.op.is_forward()) forward_start_s_[event.op.stage] = now_s();
}

void DtrRuntime::after_op(const OpEvent& event) {
  std::optional<double> forward_s;
  if (event.op.is_forward()) {
    const int stage = event.op.stage;
    measured_forward_s_[stage] += now_s() - forward_start_s_[stage];
    ++measured_count_[stage];
    forward_s = measured_forward_s_[stage] / measured_count_[stage];
  }
  controller_->completed(event.op, now_s(), forward_s);
}

}  // namespace memento::detail
