// `memento bench`: the measured comparison of planners (memento/train/benchmark.h does the
// work; this file parses options, prints the table or the Bench JSON and writes --out).
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "commands.h"
#include "memento/core/budget.h"
#include "memento/core/error.h"
#include "memento/train/benchmark.h"

namespace memento::cli {

namespace {

struct BenchArgs {
  std::string model_name;
  std::string budgets_text = "30%,50%,70%";
  std::string planners_text = "all";
  std::string codecs_text = "none";
  int64_t batch_size = 0;
  int64_t seq_len = 0;
  std::string granularity = "block";
  int64_t steps = 5;
  int64_t warmup_steps = 1;
  int64_t seed = 0;
  int64_t slots = 500;
  std::string optimizer = "adamw";
  bool max_batch = false;
  std::string memory_cap_text;
  int64_t max_batch_limit = 256;
  int64_t threads = 0;
  bool quiet = false;
  std::string out_path;
  std::string format_text = "text";
};

std::string format_ratio(double value) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.6f", value);
  return text;
}

std::string format_error(double value) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.3g", value);
  return text;
}

void print_text(const BenchResult& result) {
  std::string shape = "batch " + std::to_string(result.batch);
  if (result.seq_len) shape += ", seq " + std::to_string(*result.seq_len);
  std::cout << format_fields(
      {{"model", result.model + " (" + shape + ", " + std::to_string(result.profile.length()) + " stages)"},
       {"machine", result.machine + ", " + std::to_string(result.threads) + " thread(s)"},
       {"steps", std::to_string(result.steps) + " timed after " + std::to_string(result.warmup_steps) +
                     " warm-up, median; schedules take turns"},
       {"fixed bytes", format_bytes(result.profile.fixed_bytes)},
       {"store-all", format_bytes(result.store_all.measured_peak_bytes) + " measured peak, " +
                         format_seconds(result.store_all.step_s) + " per step"}});
  if (!result.rows.empty()) {
    std::cout << "\n";
    TextTable table({"planner", "budget", "status", "measured peak", "predicted peak", "step", "overhead",
                     "recompute", "grad cosine", "grad rel l2"});
    table.align("lllrrrrrrr");
    for (const BenchRow& row : result.rows) {
      const std::string budget = row.budget + " (" + format_bytes(row.budget_bytes) + ")";
      const std::string planner = row.planner + codecs_label(row.codecs, row.codecs_used);
      if (!row.ran) {
        const std::string status =
            row.status == "infeasible"
                ? "infeasible (needs " + format_bytes(row.min_feasible_budget_bytes) + ")"
                : row.status + (row.message.empty() ? "" : ": " + row.message);
        table.add_row({planner, budget, status, "—", "—", "—", "—", "—", "—", "—"});
        continue;
      }
      table.add_row({planner, budget, row.status, format_bytes(row.measured_peak_bytes),
                     format_bytes(row.predicted_peak_bytes), format_seconds(row.step_s),
                     format_change(row.overhead), format_percent(row.recompute_ratio),
                     format_ratio(row.grad_cosine), format_error(row.grad_rel_l2)});
    }
    std::cout << table.str();
  }
  if (!result.max_batch.empty()) {
    std::cout << "\nlargest batch under " << format_bytes(result.max_batch.front().memory_cap_bytes)
              << " (measured)\n";
    TextTable table({"planner", "max batch", "measured peak there", "batches tried"});
    table.align("lrrl");
    for (const MaxBatchResult& search : result.max_batch) {
      int64_t peak_bytes = 0;
      std::string tried;
      for (const MaxBatchPoint& point : search.points) {
        if (point.batch == search.max_batch) peak_bytes = point.measured_peak_bytes;
        tried += (tried.empty() ? "" : " ") + std::to_string(point.batch) + (point.fits ? "" : "✗");
      }
      table.add_row({search.planner + codecs_label(search.codecs, {}),
                     std::to_string(search.max_batch) + (search.reached_limit ? "+" : ""),
                     search.max_batch > 0 ? format_bytes(peak_bytes) : "—", tried});
    }
    std::cout << table.str();
  }
}

