#pragma once
// Internal to the core: the dynamic programs behind the `optimal` planner (Rotor's
// persistent schedules for heterogeneous chains, Beaumont et al. 2019). The method, the
// memory accounting and the speed-ups are written down in docs/planners-optimal.md.
//
// Stage numbering follows profile.h, plus a virtual stage L (the loss): forward 0 s,
// backward 0 s, its "Backward" is the Loss op that creates d_L. solve(a, b, m) turns
// d_{b+1} into d_a for stages a..b, given a_a available (held by the caller, outside m)
// and d_{b+1} alive (inside m), using at most m memory units above the caller's bytes.

#include <cstdint>
#include <vector>

#include "memento/core/profile.h"
#include "memento/core/schedule.h"

namespace memento {
namespace optimal_dp {

/// A chain whose sizes are whole memory units (bytes, or slots of a discretized budget).
struct DiscreteChain {
  int length = 0;                       ///< L, real stages (the loss stage L is implicit)
  std::vector<int64_t> activation;      ///< L + 1 entries: size of a_0..a_L in units
  std::vector<int64_t> saved;           ///< L entries
  std::vector<int64_t> forward_temp;    ///< L entries, forward with grad
  std::vector<int64_t> no_grad_temp;    ///< L entries, forward without grad
  std::vector<int64_t> backward_extra;  ///< L entries: on top of graph a and d_{a+1} during B(a)
  std::vector<double> forward_s;        ///< L entries
  std::vector<double> backward_s;       ///< L entries
  int64_t loss_temp = 0;                ///< the Loss op's transients on top of d_L
  int64_t last_graph_after_loss = 0;    ///< graph L-1 once the Loss has run (outputs dropped)
  int64_t output_droppable = 0;         ///< stage L-1's droppable outputs (Loss on a stored a_L)
  int64_t capacity = 0;                 ///< units available above fixed_bytes (may be < 0)
  /// Per allowed codec, the costs of ForwardLossy and of its Backward (StageProfile::lossy).
  struct Lossy {
    Codec codec = Codec::None;
    std::vector<int64_t> saved;           ///< L entries: the packed graph
    std::vector<int64_t> forward_temp;    ///< L entries
    std::vector<int64_t> backward_extra;  ///< L entries: on top of the graph and d_{a+1} during B(a)
    std::vector<double> forward_s;        ///< L entries: forward + pack
    std::vector<double> backward_s;       ///< L entries: backward + unpack
  };
  std::vector<Lossy> lossy = {};
};

/// The profile with 1-byte units and `capacity_bytes` of room above the fixed bytes.
/// `codecs` (each measured for every stage) fill DiscreteChain::lossy.
DiscreteChain exact_chain(const ChainProfile& profile, int64_t capacity_bytes,
                          const std::vector<Codec>& codecs = {});

/// The profile in `slots` units of memory_bytes / slots bytes each; every size is rounded
/// up so that a schedule that fits in `slots` units fits in memory_bytes. Sizes larger
/// than the whole room are clamped to slots + 1 (they never fit).
DiscreteChain discretize(const ChainProfile& profile, int64_t memory_bytes, int slots,
                         const std::vector<Codec>& codecs = {});

/// Result of a time-optimal solve at the chain's capacity.
struct Solution {
  bool feasible = false;
  double time_s = 0;  ///< the DP's optimum (sum of op times of `schedule`)
  Schedule schedule;  ///< complete schedule when feasible
};

/// The smallest peak (units above fixed bytes) over all persistent schedules, one
/// schedule reaching it (ties broken towards less time, locally), and that schedule's
/// time. Ignores `capacity`. O(L^3) time, O(L^2) memory. `threads` as solve_fast (0: one
/// per core, up to 8); they share the work from 256 stages on, with identical results.
struct MinPeak {
  int64_t peak_units = 0;
  double time_s = 0;
  Schedule schedule;
};
MinPeak min_peak(const DiscreteChain& chain, int threads = 0);

/// Plain table-filling reference: C[a][b][m] for every 0 <= m <= capacity, every option
/// tried. O(L^3 * capacity) time, O(L^2 * capacity) memory.
Solution solve_reference(const DiscreteChain& chain);

/// The optimum over persistent schedules where every stage may also run lossy
/// (ForwardLossy with any codec of `chain.lossy`), by plain table filling over two tables:
/// C(a, b, m) as solve_reference's (a_a held by the caller) and Q(a, b, m), where a_a is a
/// stored copy the cell owns (inside m), which a lossy forward of stage a drops. With no
/// codecs it equals solve_reference. O(L^3 * capacity) time, O(L^2 * capacity) memory.
Solution solve_with_codecs(const DiscreteChain& chain);

/// Fast solver, same optimum as solve_reference (to floating-point rounding). Computes
/// each (a, b) row only over [min peak, store-all peak), relaxes ranges of slots at once,
/// skips (split point, block of 16 slots) pairs whose lower bound from coarse per-block
/// samples cannot beat the row's best, fills the table by tiles of 16 x 16 cells (the split
/// points between a tile's rows and columns relaxed for the whole tile at once), and runs
/// column blocks on `threads` threads in a pipeline (0: the machine's cores, at most 8).
/// From 256 stages the min-peak DP that bounds the rows runs on the same threads.
///
///     const Solution plan = solve_fast(discretize(profile, room_bytes, 500), 2);
Solution solve_fast(const DiscreteChain& chain, int threads = 0);

}  // namespace optimal_dp
}  // namespace memento
