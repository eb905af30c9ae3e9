#pragma once
/// \file
/// `Executor`: runs one training step (forward, loss, backward) of a `Chain` under any
/// `Schedule` from the core, with the op semantics of memento/core/schedule.h. For the
/// exact ops, parameter and input gradients equal plain LibTorch autograd bit for bit.
///
/// How it works. Every stage runs on its own copies of its input tensors, so the autograd
/// graph of a stage is local: `ForwardWithGraph(i)` keeps that graph, `Backward(i)` runs
/// the autograd engine on it with the incoming gradients d_{i+1} and captures d_i exactly
/// as the engine sums it (no extra copy, no layout change), parameter gradients accumulate
/// in `.grad()` as usual. Stage 0 runs on the real model inputs, so input gradients land
/// in their `.grad()` exactly as in plain autograd. The CPU (and CUDA) generator state
/// is stashed before a stage's first forward and restored around every recomputation, so
/// dropout recomputes bit-identically; module buffers (BatchNorm running statistics) are
/// restored after every recomputation so they are updated once per step.
///
/// In-place ops. A stage may modify its input in place (`ReLU(inplace)`, in-place
/// `Dropout`, `x.mul_(2)`, `x += h`): when a later op reads that input again (a checkpoint
/// recomputed from, a stored activation), the Executor copies the input's storage aside at
/// the first write into it (copy-on-write, seen at the operator's start) and the later op
/// reads the copy, so gradients stay those of plain autograd for every schedule. Where
/// nothing reads the input again (store-all) the write goes through as in plain autograd,
/// at no cost. A write memento cannot see (through `data_ptr()`) that moved the version
/// counter raises RuntimeError naming the stage.
///
/// Errors raised inside a stage (LibTorch's or the user's) come out as one RuntimeError
/// line naming the op and the stage.
///
/// Example:
/// \code
///   memento::Executor executor(chain, loss_function);
///   memento::Plan plan = memento::make_planner("optimal")->plan(profile, memento::PlannerOptions(budget));
///   memento::StepResult result = executor.step(plan.schedule, batch);  // grads accumulate in .grad()
/// \endcode
///
/// Run-time policies (DTR-like eviction, memory-pressure controllers) plug in through
/// `ExecutorHooks`: a hook sees every op before and after it runs and may call `evict()`,
/// `evict_graph()` or `recompute()`; ops whose inputs a hook evicted are recomputed on demand.
/// \code
///   memento::ExecutorHooks hooks;
///   hooks.after_op = [](memento::Executor& ex, const memento::OpEvent& event) {
///     if (event.op.kind == memento::OpKind::ForwardCheckpoint && event.live_bytes > limit_bytes)
///       ex.evict(event.op.stage);  // recomputed from an earlier checkpoint when needed
///   };
///   executor.set_hooks(hooks);
/// \endcode

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "memento/core/planner.h"
#include "memento/core/schedule.h"
#include "memento/torch/chain.h"

namespace memento {

namespace detail {
class WriteWatch;
}

/// What one executed step measured.
struct StepResult {
  double loss = 0;          ///< value of the loss
  double step_s = 0;        ///< wall time of forward + loss + backward
  int64_t start_bytes = 0;  ///< tracker live bytes when the step began
  int64_t peak_bytes = 0;   ///< tracker peak bytes during the step (absolute)
  int64_t end_bytes = 0;    ///< tracker live bytes when the step ended
  double recompute_s = 0;   ///< wall time spent in forwards beyond the first per stage
  int recompute_count = 0;  ///< number of such forwards
  int on_demand_count = 0;  ///< forwards the executor added because a hook evicted something
};

/// One op as a hook sees it.
struct OpEvent {
  int op_index = -1;       ///< index in the schedule; -1 for an op the executor ran on demand
  Op op;                   ///< the op (a forward run on demand is a ForwardCheckpoint/WithGraph)
  bool recompute = false;  ///< a forward beyond the stage's first in this step
  int64_t live_bytes = 0;  ///< tracker live bytes when the event fired
  double elapsed_s = 0;    ///< seconds since the step began
};

/// Callbacks around every op (schedule ops and on-demand recomputations). Empty
/// functions are skipped. Hooks may call the executor's eviction and recompute methods,
/// unless they are `observe_only`.
struct ExecutorHooks {
  std::function<void(class Executor&, const OpEvent&)> before_op;
  std::function<void(class Executor&, const OpEvent&)> after_op;
  /// The hooks only read (gradient proxies, timelines, counters): they never evict or
  /// recompute, so the executor keeps guarding in-place writes by the schedule alone, as
  /// without hooks (acting hooks make it guard every available activation, which copies
  /// more). evict(), evict_graph() and shrink_graph() throw when only observers are installed.
  bool observe_only = false;
};

/// Interprets schedules for one chain and loss. A new schedule may be given every step.
class Executor {
 public:
  Executor(std::shared_ptr<Chain> chain, LossFunction loss);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  /// Runs `schedule` on `batch`, accumulating parameter (and input) gradients.
  /// Throws ScheduleError naming the op for an invalid schedule (checked before anything
  /// runs) and RuntimeError naming the stage when a recomputed stage differs in shape,
  /// dtype or device from its first run.
  StepResult step(const Schedule& schedule, const Batch& batch);

