#include "memento/torch/executor.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <string>
#include <utility>

#include <torch/csrc/autograd/engine.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/variable.h>

#include "memento/core/error.h"
#include "memento/core/profile.h"
#include "memento/core/simulate.h"
#include "memento/torch/memory.h"
#include "memento/torch/saved_tensor_hooks.h"
#include "replay_state.h"
#include "stage_errors.h"
#include "write_watch.h"

namespace memento {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

int64_t distinct_storage_bytes(const TensorList& tensors) {
  std::vector<const void*> seen;
  int64_t bytes = 0;
  for (const torch::Tensor& tensor : tensors) {
    if (!tensor.defined() || !tensor.has_storage()) continue;
    const void* key = tensor.storage().unsafeGetStorageImpl();
    bool known = false;
    for (const void* other : seen) known = known || other == key;
    if (known) continue;
    seen.push_back(key);
    bytes += static_cast<int64_t>(tensor.storage().nbytes());
  }
  return bytes;
}

bool is_differentiable(const torch::Tensor& tensor) {
  return tensor.defined() && torch::autograd::isDifferentiableType(tensor.scalar_type());
}

// Ends a step's state however the step ends (an exception from a stage included).
template <class State>
struct ResetOnExit {
  std::unique_ptr<State>& state;
  ~ResetOnExit() { state.reset(); }
};
template <class State>
ResetOnExit(std::unique_ptr<State>&) -> ResetOnExit<State>;

void synchronize_if_cuda(const TensorList& tensors) {
  for (const torch::Tensor& tensor : tensors) {
    if (tensor.defined() && tensor.is_cuda()) {
      torch::cuda::synchronize(tensor.device().index());
      return;
    }
  }
}

}  // namespace

// Everything one step holds, indexed as in schedule.h.
struct Executor::State {
  struct Graph {
    TensorList inputs;  // what the stage read (boundary tensors, or the real inputs for stage 0)
    // a_{i+1} with its autograd history. The last stage's graph, once the loss has read
    // a_L, keeps only where d_L enters it (outputs.drop()): its backward needs no more, and
    // plain autograd frees the model output (the logits) just as early. What the backward
    // saved of the outputs stays with the graph.
    detail::GraphOutputs outputs;
    std::shared_ptr<TensorList> input_gradients;
    size_t input_count = 0;
    // A lossy graph (ForwardLossy) keeps its saved tensors packed and none of its inputs or
    // outputs: its output is stored apart, its inputs are packed copies inside it.
    bool lossy = false;
  };

  int length = 0;
  Batch batch;
  Clock::time_point start;
  StepResult result;
  std::vector<std::optional<TensorList>> stored;     // a_0 .. a_L (a_0 always set)
  std::vector<std::optional<Graph>> graphs;          // stage 0 .. L-1
  std::vector<std::optional<TensorList>> gradients;  // d_0 .. d_L
  std::vector<std::vector<char>> needs_grad;         // per tensor of a_i: its stage reads it with grad
  std::vector<int> forward_count;
  std::vector<char> frozen;  // stage ran ForwardFrozen: no backward, no gradient below it
  std::vector<std::vector<detail::TensorSignature>> signatures;
  std::vector<std::optional<detail::RngSnapshot>> rng;  // before each stage's first forward
  // Op indices of the ops that read a_i (stage i's forwards; the Loss for a_L) and of those
  // that produce it anew (stage i-1's forwards): an a_i read again must survive in-place writes.
  std::vector<std::vector<int>> reads;
  std::vector<std::vector<int>> produces;
  bool hooked = false;  // hooks may recompute from any available activation at any time
  // A PlannedChain's step: stage 0 reads its inputs through a boundary too, and d_0 goes
  // back to the caller's graph instead of the inputs' .grad().
  bool in_caller_graph = false;
  TensorList input_gradients;
  size_t output_count = 0;   // tensors in a_L, set when the Loss (or the hand-out) reads it
  TensorList kept_by_lossy;  // what a lossy forward never packs: parameters, buffers, the batch

