// `memento plan`: one plan at a budget, the planner list, or a time-vs-memory sweep.
#include <algorithm>
#include <cmath>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "commands.h"
#include "memento/core/budget.h"
#include "memento/core/error.h"
#include "memento/core/planner.h"
#include "memento/core/simulate.h"

namespace memento::cli {

namespace {

// DP planners allocate tables proportional to the slot count; beyond this a typo (an
// extra zero or two) would exhaust memory instead of giving a better plan.
constexpr int64_t kMaxSlots = 100000;
constexpr int kDefaultSweepPoints = 10;

struct PlanArgs {
  bool list = false;
  bool sweep = false;
  std::string profile_path;
  std::string budget_text;
  std::string budgets_text;
  std::string planner_name = "optimal";
  std::string planners_text = "all";
  int64_t slots = 500;
  int64_t segments = 0;
  std::string codecs_text = "none";
  std::string format_text = "text";
};

// The figures of the profile every report compares against.
struct Baseline {
  std::string profile_name;
  std::string profile_file;
  int stage_count = 0;
  int64_t fixed_bytes = 0;
  int64_t store_all_peak_bytes = 0;
  double store_all_time_s = 0;
};

Baseline make_baseline(const ChainProfile& profile, const std::string& path) {
  Baseline baseline;
  baseline.profile_file = path;
  baseline.profile_name = profile.model.empty() ? path : profile.model;
  baseline.stage_count = profile.length();
  baseline.fixed_bytes = profile.fixed_bytes;
  const SimulationResult store_all = simulate(profile, store_all_schedule(profile.length()));
  baseline.store_all_peak_bytes = store_all.peak_bytes;
  baseline.store_all_time_s = store_all.time_s;
  return baseline;
}

nlohmann::json baseline_json(const Baseline& baseline) {
  return {{"profile", baseline.profile_name},
          {"profile_file", baseline.profile_file},
          {"stage_count", baseline.stage_count},
          {"fixed_bytes", baseline.fixed_bytes},
          {"store_all_peak_bytes", baseline.store_all_peak_bytes},
          {"store_all_time_s", baseline.store_all_time_s}};
}

std::string profile_file_line(const Baseline& baseline) {
  return baseline.profile_file + " (" + std::to_string(baseline.stage_count) + " stages)";
}

double share_of(int64_t bytes, int64_t total_bytes) {
  return total_bytes > 0 ? static_cast<double>(bytes) / static_cast<double>(total_bytes) : 0.0;
}

double overhead_of(double time_s, double baseline_s) {
  return baseline_s > 0 ? time_s / baseline_s - 1 : 0.0;
}

// Placeholder planners throw std::logic_error from their factory; a user asking for one
// by name gets a bad-input error that says which planners work.
std::unique_ptr<Planner> make_available_planner(const std::string& name) {
  try {
    return make_planner(name);
  } catch (const InvalidArgument& e) {
    throw InvalidArgument(std::string("--planner: ") + e.what());
  } catch (const std::logic_error& e) {
    throw InvalidArgument("planner \"" + name + "\" is not available in this build (" + e.what() +
                          "); run memento plan --list and choose another --planner");
  }
}

// ---- per-stage decisions -------------------------------------------------------------

struct StageDecision {
  std::string decision;  // graph, packed:CODEC (lossy), checkpoint, recompute
  int forward_count = 0;
};

// How the schedule treats each stage: "graph" when its first forward keeps the graph
// (never recomputed), "checkpoint" when its input a_i is kept by a ForwardCheckpoint(i),
// "recompute" when it is rebuilt from an earlier checkpoint, "packed:CODEC" (lossy) when
// its first forward keeps the graph with its saved tensors packed.
std::vector<StageDecision> stage_decisions(const Schedule& schedule, int length) {
  std::vector<StageDecision> decisions(length);
  std::vector<bool> first_with_graph(length, false), checkpointed(length, false);
  std::vector<std::string> packed(length);
  for (const Op& op : schedule) {
    if (!op.is_forward() || op.stage < 0 || op.stage >= length) continue;
    StageDecision& decision = decisions[op.stage];
    if (decision.forward_count++ == 0) {
      first_with_graph[op.stage] = op.kind == OpKind::ForwardWithGraph;
      if (op.kind == OpKind::ForwardLossy) packed[op.stage] = std::string("packed:") + codec_name(op.codec);
    }
    if (op.kind == OpKind::ForwardCheckpoint) checkpointed[op.stage] = true;
  }
  for (int i = 0; i < length; ++i) {
    decisions[i].decision = !packed[i].empty()    ? packed[i]
                            : first_with_graph[i] ? "graph"
                            : checkpointed[i]     ? "checkpoint"
                                                  : "recompute";
  }
  return decisions;
}

// Breaks the short schedule form into lines of at most `width` characters.
std::string wrap_words(const std::string& text, size_t width, const std::string& indent) {
  std::string out, line;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find(' ', start);
    if (end == std::string::npos) end = text.size();
    const std::string word = text.substr(start, end - start);
    if (!line.empty() && line.size() + 1 + word.size() > width) {
      out += line + "\n" + indent;
      line.clear();
    }
    line += (line.empty() ? "" : " ") + word;
    start = end + 1;
  }
  return out + line;
}

// ---- memento plan --list ---------------------------------------------------------------

void run_list(Format format) {
  nlohmann::json planners = nlohmann::json::array();
  TextTable table({"planner", "description"});
  for (const std::string& name : planner_names()) {
    std::string description;
    bool available = true;
    try {
      description = planner_description(name);
    } catch (const std::logic_error& e) {
      available = false;
      description = std::string("not available in this build: ") + e.what();
    }
    planners.push_back({{"name", name}, {"available", available}, {"description", description}});
    table.add_row({name, description});
  }
  if (format == Format::Json)
    print_json({{"planners", planners}});
  else
    std::cout << table.str();
}

// ---- memento plan --profile F --budget B --planner P ----------------------------------

void print_plan_text(const Plan& plan, const Baseline& baseline, const ChainProfile& profile) {
  std::vector<std::pair<std::string, std::string>> fields = {
      {"profile", baseline.profile_name},
      {"file", profile_file_line(baseline)},
      {"planner", plan.planner + lossy_label(plan.schedule)},
      {"budget", format_bytes_exact(plan.budget_bytes) + " = " +
                     format_percent(share_of(plan.budget_bytes, baseline.store_all_peak_bytes)) +
                     " of the store-all peak " + format_bytes(baseline.store_all_peak_bytes)},
  };
  if (!plan.feasible) {
    std::cout << format_fields(fields);
    if (plan.min_feasible_budget_bytes > 0) {
      std::cout
          << "infeasible: " << plan.planner << " needs at least "
          << format_bytes_exact(plan.min_feasible_budget_bytes) << " ("
          << format_percent(share_of(plan.min_feasible_budget_bytes, baseline.store_all_peak_bytes))
          << " of the store-all peak) on this profile; raise --budget to at least that, or choose a planner "
             "with a lower minimum (memento plan --sweep lists each planner's minimum)\n";
    } else {
      std::cout << "infeasible: " << plan.planner
                << " found no schedule for this profile at any budget; choose another --planner\n";
    }
    return;
  }
  fields.push_back(
      {"peak", format_bytes_exact(plan.predicted_peak_bytes) + " = " +
                   format_percent(share_of(plan.predicted_peak_bytes, baseline.store_all_peak_bytes)) +
                   " of store-all (fixed " + format_bytes(baseline.fixed_bytes) + ")"});
  fields.push_back({"time", format_seconds(plan.predicted_time_s) + " = " +
                                format_change(overhead_of(plan.predicted_time_s, baseline.store_all_time_s)) +
                                " over store-all " + format_seconds(baseline.store_all_time_s)});
  fields.push_back({"recompute", std::to_string(plan.recompute_count) + " stage forwards, " +
                                     format_seconds(plan.recompute_s)});
  fields.push_back({"min budget", format_bytes(plan.min_feasible_budget_bytes) + " for " + plan.planner});
  fields.push_back({"solve time", format_seconds(plan.solve_time_s)});
  fields.push_back({"schedule", wrap_words(to_string(plan.schedule), 96, std::string(12, ' '))});
  std::cout << format_fields(fields) << "\n";

  TextTable table({"#", "stage", "kind", "saved", "forward", "decision", "forwards", "recomputed"});
  table.align("rllrrlrr");
  const std::vector<StageDecision> decisions = stage_decisions(plan.schedule, profile.length());
  for (int i = 0; i < profile.length(); ++i) {
    const StageProfile& stage = profile.stages[i];
    const int recomputes = std::max(0, decisions[i].forward_count - 1);
    table.add_row({std::to_string(i), stage.name, stage.kind, format_bytes(stage.saved_bytes),
                   format_seconds(stage.forward_s), decisions[i].decision,
                   std::to_string(decisions[i].forward_count),
                   recomputes == 0 ? "-" : std::to_string(recomputes) + "x"});
  }
  std::cout << table.str();
}

// Long planning says what it is doing, on stderr: stdout may carry JSON.
void print_progress(const std::string& line) {
  std::cerr << "memento plan: " << line << std::endl;
}

void run_plan(const PlanArgs& args, Format format) {
  if (!args.budgets_text.empty())
    throw InvalidArgument("--budgets goes with --sweep; for one plan give --budget B");
  auto planner = make_available_planner(args.planner_name);
  const ChainProfile profile = load_profile(args.profile_path);
  if (args.budget_text.empty()) {
    throw InvalidArgument(
        "missing --budget: give bytes (e.g. 12GiB) or a share of the store-all peak (e.g. 40%)");
  }
  const int64_t budget_bytes = read_budget(args.budget_text, profile);
  const Baseline baseline = make_baseline(profile, args.profile_path);
  const std::vector<Codec> codecs = read_codecs(args.codecs_text);
  check_codecs(codecs, args.planner_name, profile, "profile " + args.profile_path);
  const PlannerOptions options = PlannerOptions(budget_bytes)
                                     .memory_slots(static_cast<int>(args.slots))
                                     .segments(static_cast<int>(args.segments))
                                     .codecs(codecs)
                                     .progress(print_progress);
  const Plan plan = planner->plan(profile, options);

  if (format == Format::Json) {
    nlohmann::json document = baseline_json(baseline);
    document.update(plan_to_json(plan));
    if (plan.feasible) {
      document["time_overhead"] = overhead_of(plan.predicted_time_s, baseline.store_all_time_s);
      nlohmann::json stages = nlohmann::json::array();
      const std::vector<StageDecision> decisions = stage_decisions(plan.schedule, profile.length());
      for (int i = 0; i < profile.length(); ++i) {
        stages.push_back({{"index", i},
                          {"name", profile.stages[i].name},
                          {"kind", profile.stages[i].kind},
                          {"decision", decisions[i].decision},
                          {"forward_count", decisions[i].forward_count},
                          {"recompute_count", std::max(0, decisions[i].forward_count - 1)}});
      }
      document["stages"] = stages;
    } else {
      document["time_overhead"] = nullptr;
      document["stages"] = nlohmann::json::array();
    }
    print_json(document);
  } else {
    print_plan_text(plan, baseline, profile);
  }
  if (!plan.feasible) exit_with(kExitNegative);
}

// ---- memento plan --profile F --sweep ---------------------------------------------------

struct SweepColumn {
  std::string planner;  // the planner's name, with " (lossy)" for its column with codecs
  std::vector<Codec> codecs;
  std::string error;  // non-empty when the planner could not be built or failed
  int64_t min_feasible_budget_bytes = 0;
  std::vector<Plan> plans;  // one per budget
};

// A planner failing in a sweep is reported in its column rather than ending the sweep:
// the other planners' frontier is still worth seeing.
template <typename Body>
void record_failure(SweepColumn& column, Body&& body) {
  try {
    body();
  } catch (const std::exception& e) {
    column.error = e.what();
    column.plans.clear();
  }
}

// From the lowest budget any planner can meet up to the store-all peak, evenly spaced.
std::vector<int64_t> default_budgets(const std::vector<SweepColumn>& columns, int64_t store_all_peak_bytes) {
  int64_t low = store_all_peak_bytes;
  for (const SweepColumn& column : columns) {
    if (column.error.empty() && column.min_feasible_budget_bytes > 0) {
      low = std::min(low, column.min_feasible_budget_bytes);
    }
  }
  std::vector<int64_t> budgets;
  for (int k = 0; k < kDefaultSweepPoints; ++k) {
    const double fraction = static_cast<double>(k) / (kDefaultSweepPoints - 1);
    // Rounding up keeps the first point at the minimum itself, never a byte below it.
    const auto budget = static_cast<int64_t>(
        std::ceil(static_cast<double>(low) + fraction * static_cast<double>(store_all_peak_bytes - low)));
    if (budgets.empty() || budget > budgets.back()) budgets.push_back(budget);
  }
  return budgets;
}

void run_sweep(const PlanArgs& args, Format format) {
  if (!args.budget_text.empty())
    throw InvalidArgument("--sweep takes --budgets B1,B2,... (or none), not --budget");
  const std::vector<std::string> names = read_planner_list(args.planners_text);
  const ChainProfile profile = load_profile(args.profile_path);
  const Baseline baseline = make_baseline(profile, args.profile_path);
  std::vector<int64_t> budgets;
  if (!args.budgets_text.empty()) budgets = read_budget_list(args.budgets_text, profile);
  // With --codecs, every codec-capable planner gets a second, lossy column beside its exact one.
  const std::vector<Codec> codecs = read_codecs(args.codecs_text);
  check_some_planner_uses_codecs(codecs, names);
  check_codecs(codecs, "optimal", profile, "profile " + args.profile_path);
  auto options_for = [&](int64_t budget_bytes, const std::vector<Codec>& allowed) {
    return PlannerOptions(budget_bytes)
        .memory_slots(static_cast<int>(args.slots))
        .segments(static_cast<int>(args.segments))
        .codecs(allowed)
        .progress(print_progress);
  };

  std::vector<SweepColumn> columns;
  std::vector<std::unique_ptr<Planner>> planners;
  auto add_column = [&](const std::string& name, const std::vector<Codec>& allowed) {
    SweepColumn column;
    column.planner = allowed.empty() ? name : name + " (lossy: " + codec_list_name(allowed) + ")";
    column.codecs = allowed;
    std::unique_ptr<Planner> planner;
    record_failure(column, [&] {
      planner = make_planner(name);
      // Every plan carries its planner's minimum; the store-all peak is a budget every
      // planner meets, so this one call finds it.
      column.min_feasible_budget_bytes =
          planner->plan(profile, options_for(baseline.store_all_peak_bytes, allowed))
              .min_feasible_budget_bytes;
    });
    columns.push_back(std::move(column));
    planners.push_back(std::move(planner));
  };
  for (const std::string& name : names) {
    add_column(name, {});
    if (!codecs.empty() && make_planner(name)->supports_codecs()) add_column(name, codecs);
  }
  if (budgets.empty()) budgets = default_budgets(columns, baseline.store_all_peak_bytes);
  for (size_t p = 0; p < columns.size(); ++p) {
    if (!columns[p].error.empty()) continue;
    record_failure(columns[p], [&] {
      for (int64_t budget_bytes : budgets)
        columns[p].plans.push_back(planners[p]->plan(profile, options_for(budget_bytes, columns[p].codecs)));
    });
  }

  bool any_error = false;
  for (const SweepColumn& column : columns) any_error = any_error || !column.error.empty();

  if (format == Format::Json) {
    nlohmann::json document = baseline_json(baseline);
    document["budgets_bytes"] = budgets;
    nlohmann::json planners_json = nlohmann::json::array();
    nlohmann::json errors = nlohmann::json::array();
    for (const SweepColumn& column : columns) {
      nlohmann::json points = nlohmann::json::array();
      for (const Plan& plan : column.plans) {
        const auto when_feasible = [&](auto value) {
          return plan.feasible ? nlohmann::json(value) : nlohmann::json(nullptr);
        };
        points.push_back(
            {{"budget_bytes", plan.budget_bytes},
             {"feasible", plan.feasible},
             {"predicted_peak_bytes", when_feasible(plan.predicted_peak_bytes)},
             {"predicted_time_s", when_feasible(plan.predicted_time_s)},
             {"time_overhead", when_feasible(overhead_of(plan.predicted_time_s, baseline.store_all_time_s))},
             {"recompute_s", when_feasible(plan.recompute_s)},
             {"recompute_count", when_feasible(plan.recompute_count)},
             {"lossy", is_lossy(plan.schedule)},
             {"solve_time_s", plan.solve_time_s}});
      }
      nlohmann::json entry = {
          {"planner", column.planner}, {"codecs", codec_list_name(column.codecs)}, {"points", points}};
      if (column.error.empty()) {
        entry["error"] = nullptr;
        entry["min_feasible_budget_bytes"] = column.min_feasible_budget_bytes;
      } else {
        entry["error"] = column.error;
        entry["min_feasible_budget_bytes"] = nullptr;
        errors.push_back({{"planner", column.planner}, {"message", column.error}});
      }
      planners_json.push_back(entry);
    }
    document["planners"] = planners_json;
    document["errors"] = errors;
    print_json(document);
  } else {
    std::cout << format_fields({{"profile", baseline.profile_name},
                                {"file", profile_file_line(baseline)},
                                {"store-all", "peak " + format_bytes(baseline.store_all_peak_bytes) +
                                                  ", time " + format_seconds(baseline.store_all_time_s) +
                                                  ", fixed " + format_bytes(baseline.fixed_bytes)}})
              << "\npredicted step time (overhead vs store-all) per budget; — = infeasible\n";
    std::vector<std::string> headers = {"budget", "of peak"};
    std::string alignment = "rr";
    for (const SweepColumn& column : columns) {
      if (!column.error.empty()) continue;
      headers.push_back(column.planner);
      alignment += 'r';
    }
    TextTable frontier(headers);
    frontier.align(alignment);
    for (size_t b = 0; b < budgets.size(); ++b) {
      std::vector<std::string> row = {format_bytes(budgets[b]),
                                      format_percent(share_of(budgets[b], baseline.store_all_peak_bytes))};
      for (const SweepColumn& column : columns) {
        if (!column.error.empty()) continue;
        const Plan& plan = column.plans[b];
        row.push_back(plan.feasible
                          ? format_seconds(plan.predicted_time_s) + " " +
                                format_change(overhead_of(plan.predicted_time_s, baseline.store_all_time_s))
                          : "—");
      }
      frontier.add_row(row);
    }
    std::cout << frontier.str() << "\n";
    TextTable minima({"planner", "min feasible budget", "of peak", "status"});
    minima.align("lrrl");
    for (const SweepColumn& column : columns) {
      if (column.error.empty()) {
        minima.add_row(
            {column.planner, format_bytes(column.min_feasible_budget_bytes),
             format_percent(share_of(column.min_feasible_budget_bytes, baseline.store_all_peak_bytes)),
             "ok"});
      } else {
        minima.add_row({column.planner, "—", "—", "error: " + column.error});
      }
    }
    std::cout << minima.str();
  }
  for (const SweepColumn& column : columns) {
    if (!column.error.empty())
      print_warning("planner " + column.planner + " failed in the sweep: " + column.error);
  }
  if (any_error) exit_with(kExitNegative);
}

}  // namespace

