// libFuzzer target for the profile reader and the cheap planners behind it.
//
// Contract under test: parse_profile() on any bytes either returns a profile that
// passes validate_profile() or throws memento::Error (never crashes, never another
// exception). For every profile it accepts, store-all simulates, and each cheap planner
// returns a plan that simulates within its budget, or an infeasible plan whose
// min_feasible_budget_bytes plans successfully. Any violation aborts, which libFuzzer
// reports as a crash.
//
//   make fuzz FUZZ_DIR=build-h2-fuzz FUZZ_SECONDS=120
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "memento/core/budget.h"
#include "memento/core/error.h"
#include "memento/core/planner.h"
#include "memento/core/profile.h"
#include "memento/core/simulate.h"

namespace {

[[noreturn]] void violated(const std::string& what) {
  std::fprintf(stderr, "fuzz_profile: %s\n", what.c_str());
  std::abort();
}

// Planners are quadratic to cubic in the stage count; past this size an input exercises
// nothing new and only slows the search down.
constexpr int kMaxPlannedStages = 64;

const char* const kCheapPlanners[] = {"store-all", "recompute-all", "uniform",
                                      "sqrt-n",    "chen-greedy",   "revolve"};

void check_plan(const memento::Planner& planner, const memento::ChainProfile& profile, int64_t budget_bytes) {
  const memento::Plan plan = planner.plan(profile, memento::PlannerOptions(budget_bytes));
  if (plan.feasible) {
    const memento::SimulationResult result = memento::simulate(profile, plan.schedule);
    if (result.peak_bytes > budget_bytes || result.peak_bytes != plan.predicted_peak_bytes) {
      violated(planner.name() + ": feasible plan peaks at " + std::to_string(result.peak_bytes) +
               " over budget " + std::to_string(budget_bytes));
    }
    return;
  }
  if (plan.min_feasible_budget_bytes <= budget_bytes) {
    violated(planner.name() + ": infeasible plan with min_feasible_budget_bytes within the budget");
  }
  if (!planner.plan(profile, memento::PlannerOptions(plan.min_feasible_budget_bytes)).feasible) {
    violated(planner.name() + ": planning again at min_feasible_budget_bytes failed");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  memento::ChainProfile profile;
  try {
    profile = memento::parse_profile(text, "fuzz-input");
  } catch (const memento::Error&) {
    return 0;  // rejected with a message: the reader did its job
  }
  memento::validate_profile(profile, "fuzz-input");  // an accepted profile must be valid
  if (profile.length() > kMaxPlannedStages) return 0;

  const int64_t store_all_bytes = memento::store_all_peak_bytes(profile);
  const int64_t budgets[] = {store_all_bytes,
                             profile.fixed_bytes + (store_all_bytes - profile.fixed_bytes) / 2,
                             profile.fixed_bytes};
  for (const char* name : kCheapPlanners) {
    const auto planner = memento::make_planner(name);
    for (int64_t budget_bytes : budgets) check_plan(*planner, profile, budget_bytes);
  }
  return 0;
}