  bool graph_holds_output(int i) const { return i > 0 && graphs[i - 1] && !graphs[i - 1]->outputs.dropped(); }
  // A stored copy comes first: after a stage wrote into a_i in place, stored[i] holds the
  // values a_i had (copy-on-write) while graph i-1's output holds the written ones.
  const TensorList& activation(int i) const {
    if (stored[i]) return *stored[i];
    return graphs[i - 1]->outputs.tensors;
  }

  void index_reads(const Schedule& schedule) {
    reads.assign(length + 1, {});
    produces.assign(length + 1, {});
    for (int k = 0; k < static_cast<int>(schedule.size()); ++k) {
      const Op& op = schedule[k];
      if (op.is_forward()) {
        reads[op.stage].push_back(k);
        produces[op.stage + 1].push_back(k);
      } else if (op.kind == OpKind::Loss) {
        reads[length].push_back(k);
      }
    }
  }

  // Whether a_i as it is before op `op_index` is read by a later op (before it is produced anew).
  bool read_later(int i, int op_index) const {
    const std::vector<int>& r = reads[i];
    const auto next_read = std::upper_bound(r.begin(), r.end(), op_index);
    if (next_read == r.end()) return false;
    const std::vector<int>& p = produces[i];
    const auto next_produce = std::lower_bound(p.begin(), p.end(), op_index);
    return next_produce == p.end() || *next_produce >= *next_read;
  }
};

// The end of a PlannedChain's forward in the caller's graph: the handed-out a_L leads here,
// and its backward runs the schedule's ops after Loss with the gradients the caller's
// backward delivers, then passes d_0 on to the inputs.
class Executor::CallerGraphBackward : public torch::autograd::Node {
 public:
  CallerGraphBackward(torch::autograd::edge_list&& next_edges, std::shared_ptr<Executor> executor,
                      std::unique_ptr<State> state, Schedule schedule, int loss_index)
      : Node(std::move(next_edges)),
        executor_(std::move(executor)),
        state_(std::move(state)),
        schedule_(std::move(schedule)),
        loss_index_(loss_index) {}

  std::string name() const override { return "memento::PlannedChainBackward"; }

  torch::autograd::variable_list apply(torch::autograd::variable_list&& gradients) override {
    if (!state_) {
      throw RuntimeError(
          "PlannedChain: a second backward through the same forward; each forward's backward runs once "
          "(retain_graph is not supported): run forward again");
    }
    if (torch::GradMode::is_enabled()) {
      throw RuntimeError(
          "PlannedChain: backward with create_graph=true (double backward) is not supported; run the chain "
          "without a plan for higher-order gradients");
    }
    if (executor_->state_) {
      throw RuntimeError("PlannedChain: backward ran while its executor was inside another step");
    }
    executor_->state_ = std::move(state_);
    const ResetOnExit reset{executor_->state_};
    State& s = *executor_->state_;
    gradients.resize(s.output_count);
    s.gradients[s.length] = std::move(gradients);
    executor_->run_ops(schedule_, loss_index_ + 1, static_cast<int>(schedule_.size()));
    TensorList input_gradients = std::move(s.input_gradients);
    input_gradients.resize(num_outputs());
    return input_gradients;
  }

  void release_variables() override { state_.reset(); }

 private:
  std::shared_ptr<Executor> executor_;
  std::unique_ptr<State> state_;
  Schedule schedule_;
  int loss_index_;
};
Executor::Executor(std::shared_ptr<Chain> chain, LossFunction loss)
    : chain_(std::move(chain)), loss_(std::move(loss)) {
  if (!chain_) throw InvalidArgument("Executor needs a chain, got a null pointer");
  if (chain_->length() == 0) throw InvalidArgument("Executor needs a chain with at least one stage");
  if (!loss_) throw InvalidArgument("Executor needs a loss function");
  MemoryTracker::instance();
}

Executor::~Executor() = default;

void Executor::set_hooks(ExecutorHooks hooks) {
  hooks_.clear();
  add_hooks(std::move(hooks));
}