void run_bench_command(const BenchArgs& args, bool budgets_given) {
  const Format format = parse_format(args.format_text);
  if (args.model_name.empty())
    throw InvalidArgument("--model is required (see `memento models` for the names)");
  if (args.batch_size != 0) require_at_least(args.batch_size, 1, "--batch");
  if (args.seq_len != 0) require_at_least(args.seq_len, 1, "--seq-len");
  require_at_least(args.steps, 1, "--steps");
  require_at_least(args.warmup_steps, 0, "--warmup");
  require_at_least(args.seed, 0, "--seed");
  require_at_least(args.slots, 1, "--slots");
  require_at_least(args.threads, 0, "--threads");
  require_at_least(args.max_batch_limit, 1, "--max-batch-limit");

  BenchOptions options(args.model_name);
  options.planners(read_planner_list(args.planners_text))
      .codecs(read_codecs(args.codecs_text))
      .batch_size(args.batch_size)
      .seq_len(args.seq_len)
      .granularity(args.granularity)
      .steps(static_cast<int>(args.steps))
      .warmup_steps(static_cast<int>(args.warmup_steps))
      .seed(static_cast<uint64_t>(args.seed))
      .memory_slots(static_cast<int>(args.slots))
      .optimizer(args.optimizer)
      .max_batch_limit(args.max_batch_limit)
      .threads(static_cast<int>(args.threads));
  // --max-batch alone runs only the search; the budget rows come too when --budgets is given.
  const std::vector<std::string> budgets = split_list(args.budgets_text);
  if (budgets.empty())
    throw InvalidArgument("--budgets is empty; give a comma-separated list such as 30%,50%,70%");
  options.budgets(args.max_batch && !budgets_given ? std::vector<std::string>{} : budgets);
  if (args.max_batch) {
    if (args.memory_cap_text.empty()) throw InvalidArgument("--max-batch needs --memory-cap (e.g. 4GiB)");
    if (args.memory_cap_text.back() == '%') {
      throw InvalidArgument("--memory-cap must be an absolute size such as 4GiB, not a share (" +
                            args.memory_cap_text + ")");
    }
    int64_t cap_bytes = 0;
    try {
      cap_bytes = parse_bytes(args.memory_cap_text);
    } catch (const InvalidArgument& e) {
      throw InvalidArgument(std::string("--memory-cap: ") + e.what());
    }
    if (cap_bytes <= 0) throw InvalidArgument("--memory-cap must be positive, got " + args.memory_cap_text);
    options.memory_cap(cap_bytes);
  } else if (!args.memory_cap_text.empty()) {
    throw InvalidArgument("--memory-cap is only used with --max-batch; add --max-batch or drop --memory-cap");
  }
  if (!args.out_path.empty()) check_output(args.out_path, "--out");
  if (!args.quiet)
    options.progress([](const std::string& line) { std::cerr << "memento bench: " << line << "\n"; });

  const BenchResult result = run_bench(options);
  const nlohmann::json document = bench_to_json(result);
  if (!args.out_path.empty()) write_output(args.out_path, document.dump(2) + "\n", "--out");
  if (format == Format::Json) {
    print_json(document);
  } else {
    print_text(result);
    if (!args.out_path.empty()) std::cout << "\nwrote " << args.out_path << "\n";
  }
  for (const BenchRow& row : result.rows) {
    if (row.status == "over_budget" || row.status == "error") exit_with(kExitNegative);
  }
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto args = std::make_shared<BenchArgs>();
  CLI::App* command = app.add_subcommand("bench",
                                         "measure every planner under several budgets from identical model "
                                         "state: peak memory, median step time, "
                                         "overhead against store-all, recomputation and gradient agreement; "
                                         "with --max-batch, the largest batch each "
                                         "planner trains under a memory cap");
  command->add_option("--model", args->model_name, "model name (see `memento models`)")->required();
  CLI::Option* budgets =
      command
          ->add_option(
              "--budgets", args->budgets_text,
              "comma-separated budgets for the whole step: shares of the store-all peak (30%), sizes "
              "(1.5GiB), or min: each planner at its own least feasible budget")
          ->capture_default_str();
  command->add_option("--planners", args->planners_text, "all, or a comma-separated list of planners")
      ->capture_default_str();
  add_codecs_option(command, args->codecs_text,
                    "measured on the model; every planner that uses codecs (store-all, optimal) gets a lossy "
                    "row beside each exact one")
      ->capture_default_str();
  command->add_option("--batch", args->batch_size, "batch size (0: the model's default)")
      ->capture_default_str();
  command->add_option("--seq-len", args->seq_len, "tokens per sequence for language models (0: default)")
      ->capture_default_str();
  command->add_option("--granularity", args->granularity, "block or fine")->capture_default_str();
  command->add_option("--steps", args->steps, "timed steps per schedule; the median is reported")
      ->capture_default_str();
  command->add_option("--warmup", args->warmup_steps, "untimed steps per schedule before timing")
      ->capture_default_str();
  command->add_option("--seed", args->seed, "seed of the parameters, the batch and the step's random numbers")
      ->capture_default_str();
  command->add_option("--slots", args->slots, "memory discretization of the dynamic-programming planners")
      ->capture_default_str();
  command
      ->add_option(
          "--optimizer", args->optimizer,
          "optimizer whose state counts in the fixed bytes: sgd, momentum, adam, adamw, adagrad, rmsprop")
      ->capture_default_str();
  command->add_flag(
      "--max-batch", args->max_batch,
      "find the largest batch each planner (and store-all) trains under --memory-cap, measured; "
      "without --budgets only this search runs");
  command->add_option("--memory-cap", args->memory_cap_text, "hard cap for --max-batch, e.g. 4GiB");
  command->add_option("--max-batch-limit", args->max_batch_limit, "largest batch --max-batch tries")
      ->capture_default_str();
  command->add_option("--threads", args->threads, "LibTorch intra-op threads (0: leave as configured)")
      ->capture_default_str();
  command->add_flag("--quiet", args->quiet, "no progress lines on stderr");
  command->add_option("--out", args->out_path, "also write the Bench JSON to this file (atomically)");
  add_format_option(command, args->format_text);
  command->footer(
      "Peaks are whole-step bytes (fixed bytes included), comparable to budgets. The recompute column is the "
      "share of forward work redone: the profile's forward_s of the forwards the step re-ran over the total "
      "forward_s (from the profile, not timed); recompute_s in the JSON is measured. Rows whose measured "
      "peak "
      "exceeds the budget by more than 5% say over_budget (exit 1). Lossy rows say (lossy: CODECS) beside "
      "the "
      "planner; their grad cosine and grad rel l2 are against store-all's exact gradients.");
  command->callback([args, budgets] { run_bench_command(*args, budgets->count() > 0); });
}

}  // namespace memento::cli
