#pragma once
// Internal to the core: schedules from one keep/recompute decision per stage, the
// representation of the selection planners (mutwo, selective, and later gradient-aware
// ones) that decide per stage whether its autograd graph survives until its backward.

#include <cstdint>
#include <vector>

#include "memento/core/profile.h"
#include "memento/core/schedule.h"

namespace memento {
namespace detail {

enum class StageDecision {
  Keep,       // Fg(i) in the forward; its graph lives until Backward(i)
  Recompute,  // Fc(i) in the forward (a_{i+1} stored, a_i kept); Fg(i) again right before Backward(i)
};

// The schedule of a decision vector (one entry per stage; throws InvalidArgument when
// the sizes differ). Forward: Keep -> Fg(i), Recompute -> Fc(i). Loss. Backward for
// i = L-1..0: Recompute -> Fg(i); then B(i).
//
// Valid for every decision vector: the input a_i of stage i is available whenever an op
// of stage i runs, because it is a_0, or the output inside graph i-1 (Keep, alive until
// Backward(i-1), which comes later), or the copy stored by Fc(i-1) (Recompute), which
// Fc(i) keeps and only Backward(i) frees. So the "nearest kept input" of a recomputed
// stage is always its own input: no recomputed stage has to recompute its predecessor.
// Every stored copy is freed by the Backward that reads it, or replaced by Fg(L-1).
// All Keep is store_all_schedule(L); Recompute for stages 0..L-2 is recompute-all.
Schedule schedule_from_decisions(const ChainProfile& profile, const std::vector<StageDecision>& decisions);

// simulate(profile, schedule_from_decisions(profile, decisions)).peak_bytes in O(L)
// without building the schedule. With P_i = fixed + the bytes stages 0..i-1 hold
// between their forward and backward (graph S_k when kept, the stored output when
// recomputed) and d_{i+1} the output size of stage i, the op peaks are:
//   forward of i            P_i + (S_i or out_i) + FT_i
//   Loss                    P_L + out_{L-1} + LT (+ DROP_{L-1} when stage L-1 is recomputed)
//   Fg(i) when recomputed   P_i + d_{i+1} + S_i + FT_i (+ out_{L-1}, the stored a_L, for i = L-1)
//   Backward(i)             P_i + S_i + d_{i+1} + (in_i for i > 0) + BT_i
// (Backward(i+1) frees the stored output of a recomputed stage i before its Fg runs;
// for i = L-1 the graph holds S_i - DROP_i at its backward, its outputs dropped after
// the Loss; LT is the profile's loss_temp_bytes.)
int64_t decisions_peak_bytes(const ChainProfile& profile, const std::vector<StageDecision>& decisions);

// The Loss op's peak given P_L = `held_bytes` and the last stage's decision.
int64_t loss_peak_bytes(const ChainProfile& profile, StageDecision last_decision, int64_t held_bytes);

// The pieces of that sum, for planners that evaluate many vectors incrementally: what
// stage i holds from its forward to its backward (S_i or out_i), and the largest peak
// of the ops of stage i given P_i = `held_before_bytes`.
int64_t stage_held_bytes(const StageProfile& stage, StageDecision decision);
int64_t stage_peak_bytes(const ChainProfile& profile, int stage, StageDecision decision,
                         int64_t held_before_bytes);

// Number of stages marked Recompute.
int count_recomputed(const std::vector<StageDecision>& decisions);

}  // namespace detail
}  // namespace memento