int Executor::add_hooks(ExecutorHooks hooks) {
  const int id = next_hooks_id_++;
  hooks_.emplace_back(id, std::move(hooks));
  return id;
}

void Executor::remove_hooks(int id) {
  hooks_.erase(
      std::remove_if(hooks_.begin(), hooks_.end(), [id](const auto& entry) { return entry.first == id; }),
      hooks_.end());
}

bool Executor::in_step() const {
  return state_ != nullptr;
}

Executor::State& Executor::state() const {
  if (!state_)
    throw RuntimeError("the executor's state is only available while a step runs (call from a hook)");
  return *state_;
}

bool Executor::available(int activation) const {
  const State& s = state();
  if (activation < 0 || activation > s.length) return false;
  return activation == 0 || s.stored[activation].has_value() || s.graph_holds_output(activation);
}

bool Executor::stored(int activation) const {
  const State& s = state();
  return activation >= 0 && activation <= s.length && s.stored[activation].has_value();
}

bool Executor::graph_alive(int stage) const {
  const State& s = state();
  return stage >= 0 && stage < s.length && s.graphs[stage].has_value();
}

const TensorList* Executor::activation_gradient(int activation) const {
  const State& s = state();
  if (activation < 1 || activation > s.length || !s.gradients[activation]) return nullptr;
  return &*s.gradients[activation];
}

int64_t Executor::activation_bytes(int activation) const {
  if (!available(activation)) return 0;
  return distinct_storage_bytes(state().activation(activation));
}

namespace {

// Evictions come from hooks that act; with observers only, the in-place guards were set
// for the schedule alone and an eviction could make a later op read a modified input.
void require_acting_hooks(bool hooked) {
  if (!hooked) {
    throw RuntimeError(
        "evictions need hooks installed without ExecutorHooks::observe_only (these guard every available "
        "activation against in-place writes)");
  }
}

}  // namespace

void Executor::evict(int activation) {
  State& s = state();
  require_acting_hooks(s.hooked);
  const std::string name = "a_" + std::to_string(activation);
  if (activation < 1 || activation > s.length) {
    throw ScheduleError("cannot evict " + name + ": only a_1 .. a_" + std::to_string(s.length) +
                        " can be evicted (a_0 is the model input)");
  }
  if (!s.stored[activation]) throw ScheduleError("cannot evict " + name + ": it is not stored");
  if (activation < s.length && s.graphs[activation]) {
    throw ScheduleError("cannot evict " + name + ": the graph of stage " + std::to_string(activation) +
                        " is alive and its Backward needs it");
  }
  s.stored[activation].reset();
}

void Executor::evict_graph(int stage) {
  State& s = state();
  require_acting_hooks(s.hooked);
  if (stage < 0 || stage >= s.length || !s.graphs[stage]) {
    throw ScheduleError("cannot evict the graph of stage " + std::to_string(stage) + ": it is not alive");
  }
  s.graphs[stage].reset();
}

void Executor::shrink_graph(int stage) {
  State& s = state();
  require_acting_hooks(s.hooked);
  if (stage < 0 || stage >= s.length || !s.graphs[stage]) {
    throw ScheduleError("cannot shrink the graph of stage " + std::to_string(stage) + ": it is not alive");
  }
  if (s.graphs[stage]->outputs.dropped()) {
    throw ScheduleError("cannot shrink the graph of stage " + std::to_string(stage) +
                        ": its outputs were dropped after the loss; evict the whole graph instead");
  }
  // Detached, the output no longer holds the stage's autograd history, so dropping the
  // graph frees every saved tensor except the output's own storage. A stored copy made
  // when a later stage wrote into the output in place already holds the right values.
  TensorList outputs =
      s.stored[stage + 1] ? *s.stored[stage + 1] : detail::detach_all(s.graphs[stage]->outputs.tensors);
  s.graphs[stage].reset();
  s.stored[stage + 1] = std::move(outputs);
}

