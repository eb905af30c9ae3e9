#include "memento/core/simulate.h"

#include <algorithm>
#include <cstdint>
#include <unordered_map>
#include <utility>
#include <vector>

#include "memento/core/error.h"

namespace memento {

namespace {

// Storage of activations, counted once however many holders share it. a_j is held by its
// stored copy and by graph j-1 (as its outputs); each copy is made of parts: the storage
// stage j-1 allocated (origin j) and what it passed through from earlier activations
// (StageProfile::output_passthrough). A part is identified by its origin and the
// generation of that origin (every forward of stage k-1 makes a new a_k); holders of the
// same part share its bytes, and a part's live bytes are the largest any holder holds
// (a later activation carries a subset of what an earlier one passed on).
class ActivationStorage {
 public:
  struct Part {
    int origin = 0;
    int generation = 0;
    int64_t bytes = 0;
  };
  using Parts = std::vector<Part>;

  explicit ActivationStorage(int length) : generations_(length + 1, 0) {}

  // The parts of a_{i+1} that stage i produces from `input` (the parts of a_i; empty for
  // a_0, which the fixed bytes hold).
  Parts produce(const StageProfile& stage, int i, const Parts& input) {
    Parts parts;
    parts.push_back({i + 1, ++generations_[i + 1], stage.output_new_bytes()});
    for (const StageProfile::Passthrough& passed : stage.output_passthrough) {
      if (passed.from == 0 || passed.bytes == 0) continue;  // the model input: fixed bytes
      const Part* source = nullptr;
      for (const Part& part : input) {
        if (part.origin == passed.from) source = &part;
      }
      if (source != nullptr) {
        parts.push_back({passed.from, source->generation, passed.bytes});
      } else {
        parts.front().bytes += passed.bytes;  // an origin a_i does not show: counted as new
      }
    }
    return parts;
  }

  // Adds (or removes) holder `slot` of `parts`; returns the change of live bytes.
  int64_t hold(int slot, const Parts& parts, bool held) {
    int64_t change = 0;
    for (const Part& part : parts) {
      Group& group = groups_[key(part)];
      const int64_t before = group.live_bytes();
      if (held) {
        group.holders.emplace_back(slot, part.bytes);
      } else {
        auto& holders = group.holders;
        for (size_t k = 0; k < holders.size(); ++k) {
          if (holders[k].first == slot) {
            holders.erase(holders.begin() + static_cast<std::ptrdiff_t>(k));
            break;
          }
        }
      }
      change += group.live_bytes() - before;
      if (group.holders.empty()) groups_.erase(key(part));
    }
    return change;
  }

 private:
  struct Group {
    std::vector<std::pair<int, int64_t>> holders;  // (slot, bytes it holds)
    int64_t live_bytes() const {
      int64_t bytes = 0;
      for (const auto& holder : holders) bytes = std::max(bytes, holder.second);
      return bytes;
    }
  };
  static uint64_t key(const Part& part) {
    return (static_cast<uint64_t>(part.origin) << 32) | static_cast<uint32_t>(part.generation);
  }

  std::vector<int> generations_;
  std::unordered_map<uint64_t, Group> groups_;
};

// The simulator's state, one flag per activation, graph and gradient (schedule.h).
class ChainState {
 public:
  explicit ChainState(const ChainProfile& profile)
      : profile_(profile),
        length_(profile.length()),
        stored_(length_ + 1, false),
        graph_(length_, false),
        gradient_(length_ + 1, false),
        forward_count_(length_, 0),
        stored_parts_(length_ + 1),
        graph_parts_(length_ + 1),
        storage_(length_) {}

  bool available(int i) const { return i == 0 || stored_[i] || graph_[i - 1]; }

  // Kept up to date by the setters so that every op costs O(parts): planners simulate
  // many candidate schedules of long chains.
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
        // What the output passes through is alive already, in a_i.
        peak = before + stage.output_new_bytes() + stage.no_grad_temp_bytes();
        count_forward(i, result);
        set_stored(i + 1, storage_.produce(stage, i, input_parts(i)));
        if (op.kind == OpKind::ForwardNoGrad && i > 0) clear_stored(i);
        break;
      }
      case OpKind::ForwardWithGraph: {
        if (!available(i))
          fail("its input a_" + std::to_string(i) + " is not available (freed or never computed)");
        if (graph_[i]) fail("the graph of stage " + std::to_string(i) + " is already alive");
        const StageProfile& stage = profile_.stages[i];
        peak = before + stage.saved_bytes + stage.forward_temp_bytes;
        count_forward(i, result);
        set_graph(i, storage_.produce(stage, i, input_parts(i)));
        clear_stored(i + 1);  // the new output inside the graph replaces a stored copy
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
        if (graph_[length_ - 1]) drop_last_outputs();
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
        clear_graph(i);
        set_gradient(i + 1, false);
        if (i > 0) {
          clear_stored(i);
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
        clear_stored(i);
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
  static int stored_slot(int i) { return 2 * i; }
  static int graph_slot(int i) { return 2 * i + 1; }

  // The copy of a_i a forward reads: the stored one first, as the Executor does.
  const ActivationStorage::Parts& input_parts(int i) const {
    return stored_[i] || i == 0 ? stored_parts_[i] : graph_parts_[i];
  }

  void set_stored(int i, ActivationStorage::Parts parts) {
    stored_[i] = true;
    stored_parts_[i] = std::move(parts);
    live_bytes_ += storage_.hold(stored_slot(i), stored_parts_[i], true);
  }
  void clear_stored(int i) {
    if (!stored_[i]) return;
    stored_[i] = false;
    live_bytes_ += storage_.hold(stored_slot(i), stored_parts_[i], false);
    stored_parts_[i].clear();
  }

  // What a graph holds besides its outputs' storage (the outputs are its holder's parts).
  int64_t graph_internal_bytes(int i) const {
    const StageProfile& stage = profile_.stages[i];
    return stage.saved_bytes - stage.output_new_bytes();
  }
  // A graph built after the Loss (the last stage's, rebuilt) keeps only what its backward
  // saved of its outputs, as one that dropped them at the Loss.
  void set_graph(int i, ActivationStorage::Parts outputs) {
    graph_[i] = true;
    if (i == length_ - 1 && gradient_[length_]) {
      dropped_ = true;
      live_bytes_ += profile_.last_graph_after_loss_bytes();
      return;
    }
    graph_parts_[i + 1] = std::move(outputs);
    live_bytes_ += graph_internal_bytes(i) + storage_.hold(graph_slot(i + 1), graph_parts_[i + 1], true);
  }
  void clear_graph(int i) {
    graph_[i] = false;
    if (i == length_ - 1 && dropped_) {
      dropped_ = false;
      live_bytes_ -= profile_.last_graph_after_loss_bytes();
      return;
    }
    live_bytes_ += storage_.hold(graph_slot(i + 1), graph_parts_[i + 1], false) - graph_internal_bytes(i);
    graph_parts_[i + 1].clear();
  }
  // The last stage's graph drops its outputs once the Loss has read them (d_L exists).
  void drop_last_outputs() {
    const int last = length_ - 1;
    live_bytes_ += storage_.hold(graph_slot(length_), graph_parts_[length_], false) -
                   graph_internal_bytes(last) + profile_.last_graph_after_loss_bytes();
    graph_parts_[length_].clear();
    dropped_ = true;
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
  std::vector<ActivationStorage::Parts> stored_parts_;
  std::vector<ActivationStorage::Parts> graph_parts_;  // of a_{i+1}, held by graph i
  ActivationStorage storage_;
  bool dropped_ = false;  // graph L-1 holds no outputs since the Loss
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
