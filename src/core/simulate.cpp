#include "memento/core/simulate.h"

#include <algorithm>

#include "memento/core/error.h"

namespace memento {

namespace {

// The simulator's state, one flag per activation, graph and gradient (schedule.h).
class ChainState {
 public:
  explicit ChainState(const ChainProfile& profile)
      : profile_(profile),
        length_(profile.length()),
        stored_(length_ + 1, false),
        graph_(length_, false),
        gradient_(length_ + 1, false),
        forward_count_(length_, 0) {}

  bool available(int i) const { return i == 0 || stored_[i] || graph_[i - 1]; }

  // Kept up to date by the setters so that every op costs O(1): planners simulate many
  // candidate schedules of long chains.
  int64_t live_bytes() const { return live_bytes_; }

  // Applies `op` and returns the peak live bytes while it ran.
  int64_t apply(const Op& op, int op_index, SimulationResult& result) {
    const int i = op.stage;
    auto fail = [&](const std::string& why) {
      throw ScheduleError("op " + std::to_string(op_index) + " (" + to_string(op) + "): " + why);
    };
    if (op.kind != OpKind::Loss && (i < 0 || i > length_ || (op.kind != OpKind::Free && i == length_))) {
      fail("stage " + std::to_string(i) + " is outside the chain of " + std::to_string(length_) + " stages");
    }
    const int64_t before = live_bytes();
    int64_t peak = before;
    switch (op.kind) {
      case OpKind::ForwardNoGrad:
      case OpKind::ForwardCheckpoint: {
        if (!available(i))
          fail("its input a_" + std::to_string(i) + " is not available (freed or never computed)");
        if (available(i + 1)) fail("its output a_" + std::to_string(i + 1) + " is already available");
        const StageProfile& stage = profile_.stages[i];
        peak = before + stage.output_bytes + stage.no_grad_temp_bytes();
        count_forward(i, result);
        set_stored(i + 1, true);
        if (op.kind == OpKind::ForwardNoGrad && i > 0) set_stored(i, false);
        break;
      }
      case OpKind::ForwardWithGraph: {
        if (!available(i))
          fail("its input a_" + std::to_string(i) + " is not available (freed or never computed)");
        if (graph_[i]) fail("the graph of stage " + std::to_string(i) + " is already alive");
        const StageProfile& stage = profile_.stages[i];
        peak = before + stage.saved_bytes + stage.forward_temp_bytes;
        count_forward(i, result);
        set_graph(i, true);
        set_stored(i + 1, false);  // the new output inside the graph replaces a stored copy
        break;
      }
      case OpKind::Loss: {
        if (!available(length_)) fail("the model output a_" + std::to_string(length_) + " is not available");
        if (gradient_[length_]) fail("the loss gradient already exists");
        // A stored a_L (no graph) stays until Free(L); a graph's outputs are dropped inside
        // the op, after the loss's forward, so its transients may meet them freed already.
        peak = before + profile_.activation_bytes(length_) + profile_.loss_temp_bytes +
               (stored_[length_] ? profile_.stages.back().output_droppable_bytes : 0);
        set_gradient(length_, true);
        if (graph_[length_ - 1]) live_bytes_ -= profile_.stages.back().output_droppable_bytes;
        break;
      }
      case OpKind::Backward: {
        if (!graph_[i])
          fail("the graph of stage " + std::to_string(i) + " is not alive (never built or already used)");
        if (!gradient_[i + 1]) {
          fail("the gradient of its output a_" + std::to_string(i + 1) + " does not exist yet" +
               (i + 1 == length_ ? " (run Loss first)"
                                 : " (run Backward(" + std::to_string(i + 1) + ") first)"));
        }
        if (!available(i)) fail("its input a_" + std::to_string(i) + " is not available");
        const StageProfile& stage = profile_.stages[i];
        peak = before + stage.backward_peak_extra_bytes(i > 0);
        result.time_s += stage.backward_s;
        set_graph(i, false);
        set_gradient(i + 1, false);
        if (i > 0) {
          set_stored(i, false);
          set_gradient(i, true);
        }
        break;
      }
      case OpKind::Free: {
        if (i < 1) fail("a_0, the model input, is never freed");
        if (!stored_[i]) fail("a_" + std::to_string(i) + " is not stored");
        if (i < length_ && graph_[i]) {
          fail("the graph of stage " + std::to_string(i) + " is alive and its Backward needs a_" +
               std::to_string(i));
        }
        set_stored(i, false);
        break;
      }
    }
    return peak;
  }