void Executor::recompute(int activation) {
  State& s = state();
  if (activation < 0 || activation > s.length) {
    throw ScheduleError("cannot recompute a_" + std::to_string(activation) +
                        ": the chain has activations a_0 .. a_" + std::to_string(s.length));
  }
  if (available(activation)) return;
  int from = activation - 1;
  while (!available(from)) --from;  // a_0 is always available
  for (int stage = from; stage < activation; ++stage) {
    const Op op = stage == from ? Op::forward_checkpoint(stage) : Op::forward_no_grad(stage);
    const bool again = s.forward_count[stage] > 0;
    fire(false, op, -1, again);
    run_forward(op, -1);
    ++s.result.on_demand_count;
    fire(true, op, -1, again);
  }
}

void Executor::fire(bool after, const Op& op, int op_index, bool recompute) {
  // A copy: a hook may add or remove hooks while it runs.
  const std::vector<std::pair<int, ExecutorHooks>> hooks = hooks_;
  for (const auto& entry : hooks) {
    const auto& hook = after ? entry.second.after_op : entry.second.before_op;
    if (!hook) continue;
    OpEvent event;
    event.op_index = op_index;
    event.op = op;
    event.recompute = recompute;
    event.live_bytes = MemoryTracker::instance().live_bytes();
    event.elapsed_s = seconds_since(state().start);
    hook(*this, event);
  }
}

void Executor::begin_state(const Schedule& schedule, Batch batch, bool in_caller_graph) {
  if (state_) throw RuntimeError("Executor::step called from inside a running step (from a hook?)");
  const int length = chain_->length();
  if (batch.inputs.empty())
    throw InvalidArgument("the batch has no input tensors for the chain's first stage");
  if (schedule.empty()) {
    throw InvalidArgument(
        "the schedule is empty; an infeasible Plan has no schedule: check Plan::feasible and "
        "Plan::min_feasible_budget_bytes before running it, or pass the Plan itself to Executor::step");
  }
  // The simulator is the contract: a schedule it rejects never starts, so a bad schedule
  // cannot leave half-accumulated gradients behind.
  check_schedule(*chain_, schedule);
  state_ = std::make_unique<State>();
  State& s = *state_;
  s.length = length;
  s.batch = std::move(batch);
  s.in_caller_graph = in_caller_graph;
  s.hooked =
      std::any_of(hooks_.begin(), hooks_.end(), [](const auto& entry) { return !entry.second.observe_only; });
  s.stored.assign(length + 1, std::nullopt);
  s.graphs.assign(length, std::nullopt);
  s.gradients.assign(length + 1, std::nullopt);
  s.needs_grad.assign(length + 1, {});
  s.forward_count.assign(length, 0);
  s.frozen.assign(length, 0);
  s.signatures.assign(length, {});
  s.rng.assign(length, std::nullopt);
  s.index_reads(schedule);
  s.stored[0] = s.batch.inputs;
  if (is_lossy(schedule)) {
    s.kept_by_lossy = s.batch.inputs;
    for (const torch::Tensor& parameter : chain_->parameters()) s.kept_by_lossy.push_back(parameter);
    for (const torch::Tensor& buffer : chain_->buffers()) s.kept_by_lossy.push_back(buffer);
  }
  for (const torch::Tensor& input : s.batch.inputs)
    s.needs_grad[0].push_back(input.defined() && input.requires_grad());
}

void Executor::run_ops(const Schedule& schedule, int first, int end) {
  State& s = state();
  for (int index = first; index < end; ++index) {
    const Op& op = schedule[index];
    const bool again = op.is_forward() && s.forward_count[op.stage] > 0;
    fire(false, op, index, again);
    run_op(op, index);
    fire(true, op, index, again);
  }
}

StepResult Executor::step(const Schedule& schedule, const Batch& batch) {
  MemoryTracker& tracker = MemoryTracker::instance();
  begin_state(schedule, batch, /*in_caller_graph=*/false);
  const ResetOnExit reset{state_};
  State& s = *state_;
  s.result.start_bytes = tracker.live_bytes();
  tracker.reset_peak();
  s.start = Clock::now();
  run_ops(schedule, 0, static_cast<int>(schedule.size()));
  // Whatever a hook left behind (a recomputed copy nobody freed) goes with the step.
  s.stored.clear();
  s.graphs.clear();
  s.gradients.clear();
  synchronize_if_cuda(batch.inputs);
  s.result.step_s = seconds_since(s.start);
  s.result.peak_bytes = tracker.peak_bytes();
  StepResult result = s.result;
  state_.reset();
  result.end_bytes = tracker.live_bytes();
  return result;
}