void add_plan_command(CLI::App& app) {
  auto args = std::make_shared<PlanArgs>();
  CLI::App* command = app.add_subcommand(
      "plan", "plan one training step under a memory budget, list the planners, or sweep budgets");
  command->add_flag("--list", args->list, "list every planner with its description");
  command->add_option("--profile", args->profile_path,
                      "profile JSON (docs/formats.md), e.g. examples/profiles/gpt2-small.json");
  command->add_option(
      "--budget", args->budget_text,
      "memory budget for the whole step: a size with its unit (12GiB, 800MB, 1048576B) or a share of the "
      "store-all peak (40%)");
  command->add_option("--planner", args->planner_name, "planner name (see --list)")->capture_default_str();
  command->add_option("--slots", args->slots, "memory discretization of the dynamic-programming planners")
      ->capture_default_str();
  command
      ->add_option("--segments", args->segments,
                   "segments for the uniform planner; 0 picks the fastest that fits")
      ->capture_default_str();
  command->add_flag("--sweep", args->sweep, "predicted time of every planner over a range of budgets");
  command->add_option(
      "--budgets", args->budgets_text,
      "budgets of a sweep, comma-separated (default: 10 points from the lowest feasible to 100%)");
  command->add_option("--planners", args->planners_text, "planners of a sweep: all or a comma-separated list")
      ->capture_default_str();
  add_codecs_option(command, args->codecs_text,
                    "the profile must carry their costs (memento profile --codecs); a --sweep adds a lossy "
                    "column for each planner that uses them");
  add_format_option(command, args->format_text);
  command->callback([args, command] {
    const Format format = parse_format(args->format_text);
    for (const char* option : {"--profile", "--budget", "--planner", "--slots", "--segments", "--sweep",
                               "--budgets", "--planners", "--codecs"}) {
      refuse_unused(*command, option, !args->list, "is not used with --list (it only lists the planners)");
    }
    if (args->list) {
      run_list(format);
      return;
    }
    refuse_unused(*command, "--planners", args->sweep,
                  "selects the planners of a --sweep; for one plan give --planner");
    refuse_unused(*command, "--budgets", args->sweep,
                  "gives the budgets of a --sweep; for one plan give --budget");
    refuse_unused(*command, "--planner", !args->sweep, "picks one plan; a --sweep takes --planners");
    refuse_unused(*command, "--segments", args->planner_name == "uniform" || args->sweep,
                  "is only used by --planner uniform");
    require_at_least(args->slots, 1, "--slots");
    if (args->slots > kMaxSlots) {
      throw InvalidArgument("--slots " + std::to_string(args->slots) + " is more than " +
                            std::to_string(kMaxSlots) +
                            "; a few hundred to a few thousand slots is enough for a precise plan");
    }
    require_at_least(args->segments, 0, "--segments");
    if (args->segments > 100000)
      throw InvalidArgument("--segments must be at most the number of stages of the profile");
    if (args->sweep)
      run_sweep(*args, format);
    else
      run_plan(*args, format);
  });
}

}  // namespace memento::cli
