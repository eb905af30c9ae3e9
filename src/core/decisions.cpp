#include "decisions.h"

#include <algorithm>
#include <string>

#include "memento/core/error.h"
#include "memento/core/gac.h"

namespace memento {
namespace detail {

Schedule schedule_from_decisions(const ChainProfile& profile, const std::vector<StageDecision>& decisions) {
  const int length = profile.length();
  if (static_cast<int>(decisions.size()) != length) {
    throw InvalidArgument("stage decisions: got " + std::to_string(decisions.size()) +
                          " decisions for a chain of " + std::to_string(length) +
                          " stages; give exactly one keep/recompute decision per stage");
  }
  // One place for how per-stage decisions become ops: GAC's, of which keep/recompute is a part.
  std::vector<GacDecision> stages;
  stages.reserve(decisions.size());
  for (StageDecision decision : decisions)
    stages.push_back(decision == StageDecision::Keep ? GacDecision::Store : GacDecision::Recompute);
  return gac_schedule(profile, stages, std::vector<Codec>(decisions.size(), Codec::None));
}

int64_t stage_held_bytes(const StageProfile& stage, StageDecision decision) {
  return decision == StageDecision::Recompute ? stage.output_bytes : stage.saved_bytes;
}

int64_t stage_peak_bytes(const ChainProfile& profile, int stage, StageDecision decision,
                         int64_t held_before_bytes) {
  const StageProfile& costs = profile.stages[stage];
  const bool last = stage + 1 == profile.length();
  const int64_t forward_bytes =
      held_before_bytes + stage_held_bytes(costs, decision) +
      (decision == StageDecision::Recompute ? costs.no_grad_temp_bytes() : costs.forward_temp_bytes);
  const int64_t backward_graph_bytes = last ? profile.last_graph_after_loss_bytes() : costs.saved_bytes;
  const int64_t backward_bytes = held_before_bytes + backward_graph_bytes + costs.output_bytes +
                                 costs.backward_peak_extra_bytes(stage > 0);
  int64_t peak_bytes = std::max(forward_bytes, backward_bytes);
  if (decision == StageDecision::Recompute) {
    peak_bytes = std::max(peak_bytes, held_before_bytes + costs.output_bytes + costs.saved_bytes +
                                          costs.forward_temp_bytes + (last ? costs.output_bytes : 0));
  }
  return peak_bytes;
}

int64_t decisions_peak_bytes(const ChainProfile& profile, const std::vector<StageDecision>& decisions) {
  const int length = profile.length();
  if (static_cast<int>(decisions.size()) != length) {
    throw InvalidArgument("stage decisions: got " + std::to_string(decisions.size()) +
                          " decisions for a chain of " + std::to_string(length) +
                          " stages; give exactly one keep/recompute decision per stage");
  }
  int64_t held_bytes = profile.fixed_bytes;
  int64_t peak_bytes = held_bytes;
  for (int i = 0; i < length; ++i) {
    peak_bytes = std::max(peak_bytes, stage_peak_bytes(profile, i, decisions[i], held_bytes));
    held_bytes += stage_held_bytes(profile.stages[i], decisions[i]);
  }
  return std::max(peak_bytes, loss_peak_bytes(profile, decisions.back(), held_bytes));
}

int64_t loss_peak_bytes(const ChainProfile& profile, StageDecision last_decision, int64_t held_bytes) {
  const StageProfile& last = profile.stages.back();
  return held_bytes + last.output_bytes + profile.loss_temp_bytes +
         (last_decision == StageDecision::Recompute ? last.output_droppable_bytes : 0);
}

int count_recomputed(const std::vector<StageDecision>& decisions) {
  return static_cast<int>(std::count(decisions.begin(), decisions.end(), StageDecision::Recompute));
}

}  // namespace detail
}  // namespace memento