StepResult Executor::step(const Plan& plan, const Batch& batch) {
  require_feasible(plan);
  if (!plan.runtime_policy.empty()) {
    throw InvalidArgument("plan of planner " + plan.planner + " decides at run time (runtime_policy \"" +
                          plan.runtime_policy + "\"); run it with PlanRunner, which installs that policy");
  }
  return step(plan.schedule, batch);
}

TensorList Executor::forward_in_caller_graph(const std::shared_ptr<Executor>& self, const Schedule& schedule,
                                             const TensorList& inputs) {
  const auto loss_at = std::find(schedule.begin(), schedule.end(), Op::loss());
  begin_state(schedule, Batch{inputs, {}}, /*in_caller_graph=*/true);
  const ResetOnExit reset{state_};
  State& s = *state_;
  s.start = Clock::now();
  const int loss_index = static_cast<int>(loss_at - schedule.begin());
  run_ops(schedule, 0, loss_index);
  if (!available(s.length)) recompute(s.length);

  torch::autograd::edge_list next_edges;
  for (const torch::Tensor& input : inputs) {
    const bool wants_grad = input.defined() && input.requires_grad();
    next_edges.push_back(wants_grad ? torch::autograd::impl::gradient_edge(input) : torch::autograd::Edge());
  }
  const TensorList outputs = s.activation(s.length);
  const std::vector<char> needs_grad = s.needs_grad[s.length];
  s.output_count = outputs.size();
  // As after the Loss op: the last graph keeps only where d_L enters it; the caller's
  // tensors hold the outputs' storage as long as the caller's graph needs them.
  if (s.graphs[s.length - 1]) s.graphs[s.length - 1]->outputs.drop();
  auto node = std::make_shared<CallerGraphBackward>(std::move(next_edges), self, std::move(state_), schedule,
                                                    loss_index);
  return detail::make_boundary(outputs, needs_grad, *node);
}

void Executor::run_op(const Op& op, int op_index) {
  State& s = state();
  switch (op.kind) {
    case OpKind::ForwardNoGrad:
    case OpKind::ForwardCheckpoint:
    case OpKind::ForwardWithGraph:
    case OpKind::ForwardLossy:
    case OpKind::ForwardFrozen:
      if (!available(op.stage)) recompute(op.stage);
      run_forward(op, op_index);
      break;
    case OpKind::Loss:
      if (!available(s.length)) recompute(s.length);
      run_loss(op_index);
      break;
    case OpKind::Backward:
      run_backward(op.stage, op_index);
      break;
    case OpKind::Free:
      // A hook may have evicted it already; otherwise drop the stored copy.
      if (!s.graphs.empty() && op.stage < s.length && s.graphs[op.stage] && !s.graphs[op.stage]->lossy) {
        throw ScheduleError("op " + std::to_string(op_index) + " (" + to_string(op) +
                            "): the graph of stage " + std::to_string(op.stage) +
                            " is alive and its Backward needs a_" + std::to_string(op.stage));
      }
      s.stored[op.stage].reset();
      break;
  }
}

// The activations a later op reads again, which stage `stage`'s forward must leave as they
// are. With hooks (or on demand) any activation still available afterwards may be read.
std::vector<int> Executor::guarded_activations(int stage, OpKind kind, int op_index) const {
  const bool drops_input =
      kind == OpKind::ForwardNoGrad || kind == OpKind::ForwardLossy || kind == OpKind::ForwardFrozen;
  const State& s = state();
  std::vector<int> guarded;
  const bool any_time = s.hooked || op_index < 0;
  for (int m = 0; m <= s.length; ++m) {
    if (m == stage + 1 || !available(m)) continue;  // a_{i+1} is produced anew by this op
    if (any_time) {
      const bool dropped = m == stage && drops_input && stage > 0 && !s.graph_holds_output(stage);
      if (!dropped) guarded.push_back(m);
    } else if (s.read_later(m, op_index)) {
      guarded.push_back(m);
    }
  }
  return guarded;
}

