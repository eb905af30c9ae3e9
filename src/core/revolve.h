#pragma once
// Internal to the core: Griewank & Walther's binomial checkpointing (Revolve), exposed
// for the revolve planner and its tests.
//
// Counting convention. `slots` counts the checkpoints that may be held at once,
// including the one that holds the starting state a_0 (as in Griewank & Walther, where
// x_0 is the first checkpoint). The state being advanced is not a checkpoint. A
// "forward step" is a no-grad advance of one stage (ForwardCheckpoint or ForwardNoGrad);
// the ForwardWithGraph that immediately precedes each Backward (Revolve's "youturn",
// one per stage) is not a forward step.

#include <cstdint>

#include "memento/core/schedule.h"

namespace memento {
namespace detail {

// t(l, s) = r l - C(s + r, r - 1), r the smallest integer with C(s + r, s) >= l: the least
// number of forward steps that reverses l stages with s slots (Griewank 1992). 0 for
// l <= 1; -1 (impossible) for s == 0 and l >= 2. Requires l >= 0, s >= 0.
int64_t revolve_forward_steps(int64_t steps, int64_t slots);

// The binomial schedule reversing a chain of `length` stages with `slots` >= 1: advance
// from a checkpoint to the split point k that attains t(l, s) = k + t(l - k, s - 1) +
// t(k, s), keep a_k as a checkpoint, reverse the tail with one slot fewer, then the head.
// Its ForwardCheckpoint + ForwardNoGrad count is revolve_forward_steps(length, slots).
Schedule revolve_schedule(int length, int slots);

}  // namespace detail
}  // namespace memento
