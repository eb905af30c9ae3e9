#include "memento/core/dtr.h"

#include <algorithm>
#include <limits>
#include <string>

#include "memento/core/error.h"

namespace memento {

// ---- DtrPool ------------------------------------------------------------------------

DtrPool::DtrPool(int count)
    : cost_s_(count, 0.0),
      bytes_(count, 0),
      last_access_s_(count, 0.0),
      state_(count, State::Absent),
      neighbours_(count),
      node_of_(count, -1) {}

void DtrPool::add_neighbours(int a, int b) {
  neighbours_.at(a).push_back(b);
  neighbours_.at(b).push_back(a);
}

void DtrPool::set_cost(int id, double cost_s) {
  cost_s_.at(id) = cost_s;
}
void DtrPool::set_bytes(int id, int64_t bytes) {
  bytes_.at(id) = bytes;
}

int DtrPool::find(int node) const {
  while (parent_[node] != node) {
    parent_[node] = parent_[parent_[node]];  // path halving
    node = parent_[node];
  }
  return node;
}

void DtrPool::leave_class(int id) {
  if (node_of_[id] < 0) return;
  const int node = node_of_[id];
  const int root = find(node);
  class_cost_s_[root] = std::max(0.0, class_cost_s_[root] - node_cost_s_[node]);
  node_cost_s_[node] = 0;
  node_of_[id] = -1;
}

void DtrPool::materialize(int id, double now_s) {
  leave_class(id);
  state_.at(id) = State::Resident;
  last_access_s_[id] = now_s;
}

void DtrPool::access(int id, double now_s) {
  last_access_s_.at(id) = now_s;
}

void DtrPool::evict(int id) {
  if (state_.at(id) != State::Resident) return;
  state_[id] = State::Evicted;
  const int node = static_cast<int>(parent_.size());
  parent_.push_back(node);
  class_cost_s_.push_back(cost_s_[id]);
  node_cost_s_.push_back(cost_s_[id]);
  node_of_[id] = node;
  for (int other : neighbours_[id]) {
    if (state_[other] != State::Evicted || node_of_[other] < 0) continue;
    const int a = find(node);
    const int b = find(node_of_[other]);
    if (a == b) continue;
    parent_[b] = a;
    class_cost_s_[a] += class_cost_s_[b];
  }
}

void DtrPool::release(int id) {
  leave_class(id);
  state_.at(id) = State::Absent;
}

double DtrPool::evicted_neighbourhood_cost(int id) const {
  // Distinct classes only: two evicted neighbours in one class count once.
  double total_s = 0;
  std::vector<int> roots;
  for (int other : neighbours_.at(id)) {
    if (state_[other] != State::Evicted || node_of_[other] < 0) continue;
    const int root = find(node_of_[other]);
    if (std::find(roots.begin(), roots.end(), root) != roots.end()) continue;
    roots.push_back(root);
    total_s += class_cost_s_[root];
  }
  return total_s;
}

double DtrPool::score(int id, double now_s) const {
  return score(id, now_s, bytes_.at(id));
}

double DtrPool::score(int id, double now_s, int64_t bytes) const {
  const double staleness_s = std::max(now_s - last_access_s_.at(id), 1e-9);
  const double freed = static_cast<double>(std::max<int64_t>(bytes, 1));
  return (cost_s_.at(id) + evicted_neighbourhood_cost(id)) / (freed * staleness_s);
}

int DtrPool::choose(double now_s, const std::function<bool(int)>& evictable) const {
  int best = -1;
  double best_score = std::numeric_limits<double>::infinity();
  for (int id = 0; id < size(); ++id) {
    if (state_[id] != State::Resident || bytes_[id] <= 0 || !evictable(id)) continue;
    const double h = score(id, now_s);
    if (best < 0 || h < best_score || (h == best_score && bytes_[id] > bytes_[best])) {
      best = id;
      best_score = h;
    }
  }
  return best;
}

// ---- DtrChainState --------------------------------------------------------------------

DtrChainState::DtrChainState(const ChainProfile& profile)
    : profile_(profile), length_(profile.length()), state_(profile_), pool_(2 * length_) {
  for (int i = 0; i < length_; ++i) {
    const StageProfile& stage = profile.stages[i];
    // a_{i+1} and r_i both come from stage i run on a_i: a_i is their neighbour; a_{i+1}
    // is also next to a_{i+2} and r_{i+1}, which read it.
    pool_.set_cost(activation_id(i + 1), stage.forward_s);
    pool_.set_bytes(activation_id(i + 1), stage.output_bytes);
    pool_.set_cost(residual_id(i), stage.forward_s);
    pool_.set_bytes(residual_id(i), stage.saved_beyond_output_bytes());
    if (i > 0) {
      pool_.add_neighbours(activation_id(i), activation_id(i + 1));
      pool_.add_neighbours(activation_id(i), residual_id(i));
    }
  }
}

int DtrChainState::nearest_available_below(int activation) const {
  int from = activation - 1;
  while (from > 0 && !available(from)) --from;
  return std::max(from, 0);
}

int64_t DtrChainState::graph_bytes(int i) const {
  return i == length_ - 1 && state_.gradient(length_) ? profile_.last_graph_after_loss_bytes()
                                                      : profile_.stages[i].saved_bytes;
}

void DtrChainState::on_op(const Op& op, double now_s) {
  const int i = op.stage;
  if (op.is_forward() && i > 0) state_.adopt_stored(i);
  state_.apply(op);
  switch (op.kind) {
    case OpKind::ForwardNoGrad:
    case OpKind::ForwardCheckpoint:
    case OpKind::ForwardLossy:
    case OpKind::ForwardFrozen:
      if (i > 0) pool_.access(activation_id(i), now_s);
      pool_.materialize(activation_id(i + 1), now_s);
      if (op.kind != OpKind::ForwardCheckpoint && i > 0 && !available(i)) pool_.evict(activation_id(i));
      break;
    case OpKind::ForwardWithGraph:
      if (i > 0) pool_.access(activation_id(i), now_s);
      pool_.materialize(activation_id(i + 1), now_s);
      pool_.materialize(residual_id(i), now_s);
      break;
    case OpKind::Loss:
      pool_.access(activation_id(length_), now_s);
      break;
    case OpKind::Backward:
      // Nothing reads r_i, a_{i+1} or a_i after Backward(i): they leave the pool (an
      // a_i still inside graph i-1 goes with that graph's Backward).
      pool_.release(residual_id(i));
      pool_.release(activation_id(i + 1));
      if (i > 0) pool_.release(activation_id(i));
      break;
    case OpKind::Free:
      if (!available(i)) pool_.evict(activation_id(i));
      break;
  }
}

void DtrChainState::on_evicted(const DtrEviction& eviction) {
  const int i = eviction.index;
  switch (eviction.kind) {
    case DtrEviction::Kind::ShrinkGraph:
      state_.shrink_graph(i);
      pool_.evict(residual_id(i));
      break;
    case DtrEviction::Kind::DropGraph:
      state_.drop_graph(i);
      pool_.evict(residual_id(i));
      pool_.evict(activation_id(i + 1));
      break;
    case DtrEviction::Kind::FreeActivation:
      if (!state_.stored(i))
        throw ScheduleError("DTR: cannot free a_" + std::to_string(i) + ": it is not stored");
      state_.apply(Op::free(i));
      pool_.evict(activation_id(i));
      break;
  }
}

void DtrChainState::set_forward_cost(int stage, double forward_s) {
  pool_.set_cost(activation_id(stage + 1), forward_s);
  pool_.set_cost(residual_id(stage), forward_s);
}

std::optional<DtrEviction> DtrChainState::choose_eviction(const std::vector<int>& pinned_activations,
                                                          const std::vector<int>& pinned_graphs,
                                                          double now_s) const {
  auto contains = [](const std::vector<int>& values, int value) {
    return std::find(values.begin(), values.end(), value) != values.end();
  };
  std::optional<DtrEviction> best;
  double best_score = 0;
  int64_t best_bytes = 0;
  auto consider = [&](DtrEviction candidate, int id, int64_t bytes) {
    if (bytes <= 0) return;  // evicting it frees nothing
    const double h = pool_.score(id, now_s, bytes);
    if (!best || h < best_score || (h == best_score && bytes > best_bytes)) {
      best = candidate;
      best_score = h;
      best_bytes = bytes;
    }
  };
  for (int stage = 0; stage < length_; ++stage) {
    if (!graph_alive(stage) || state_.lossy_graph(stage) || contains(pinned_graphs, stage)) continue;
    // After the Loss the last graph has no outputs left to keep: only dropping it whole frees.
    const bool outputs_dropped = stage == length_ - 1 && state_.gradient(length_);
    if (!outputs_dropped) {
      consider({DtrEviction::Kind::ShrinkGraph, stage}, residual_id(stage), pool_.bytes(residual_id(stage)));
    }
    // The whole graph, output included, when nothing needs a_{stage+1} now: the next
    // graph is not alive (it would have saved its input) and the op does not read it.
    // Stages whose graph is just their output (ReLU, Linear) free nothing by shrinking.
    const int output = stage + 1;
    if (!(output < length_ && graph_alive(output)) && !contains(pinned_activations, output) &&
        !stored(output)) {
      consider({DtrEviction::Kind::DropGraph, stage}, activation_id(output), graph_bytes(stage));
    }
  }
  for (int activation = 1; activation <= length_; ++activation) {
    // A live graph i saved its input a_i: freeing the stored copy would free nothing and
    // break Backward(i).
    if (!stored(activation) ||
        (activation < length_ && graph_alive(activation) && !state_.lossy_graph(activation)) ||
        contains(pinned_activations, activation)) {
      continue;
    }
    consider({DtrEviction::Kind::FreeActivation, activation}, activation_id(activation),
             pool_.bytes(activation_id(activation)));
  }
  return best;
}

int64_t DtrChainState::eviction_bytes(const DtrEviction& eviction) const {
  switch (eviction.kind) {
    case DtrEviction::Kind::ShrinkGraph:
      return pool_.bytes(residual_id(eviction.index));
    case DtrEviction::Kind::DropGraph:
      return graph_bytes(eviction.index);
    case DtrEviction::Kind::FreeActivation:
      return pool_.bytes(activation_id(eviction.index));
  }
  return 0;
}

// ---- DtrController ------------------------------------------------------------------

DtrController::DtrController(const ChainProfile& profile, int64_t budget_bytes)
    : chain_(profile), budget_bytes_(budget_bytes) {}

int64_t DtrController::op_bytes(const Op& op) const {
  const ChainState& state = chain_.state();
  if (op.kind == OpKind::Loss || op.kind == OpKind::Free || op.kind == OpKind::ForwardLossy) {
    return state.op_extra_bytes(op);
  }
  const StageProfile& stage = chain_.profile().stages.at(op.stage);
  const int64_t no_grad_bytes = state.op_extra_bytes(Op::forward_checkpoint(op.stage));
  switch (op.kind) {
    case OpKind::ForwardWithGraph:
      return std::max(state.op_extra_bytes(op), no_grad_bytes);
    case OpKind::Backward: {
      const int64_t backward_bytes = state.op_extra_bytes(op);
      if (chain_.graph_alive(op.stage)) return backward_bytes;
      // The rebuild's graph stays for the backward: reserve for both at once, because the
      // runtime sees the Backward before the executor rebuilds the graph inside it.
      return stage.saved_bytes +
             std::max(std::max(stage.forward_temp_bytes, backward_bytes), no_grad_bytes - stage.saved_bytes);
    }
    default:
      return no_grad_bytes;
  }
}

bool DtrController::make_room(int64_t need_bytes, const std::vector<int>& pinned_activations,
                              const std::vector<int>& pinned_graphs, DtrBackend& backend) {
  while (backend.live_bytes() + need_bytes > budget_bytes_) {
    const std::optional<DtrEviction> eviction =
        chain_.choose_eviction(pinned_activations, pinned_graphs, backend.now_s());
    if (!eviction) {
      ++stats_.over_budget_ops;
      return false;
    }
    backend.evict(*eviction);
    chain_.on_evicted(*eviction);
    ++stats_.evictions;
    stats_.evicted_bytes += chain_.eviction_bytes(*eviction);
  }
  return true;
}

bool DtrController::ensure_available(int activation, DtrBackend& backend) {
  if (chain_.available(activation)) return true;
  // One ForwardCheckpoint at a time, each kept: DTR caches what it recomputes and evicts
  // it again only under pressure, unlike a no-grad sweep that drops as it goes.
  for (int stage = chain_.nearest_available_below(activation); stage < activation; ++stage) {
    ++stats_.recomputations;
    if (!backend.recompute(stage)) return false;
  }
  return true;
}

bool DtrController::prepare(const Op& op, DtrBackend& backend) {
  const int i = op.stage;
  switch (op.kind) {
    case OpKind::ForwardNoGrad:
    case OpKind::ForwardCheckpoint:
    case OpKind::ForwardWithGraph:
    case OpKind::ForwardLossy:
    case OpKind::ForwardFrozen:
      if (!ensure_available(i, backend)) return false;
      return make_room(op_bytes(op), {i}, {}, backend);
    case OpKind::Loss:
      if (!ensure_available(chain_.length(), backend)) return false;
      return make_room(op_bytes(op), {chain_.length()}, {}, backend);
    case OpKind::Backward:
      if (chain_.graph_alive(i)) return make_room(op_bytes(op), {i}, {i}, backend);
      if (!ensure_available(i, backend)) return false;
      return make_room(op_bytes(op), {i}, {}, backend);
    case OpKind::Free:
      return true;
  }
  return true;
}

void DtrController::completed(const Op& op, double now_s, std::optional<double> forward_s) {
  if (forward_s && op.is_forward()) chain_.set_forward_cost(op.stage, *forward_s);
  chain_.on_op(op, now_s);
}

}  // namespace memento