void Executor::check_recomputed_outputs(int stage, const TensorList& outputs) const {
  detail::check_recomputed_signatures(
      state().signatures[stage], outputs,
      "stage " + std::to_string(stage) + " (\"" + chain_->stage_name(stage) + "\")");
}

void Executor::run_forward(const Op& op, int op_index) {
  State& s = state();
  const int stage = op.stage;
  const OpKind kind = op.kind;
  const bool with_graph = op.builds_graph();
  const bool lossy = kind == OpKind::ForwardLossy;
  const std::string where = (op_index >= 0 ? "op " + std::to_string(op_index) + " (" + to_string(op) + ")"
                                           : "on-demand " + to_string(op)) +
                            ", stage " + std::to_string(stage) + " (\"" + chain_->stage_name(stage) + "\")";
  if (with_graph && s.graphs[stage]) {
    throw ScheduleError(where + ": the graph of stage " + std::to_string(stage) + " is already alive");
  }
  const bool recomputing = s.forward_count[stage] > 0;
  const TensorList inputs = s.activation(stage);
  if (!recomputing) s.rng[stage] = detail::RngSnapshot::capture(inputs);

  const std::vector<int> guarded = guarded_activations(stage, kind, op_index);
  std::optional<detail::WriteWatch> watch;
  if (!guarded.empty()) {
    TensorList tensors;
    for (int m : guarded) tensors.insert(tensors.end(), s.activation(m).begin(), s.activation(m).end());
    watch.emplace(tensors);
  }

  const auto start = Clock::now();
  TensorList outputs;
  std::optional<State::Graph> graph;
  {
    MemoryScope scope(MemoryCategory::Activations);
    detail::RngReplayGuard rng(recomputing && s.rng[stage] ? &*s.rng[stage] : nullptr);
    std::optional<detail::StateRestoreGuard> running_stats;
    if (recomputing) running_stats.emplace(detail::running_statistics(&chain_->stage(stage)));
    if (with_graph) {
      graph.emplace();
      if (stage == 0 && !s.in_caller_graph) {
        // The real inputs: their gradients reach .grad() (or the user's graph) as in plain autograd.
        graph->inputs = inputs;
      } else {
        graph->input_gradients = std::make_shared<TensorList>();
        auto boundary = std::make_shared<detail::GradientSink>(graph->input_gradients);
        graph->inputs = detail::make_boundary(inputs, s.needs_grad[stage], *boundary);
      }
      graph->input_count = graph->inputs.size();
      graph->lossy = lossy;
      torch::AutoGradMode enable_grad(true);
      std::optional<SavedTensorHooks> packing;
      if (lossy) {
        SaveAsOptions options;
        options.keep = s.kept_by_lossy;
        packing.emplace(save_as(op.codec, std::move(options)));
      }
      outputs = detail::with_context(where, [&] { return chain_->forward_stage(stage, graph->inputs); });
    } else {
      torch::NoGradGuard no_grad;
      const TensorList detached = detail::detach_all(inputs);
      outputs = detail::with_context(where, [&] { return chain_->forward_stage(stage, detached); });
      // Which outputs the next stage reads with grad: a graph run says exactly (below);
      // a frozen stage none (nothing below it gets a gradient); otherwise any
      // differentiable tensor except a pass-through of a no-grad input.
      if (kind == OpKind::ForwardFrozen) {
        s.frozen[stage] = 1;
        s.needs_grad[stage + 1].assign(outputs.size(), 0);
      } else if (s.needs_grad[stage + 1].empty()) {
        std::vector<char>& needs = s.needs_grad[stage + 1];
        for (const torch::Tensor& output : outputs) {
          bool wants_grad = is_differentiable(output);
          for (size_t k = 0; wants_grad && k < detached.size(); ++k) {
            const bool input_needs = k < s.needs_grad[stage].size() && s.needs_grad[stage][k];
            if (detached[k].defined() && output.unsafeGetTensorImpl() == detached[k].unsafeGetTensorImpl()) {
              wants_grad = input_needs;
            }
          }
          needs.push_back(wants_grad);
        }
      }
    }
  }
  const double forward_s = seconds_since(start);
  if (watch) keep_pristine(guarded, *watch, where);

  if (!recomputing) {
    s.signatures[stage] = detail::signatures_of(outputs);
    if (s.rng[stage] && s.rng[stage]->unchanged()) s.rng[stage].reset();  // draws no random numbers
  } else {
    check_recomputed_outputs(stage, outputs);
    ++s.result.recompute_count;
    s.result.recompute_s += forward_s;
  }
  ++s.forward_count[stage];

  if (with_graph) {
    std::vector<char>& needs = s.needs_grad[stage + 1];
    needs.clear();
    for (const torch::Tensor& output : outputs) needs.push_back(output.defined() && output.requires_grad());
    if (lossy) {
      // The next stages read the output from its stored copy; the graph keeps only where
      // the output's gradient enters it, and packed copies of what it saved.
      s.stored[stage + 1] = detail::detach_all(outputs);
      graph->outputs.tensors = std::move(outputs);
      graph->outputs.drop();
      if (stage > 0 || s.in_caller_graph) graph->inputs.clear();
      s.graphs[stage] = std::move(graph);
      if (stage > 0) s.stored[stage].reset();
      return;
    }
    graph->outputs.tensors = std::move(outputs);
    // Rebuilt after the Loss, the last graph needs its outputs no more than before.
    if (stage == s.length - 1 && s.gradients[s.length]) graph->outputs.drop();
    s.graphs[stage] = std::move(graph);
    s.stored[stage + 1].reset();  // the output inside the graph replaces a stored copy
  } else {
    s.stored[stage + 1] = std::move(outputs);
    if (kind != OpKind::ForwardCheckpoint && stage > 0) s.stored[stage].reset();
  }
}

