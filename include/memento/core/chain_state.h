#pragma once
/// \file
/// `ChainState`: the one op state machine of schedule.h. It holds which activations are
/// stored, which graphs are alive (exact or lossy) and which gradients exist, applies ops
/// with their requirements checked, and counts live and peak bytes with the memory model
/// of simulate.h. `simulate()` replays a schedule with it; the DTR engine (dtr.h) drives
/// it op by op and through its evictions. The optimal planner's closed forms and the
/// exhaustive test oracle stay independent of it on purpose: they check it.
///
/// Example:
/// \code
///   memento::ChainState state(profile);
///   int64_t peak = state.apply(memento::Op::forward_with_graph(0));
///   bool ready = state.available(1);      // a_1 lives in graph 0
///   int64_t live = state.live_bytes();    // fixed bytes + what graph 0 saved
/// \endcode

#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "memento/core/profile.h"
#include "memento/core/schedule.h"

namespace memento {

namespace detail {

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
  Parts produce(const StageProfile& stage, int i, const Parts& input);
  // A new copy of a_i of `bytes` that shares no storage with any other.
  Parts fresh(int i, int64_t bytes) { return {{i, ++generations_.at(i), bytes}}; }
  // Adds (or removes) holder `slot` of `parts`; returns the change of live bytes.
  int64_t hold(int slot, const Parts& parts, bool held);

 private:
  struct Group {
    std::vector<std::pair<int, int64_t>> holders;  // (slot, bytes it holds)
    int64_t live_bytes() const;
  };
  static uint64_t key(const Part& part) {
    return (static_cast<uint64_t>(part.origin) << 32) | static_cast<uint32_t>(part.generation);
  }

  std::vector<int> generations_;
  std::unordered_map<uint64_t, Group> groups_;
};

}  // namespace detail

/// What the ops applied so far cost in time and recomputation (simulate.h's fields).
struct StepCounters {
  double time_s = 0;
  double recompute_s = 0;
  int recompute_count = 0;
  double recompute_flops = 0;
};

/// The state of one step's chain under schedule.h's semantics, with its live bytes.
/// Keeps a pointer to `profile`, which must outlive it.
class ChainState {
 public:
  explicit ChainState(const ChainProfile& profile);
  ChainState(const ChainState&) = delete;
  ChainState& operator=(const ChainState&) = delete;

  const ChainProfile& profile() const { return *profile_; }
  int length() const { return length_; }

  /// a_i is available: i == 0, or stored, or held by an exact graph i-1 as its output.
  bool available(int i) const { return i == 0 || stored_[i] || (graph_[i - 1] && !lossy_graph(i - 1)); }
  bool stored(int i) const { return stored_.at(i); }
  bool graph_alive(int stage) const { return graph_.at(stage); }
  /// The codec of live graph `stage` (Codec::None for an exact graph or none alive).
  Codec graph_codec(int stage) const { return graph_codec_.at(stage); }
  bool lossy_graph(int stage) const { return graph_[stage] && is_lossy(graph_codec_[stage]); }
  bool gradient(int i) const { return gradient_.at(i); }
  /// Stage `stage` ran ForwardFrozen this step (it has no backward).
  bool frozen(int stage) const { return frozen_.at(stage); }
  /// Live bytes now, fixed bytes included (simulate.h's memory model).
  int64_t live_bytes() const { return live_bytes_; }
  const StepCounters& counters() const { return counters_; }

  /// What `op` adds on top of live_bytes() at its peak, by the profile (its requirements
  /// are not checked here; apply() checks them). A ForwardLossy whose codec the profile
  /// lacks throws ScheduleError.
  int64_t op_extra_bytes(const Op& op) const;
  /// Applies `op`, checking its requirements (ScheduleError "op <op_index> (Fg3): why"),
  /// and returns the peak live bytes while it ran.
  int64_t apply(const Op& op, int op_index = -1);

  /// Evictions (DTR): graph `stage` (exact, its outputs not dropped) becomes a stored copy
  /// of its output, as if ForwardCheckpoint had run instead.
  void shrink_graph(int stage);
  /// Drops graph `stage`, output included.
  void drop_graph(int stage);
  /// Marks a_i stored, at its full size, when it is not available: the Executor kept a copy
  /// no op made (the pristine input of a stage that writes into it in place), and an engine
  /// that mirrors the Executor (DTR) learns of it when a forward reads it.
  void adopt_stored(int i);

  /// Throws ScheduleError unless the step is complete: every stage ran forward, Backward(0)
  /// ran and nothing but a_0 is alive.
  void check_complete(int op_count) const;

 private:
  static int stored_slot(int i) { return 2 * i; }
  static int graph_slot(int i) { return 2 * i + 1; }

  void apply_forward(const Op& op, const std::string& where);
  void apply_loss(const std::string& where);
  void apply_backward(int i, const std::string& where);
  void apply_free(int i, const std::string& where);
  const StageProfile::LossyCost& lossy_cost(int stage, Codec codec) const;
  const detail::ActivationStorage::Parts& input_parts(int i) const;
  void set_stored(int i, detail::ActivationStorage::Parts parts);
  void clear_stored(int i);
  int64_t graph_internal_bytes(int i) const;
  void set_graph(int i, detail::ActivationStorage::Parts outputs);
  void set_lossy_graph(int i, Codec codec);
  void clear_graph(int i);
  void drop_last_outputs();
  void set_gradient(int i, bool value);
  void count_forward(int i, double extra_s);

  const ChainProfile* profile_;
  int length_;
  std::vector<bool> stored_;
  std::vector<bool> graph_;
  std::vector<Codec> graph_codec_;
  std::vector<bool> gradient_;
  std::vector<int> forward_count_;
  std::vector<bool> frozen_;
  std::vector<detail::ActivationStorage::Parts> stored_parts_;
  std::vector<detail::ActivationStorage::Parts> graph_parts_;  // of a_{i+1}, held by graph i
  detail::ActivationStorage storage_;
  bool dropped_ = false;  // graph L-1 holds no outputs since the Loss
  bool backward_done_ = false;
  int64_t live_bytes_ = 0;
  StepCounters counters_;
};

}  // namespace memento
