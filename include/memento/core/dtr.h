#pragma once
/// \file
/// Dynamic Tensor Rematerialization (Kirisame et al., ICLR 2021) on a chain: one engine
/// that both the `dtr` planner (simulated, profile costs) and the runtime policy
/// (PlanRunner, measured memory and times) drive, so they take the same decisions.
///
/// Three layers, smallest first:
/// - `DtrPool`: the paper's bookkeeping for any set of tensors: compute cost, bytes, last
///   access, resident/evicted state and the equivalence classes of evicted neighbours
///   (union-find); it answers "which tensor to evict next" by the smallest
///   h = (cost + e*) / (bytes x staleness), e* being the summed cost of the evicted
///   classes adjacent to the tensor (the paper's h_DTR-eq).
/// - `DtrChainState`: the chain of schedule.h seen as a DTR pool. Its tensors are the
///   activations a_1..a_L and the *residuals* r_i of the stage graphs (saved_bytes less
///   the output a_{i+1} they contain). Evicting r_i shrinks graph i to a stored a_{i+1}
///   (what ForwardCheckpoint(i) would have left); a graph whose output nothing needs now
///   can also be dropped whole (its output scored with the graph's bytes, for stages
///   whose graph is just their output); evicting a stored a_i drops it (Free).
///   It mirrors which activations are stored and which graphs are alive, and the live
///   bytes the profile predicts for that state.
/// - `DtrController`: the policy. Before an op it recomputes missing inputs (one
///   ForwardCheckpoint at a time, from the nearest available activation) and evicts until
///   the op fits under the budget; after an op it records what the op did. It acts on a
///   `DtrBackend`: the planner's backend appends ops to a schedule and counts bytes with
///   the profile, the runtime's backend calls the Executor and reads the MemoryTracker.
///
/// Example (the planner's use, in short):
/// \code
///   memento::DtrController controller(profile, budget_bytes);
///   MyBackend backend(controller);                  // implements memento::DtrBackend
///   for (const memento::Op& op : memento::store_all_schedule(profile.length())) {
///     if (!controller.prepare(op, backend)) { /* cannot fit: infeasible */ }
///     backend.run(op);                              // then controller.completed(op, ...)
///   }
/// \endcode

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "memento/core/chain_state.h"
#include "memento/core/profile.h"
#include "memento/core/schedule.h"

namespace memento {

/// The DTR bookkeeping of a set of tensors numbered 0..count-1.
///
/// Example:
/// \code
///   memento::DtrPool pool(3);
///   pool.add_neighbours(0, 1);
///   pool.add_neighbours(1, 2);
///   for (int id = 0; id < 3; ++id) { pool.set_cost(id, 1.0); pool.set_bytes(id, 100); pool.materialize(id,
///   0.0); } pool.evict(0); double h1 = pool.score(1, 2.0);  // (1 + 1) / (100 x 2): a_0's class adds its
///   cost int next = pool.choose(2.0, [](int id) { return id != 1; });  // 2
/// \endcode
class DtrPool {
 public:
  explicit DtrPool(int count);

  int size() const { return static_cast<int>(cost_s_.size()); }
  /// Declares that a and b are adjacent (one is an input of the op that computes the
  /// other): evicted adjacent tensors share an equivalence class.
  void add_neighbours(int a, int b);
  void set_cost(int id, double cost_s);
  void set_bytes(int id, int64_t bytes);
  double cost(int id) const { return cost_s_.at(id); }
  int64_t bytes(int id) const { return bytes_.at(id); }

  bool resident(int id) const { return state_.at(id) == State::Resident; }
  bool evicted(int id) const { return state_.at(id) == State::Evicted; }

  /// The tensor was computed (first time or recomputed): resident, accessed at now_s. A
  /// recomputed tensor leaves its class; the class keeps its other members and loses the
  /// tensor's cost (union-find cannot split a class; the paper does the same).
  void materialize(int id, double now_s);
  /// The tensor was read at now_s (staleness restarts).
  void access(int id, double now_s);
  /// The tensor was evicted: it joins the classes of its evicted neighbours.
  void evict(int id);
  /// The tensor is gone for good (its last use ran): it leaves the pool and its class.
  void release(int id);

  /// e*: summed cost of the distinct evicted classes adjacent to `id`.
  double evicted_neighbourhood_cost(int id) const;
  /// h = (cost + e*) / (bytes x staleness); staleness = now_s - last access (at least a
  /// nanosecond, so a tensor used this instant is the last choice rather than a division by 0).
  double score(int id, double now_s) const;
  /// The score as if evicting `id` freed `bytes` (a graph dropped with its output frees
  /// the output's and the residual's bytes for one recomputation).
  double score(int id, double now_s, int64_t bytes) const;
  /// The resident tensor of smallest score among those `evictable` accepts and whose bytes
  /// are positive (evicting nothing frees nothing); ties go to the larger, then the lower
  /// id. -1 when there is none.
  int choose(double now_s, const std::function<bool(int)>& evictable) const;

 private:
  enum class State { Absent, Resident, Evicted };
  int find(int node) const;
  void leave_class(int id);