// After a forward that wrote into guarded activations in place: each of them reads the
// copy of its storage made before the first write (their own tensors, and any graph output
// among them, hold the written values, as in plain autograd).
void Executor::keep_pristine(const std::vector<int>& guarded, const detail::WriteWatch& watch,
                             const std::string& where) {
  State& s = state();
  if (!watch.unseen_writes().empty()) {
    throw RuntimeError(where +
                       " modified a stored activation in place without an operator memento can see (a write "
                       "through data_ptr()?), and a later op reads it again; write the stage out of place");
  }
  if (!watch.copied()) return;
  for (int m : guarded) {
    const TensorList& now = s.activation(m);
    TensorList pristine = watch.pristine(now);
    bool changed = false;
    for (size_t k = 0; k < now.size(); ++k) {
      if (!now[k].defined() || pristine[k].unsafeGetTensorImpl() == now[k].unsafeGetTensorImpl()) continue;
      changed = true;
      if (m == 0 && now[k].requires_grad()) {
        throw RuntimeError(where + " modifies model input " + std::to_string(k) +
                           " in place, and that input requires grad; plain autograd refuses this for a leaf "
                           "too: write the stage out of place, or pass the input without requires_grad");
      }
    }
    if (changed) s.stored[m] = std::move(pristine);
  }
}

