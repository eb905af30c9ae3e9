// The `optimal` planner: the fastest persistent schedule (Rotor, Beaumont et al. 2019)
// under the budget, found by the dynamic program in optimal_dp.cpp over a budget
// discretized into memory slots. docs/planners-optimal.md explains the method.
#include <algorithm>
#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "memento/core/error.h"
#include "memento/core/simulate.h"
#include "optimal_dp.h"
#include "planners.h"

namespace memento {

namespace {

constexpr int kReportedStages = 256;

class OptimalPlanner : public Planner {
 public:
  std::string name() const override { return "optimal"; }
  std::string description() const override {
    return "fastest persistent schedule for a heterogeneous chain (Rotor's dynamic program over memory "
           "slots; with codecs, over keeping exact, keeping packed and recomputing)";
  }
  bool supports_codecs() const override { return true; }

  Plan make_plan(const ChainProfile& profile, const PlannerOptions& options) const override {
    if (options.memory_slots() < 1) {
      throw InvalidArgument("planner optimal: memory_slots must be at least 1 (got " +
                            std::to_string(options.memory_slots()) + "); use the default 500 or more");
    }
    validate_profile(profile);
    const auto start = std::chrono::steady_clock::now();
    auto elapsed_s = [&] {
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    };
    const int64_t room_bytes = options.budget_bytes() - profile.fixed_bytes;
    // Only long chains take long enough to report (a 1000-stage chain takes about 10 s).
    const bool report = profile.length() >= kReportedStages;
    auto phase = [&](const std::string& what) {
      if (report)
        options.report_progress("optimal, " + std::to_string(profile.length()) + " stages: " + what);
    };
    phase("least feasible budget (exact min-peak dynamic program, O(L^3))");

    // Exact (1-byte) min-peak DP: the smallest budget any persistent schedule needs. The
    // planner succeeds at every budget from there on because the min-peak schedule is
    // always a candidate below.
    const optimal_dp::MinPeak min_peak = optimal_dp::min_peak(optimal_dp::exact_chain(profile, room_bytes));
    if (!options.codecs().empty()) return plan_lossy(profile, options, min_peak, elapsed_s);
    const int64_t min_feasible_bytes = profile.fixed_bytes + min_peak.peak_units;
    if (options.budget_bytes() < min_feasible_bytes) {
      return infeasible_plan(name(), options, elapsed_s(), min_feasible_bytes);
    }

    // Store-all costs every stage's forward and backward once, a lower bound on any
    // schedule: when it fits it is optimal, whatever the slot rounding would say.
    Schedule store_all = store_all_schedule(profile.length());
    if (simulate(profile, store_all).peak_bytes <= options.budget_bytes()) {
      return finish_plan(name(), profile, options, std::move(store_all), elapsed_s(), min_feasible_bytes);
    }

    // Rounding sizes up to whole slots can make the DP miss schedules that fit in bytes
    // (always near the minimum budget); the min-peak schedule covers those budgets, and
    // keeping the faster of the two keeps plan time non-increasing in the budget.
    phase("fastest schedule over " + std::to_string(options.memory_slots()) + " memory slots (" +
          std::to_string(static_cast<int>(elapsed_s())) + " s so far; fewer slots plan faster and coarser)");
    const optimal_dp::Solution solution =
        optimal_dp::solve_fast(optimal_dp::discretize(profile, room_bytes, options.memory_slots()));
    phase("done in " + std::to_string(static_cast<int>(elapsed_s())) + " s");
    Schedule schedule =
        solution.feasible && solution.time_s <= min_peak.time_s ? solution.schedule : min_peak.schedule;
    return finish_plan(name(), profile, options, std::move(schedule), elapsed_s(), min_feasible_bytes);
  }

 private:
  // With codecs: the lossy DP's schedule, or the exact min-peak schedule, or every stage
  // packed with one codec, whichever is fastest within the budget. The least peak of the
  // last two is the least budget reported: the planner always succeeds there (a lossy DP
  // schedule can fit a little below it).
  template <typename Elapsed>
  Plan plan_lossy(const ChainProfile& profile, const PlannerOptions& options,
                  const optimal_dp::MinPeak& min_peak, const Elapsed& elapsed_s) const {
    std::vector<std::pair<Schedule, SimulationResult>> candidates;
    auto add = [&](Schedule schedule) {
      SimulationResult result = simulate(profile, schedule);
      candidates.emplace_back(std::move(schedule), std::move(result));
    };
    add(min_peak.schedule);
    for (Codec codec : options.codecs()) add(lossy_store_all_schedule(profile.length(), codec));
    int64_t min_feasible_bytes = candidates.front().second.peak_bytes;
    for (const auto& candidate : candidates) {
      min_feasible_bytes = std::min(min_feasible_bytes, candidate.second.peak_bytes);
    }
    const int64_t room_bytes = options.budget_bytes() - profile.fixed_bytes;
    Schedule store_all = store_all_schedule(profile.length());
    if (simulate(profile, store_all).peak_bytes <= options.budget_bytes()) {
      // Packing only adds time: exact store-all is the fastest of all when it fits.
      return finish_plan(name(), profile, options, std::move(store_all), elapsed_s(), min_feasible_bytes);
    }
    if (room_bytes > 0) {
      optimal_dp::Solution solution = optimal_dp::solve_with_codecs(
          optimal_dp::discretize(profile, room_bytes, options.memory_slots(), options.codecs()));
      if (solution.feasible) add(std::move(solution.schedule));
    }
    const std::pair<Schedule, SimulationResult>* fastest = nullptr;
    for (const auto& candidate : candidates) {
      if (candidate.second.peak_bytes > options.budget_bytes()) continue;
      if (fastest == nullptr || candidate.second.time_s < fastest->second.time_s) fastest = &candidate;
    }
    if (fastest == nullptr) return infeasible_plan(name(), options, elapsed_s(), min_feasible_bytes);
    min_feasible_bytes = std::min(min_feasible_bytes, fastest->second.peak_bytes);
    return finish_plan(name(), profile, options, fastest->first, elapsed_s(), min_feasible_bytes);
  }
};

}  // namespace

std::unique_ptr<Planner> make_optimal_planner() {
  return std::make_unique<OptimalPlanner>();
}

}  // namespace memento
