#pragma once
/// \file
/// `simulate()` replays a schedule against a profile with the semantics of schedule.h
/// and returns its peak memory, time and recomputation. It is the contract the runtime
/// is tested against: measured peak and time must agree with it.
///
/// Memory model. Live bytes = fixed_bytes + the distinct storages of the held activations
/// (a stored copy of a_i, or graph i-1 holding it as its output; a storage passed through
/// from an earlier activation, StageProfile::output_passthrough, is counted once however
/// many copies hold it) + what live graphs save besides their outputs + live gradients d_i
/// (size of a_i, i >= 1). While an op runs, its result and its temporaries sit on top of
/// the state before it:
/// - a forward: + the output's new bytes + no_grad_temp_bytes() (ForwardNoGrad/Checkpoint)
///   or + saved_bytes + forward_temp_bytes (WithGraph);
/// - Loss: + d_L;
/// - Backward(i): + max(0, d_i (i >= 1) + backward_temp_bytes - backward_released_bytes).
/// The op's peak is that sum; the step's peak is the largest op peak.
///
/// Example:
/// \code
///   auto profile = memento::read_profile("examples/profiles/gpt2-small.json");
///   auto result = memento::simulate(profile, memento::store_all_schedule(profile.length()));
///   int64_t peak_bytes = result.peak_bytes;
/// \endcode

#include <cstdint>
#include <vector>

#include "memento/core/profile.h"
#include "memento/core/schedule.h"

namespace memento {

/// Memory after (and peak during) one op of a simulated schedule.
struct TimelinePoint {
  int op_index = 0;
  Op op;
  int64_t peak_bytes = 0;  ///< the largest live bytes while the op ran
  int64_t live_bytes = 0;  ///< live bytes once the op finished
  double end_s = 0;        ///< predicted time at which the op finished
};

struct SimulationResult {
  int64_t peak_bytes = 0;      ///< largest live bytes over the step (fixed bytes included)
  double time_s = 0;           ///< sum of the forward and backward times of every op
  double recompute_s = 0;      ///< time of forwards beyond the first of each stage
  int recompute_count = 0;     ///< number of such forwards
  double recompute_flops = 0;  ///< flops of those forwards
  std::vector<TimelinePoint> timeline;
};

/// Replays `schedule`. Throws ScheduleError naming the op index and op when an op's
/// requirements do not hold (a backward whose graph is gone, a use after free, ...),
/// or when the schedule ends incomplete.
SimulationResult simulate(const ChainProfile& profile, const Schedule& schedule);

}  // namespace memento