void Executor::run_loss(int op_index) {
  State& s = state();
  const int length = s.length;
  s.output_count = s.activation(length).size();
  auto gradients = std::make_shared<TensorList>();
  torch::Tensor loss;
  const std::string where = "op " + std::to_string(op_index) + " (L), the loss function";
  {
    MemoryScope scope(MemoryCategory::Activations);
    auto boundary = std::make_shared<detail::GradientSink>(gradients);
    const TensorList local = detail::make_boundary(s.activation(length), s.needs_grad[length], *boundary);
    torch::AutoGradMode enable_grad(true);
    loss = detail::with_context(where, [&] { return loss_(local, s.batch.targets); });
  }
  // Before the loss's backward, as plain autograd: what the loss saved of a_L stays.
  if (s.graphs[length - 1]) s.graphs[length - 1]->outputs.drop();
  if (!loss.defined() || loss.numel() != 1) {
    throw RuntimeError(where + " must return a scalar tensor");
  }
  s.result.loss = loss.item<double>();
  if (!loss.requires_grad()) {
    throw RuntimeError(where +
                       ": the loss does not require grad; the chain has no trainable parameter on the path "
                       "to the loss (check requires_grad of the parameters)");
  }
  {
    MemoryScope scope(MemoryCategory::Gradients);
    detail::with_context(where + " (its backward)", [&] { torch::autograd::backward({loss}); });
  }
  loss = torch::Tensor();
  gradients->resize(s.output_count);
  s.gradients[length] = std::move(*gradients);
}

void Executor::run_backward(int stage, int op_index) {
  State& s = state();
  const std::string where = "op " + std::to_string(op_index) + " (B" + std::to_string(stage) + "), stage " +
                            std::to_string(stage) + " (\"" + chain_->stage_name(stage) + "\")";
  if (!s.gradients[stage + 1]) {
    throw ScheduleError(where + ": the gradient of a_" + std::to_string(stage + 1) + " does not exist");
  }
  if (!s.graphs[stage]) {
    // A hook evicted the graph: rebuild it on demand.
    if (!available(stage)) recompute(stage);
    const Op op = Op::forward_with_graph(stage);
    const bool again = s.forward_count[stage] > 0;
    fire(false, op, -1, again);
    run_forward(op, -1);
    ++s.result.on_demand_count;
    fire(true, op, -1, again);
  }
  State::Graph graph = std::move(*s.graphs[stage]);
  s.graphs[stage].reset();
  TensorList incoming = std::move(*s.gradients[stage + 1]);
  s.gradients[stage + 1].reset();

  {
    MemoryScope scope(MemoryCategory::Gradients);
    detail::with_context(where, [&] { graph.outputs.run_backward(incoming); });
  }
  if (stage > 0 || s.in_caller_graph) {
    TensorList d = graph.input_gradients ? std::move(*graph.input_gradients) : TensorList{};
    d.resize(graph.input_count);
    if (stage > 0) {
      if (!s.frozen[stage - 1]) s.gradients[stage] = std::move(d);
      s.stored[stage].reset();
    } else {
      s.input_gradients = std::move(d);
    }
  }
}

void check_schedule(const Chain& chain, const Schedule& schedule) {
  // Unit sizes suffice: the checks are about which ops may follow which.
  ChainProfile unit;
  unit.model = "executor check";
  for (int i = 0; i < chain.length(); ++i) {
    StageProfile stage;
    stage.name = chain.stage_name(i);
    stage.input_bytes = stage.output_bytes = stage.saved_bytes = 1;
    for (Codec codec : lossy_codecs()) stage.lossy.push_back({codec, 1, 0, 0, 0.0, 0.0});
    unit.stages.push_back(stage);
  }
  simulate(unit, schedule);
}

StepResult plain_step(Chain& chain, const LossFunction& loss_function, const Batch& batch) {
  MemoryTracker& tracker = MemoryTracker::instance();
  StepResult result;
  result.start_bytes = tracker.live_bytes();
  tracker.reset_peak();
  const auto start = Clock::now();
  torch::Tensor loss;
  {
    MemoryScope scope(MemoryCategory::Activations);
    TensorList outputs = chain.forward(batch.inputs);
    loss = loss_function(outputs, batch.targets);
  }
  result.loss = loss.item<double>();
  {
    MemoryScope scope(MemoryCategory::Gradients);
    loss.backward();
  }
  loss = torch::Tensor();
  synchronize_if_cuda(batch.inputs);
  result.step_s = seconds_since(start);
  result.peak_bytes = tracker.peak_bytes();
  result.end_bytes = tracker.live_bytes();
  return result;
}

}  // namespace memento