  void check_complete(int op_count) const {
    auto fail = [&](const std::string& why) {
      throw ScheduleError("schedule of " + std::to_string(op_count) + " ops is incomplete: " + why);
    };
    for (int i = 0; i < length_; ++i) {
      if (forward_count_[i] == 0) fail("stage " + std::to_string(i) + " never runs forward");
      if (graph_[i])
        fail("the graph of stage " + std::to_string(i) + " is still alive (its Backward never ran)");
    }
    for (int i = 1; i <= length_; ++i) {
      if (gradient_[i])
        fail("the gradient of a_" + std::to_string(i) + " is still alive (Backward(" + std::to_string(i - 1) +
             ") never ran)");
      if (stored_[i])
        fail("a_" + std::to_string(i) + " is still stored at the end (add Free(" + std::to_string(i) + "))");
    }
    if (!backward_done_) fail("Backward(0) never ran");
  }

  void mark_backward(int i) {
    if (i == 0) backward_done_ = true;
  }

 private:
  // A stored a_i costs its bytes unless graph i-1 holds the same tensor as its output.
  void set_stored(int i, bool value) {
    if (stored_[i] == value) return;
    stored_[i] = value;
    if (i >= 1 && !graph_[i - 1]) live_bytes_ += (value ? 1 : -1) * profile_.activation_bytes(i);
  }
  // The last stage's graph drops its outputs once the Loss has run (d_L exists).
  int64_t graph_bytes(int i) const {
    return i == length_ - 1 && gradient_[length_] ? profile_.last_graph_after_loss_bytes()
                                                  : profile_.stages[i].saved_bytes;
  }
  void set_graph(int i, bool value) {
    if (graph_[i] == value) return;
    graph_[i] = value;
    const int64_t sign = value ? 1 : -1;
    live_bytes_ += sign * graph_bytes(i);
    if (stored_[i + 1]) live_bytes_ -= sign * profile_.activation_bytes(i + 1);
  }
  void set_gradient(int i, bool value) {
    if (gradient_[i] == value) return;
    gradient_[i] = value;
    live_bytes_ += (value ? 1 : -1) * profile_.activation_bytes(i);
  }

  void count_forward(int i, SimulationResult& result) {
    const StageProfile& stage = profile_.stages[i];
    result.time_s += stage.forward_s;
    if (forward_count_[i]++ > 0) {
      result.recompute_s += stage.forward_s;
      result.recompute_flops += stage.flops;
      ++result.recompute_count;
    }
  }

  const ChainProfile& profile_;
  int length_;
  std::vector<bool> stored_;
  std::vector<bool> graph_;
  std::vector<bool> gradient_;
  std::vector<int> forward_count_;
  bool backward_done_ = false;
  int64_t live_bytes_ = profile_.fixed_bytes;
};

}  // namespace

SimulationResult simulate(const ChainProfile& profile, const Schedule& schedule) {
  if (profile.stages.empty()) throw ScheduleError("cannot simulate a profile with no stages");
  ChainState state(profile);
  SimulationResult result;
  result.peak_bytes = state.live_bytes();
  result.timeline.reserve(schedule.size());
  for (int index = 0; index < static_cast<int>(schedule.size()); ++index) {
    const Op& op = schedule[index];
    const int64_t op_peak = state.apply(op, index, result);
    if (op.kind == OpKind::Backward) state.mark_backward(op.stage);
    result.peak_bytes = std::max(result.peak_bytes, op_peak);
    result.timeline.push_back({index, op, op_peak, state.live_bytes(), result.time_s});
  }
  state.check_complete(static_cast<int>(schedule.size()));
  return result;
}

}  // namespace memento
