// `mutwo`: the recomputation selection of μ-TWO (Purandare et al., "μ-TWO: 3x Faster
// Multi-Model Training with Orchestration and Memory Optimization", MLSys 2023), a
// Capuchin/Checkmate-style greedy: from store-all, recompute the stage with the best
// "recompute ratio" (bytes freed at the peak per second of recomputation) until the
// simulated peak fits.
#include <algorithm>
#include <chrono>
#include <utility>
#include <vector>

#include "decisions.h"
#include "mutwo.h"
#include "planners.h"
#include "segments.h"

namespace memento {
namespace detail {

namespace {

struct Candidate {
  int stage = -1;
  int64_t peak_bytes = 0;
  double extra_s = 0;       // recomputation seconds the step adds to the whole schedule
  int64_t freed_bytes = 0;  // how far the peak drops (<= 0 when it does not)
};

// Whether `a` is a better greedy step than `b` (see mutwo.h for the order).
bool better_step(const Candidate& a, const Candidate& b) {
  const bool a_frees = a.freed_bytes > 0;
  const bool b_frees = b.freed_bytes > 0;
  if (a_frees != b_frees) return a_frees;
  if (a_frees) {
    // freed_a / extra_a > freed_b / extra_b without dividing: a step that frees bytes
    // for no recomputation at all has an infinite ratio.
    const double lhs = static_cast<double>(a.freed_bytes) * b.extra_s;
    const double rhs = static_cast<double>(b.freed_bytes) * a.extra_s;
    if (lhs != rhs) return lhs > rhs;
    if (a.freed_bytes != b.freed_bytes) return a.freed_bytes > b.freed_bytes;
    return a.stage < b.stage;
  }
  if (a.peak_bytes != b.peak_bytes) return a.peak_bytes < b.peak_bytes;
  if (a.extra_s != b.extra_s) return a.extra_s < b.extra_s;
  return a.stage < b.stage;
}

}  // namespace

MutwoTrajectory mutwo_trajectory(const ChainProfile& profile) {
  const int length = profile.length();
  std::vector<StageDecision> decisions(length, StageDecision::Keep);
  MutwoTrajectory trajectory;
  trajectory.store_all_peak_bytes = decisions_peak_bytes(profile, decisions);
  int64_t peak_bytes = trajectory.store_all_peak_bytes;
  double recompute_s = 0;
  // Recomputing stage j lowers what j holds across the step by S_j - out_j, which lowers
  // every later op's peak by as much and replaces j's own op peaks (decisions.h). With
  // the largest op peak before and after j at hand, each candidate costs O(1) and a
  // step O(L), so the whole walk is O(L^2) rather than a simulation per candidate.
  std::vector<int64_t> held_before_bytes(length);
  std::vector<int64_t> peak_from_bytes(length + 1);  // the largest op peak from stage i on, Loss included
  for (int step = 0; step + 1 < length; ++step) {
    int64_t held_bytes = profile.fixed_bytes;
    for (int i = 0; i < length; ++i) {
      held_before_bytes[i] = held_bytes;
      held_bytes += stage_held_bytes(profile.stages[i], decisions[i]);
    }
    peak_from_bytes[length] = loss_peak_bytes(profile, decisions.back(), held_bytes);
    for (int i = length - 1; i >= 0; --i) {
      peak_from_bytes[i] =
          std::max(peak_from_bytes[i + 1], stage_peak_bytes(profile, i, decisions[i], held_before_bytes[i]));
    }
    Candidate best;
    int64_t peak_before_bytes = profile.fixed_bytes;  // the largest op peak of stages 0..j-1
    for (int j = 0; j + 1 < length; ++j) {
      if (decisions[j] == StageDecision::Keep) {
        const StageProfile& stage = profile.stages[j];
        const int64_t released_bytes = stage.saved_beyond_output_bytes();
        Candidate candidate;
        candidate.stage = j;
        candidate.peak_bytes = std::max(
            {peak_before_bytes, stage_peak_bytes(profile, j, StageDecision::Recompute, held_before_bytes[j]),
             peak_from_bytes[j + 1] - released_bytes});
        // The forward Fc(j) is the only op the step adds: no other stage recomputes.
        candidate.extra_s = stage.forward_s;
        candidate.freed_bytes = peak_bytes - candidate.peak_bytes;
        if (best.stage < 0 || better_step(candidate, best)) best = candidate;
      }
      peak_before_bytes =
          std::max(peak_before_bytes, stage_peak_bytes(profile, j, decisions[j], held_before_bytes[j]));
    }
    decisions[best.stage] = StageDecision::Recompute;
    peak_bytes = best.peak_bytes;
    recompute_s += best.extra_s;
    trajectory.steps.push_back({best.stage, best.peak_bytes, recompute_s});
  }
  return trajectory;
}

}  // namespace detail

namespace {

class MutwoPlanner : public Planner {
 public:
  std::string name() const override { return "mutwo"; }
  std::string description() const override {
    return "mu-TWO greedy (Purandare et al. 2023): from store-all, recompute the stage freeing the most "
           "peak bytes per second of recomputation until the simulated peak fits";
  }

  Plan make_plan(const ChainProfile& profile, const PlannerOptions& options) const override {
    const auto start = std::chrono::steady_clock::now();
    // The greedy's choices never depend on the budget, only where it stops does: the
    // whole walk gives the least budget at which it stops (the lowest peak on the way).
    const detail::MutwoTrajectory trajectory = detail::mutwo_trajectory(profile);
    int64_t min_feasible_bytes = trajectory.store_all_peak_bytes;
    for (const detail::MutwoStep& step : trajectory.steps) {
      min_feasible_bytes = std::min(min_feasible_bytes, step.peak_bytes);
    }
    std::vector<detail::StageDecision> decisions(profile.length(), detail::StageDecision::Keep);
    bool fits = trajectory.store_all_peak_bytes <= options.budget_bytes();
    for (size_t k = 0; k < trajectory.steps.size() && !fits; ++k) {
      decisions[trajectory.steps[k].stage] = detail::StageDecision::Recompute;
      fits = trajectory.steps[k].peak_bytes <= options.budget_bytes();
    }
    if (!fits) return infeasible_plan(name(), options, detail::seconds_since(start), min_feasible_bytes);
    return finish_plan(name(), profile, options, detail::schedule_from_decisions(profile, decisions),
                       detail::seconds_since(start), min_feasible_bytes);
  }
};

}  // namespace

std::unique_ptr<Planner> make_mutwo_planner() {
  return std::make_unique<MutwoPlanner>();
}

}  // namespace memento
