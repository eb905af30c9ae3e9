// `revolve`: Griewank & Walther, "Algorithm 799: Revolve" (ACM TOMS 2000), binomial
// checkpointing for homogeneous chains, mapped onto memento's ops.
#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <utility>
#include <vector>

#include "memento/core/error.h"
#include "memento/core/simulate.h"
#include "planners.h"
#include "revolve.h"
#include "segments.h"

namespace memento {
namespace detail {

int64_t revolve_forward_steps(int64_t steps, int64_t slots) {
  if (steps < 0 || slots < 0) throw InvalidArgument("revolve: steps and slots must be >= 0");
  if (steps <= 1) return 0;
  if (slots == 0) return -1;
  // beta(s, r) = C(s + r, s), grown with beta(s, r) = beta(s, r - 1) (s + r) / r (exact);
  // every intermediate stays below steps * (s + r), far inside int64.
  int64_t repetitions = 0;
  int64_t beta = 1;
  int64_t beta_previous = 1;
  while (beta < steps) {
    ++repetitions;
    beta_previous = beta;
    beta = beta * (slots + repetitions) / repetitions;
  }
  // C(s + r, r - 1) = C(s + r, s + 1) = beta(s, r - 1) (s + r) / (s + 1).
  const int64_t binomial = beta_previous * (slots + repetitions) / (slots + 1);
  return repetitions * steps - binomial;
}

namespace {

// A pending reversal of stages [first, end): a_first is available (a checkpoint, a_0, or
// the state just advanced to) and the gradient of a_end exists (or Loss is still due).
struct Reversal {
  int first;
  int end;
  int slots;
};

// The split k in (0, steps) with t(steps, slots) = k + t(steps - k, slots - 1) + t(k, slots).
int64_t split_point(int64_t steps, int64_t slots) {
  // The two ends of the binomial range in closed form: enough slots to keep every
  // state (advance one stage), or one slot (advance to the last stage).
  if (slots >= steps - 1) return 1;
  if (slots == 1) return steps - 1;
  const int64_t target = revolve_forward_steps(steps, slots);
  for (int64_t k = 1; k < steps; ++k) {
    const int64_t tail = revolve_forward_steps(steps - k, slots - 1);
    if (tail >= 0 && k + tail + revolve_forward_steps(k, slots) == target) return k;
  }
  throw std::logic_error("revolve: no split attains t(l, s); the closed form is wrong");
}

}  // namespace

Schedule revolve_schedule(int length, int slots) {
  if (length < 1 || slots < 1) {
    throw InvalidArgument("revolve: needs at least one stage and one checkpoint slot, got " +
                          std::to_string(length) + " stages and " + std::to_string(slots) + " slots");
  }
  Schedule schedule;
  // An explicit stack: the tail recursion is as deep as the slot count, which may be L.
  std::vector<Reversal> pending = {{0, length, slots}};
  while (!pending.empty()) {
    const Reversal reversal = pending.back();
    pending.pop_back();
    const int steps = reversal.end - reversal.first;
    if (steps == 1) {
      schedule.push_back(Op::forward_with_graph(reversal.first));
      if (reversal.end == length) schedule.push_back(Op::loss());
      schedule.push_back(Op::backward(reversal.first));
      continue;
    }
    const int split = reversal.first + static_cast<int>(split_point(steps, reversal.slots));
    // Fc keeps the checkpoint a_first; Fn drops each intermediate state; a_split stays
    // stored and becomes the tail's checkpoint until Backward(split) frees it.
    schedule.push_back(Op::forward_checkpoint(reversal.first));
    for (int i = reversal.first + 1; i < split; ++i) schedule.push_back(Op::forward_no_grad(i));
    pending.push_back({reversal.first, split, reversal.slots});
    pending.push_back({split, reversal.end, reversal.slots - 1});
  }
  return schedule;
}

}  // namespace detail

namespace {

class RevolvePlanner : public Planner {
 public:
  std::string name() const override { return "revolve"; }
  std::string description() const override {
    return "Griewank & Walther binomial checkpointing (Revolve) with as many checkpoint slots as the budget "
           "allows (binomial schedule, the most slots that fit)";
  }

  Plan make_plan(const ChainProfile& profile, const PlannerOptions& options) const override {
    const auto start = std::chrono::steady_clock::now();
    const int length = profile.length();
    // Revolve assumes a homogeneous chain: every state costs the largest activation A.
    // Then at any moment the schedule holds at most s - 1 checkpoints besides a_0, one
    // state being advanced and one gradient, plus the running op's own bytes, so
    // fixed + (s + 1) A + transient bounds the peak from above for any chain.
    int64_t largest_activation_bytes = 0;
    int64_t transient_bytes = 0;
    for (int i = 0; i < length; ++i) {
      const StageProfile& stage = profile.stages[i];
      largest_activation_bytes = std::max(largest_activation_bytes, stage.output_bytes);
    }
    for (const StageProfile& stage : profile.stages) {
      transient_bytes = std::max({transient_bytes, largest_activation_bytes + stage.no_grad_temp_bytes(),
                                  stage.saved_bytes + stage.forward_temp_bytes,
                                  stage.saved_bytes + largest_activation_bytes + stage.backward_temp_bytes});
    }
    // s >= L - 1 already keeps every state: t(L, s) = L - 1, nothing more to gain.
    const int most_useful_slots = std::max(1, length - 1);
    auto peak_bound_bytes = [&](int slots) {
      return profile.fixed_bytes + (slots + 1) * largest_activation_bytes + transient_bytes;
    };
    int slots = 1;
    while (slots < most_useful_slots && peak_bound_bytes(slots + 1) <= options.budget_bytes()) ++slots;

    // One slot has the least peak (the bound grows with s), so its simulated peak is the
    // least budget at which this planner succeeds.
    const int64_t budget_bytes = options.budget_bytes();
    auto fits = [&](int count) {
      return simulate(profile, detail::revolve_schedule(length, count)).peak_bytes <= budget_bytes;
    };
    const int64_t min_feasible_bytes = simulate(profile, detail::revolve_schedule(length, 1)).peak_bytes;
    if (min_feasible_bytes > budget_bytes) {
      return infeasible_plan(name(), options, detail::seconds_since(start), min_feasible_bytes);
    }
    // Validate the bound's choice by simulation (fewer slots where it is wrong) ...
    while (slots > 1 && !fits(slots)) --slots;
    // ... then, since the bound charges every state as the largest one, look for more
    // slots that still fit on a heterogeneous chain: gallop, then bisect, assuming the
    // peak grows with s (every schedule returned is simulated again by finish_plan).
    int fitting = slots;
    int step = 1;
    int failing = most_useful_slots + 1;
    while (fitting + step < failing) {
      if (!fits(fitting + step)) {
        failing = fitting + step;
        break;
      }
      fitting += step;
      step *= 2;
    }
    while (failing - fitting > 1) {
      const int middle = fitting + (failing - fitting) / 2;
      (fits(middle) ? fitting : failing) = middle;
    }
    return finish_plan(name(), profile, options, detail::revolve_schedule(length, fitting),
                       detail::seconds_since(start), min_feasible_bytes);
  }
};

}  // namespace

std::unique_ptr<Planner> make_revolve_planner() {
  return std::make_unique<RevolvePlanner>();
}

}  // namespace memento
