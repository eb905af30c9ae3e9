// `memento verify`: runs one step per planner through a PlanRunner and one plain autograd
// step from the identical state, and reports whether the gradients are bit-identical (for
// lossy plans: how close, as cosine and relative error) and how measured peak memory and
// step time compare with the plan's predictions.
#include <algorithm>
#include <cmath>
#include <cstring>
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
#include "memento/models/zoo.h"
#include "memento/torch/executor.h"
#include "memento/torch/memory.h"
#include "memento/torch/plan_runner.h"
#include "memento/torch/profiler.h"
#include "memento/torch/step_state.h"

namespace memento::cli {

namespace {

struct VerifyArgs {
  std::string model_name;
  std::string planners_text = "all";
  std::string codecs_text = "none";
  double min_grad_cosine = 0.999;
  std::string budget_text = "100%";
  int64_t batch_size = 0;
  int64_t seq_len = 0;
  std::string granularity = "block";
  int64_t seed = 0;
  int64_t slots = 500;
  std::string format_text = "text";
};

struct Row {
  std::string planner;
  std::vector<Codec> codecs;       // allowed (empty: an exact row)
  std::vector<Codec> codecs_used;  // by the plan: its gradients are approximate
  std::string status;              // "ok", "infeasible", "unavailable", "mismatch", "inaccurate"
  std::string note;
  bool ran = false;
  bool bitwise_equal = false;
  double max_abs_grad_diff = 0;
  double grad_cosine = 0;
  double grad_rel_l2 = 0;
  int64_t measured_peak_bytes = 0;
  int64_t predicted_peak_bytes = 0;
  int64_t min_feasible_budget_bytes = 0;
  double step_s = 0;
  double predicted_step_s = 0;
  int recompute_count = 0;
};

nlohmann::json row_json(const Row& row) {
  nlohmann::json json = {{"planner", row.planner},
                         {"codecs", codec_list_name(row.codecs)},
                         {"codecs_used", codec_list_name(row.codecs_used)},
                         {"lossy", !row.codecs_used.empty()},
                         {"status", row.status}};
  if (!row.note.empty()) json["note"] = row.note;
  if (row.status == "infeasible") json["min_feasible_budget_bytes"] = row.min_feasible_budget_bytes;
  if (!row.ran) return json;
  json["bitwise_equal"] = row.bitwise_equal;
  json["max_abs_grad_diff"] = row.max_abs_grad_diff;
  json["grad_cosine"] = row.grad_cosine;
  json["grad_rel_l2"] = row.grad_rel_l2;
  json["measured_peak_bytes"] = row.measured_peak_bytes;
  json["predicted_peak_bytes"] = row.predicted_peak_bytes;
  json["step_s"] = row.step_s;
  json["predicted_step_s"] = row.predicted_step_s;
  json["recompute_count"] = row.recompute_count;
  return json;
}

// Plans one row, runs its step from the reset state and judges it: an exact plan must give
// plain autograd's bits, a lossy one a gradient cosine of at least `min_grad_cosine`.
void verify_row(Row& row, const PlannerOptions& options, const ChainProfile& profile, Executor& executor,
                StepState& state, uint64_t step_seed, const Batch& batch, const StepResult& plain,
                const std::vector<torch::Tensor>& reference, double min_grad_cosine) {
  Plan plan;
  try {
    plan = make_planner(row.planner)->plan(profile, options);
  } catch (const InvalidArgument&) {
    throw;
  } catch (const std::logic_error& e) {
    row.status = "unavailable";
    row.note = e.what();
    return;
  }
  if (!plan.feasible) {
    row.status = "infeasible";
    row.min_feasible_budget_bytes = plan.min_feasible_budget_bytes;
    row.note = "needs at least " + format_bytes(plan.min_feasible_budget_bytes);
    return;
  }
  row.codecs_used = codecs_used(plan.schedule);
  state.reset(step_seed);
  PlanRunner runner(executor, plan, profile);  // a run-time policy (dtr) acts on measured memory
  const StepResult result = runner.step(batch);
  if (const auto stats = runner.policy_stats()) {
    row.note =
        plan.runtime_policy + " at run time: " + std::to_string(stats->evictions) + " evictions" +
        (stats->over_budget_ops > 0 ? ", " + std::to_string(stats->over_budget_ops) + " ops over budget"
                                    : "");
  }
  const GradientComparison diff = compare_gradients(state.gradients(), reference);
  row.ran = true;
  row.bitwise_equal = diff.bitwise_equal && result.loss == plain.loss;
  row.max_abs_grad_diff = diff.max_abs_diff;
  row.grad_cosine = diff.cosine;
  row.grad_rel_l2 = diff.rel_l2;
  // Measured on top of the bytes alive when the step began (parameters, gradients,
  // inputs), plus the profile's fixed bytes: the same footing as the prediction.
  row.measured_peak_bytes = result.peak_bytes - result.start_bytes + profile.fixed_bytes;
  row.predicted_peak_bytes = plan.predicted_peak_bytes;
  row.step_s = result.step_s;
  row.predicted_step_s = plan.predicted_time_s;
  row.recompute_count = result.recompute_count;
  if (row.codecs_used.empty()) {
    row.status = row.bitwise_equal ? "ok" : "mismatch";
  } else {
    row.status = diff.cosine >= min_grad_cosine ? "ok" : "inaccurate";
  }
}

void run_verify(const VerifyArgs& args) {
  const Format format = parse_format(args.format_text);
  if (args.model_name.empty())
    throw InvalidArgument("--model is required (see `memento models` for the names)");
  if (args.batch_size != 0) require_at_least(args.batch_size, 1, "--batch");
  if (args.seq_len != 0) require_at_least(args.seq_len, 1, "--seq-len");
  require_at_least(args.slots, 1, "--slots");
  require_at_least(args.seed, 0, "--seed");
  if (args.granularity != "block" && args.granularity != "fine") {
    throw InvalidArgument("--granularity must be block or fine, got \"" + args.granularity + "\"");
  }
  const std::vector<std::string> planners = read_planner_list(args.planners_text);
  const std::vector<Codec> codecs = read_codecs(args.codecs_text);
  check_some_planner_uses_codecs(codecs, planners);
  if (!(args.min_grad_cosine >= -1 && args.min_grad_cosine <= 1)) {
    throw InvalidArgument("--min-grad-cosine must be between -1 and 1, got " +
                          std::to_string(args.min_grad_cosine));
  }

  MemoryTracker::instance();  // before the model: its tensors are counted
  ModelOptions options;
  options.batch_size = args.batch_size;
  options.seq_len = args.seq_len;
  options.granularity = args.granularity;
  Model model = make_model(args.model_name, options);
  const Batch batch = model.example_batch(static_cast<uint64_t>(args.seed));
  StepState state(*model.chain);
  state.reset(static_cast<uint64_t>(args.seed));  // allocate the gradients before profiling
  const ChainProfile profile =
      profile_chain(*model.chain, batch, model.loss, ProfilerOptions().model(args.model_name).codecs(codecs));
  const int64_t budget_bytes = read_budget(args.budget_text, profile);

  // The reference: plain autograd from the same state.
  const uint64_t step_seed = static_cast<uint64_t>(args.seed) + 1;
  state.reset(step_seed);
  const StepResult plain = plain_step(*model.chain, model.loss, batch);
  const std::vector<torch::Tensor> reference = state.gradients();

  Executor executor(model.chain, model.loss);
  std::vector<Row> rows;
  bool all_ok = true;
  for (const std::string& name : planners) {
    for (const std::vector<Codec>& allowed : codec_variants(codecs, name)) {
      Row row;
      row.planner = name;
      row.codecs = allowed;
      const PlannerOptions planner_options =
          PlannerOptions(budget_bytes).memory_slots(static_cast<int>(args.slots)).codecs(allowed);
      verify_row(row, planner_options, profile, executor, state, step_seed, batch, plain, reference,
                 args.min_grad_cosine);
      all_ok = all_ok && (!row.ran || row.status == "ok");
      rows.push_back(row);
    }
  }

  const int64_t plain_peak_bytes = plain.peak_bytes - plain.start_bytes + profile.fixed_bytes;
  if (format == Format::Json) {
    nlohmann::json document = {
        {"model", args.model_name},
        {"stage_count", profile.length()},
        {"budget_bytes", budget_bytes},
        {"fixed_bytes", profile.fixed_bytes},
        {"plain", {{"measured_peak_bytes", plain_peak_bytes}, {"step_s", plain.step_s}}},
        {"codecs", codec_list_name(codecs)},
        {"min_grad_cosine", args.min_grad_cosine},
        {"all_bitwise_equal", std::all_of(rows.begin(), rows.end(),
                                          [](const Row& row) {
                                            return !row.ran || !row.codecs_used.empty() || row.bitwise_equal;
                                          })},
        {"all_ok", all_ok},
        {"planners", nlohmann::json::array()}};
    for (const Row& row : rows) document["planners"].push_back(row_json(row));
    print_json(document);
  } else {
    std::cout << format_fields(
        {{"model", args.model_name + " (" + std::to_string(profile.length()) + " stages)"},
         {"budget", format_bytes(budget_bytes)},
         {"fixed bytes", format_bytes(profile.fixed_bytes)},
         {"plain step", format_bytes(plain_peak_bytes) + " peak, " + format_seconds(plain.step_s)}});
    std::cout << "\n";
    TextTable table({"planner", "status", "bitwise", "max |dgrad|", "grad cosine", "grad rel l2",
                     "measured peak", "predicted peak", "peak err", "step", "predicted step", "recomputes"});
    table.align("llrrrrrrrrrr");
    for (const Row& row : rows) {
      const std::string planner = row.planner + codecs_label(row.codecs, row.codecs_used);
      if (!row.ran) {
        table.add_row({planner, row.status + (row.note.empty() ? "" : ": " + row.note), "—", "—", "—", "—",
                       "—", "—", "—", "—", "—", "—"});
        continue;
      }
      const double peak_error = static_cast<double>(row.measured_peak_bytes - row.predicted_peak_bytes) /
                                std::max<int64_t>(1, row.predicted_peak_bytes);
      auto number = [](const char* pattern, double value) {
        char text[32];
        std::snprintf(text, sizeof(text), pattern, value);
        return std::string(text);
      };
      table.add_row({planner, row.status, row.bitwise_equal ? "yes" : "no",
                     number("%.3g", row.max_abs_grad_diff), number("%.6f", row.grad_cosine),
                     number("%.3g", row.grad_rel_l2), format_bytes(row.measured_peak_bytes),
                     format_bytes(row.predicted_peak_bytes), format_change(peak_error),
                     format_seconds(row.step_s), format_seconds(row.predicted_step_s),
                     std::to_string(row.recompute_count)});
    }
    std::cout << table.str();
  }
  // Nothing verified is a negative outcome too: every planner was infeasible at this budget.
  const bool any_ran = std::any_of(rows.begin(), rows.end(), [](const Row& row) { return row.ran; });
  if (!all_ok || !any_ran) {
    if (!any_ran)
      print_warning("no planner fits --budget " + args.budget_text +
                    ": nothing was verified; raise --budget");
    exit_with(kExitNegative);
  }
}

}  // namespace

void add_verify_command(CLI::App& app) {
  auto args = std::make_shared<VerifyArgs>();
  CLI::App* command = app.add_subcommand(
      "verify",
      "run one step per planner through the executor and one plain autograd step from the same state; report "
      "bitwise gradient equality (for lossy rows, gradient cosine and relative error) and measured vs "
      "predicted peak memory and time");
  command->add_option("--model", args->model_name, "model name (see `memento models`)")->required();
  command->add_option("--planners", args->planners_text, "all, or a comma-separated list of planners")
      ->capture_default_str();
  add_codecs_option(command, args->codecs_text,
                    "measured on the model; every planner that uses codecs (store-all, optimal) gets a lossy "
                    "row beside its exact one, judged by --min-grad-cosine instead of bitwise equality")
      ->capture_default_str();
  command
      ->add_option("--min-grad-cosine", args->min_grad_cosine,
                   "least gradient cosine against plain autograd a lossy row must reach to be ok")
      ->capture_default_str();
  command
      ->add_option(
          "--budget", args->budget_text,
          "memory budget for the whole step: bytes (1.5GiB, 300MB) or a share of the store-all peak (40%)")
      ->capture_default_str();
  command->add_option("--batch", args->batch_size, "batch size (0: the model's default)")
      ->capture_default_str();
  command->add_option("--seq-len", args->seq_len, "tokens per sequence for language models (0: default)")
      ->capture_default_str();
  command->add_option("--granularity", args->granularity, "block or fine")->capture_default_str();
  command->add_option("--seed", args->seed, "seed of the batch and of the step's random numbers")
      ->capture_default_str();
  command->add_option("--slots", args->slots, "memory discretization of the dynamic-programming planners")
      ->capture_default_str();
  add_format_option(command, args->format_text);
  command->callback([args] { run_verify(*args); });
}

}  // namespace memento::cli
