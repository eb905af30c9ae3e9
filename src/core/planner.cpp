#include "memento/core/planner.h"

#include <functional>
#include <utility>

#include <nlohmann/json.hpp>

#include "memento/core/budget.h"
#include "memento/core/error.h"
#include "memento/core/simulate.h"
#include "planners.h"

namespace memento {

namespace {

struct RegistryEntry {
  const char* name;
  std::unique_ptr<Planner> (*make)();
};

// Order is the order of `memento plan --list` and of sweeps: cheapest ideas first.
const RegistryEntry kRegistry[] = {
    {"store-all", make_store_all_planner},
    {"recompute-all", make_recompute_all_planner},
    {"uniform", make_uniform_planner},
    {"sqrt-n", make_sqrt_n_planner},
    {"chen-greedy", make_chen_greedy_planner},
    {"revolve", make_revolve_planner},
    {"optimal", make_optimal_planner},
    {"mutwo", make_mutwo_planner},
    {"selective", make_selective_planner},
    {"dtr", make_dtr_planner},
    {"gac", make_gac_planner},
};

}  // namespace

std::vector<std::string> planner_names() {
  std::vector<std::string> names;
  for (const auto& entry : kRegistry) names.emplace_back(entry.name);
  return names;
}

std::unique_ptr<Planner> make_planner(const std::string& name) {
  std::string valid;
  for (const auto& entry : kRegistry) {
    if (name == entry.name) return entry.make();
    valid += std::string(valid.empty() ? "" : ", ") + entry.name;
  }
  throw InvalidArgument("unknown planner \"" + name + "\"; choose one of " + valid);
}

std::vector<std::string> codec_planners_among(const std::vector<std::string>& names) {
  std::vector<std::string> capable;
  for (const std::string& name : names) {
    if (make_planner(name)->supports_codecs()) capable.push_back(name);
  }
  return capable;
}

std::vector<std::vector<Codec>> codec_variants(const std::vector<Codec>& codecs, const std::string& planner) {
  std::vector<std::vector<Codec>> variants = {{}};
  if (!codecs.empty() && make_planner(planner)->supports_codecs()) variants.push_back(codecs);
  return variants;
}

std::vector<std::string> codec_planner_names() {
  return codec_planners_among(planner_names());
}

std::string codec_planner_names_text() {
  std::string text;
  for (const std::string& name : codec_planner_names()) text += (text.empty() ? "" : ", ") + name;
  return text;
}

Plan Planner::plan(const ChainProfile& profile, const PlannerOptions& options) const {
  const std::vector<Codec>& codecs = options.codecs();
  if (!codecs.empty() && !supports_codecs()) {
    throw InvalidArgument("planner " + name() + " does not use codecs (PlannerOptions::codecs is " +
                          codec_list_name(codecs) + "); leave them empty, or choose one of " +
                          codec_planner_names_text());
  }
  for (Codec codec : codecs) {
    if (!is_lossy(codec)) {
      throw InvalidArgument(std::string("PlannerOptions::codecs lists \"") + codec_name(codec) +
                            "\", which is not a lossy codec; an empty list means exact");
    }
    if (!profile.has_codec(codec)) {
      throw InvalidArgument(std::string("the profile has no costs for codec ") + codec_name(codec) +
                            " (StageProfile::lossy); measure them with ProfilerOptions::codecs, or allow "
                            "only the codecs it has");
    }
  }
  Plan plan = make_plan(profile, options);
  plan.codecs = codecs;
  return plan;
}

std::string planner_description(const std::string& name) {
  return make_planner(name)->description();
}

Plan infeasible_plan(const std::string& planner, const PlannerOptions& options, double solve_time_s,
                     int64_t min_feasible_budget_bytes) {
  Plan plan;
  plan.planner = planner;
  plan.feasible = false;
  plan.budget_bytes = options.budget_bytes();
  plan.solve_time_s = solve_time_s;
  plan.min_feasible_budget_bytes = min_feasible_budget_bytes;
  return plan;
}

Plan finish_plan(const std::string& planner, const ChainProfile& profile, const PlannerOptions& options,
                 Schedule schedule, double solve_time_s, int64_t min_feasible_budget_bytes) {
  const SimulationResult result = simulate(profile, schedule);
  if (result.peak_bytes > options.budget_bytes()) {
    return infeasible_plan(planner, options, solve_time_s, min_feasible_budget_bytes);
  }
  Plan plan;
  plan.planner = planner;
  plan.feasible = true;
  plan.budget_bytes = options.budget_bytes();
  plan.predicted_peak_bytes = result.peak_bytes;
  plan.predicted_time_s = result.time_s;
  plan.recompute_s = result.recompute_s;
  plan.recompute_count = result.recompute_count;
  plan.recompute_flops = result.recompute_flops;
  plan.solve_time_s = solve_time_s;
  plan.min_feasible_budget_bytes = min_feasible_budget_bytes;
  plan.schedule = std::move(schedule);
  return plan;
}

void require_feasible(const Plan& plan) {
  if (plan.feasible) return;
  auto bytes = [](int64_t value) { return format_bytes(value) + " (" + std::to_string(value) + " B)"; };
  throw InvalidArgument("plan of planner " + plan.planner + " is infeasible: its budget " +
                        bytes(plan.budget_bytes) + " is below the least it fits, " +
                        bytes(plan.min_feasible_budget_bytes) +
                        " (Plan::min_feasible_budget_bytes), so it has no schedule; raise "
                        "PlannerOptions' budget_bytes to at least that, or choose another planner");
}

nlohmann::json plan_to_json(const Plan& plan) {
  nlohmann::json out = {{"planner", plan.planner},
                        {"feasible", plan.feasible},
                        {"budget_bytes", plan.budget_bytes},
                        {"min_feasible_budget_bytes", plan.min_feasible_budget_bytes},
                        {"solve_time_s", plan.solve_time_s}};
  // Predictions exist only for a feasible plan; null says so rather than a misleading 0.
  auto when_feasible = [&](auto value) {
    return plan.feasible ? nlohmann::json(value) : nlohmann::json(nullptr);
  };
  out["predicted_peak_bytes"] = when_feasible(plan.predicted_peak_bytes);
  out["predicted_time_s"] = when_feasible(plan.predicted_time_s);
  out["recompute_s"] = when_feasible(plan.recompute_s);
  out["recompute_count"] = when_feasible(plan.recompute_count);
  out["recompute_flops"] = when_feasible(plan.recompute_flops);
  out["schedule"] = schedule_to_json(plan.schedule);
  if (!plan.runtime_policy.empty()) out["runtime_policy"] = plan.runtime_policy;
  if (plan.runtime_policy == "gac") out["gac"] = gac_options_to_json(plan.gac);
  out["codecs"] = codec_list_name(plan.codecs);
  out["lossy"] = is_lossy(plan.schedule);
  out["codecs_used"] = codec_list_name(codecs_used(plan.schedule));
  return out;
}

}  // namespace memento