  std::vector<double> cost_s_;
  std::vector<int64_t> bytes_;
  std::vector<double> last_access_s_;
  std::vector<State> state_;
  std::vector<std::vector<int>> neighbours_;
  // Union-find over *eviction records*, not tensors: a tensor evicted again gets a fresh
  // node, so a recomputed tensor never drags its old class along.
  std::vector<int> node_of_;  // -1 when not evicted
  mutable std::vector<int> parent_;
  std::vector<double> class_cost_s_;  // valid at roots
  std::vector<double> node_cost_s_;   // the cost each record added to its class
};

/// One eviction on a chain: shrink a graph to its output, drop a whole graph (output
/// included), or drop a stored activation.
struct DtrEviction {
  enum class Kind { ShrinkGraph, DropGraph, FreeActivation };
  Kind kind = Kind::FreeActivation;
  int index = 0;  ///< the stage (ShrinkGraph, DropGraph) or the activation a_index (FreeActivation)
  bool operator==(const DtrEviction& other) const { return kind == other.kind && index == other.index; }
};

/// The chain's state as DTR sees it: the op state machine of chain_state.h, which counts
/// its live bytes, and the pool of its tensors. DTR never builds lossy graphs and never
/// evicts one.
///
/// Example:
/// \code
///   memento::DtrChainState chain(profile);
///   chain.on_forward(memento::Op::forward_with_graph(0), 0.01);
///   int64_t live = chain.model_live_bytes();  // fixed bytes + saved bytes of stage 0
/// \endcode
class DtrChainState {
 public:
  explicit DtrChainState(const ChainProfile& profile);
  DtrChainState(const DtrChainState&) = delete;
  DtrChainState& operator=(const DtrChainState&) = delete;

  int length() const { return length_; }
  const ChainProfile& profile() const { return profile_; }
  bool available(int activation) const { return state_.available(activation); }
  bool stored(int activation) const { return state_.stored(activation); }
  bool graph_alive(int stage) const { return state_.graph_alive(stage); }
  const ChainState& state() const { return state_; }
  /// Largest j < activation with a_j available (a_0 always is).
  int nearest_available_below(int activation) const;
  /// Live bytes of this state by the profile's sizes (simulate.h's memory model).
  int64_t model_live_bytes() const { return state_.live_bytes(); }

  /// Records an op that ran (a forward of any kind, Loss, Backward, Free) at now_s.
  void on_op(const Op& op, double now_s);
  /// Records an eviction (the backend already carried it out).
  void on_evicted(const DtrEviction& eviction);
  /// A measured forward time of a stage: the cost of recomputing its output and residual.
  void set_forward_cost(int stage, double forward_s);

  /// The eviction DTR picks now, with `pinned_activations` and `pinned_graphs` (those the
  /// op about to run needs) excluded; nullopt when nothing is evictable.
  std::optional<DtrEviction> choose_eviction(const std::vector<int>& pinned_activations,
                                             const std::vector<int>& pinned_graphs, double now_s) const;
  /// Bytes an eviction frees by the profile.
  int64_t eviction_bytes(const DtrEviction& eviction) const;

  const DtrPool& pool() const { return pool_; }

 private:
  int activation_id(int activation) const { return activation - 1; }
  int residual_id(int stage) const { return length_ + stage; }
  int64_t graph_bytes(int i) const;  // saved bytes; the last graph without its outputs after the Loss

  ChainProfile profile_;
  int length_;
  ChainState state_;  // refers to profile_
  DtrPool pool_;
};

/// What the controller acts on: the planner's simulation or the runtime's executor.
class DtrBackend {
 public:
  virtual ~DtrBackend() = default;
  /// Live bytes of the whole step now (fixed bytes included), as the budget counts them.
  virtual int64_t live_bytes() = 0;
  /// The clock staleness is measured on (seconds).
  virtual double now_s() = 0;
  /// Carries out an eviction (the controller records it afterwards).
  virtual void evict(const DtrEviction& eviction) = 0;
  /// Runs ForwardCheckpoint(stage) now, to make a_{stage+1} available. The backend calls
  /// the controller's prepare() and completed() around it (the runtime does so from its
  /// hooks); returns false when prepare() could not make it fit.
  virtual bool recompute(int stage) = 0;
};

/// Counters of one step of a controller.
struct DtrStats {
  int evictions = 0;
  int64_t evicted_bytes = 0;  ///< by the profile's sizes
  int recomputations = 0;     ///< ForwardCheckpoint ops the controller asked for
  int over_budget_ops = 0;    ///< ops that could not be made to fit (the runtime runs them anyway)
};

/// The DTR policy for one training step under a budget.
///
/// Example (runtime side, from an executor hook):
/// \code
///   memento::DtrController controller(profile, budget_bytes);
///   // before_op:  controller.prepare(event.op, backend);
///   // after_op:   controller.completed(event.op, backend.now_s(), measured_forward_s);
/// \endcode
class DtrController {
 public:
  DtrController(const ChainProfile& profile, int64_t budget_bytes);

  /// Bytes `op` adds on top of the live bytes while it runs: a forward with graph counts
  /// the larger of its graph and a no-grad forward's footprint (the planner may emit it
  /// as ForwardCheckpoint, see docs/planners.md); a Backward whose graph is gone counts
  /// its rebuild too.
  int64_t op_bytes(const Op& op) const;
  /// Before `op` runs: recomputes what it reads (a Backward's input too, when its graph
  /// must be rebuilt) and evicts until live + op_bytes(op) <= budget. Returns false when
  /// that is impossible (everything evictable is gone).
  bool prepare(const Op& op, DtrBackend& backend);
  /// After `op` ran at now_s; `forward_s`, when given, is its measured duration.
  void completed(const Op& op, double now_s, std::optional<double> forward_s = std::nullopt);

  int64_t budget_bytes() const { return budget_bytes_; }
  const DtrChainState& chain() const { return chain_; }
  DtrChainState& chain() { return chain_; }
  const DtrStats& stats() const { return stats_; }

 private:
  bool make_room(int64_t need_bytes, const std::vector<int>& pinned_activations,
                 const std::vector<int>& pinned_graphs, DtrBackend& backend);
  bool ensure_available(int activation, DtrBackend& backend);

  DtrChainState chain_;
  int64_t budget_bytes_;
  DtrStats stats_;
};

}  // namespace memento
