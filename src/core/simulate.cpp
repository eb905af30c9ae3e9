#include "memento/core/simulate.h"

#include <algorithm>

#include "memento/core/chain_state.h"
#include "memento/core/error.h"

namespace memento {

SimulationResult simulate(const ChainProfile& profile, const Schedule& schedule) {
  if (profile.stages.empty()) throw ScheduleError("cannot simulate a profile with no stages");
  ChainState state(profile);
  SimulationResult result;
  result.peak_bytes = state.live_bytes();
  result.timeline.reserve(schedule.size());
  for (int index = 0; index < static_cast<int>(schedule.size()); ++index) {
    const Op& op = schedule[index];
    const int64_t op_peak = state.apply(op, index);
    result.peak_bytes = std::max(result.peak_bytes, op_peak);
    result.timeline.push_back({index, op, op_peak, state.live_bytes(), state.counters().time_s});
  }
  state.check_complete(static_cast<int>(schedule.size()));
  const StepCounters& counters = state.counters();
  result.time_s = counters.time_s;
  result.recompute_s = counters.recompute_s;
  result.recompute_count = counters.recompute_count;
  result.recompute_flops = counters.recompute_flops;
  return result;
}

}  // namespace memento
