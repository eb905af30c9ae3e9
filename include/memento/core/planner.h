#pragma once
/// \file
/// Planners decide which activations a step keeps, recomputes or frees under a memory
/// budget. Every planner sits behind `Planner` and in a registry by name.
///
/// Example:
/// \code
///   auto profile = memento::read_profile("examples/profiles/gpt2-small.json");
///   int64_t budget = memento::parse_budget("40%", profile);
///   auto planner = memento::make_planner("optimal");
///   memento::Plan plan = planner->plan(profile, memento::PlannerOptions(budget).memory_slots(500));
///   if (!plan.feasible) { /* plan.min_feasible_budget_bytes says what would fit */ }
/// \endcode

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "memento/core/codec.h"
#include "memento/core/gac.h"
#include "memento/core/profile.h"
#include "memento/core/schedule.h"

namespace memento {

/// Options common to every planner. The budget (bytes for the whole step, fixed bytes
/// included) is required; the rest have defaults.
class PlannerOptions {
 public:
  explicit PlannerOptions(int64_t budget_bytes) : budget_bytes_(budget_bytes) {}

  /// Memory discretization of the dynamic-programming planners (default 500).
  PlannerOptions& memory_slots(int slots) {
    memory_slots_ = slots;
    return *this;
  }
  /// Number of segments for `uniform`; 0 (default) picks the fastest that fits.
  PlannerOptions& segments(int count) {
    segments_ = count;
    return *this;
  }

  /// Codecs a stage's saved tensors may be packed with (lossy storage, docs/lossy.md);
  /// empty (default): every plan is exact. Only planners whose supports_codecs() is true
  /// accept them, and the profile must carry each codec's costs (ChainProfile::has_codec).
  PlannerOptions& codecs(std::vector<Codec> allowed) {
    codecs_ = std::move(allowed);
    return *this;
  }

  /// Parameters of the `gac` planner and policy (core/gac.h); others ignore them.
  PlannerOptions& gac(GacOptions options) {
    gac_ = options;
    return *this;
  }
  /// Called with one line per phase of long work (the optimal planner on long chains:
  /// which phase starts, its size, the slots used, how long the last one took). Planners
  /// never print; the caller decides where the lines go. Default: none.
  PlannerOptions& progress(std::function<void(const std::string&)> report) {
    progress_ = std::move(report);
    return *this;
  }

  int64_t budget_bytes() const { return budget_bytes_; }
  int memory_slots() const { return memory_slots_; }
  int segments() const { return segments_; }
  const std::vector<Codec>& codecs() const { return codecs_; }
  const GacOptions& gac() const { return gac_; }
  /// Reports `line` through progress(), if one is set.
  void report_progress(const std::string& line) const {
    if (progress_) progress_(line);
  }

 private:
  int64_t budget_bytes_;
  int memory_slots_ = 500;
  int segments_ = 0;
  std::vector<Codec> codecs_;
  GacOptions gac_;
  std::function<void(const std::string&)> progress_;
};

/// What a planner returns. When `feasible` is false, `schedule` is empty and
/// `min_feasible_budget_bytes` is the smallest budget at which this planner succeeds.
struct Plan {
  std::string planner;
  bool feasible = false;
  int64_t budget_bytes = 0;
  int64_t predicted_peak_bytes = 0;  ///< from simulate()
  double predicted_time_s = 0;       ///< from simulate()
  double recompute_s = 0;
  int recompute_count = 0;
  double recompute_flops = 0;
  double solve_time_s = 0;
  int64_t min_feasible_budget_bytes = 0;  ///< set for every plan, feasible or not
  Schedule schedule;
  /// "" for a static plan (the executor runs `schedule` as is); otherwise the run-time
  /// policy PlanRunner executes instead, e.g. "dtr": store-all with evictions decided on
  /// measured memory (`schedule` is then the policy's simulated run, for predictions).
  std::string runtime_policy;
  /// The codecs the planner was allowed (PlannerOptions::codecs); the schedule is lossy
  /// (is_lossy(schedule)) when it packs any stage with one of them.
  std::vector<Codec> codecs;
  /// For runtime_policy "gac": the options its GacController runs with (the schedule is
  /// then the first step's, before any gradient was seen).
  GacOptions gac;
};

/// JSON form of a plan (docs/formats.md): planner, feasible, budget_bytes,
/// predicted_peak_bytes, predicted_time_s, recompute_s, recompute_count, solve_time_s,
/// min_feasible_budget_bytes, schedule, runtime_policy when not empty (with gac, its
/// options, for policy "gac"), codecs (the allowed
/// list, "none" when exact), lossy (whether the schedule packs any stage) and codecs_used.
nlohmann::json plan_to_json(const Plan& plan);

/// Interface of every planner.
class Planner {
 public:
  virtual ~Planner() = default;
  /// Registry name, e.g. "optimal".
  virtual std::string name() const = 0;
  /// One line for `memento plan --list`.
  virtual std::string description() const = 0;
  /// Whether the planner uses PlannerOptions::codecs (lossy storage); others refuse them.
  virtual bool supports_codecs() const { return false; }
  /// Plans one step of `profile` under `options`. Never throws for an infeasible
  /// budget: returns a plan with feasible == false instead. Throws InvalidArgument for
  /// invalid options (e.g. zero slots, codecs given to a planner that does not use them,
  /// or codecs the profile has no costs for).
  Plan plan(const ChainProfile& profile, const PlannerOptions& options) const;

 protected:
  /// The planner itself, called by plan() once the codecs are checked.
  virtual Plan make_plan(const ChainProfile& profile, const PlannerOptions& options) const = 0;
};

/// The names of the planners whose supports_codecs() is true.
std::vector<std::string> codec_planner_names();
/// The same names as one line for messages: "store-all, optimal".
std::string codec_planner_names_text();
/// The planners among `names` whose supports_codecs() is true, in their order; throws
/// InvalidArgument for an unknown name.
std::vector<std::string> codec_planners_among(const std::vector<std::string>& names);
/// The codec lists a side-by-side comparison plans `planner` with: exact ({}) first, then
/// `codecs` when they are not empty and the planner uses them.
std::vector<std::vector<Codec>> codec_variants(const std::vector<Codec>& codecs, const std::string& planner);

/// Names of every registered planner, in a stable order.
std::vector<std::string> planner_names();
/// One-line description of a registered planner.
std::string planner_description(const std::string& name);
/// Creates a planner by name; throws InvalidArgument listing the valid names.
std::unique_ptr<Planner> make_planner(const std::string& name);

/// Fills a plan's predicted figures from simulate() (feasible = peak <= budget) and
/// records `solve_time_s`. Shared by every planner so each reports the same way.
Plan finish_plan(const std::string& planner, const ChainProfile& profile, const PlannerOptions& options,
                 Schedule schedule, double solve_time_s, int64_t min_feasible_budget_bytes);

/// Throws InvalidArgument when `plan` is infeasible (it has no schedule), saying its
/// budget, its `min_feasible_budget_bytes` and that the budget must be raised. Every API
/// that executes a Plan calls it first.
///
/// Example:
/// \code
///   memento::require_feasible(plan);  // "plan of planner optimal is infeasible: ..."
/// \endcode
void require_feasible(const Plan& plan);

/// Plan for an infeasible budget: feasible == false, empty schedule.
Plan infeasible_plan(const std::string& planner, const PlannerOptions& options, double solve_time_s,
                     int64_t min_feasible_budget_bytes);

}  // namespace memento