  /// Runs the schedule of a static `plan`. Throws InvalidArgument when the plan is
  /// infeasible (see require_feasible) or names a run-time policy (run it with PlanRunner).
  StepResult step(const Plan& plan, const Batch& batch);

  /// Installs hooks for the following steps (replaces all earlier ones).
  void set_hooks(ExecutorHooks hooks);
  /// Adds a set of hooks beside the installed ones (a policy and an observer, e.g. DTR's
  /// eviction and a memory timeline); they fire in the order added. Returns an id for
  /// `remove_hooks`.
  int add_hooks(ExecutorHooks hooks);
  /// Removes hooks added by `add_hooks`; no effect for an unknown id.
  void remove_hooks(int id);

  Chain& chain() const { return *chain_; }

  /// State queries and run-time actions, valid while a step runs (from a hook); they
  /// throw RuntimeError outside a step. Activation a_i, 0 <= i <= L, as in schedule.h.
  bool in_step() const;
  bool available(int activation) const;  ///< a_i is stored or inside a live graph
  bool stored(int activation) const;     ///< a stored (no-graph) copy of a_i exists
  bool graph_alive(int stage) const;     ///< the autograd graph of stage i is alive
  /// Bytes of the distinct storages of a_i (0 when not available).
  int64_t activation_bytes(int activation) const;
  /// The gradient d_i of activation a_i, 1 <= i <= L, while it exists: from the op that
  /// produces it (Loss for d_L, Backward(i) for d_i) until Backward(i-1) consumes it;
  /// nullptr otherwise. A before_op hook of Backward(i) sees d_{i+1}, the gradient of
  /// stage i's output (what GradientProxyRecorder measures).
  const TensorList* activation_gradient(int activation) const;
  /// Drops the stored copy of a_i (1 <= i <= L). Throws ScheduleError when graph i is
  /// alive (its Backward needs a_i) or a_i is not stored.
  void evict(int activation);
  /// Drops the graph of stage i (and with it a_{i+1} unless stored); Backward(i) rebuilds
  /// it on demand.
  void evict_graph(int stage);
  /// Drops the graph of stage i but keeps its output a_{i+1} as a stored copy (the state
  /// ForwardCheckpoint(i) leaves): frees what autograd saved besides the output.
  /// Backward(i) rebuilds the graph on demand. Throws ScheduleError when it is not alive.
  void shrink_graph(int stage);
  /// Makes a_i available by recomputing from the nearest available activation before it
  /// (ForwardCheckpoint ops, reported to the hooks with op_index -1); no-op when available.
  void recompute(int activation);

 private:
  friend class PlannedChain;
  struct State;
  class CallerGraphBackward;
  void begin_state(const Schedule& schedule, Batch batch, bool in_caller_graph);
  void run_ops(const Schedule& schedule, int first, int end);
  TensorList forward_in_caller_graph(const std::shared_ptr<Executor>& self, const Schedule& schedule,
                                     const TensorList& inputs);
  void run_op(const Op& op, int op_index);
  void run_forward(const Op& op, int op_index);
  std::vector<int> guarded_activations(int stage, OpKind kind, int op_index) const;
  void keep_pristine(const std::vector<int>& guarded, const detail::WriteWatch& watch,
                     const std::string& where);
  void check_recomputed_outputs(int stage, const TensorList& outputs) const;
  void run_loss(int op_index);
  void run_backward(int stage, int op_index);
  void fire(bool after, const Op& op, int op_index, bool recompute);
  State& state() const;

  std::shared_ptr<Chain> chain_;
  LossFunction loss_;
  std::vector<std::pair<int, ExecutorHooks>> hooks_;
  int next_hooks_id_ = 0;
  std::unique_ptr<State> state_;
};

/// Throws ScheduleError (naming the op) unless `schedule` is a complete, valid schedule
/// for a chain of `chain.length()` stages (the check Executor::step makes first).
void check_schedule(const Chain& chain, const Schedule& schedule);

/// One plain step for comparison: `chain.forward(inputs)`, the loss, `loss.backward()`,
/// measured the same way as `Executor::step` (recompute fields are zero).
StepResult plain_step(Chain& chain, const LossFunction& loss, const Batch& batch);

}  // namespace memento
