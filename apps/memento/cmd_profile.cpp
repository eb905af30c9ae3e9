// `memento profile`: measures a zoo model's ChainProfile (per-stage times and exact
// bytes), writes it as JSON for `memento plan`, records the memory timeline of one
// training step (store-all, and the plan when --planner/--budget are given), and prints a
// per-stage table and the peak breakdown by category. --timeline writes the timelines,
// --report an HTML page with the profile, the timelines and the predicted frontier.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "commands.h"
#include "memento/core/budget.h"
#include "memento/core/error.h"
#include "memento/core/planner.h"
#include "memento/core/profile.h"
#include "memento/models/zoo.h"
#include "memento/report/html.h"
#include "memento/torch/executor.h"
#include "memento/torch/memory.h"
#include "memento/torch/profiler.h"
#include "memento/torch/timeline.h"
#include "memento/train/trainer.h"

namespace memento::cli {
namespace {

struct ProfileArguments {
  std::string model;
  int64_t batch_size = 0;
  int64_t seq_len = 0;
  std::string granularity = "block";
  std::string out_path;
  int warmup_runs = 1;
  int timed_runs = 3;
  std::string optimizer = "sgd";
  uint64_t seed = 0;
  std::string format_text = "text";
  std::string planner;
  std::string budget_text;
  std::string timeline_path;
  std::string report_path;
  int frontier_points = 10;
  std::string codecs_text = "none";
};

std::string format_ms(double seconds) {
  return fmt::format("{:.3f}", seconds * 1e3);
}

// The optimizer of the recorded step, matching the state optimizer_state_bytes() counts.
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const std::string& name, Chain& chain) {
  std::vector<torch::Tensor> parameters;
  for (const torch::Tensor& parameter : chain.parameters()) {
    if (parameter.requires_grad()) parameters.push_back(parameter);
  }
  constexpr double kLearningRate = 1e-3;
  if (name == "sgd")
    return std::make_unique<torch::optim::SGD>(parameters, torch::optim::SGDOptions(kLearningRate));
  if (name == "momentum") {
    return std::make_unique<torch::optim::SGD>(parameters,
                                               torch::optim::SGDOptions(kLearningRate).momentum(0.9));
  }
  if (name == "adam")
    return std::make_unique<torch::optim::Adam>(parameters, torch::optim::AdamOptions(kLearningRate));
  if (name == "adamw") {
    return std::make_unique<torch::optim::AdamW>(parameters, torch::optim::AdamWOptions(kLearningRate));
  }
  if (name == "adagrad") {
    return std::make_unique<torch::optim::Adagrad>(parameters, torch::optim::AdagradOptions(kLearningRate));
  }
  if (name == "rmsprop") {
    return std::make_unique<torch::optim::RMSprop>(parameters, torch::optim::RMSpropOptions(kLearningRate));
  }
  throw InvalidArgument("--optimizer \"" + name +
                        "\" is unknown; choose one of sgd, momentum, adam, adamw, adagrad, rmsprop");
}

// Every planner at `points` budgets spread evenly from the smallest minimum feasible
// budget of any planner up to the store-all peak, planned on the measured profile.
nlohmann::json predicted_frontier(const ChainProfile& profile, int points) {
  const int64_t store_all_bytes = store_all_peak_bytes(profile);
  std::vector<std::unique_ptr<Planner>> planners;
  int64_t lowest_bytes = store_all_bytes;
  for (const std::string& name : planner_names()) {
    std::unique_ptr<Planner> planner = make_planner(name);
    try {
      const Plan plan = planner->plan(profile, PlannerOptions(store_all_bytes));
      if (plan.min_feasible_budget_bytes > 0)
        lowest_bytes = std::min(lowest_bytes, plan.min_feasible_budget_bytes);
    } catch (const std::logic_error&) {
      continue;  // a planner that cannot plan this profile has no frontier
    }
    planners.push_back(std::move(planner));
  }
  nlohmann::json frontier = nlohmann::json::array();
  for (int point = 0; point < points; ++point) {
    const double share = points == 1 ? 1.0 : static_cast<double>(point) / (points - 1);
    const int64_t budget_bytes =
        lowest_bytes + static_cast<int64_t>(share * static_cast<double>(store_all_bytes - lowest_bytes));
    for (const auto& planner : planners) {
      Plan plan;
      try {
        plan = planner->plan(profile, PlannerOptions(budget_bytes));
      } catch (const std::logic_error&) {
        continue;
      }
      nlohmann::json row = {
          {"planner", planner->name()}, {"budget_bytes", budget_bytes}, {"feasible", plan.feasible}};
      row["predicted_peak_bytes"] =
          plan.feasible ? nlohmann::json(plan.predicted_peak_bytes) : nlohmann::json(nullptr);
      row["predicted_time_s"] =
          plan.feasible ? nlohmann::json(plan.predicted_time_s) : nlohmann::json(nullptr);
      frontier.push_back(row);
    }
  }
  return frontier;
}

// Per stage and measured codec: what its graph holds packed, and the pack/unpack time.
void print_lossy_costs(const ChainProfile& profile) {
  if (profile.stages.empty() || profile.stages.front().lossy.empty()) return;
  std::vector<std::string> headers = {"#", "stage", "exact saved"};
  for (const StageProfile::LossyCost& cost : profile.stages.front().lossy) {
    headers.push_back(std::string(codec_name(cost.codec)) + " saved");
    headers.push_back("pack/unpack ms");
  }
  TextTable table(headers);
  table.align("rl" + std::string(headers.size() - 2, 'r'));
  for (int i = 0; i < profile.length(); ++i) {
    const StageProfile& stage = profile.stages[i];
    std::vector<std::string> row = {std::to_string(i), stage.name, format_bytes(stage.saved_bytes)};
    for (const StageProfile::LossyCost& cost : stage.lossy) {
      row.push_back(format_bytes(cost.saved_bytes));
      row.push_back(format_ms(cost.pack_s) + "/" + format_ms(cost.unpack_s));
    }
    table.add_row(row);
  }
  std::cout << "lossy storage (saved tensors packed; the graph's bytes include its packed input)\n\n"
            << table.str() << "\n";
}

void print_stages(const ChainProfile& profile) {
  TextTable table({"#", "stage", "kind", "forward ms", "backward ms", "input", "output", "saved", "fwd temp",
                   "bwd temp"});
  table.align("rllrrrrrrr");
  for (int i = 0; i < profile.length(); ++i) {
    const StageProfile& stage = profile.stages[i];
    table.add_row({std::to_string(i), stage.name, stage.kind, format_ms(stage.forward_s),
                   format_ms(stage.backward_s), format_bytes(stage.input_bytes),
                   format_bytes(stage.output_bytes), format_bytes(stage.saved_bytes),
                   format_bytes(stage.forward_temp_bytes), format_bytes(stage.backward_temp_bytes)});
  }
  std::cout << "profile of " << profile.model << "\n\n" << table.str() << "\n";
  print_lossy_costs(profile);
  const FixedBytes& fixed = profile.fixed_breakdown;
  std::cout << "fixed bytes\n"
            << format_fields({{"parameters", format_bytes(fixed.parameters_bytes)},
                              {"gradients", format_bytes(fixed.gradients_bytes)},
                              {"optimizer state", format_bytes(fixed.optimizer_bytes)},
                              {"inputs", format_bytes(fixed.inputs_bytes)},
                              {"total", format_bytes_exact(profile.fixed_bytes)}},
                             "  ")
            << "\n"
            << format_fields({{"forward", format_seconds(profile.total_forward_s())},
                              {"backward", format_seconds(profile.total_backward_s())}})
            << "\n";
}

std::string timeline_title(const MemoryTimeline& timeline) {
  if (!timeline.budget_bytes) return timeline.planner;
  return timeline.planner + " @ " + format_bytes(*timeline.budget_bytes);
}

// One column per recorded step: the bytes each category held at that step's peak.
void print_peaks(const std::vector<MemoryTimeline>& timelines) {
  std::vector<std::string> headers = {"at the peak"};
  for (const MemoryTimeline& timeline : timelines) headers.push_back(timeline_title(timeline));
  TextTable table(headers);
  table.align(std::string("l") + std::string(timelines.size(), 'r'));
  for (int index = 0; index < kMemoryCategoryCount; ++index) {
    std::vector<std::string> row = {memory_category_name(static_cast<MemoryCategory>(index))};
    for (const MemoryTimeline& timeline : timelines)
      row.push_back(format_bytes(timeline.peak.by_category[index]));
    table.add_row(row);
  }
  const auto add = [&](const std::string& name, auto cell) {
    std::vector<std::string> row = {name};
    for (const MemoryTimeline& timeline : timelines) row.push_back(cell(timeline));
    table.add_row(row);
  };
  add("measured peak", [](const MemoryTimeline& t) { return format_bytes(t.measured_peak_bytes); });
  add("predicted peak", [](const MemoryTimeline& t) { return format_bytes(t.predicted_peak_bytes); });
  add("peak during", [](const MemoryTimeline& t) {
    return t.peak.phase_index >= 0 ? t.phases[static_cast<size_t>(t.peak.phase_index)].label
                                   : std::string("start");
  });
  add("step time", [](const MemoryTimeline& t) { return format_seconds(t.step_s); });
  add("recomputed forwards", [](const MemoryTimeline& t) { return std::to_string(t.step.recompute_count); });
  std::cout << "\nmemory of one training step (forward, loss, backward, optimizer), by category\n\n"
            << table.str("  ");
}

void run_profile(const ProfileArguments& arguments) {
  const Format format = parse_format(arguments.format_text);
  require_at_least(arguments.batch_size, 0, "--batch");
  require_at_least(arguments.seq_len, 0, "--seq-len");
  require_at_least(arguments.warmup_runs, 0, "--warmup");
  require_at_least(arguments.timed_runs, 1, "--repeats");
  require_at_least(arguments.frontier_points, 1, "--frontier-points");
  if (!arguments.planner.empty() && arguments.budget_text.empty()) {
    throw InvalidArgument(
        "--planner " + arguments.planner +
        " needs --budget (bytes such as 300MiB, or a share of the store-all peak such as 60%)");
  }
  // Outputs are checked before the minutes of measuring, not after.
  if (!arguments.out_path.empty()) check_output(arguments.out_path, "--out");
  if (!arguments.timeline_path.empty()) check_output(arguments.timeline_path, "--timeline");
  if (!arguments.report_path.empty()) check_output(arguments.report_path, "--report");
  // Installed before the model exists so that its parameters are counted like everything else.
  MemoryTracker::instance();
  ModelOptions model_options;
  model_options.batch_size = arguments.batch_size;
  model_options.seq_len = arguments.seq_len;
  model_options.granularity = arguments.granularity;
  model_options.seed = arguments.seed;
  Model model = make_model(arguments.model, model_options);
  model.chain->train();
  const Batch batch = model.example_batch(arguments.seed);

  std::string description = model.info.name + ", batch " +
                            std::to_string(batch.inputs.empty() ? 0 : batch.inputs.front().size(0)) + ", " +
                            arguments.granularity + " stages";
  if (arguments.seq_len > 0) description += ", seq-len " + std::to_string(arguments.seq_len);
  const std::vector<Codec> codecs = read_codecs(arguments.codecs_text);
  if (!arguments.budget_text.empty()) {
    check_planner_uses_codecs(codecs, arguments.planner.empty() ? "optimal" : arguments.planner);
  }
  const ProfilerOptions options =
      ProfilerOptions()
          .warmup_runs(arguments.warmup_runs)
          .timed_runs(arguments.timed_runs)
          .optimizer_bytes(optimizer_state_bytes(arguments.optimizer, *model.chain))
          .codecs(codecs)
          .model(description);
  const ChainProfile profile = profile_chain(*model.chain, batch, model.loss, options);
  if (!arguments.out_path.empty()) {
    validate_profile(profile, "measured profile");
    write_output(arguments.out_path, profile_to_json(profile).dump(2) + "\n", "--out");
  }

  // The plan is made (and refused when infeasible) before anything runs.
  const int64_t store_all_bytes = store_all_peak_bytes(profile);
  std::vector<std::pair<Plan, std::optional<int64_t>>> plans;
  plans.emplace_back(make_planner("store-all")->plan(profile, PlannerOptions(store_all_bytes)), std::nullopt);
  if (!arguments.budget_text.empty()) {
    const int64_t budget_bytes = read_budget(arguments.budget_text, profile);
    const std::string planner = arguments.planner.empty() ? "optimal" : arguments.planner;
    plans.emplace_back(plan_training_step(profile, planner, budget_bytes, codecs), budget_bytes);
  }

  std::unique_ptr<torch::optim::Optimizer> optimizer = make_optimizer(arguments.optimizer, *model.chain);
  Executor executor(model.chain, model.loss);
  std::vector<MemoryTimeline> timelines;
  for (const auto& [plan, budget_bytes] : plans) {
    timelines.push_back(
        record_timeline(executor, plan, profile, batch,
                        TimelineOptions().optimizer(optimizer.get()).budget_bytes(budget_bytes)));
  }
  const nlohmann::json timelines_json = timelines_to_json(timelines);
  if (!arguments.timeline_path.empty())
    write_output(arguments.timeline_path,
                 timelines_json.dump(1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n",
                 "--timeline");
  if (!arguments.report_path.empty()) {
    const nlohmann::json report = {{"format", "memento.profile_report/1"},
                                   {"profile", profile_to_json(profile)},
                                   {"timelines", timelines_json},
                                   {"frontier", predicted_frontier(profile, arguments.frontier_points)}};
    write_output(arguments.report_path, render_html_report(report), "--report");
  }

  if (format == Format::Json) {
    print_json(profile_to_json(profile));
    return;
  }
  print_stages(profile);
  print_peaks(timelines);
  std::vector<std::pair<std::string, std::string>> wrote;
  if (!arguments.out_path.empty()) wrote.emplace_back("profile", arguments.out_path);
  if (!arguments.timeline_path.empty()) wrote.emplace_back("timeline", arguments.timeline_path);
  if (!arguments.report_path.empty()) wrote.emplace_back("report", arguments.report_path);
  if (!wrote.empty()) std::cout << "\nwrote\n" << format_fields(wrote, "  ");
}

}  // namespace

void add_profile_command(CLI::App& app) {
  auto arguments = std::make_shared<ProfileArguments>();
  CLI::App* command =
      app.add_subcommand("profile",
                         "Measure a model's per-stage times and exact memory (a ChainProfile), record the "
                         "memory timeline of one "
                         "training step, and print the per-stage table and the peak breakdown");
  command->add_option("--model", arguments->model, "model name (see `memento models`)")->required();
  command->add_option("--batch", arguments->batch_size, "batch size (default: the model's)");
  command->add_option("--seq-len", arguments->seq_len,
                      "tokens per sequence for language models (default: the model's)");
  command->add_option("--granularity", arguments->granularity, "stage split: block or fine")
      ->check(CLI::IsMember({"block", "fine"}));
  command->add_option("--out", arguments->out_path, "where to write the profile JSON (for `memento plan`)");
  command->add_option("--warmup", arguments->warmup_runs, "untimed runs per stage before timing (default 1)");
  command->add_option("--repeats", arguments->timed_runs,
                      "timed runs per stage; the median is kept (default 3)");
  command->add_option("--optimizer", arguments->optimizer,
                      "optimizer of the step (its state counts in the fixed bytes and the timeline): sgd, "
                      "momentum, adam, adamw, adagrad, rmsprop (default sgd)");
  command->add_option("--seed", arguments->seed,
                      "seed of the parameters and of the example batch (default 0)");
  command->add_option("--planner", arguments->planner,
                      "also record the step under this planner's plan (needs --budget; default optimal)");
  command->add_option("--budget", arguments->budget_text,
                      "budget of that plan: bytes (300MiB) or a share of the store-all peak (60%)");
  command->add_option(
      "--timeline", arguments->timeline_path,
      "write the memory timelines (memento.timelines/1: store-all first, then the plan) to FILE");
  command->add_option(
      "--report", arguments->report_path,
      "write an HTML report (profile, timelines, predicted frontier of every planner) to FILE");
  command->add_option("--frontier-points", arguments->frontier_points,
                      "budgets per planner in the report's predicted frontier (default 10)");
  add_codecs_option(command, arguments->codecs_text,
                    "measures each stage's packed bytes and pack/unpack time under them (for plan --codecs), "
                    "and lets the --planner plan use them");
  add_format_option(command, arguments->format_text);
  command->callback([arguments] { run_profile(*arguments); });
}

}  // namespace memento::cli
