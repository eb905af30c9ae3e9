#include "memento/core/chain_state.h"

#include <algorithm>

#include "memento/core/error.h"

namespace memento {

namespace detail {

ActivationStorage::Parts ActivationStorage::produce(const StageProfile& stage, int i, const Parts& input) {
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

int64_t ActivationStorage::hold(int slot, const Parts& parts, bool held) {
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

int64_t ActivationStorage::Group::live_bytes() const {
  int64_t bytes = 0;
  for (const auto& holder : holders) bytes = std::max(bytes, holder.second);
  return bytes;
}

}  // namespace detail

ChainState::ChainState(const ChainProfile& profile)
    : profile_(&profile),
      length_(profile.length()),
      stored_(length_ + 1, false),
      graph_(length_, false),
      graph_codec_(length_, Codec::None),
      gradient_(length_ + 1, false),
      forward_count_(length_, 0),
      frozen_(length_, false),
      stored_parts_(length_ + 1),
      graph_parts_(length_ + 1),
      storage_(length_),
      live_bytes_(profile.fixed_bytes) {}

const StageProfile::LossyCost& ChainState::lossy_cost(int stage, Codec codec) const {
  const StageProfile::LossyCost* cost = profile_->stages.at(stage).lossy_cost(codec);
  if (cost == nullptr) {
    throw ScheduleError("stage " + std::to_string(stage) + " has no measured costs for codec " +
                        codec_name(codec) + "; profile with --codecs " + codec_name(codec) +
                        " (ProfilerOptions::codecs)");
  }
  return *cost;
}

int64_t ChainState::op_extra_bytes(const Op& op) const {
  const ChainProfile& profile = *profile_;
  if (op.kind == OpKind::Loss) {
    // A stored a_L (no graph) stays until Free(L); a graph's outputs are dropped inside
    // the op, after the loss's forward, so its transients may meet them freed already.
    return profile.activation_bytes(length_) + profile.loss_temp_bytes +
           (stored_[length_] ? profile.stages.back().output_droppable_bytes : 0);
  }
  if (op.kind == OpKind::Free) return 0;
  const StageProfile& stage = profile.stages.at(op.stage);
  switch (op.kind) {
    case OpKind::ForwardNoGrad:
    case OpKind::ForwardCheckpoint:
    case OpKind::ForwardFrozen:
      // What the output passes through is alive already, in a_i.
      return stage.output_new_bytes() + stage.no_grad_temp_bytes();
    case OpKind::ForwardWithGraph:
      return stage.saved_bytes + stage.forward_temp_bytes;
    case OpKind::ForwardLossy: {
      const StageProfile::LossyCost& cost = lossy_cost(op.stage, op.codec);
      return stage.output_new_bytes() + cost.saved_bytes + cost.forward_temp_bytes;
    }
    case OpKind::Backward: {
      if (lossy_graph(op.stage)) {
        const StageProfile::LossyCost& cost = lossy_cost(op.stage, graph_codec_[op.stage]);
        return std::max<int64_t>((op.stage > 0 ? stage.input_bytes : 0) + cost.backward_temp_bytes, 0);
      }
      return stage.backward_peak_extra_bytes(op.stage > 0);
    }
    default:
      return 0;
  }
}

int64_t ChainState::apply(const Op& op, int op_index) {
  const int i = op.stage;
  const std::string where =
      (op_index >= 0 ? "op " + std::to_string(op_index) + " (" : "op (") + to_string(op) + ")";
  if (op.kind != OpKind::Loss && (i < 0 || i > length_ || (op.kind != OpKind::Free && i == length_))) {
    throw ScheduleError(where + ": stage " + std::to_string(i) + " is outside the chain of " +
                        std::to_string(length_) + " stages");
  }
  if (op.kind == OpKind::ForwardLossy && !is_lossy(op.codec)) {
    throw ScheduleError(where + ": a lossy forward needs a lossy codec (bf16, fp16, int8, int4)");
  }
  const int64_t before = live_bytes_;
  int64_t extra = 0;
  switch (op.kind) {
    case OpKind::ForwardNoGrad:
    case OpKind::ForwardCheckpoint:
    case OpKind::ForwardWithGraph:
    case OpKind::ForwardLossy:
    case OpKind::ForwardFrozen:
      if (!available(i))
        throw ScheduleError(where + ": its input a_" + std::to_string(i) +
                            " is not available (freed or never computed)");
      try {
        extra = op_extra_bytes(op);
      } catch (const ScheduleError& error) {
        throw ScheduleError(where + ": " + error.what());
      }
      apply_forward(op, where);
      break;
    case OpKind::Loss:
      if (!available(length_))
        throw ScheduleError(where + ": the model output a_" + std::to_string(length_) + " is not available");
      extra = op_extra_bytes(op);
      apply_loss(where);
      break;
    case OpKind::Backward:
      extra = op_extra_bytes(op);
      apply_backward(i, where);
      break;
    case OpKind::Free:
      apply_free(i, where);
      break;
  }
  return before + extra;
}

void ChainState::apply_forward(const Op& op, const std::string& where) {
  const int i = op.stage;
  const StageProfile& stage = profile_->stages[i];
  auto fail = [&](const std::string& why) { throw ScheduleError(where + ": " + why); };
  if (frozen_[i]) fail("stage " + std::to_string(i) + " is frozen (ForwardFrozen ran): it runs no other op");
  switch (op.kind) {
    case OpKind::ForwardFrozen:
      if (i > 0 && !frozen_[i - 1]) {
        fail("stage " + std::to_string(i - 1) + " is not frozen; only a prefix of the chain can be frozen");
      }
      if (gradient_[length_]) fail("a stage is frozen in the forward, before the Loss");
      frozen_[i] = true;
      [[fallthrough]];
    case OpKind::ForwardNoGrad:
    case OpKind::ForwardCheckpoint:
      if (available(i + 1)) fail("its output a_" + std::to_string(i + 1) + " is already available");
      count_forward(i, 0);
      set_stored(i + 1, storage_.produce(stage, i, input_parts(i)));
      if (op.kind != OpKind::ForwardCheckpoint && i > 0) clear_stored(i);
      break;
    case OpKind::ForwardWithGraph:
      if (graph_[i]) fail("the graph of stage " + std::to_string(i) + " is already alive");
      count_forward(i, 0);
      set_graph(i, storage_.produce(stage, i, input_parts(i)));
      clear_stored(i + 1);  // the new output inside the graph replaces a stored copy
      break;
    case OpKind::ForwardLossy: {
      if (graph_[i]) fail("the graph of stage " + std::to_string(i) + " is already alive");
      count_forward(i, lossy_cost(i, op.codec).pack_s);
      detail::ActivationStorage::Parts output = storage_.produce(stage, i, input_parts(i));
      clear_stored(i + 1);
      set_stored(i + 1, std::move(output));
      set_lossy_graph(i, op.codec);
      // The graph packed its own copy of what it saved of a_i.
      if (i > 0) clear_stored(i);
      break;
    }
    default:
      break;
  }
}

void ChainState::apply_loss(const std::string& where) {
  if (gradient_[length_]) throw ScheduleError(where + ": the loss gradient already exists");
  set_gradient(length_, true);
  if (graph_[length_ - 1] && !lossy_graph(length_ - 1)) drop_last_outputs();
}

void ChainState::apply_backward(int i, const std::string& where) {
  auto fail = [&](const std::string& why) { throw ScheduleError(where + ": " + why); };
  if (frozen_[i]) fail("stage " + std::to_string(i) + " is frozen: it has no backward");
  if (!graph_[i])
    fail("the graph of stage " + std::to_string(i) + " is not alive (never built or already used)");
  if (!gradient_[i + 1]) {
    fail("the gradient of its output a_" + std::to_string(i + 1) + " does not exist yet" +
         (i + 1 == length_ ? " (run Loss first)" : " (run Backward(" + std::to_string(i + 1) + ") first)"));
  }
  const bool lossy = lossy_graph(i);
  if (!lossy && !available(i)) fail("its input a_" + std::to_string(i) + " is not available");
  counters_.time_s +=
      profile_->stages[i].backward_s + (lossy ? lossy_cost(i, graph_codec_[i]).unpack_s : 0.0);
  clear_graph(i);
  set_gradient(i + 1, false);
  if (i > 0) clear_stored(i);
  if (i > 0 && !frozen_[i - 1]) {
    set_gradient(i, true);
  } else {
    backward_done_ = true;  // the input gradient of stage 0, or of the first stage after a frozen prefix
  }
}

void ChainState::apply_free(int i, const std::string& where) {
  if (i < 1) throw ScheduleError(where + ": a_0, the model input, is never freed");
  if (!stored_[i]) throw ScheduleError(where + ": a_" + std::to_string(i) + " is not stored");
  if (i < length_ && graph_[i] && !lossy_graph(i)) {
    throw ScheduleError(where + ": the graph of stage " + std::to_string(i) +
                        " is alive and its Backward needs a_" + std::to_string(i));
  }
  clear_stored(i);
}

void ChainState::shrink_graph(int stage) {
  if (!graph_.at(stage) || lossy_graph(stage) || (stage == length_ - 1 && dropped_)) {
    throw ScheduleError("cannot shrink the graph of stage " + std::to_string(stage) +
                        ": it is not alive, lossy, or holds no outputs");
  }
  detail::ActivationStorage::Parts outputs = graph_parts_[stage + 1];
  clear_stored(stage + 1);
  set_stored(stage + 1, std::move(outputs));  // the same storage: no bytes change here
  clear_graph(stage);
}

void ChainState::adopt_stored(int i) {
  if (available(i)) return;
  set_stored(i, storage_.fresh(i, profile_->stages.at(i - 1).output_bytes));
}

void ChainState::drop_graph(int stage) {
  if (!graph_.at(stage)) {
    throw ScheduleError("cannot drop the graph of stage " + std::to_string(stage) + ": it is not alive");
  }
  clear_graph(stage);
}

void ChainState::check_complete(int op_count) const {
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
  if (!backward_done_) fail("Backward(0) never ran (or Backward of the first stage after a frozen prefix)");
}

// The copy of a_i a forward reads: the stored one first, as the Executor does.
const detail::ActivationStorage::Parts& ChainState::input_parts(int i) const {
  return stored_[i] || i == 0 ? stored_parts_[i] : graph_parts_[i];
}

void ChainState::set_stored(int i, detail::ActivationStorage::Parts parts) {
  stored_[i] = true;
  stored_parts_[i] = std::move(parts);
  live_bytes_ += storage_.hold(stored_slot(i), stored_parts_[i], true);
}

void ChainState::clear_stored(int i) {
  if (!stored_[i]) return;
  stored_[i] = false;
  live_bytes_ += storage_.hold(stored_slot(i), stored_parts_[i], false);
  stored_parts_[i].clear();
}

// What an exact graph holds besides its outputs' storage (the outputs are its holder's parts).
int64_t ChainState::graph_internal_bytes(int i) const {
  const StageProfile& stage = profile_->stages[i];
  return stage.saved_bytes - stage.output_new_bytes();
}

// A graph built after the Loss (the last stage's, rebuilt) keeps only what its backward
// saved of its outputs, as one that dropped them at the Loss.
void ChainState::set_graph(int i, detail::ActivationStorage::Parts outputs) {
  graph_[i] = true;
  graph_codec_[i] = Codec::None;
  if (i == length_ - 1 && gradient_[length_]) {
    dropped_ = true;
    live_bytes_ += profile_->last_graph_after_loss_bytes();
    return;
  }
  graph_parts_[i + 1] = std::move(outputs);
  live_bytes_ += graph_internal_bytes(i) + storage_.hold(graph_slot(i + 1), graph_parts_[i + 1], true);
}

void ChainState::set_lossy_graph(int i, Codec codec) {
  graph_[i] = true;
  graph_codec_[i] = codec;
  live_bytes_ += lossy_cost(i, codec).saved_bytes;
}

void ChainState::clear_graph(int i) {
  if (lossy_graph(i)) {
    live_bytes_ -= lossy_cost(i, graph_codec_[i]).saved_bytes;
  } else if (i == length_ - 1 && dropped_) {
    dropped_ = false;
    live_bytes_ -= profile_->last_graph_after_loss_bytes();
  } else {
    live_bytes_ += storage_.hold(graph_slot(i + 1), graph_parts_[i + 1], false) - graph_internal_bytes(i);
    graph_parts_[i + 1].clear();
  }
  graph_[i] = false;
  graph_codec_[i] = Codec::None;
}

// The last stage's exact graph drops its outputs once the Loss has read them (d_L exists).
void ChainState::drop_last_outputs() {
  const int last = length_ - 1;
  live_bytes_ += storage_.hold(graph_slot(length_), graph_parts_[length_], false) -
                 graph_internal_bytes(last) + profile_->last_graph_after_loss_bytes();
  graph_parts_[length_].clear();
  dropped_ = true;
}

void ChainState::set_gradient(int i, bool value) {
  if (gradient_[i] == value) return;
  gradient_[i] = value;
  live_bytes_ += (value ? 1 : -1) * profile_->activation_bytes(i);
}

void ChainState::count_forward(int i, double extra_s) {
  const StageProfile& stage = profile_->stages[i];
  counters_.time_s += stage.forward_s + extra_s;
  if (forward_count_[i]++ > 0) {
    counters_.recompute_s += stage.forward_s + extra_s;
    counters_.recompute_flops += stage.flops;
    ++counters_.recompute_count;
  }
}

}  // namespace memento
