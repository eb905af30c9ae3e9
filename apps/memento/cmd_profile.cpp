// `memento profile`: measures a zoo model's ChainProfile (per-stage times and exact
// bytes), writes it as JSON for `memento plan`, and prints a per-stage table.
#include <iostream>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "commands.h"
#include "memento/core/budget.h"
#include "memento/core/error.h"
#include "memento/core/profile.h"
#include "memento/models/zoo.h"
#include "memento/torch/memory.h"
#include "memento/torch/profiler.h"

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
};

std::string format_ms(double seconds) {
  return fmt::format("{:.3f}", seconds * 1e3);
}

void print_text(const ChainProfile& profile, const std::string& out_path) {
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
                              {"backward", format_seconds(profile.total_backward_s())},
                              {"wrote", out_path}});
}

}  // namespace

void add_profile_command(CLI::App& app) {
  auto arguments = std::make_shared<ProfileArguments>();
  CLI::App* command = app.add_subcommand(
      "profile", "Measure a model's per-stage times and exact memory (a ChainProfile) and write it as JSON");
  command->add_option("--model", arguments->model, "model name (see `memento models`)")->required();
  command->add_option("--batch", arguments->batch_size, "batch size (default: the model's)");
  command->add_option("--seq-len", arguments->seq_len,
                      "tokens per sequence for language models (default: the model's)");
  command->add_option("--granularity", arguments->granularity, "stage split: block or fine")
      ->check(CLI::IsMember({"block", "fine"}));
  command->add_option("--out", arguments->out_path, "where to write the profile JSON")->required();
  command->add_option("--warmup", arguments->warmup_runs, "untimed runs per stage before timing (default 1)");
  command->add_option("--repeats", arguments->timed_runs,
                      "timed runs per stage; the median is kept (default 3)");
  command->add_option("--optimizer", arguments->optimizer,
                      "optimizer whose state counts in the fixed bytes: sgd, momentum, adam, adamw, adagrad, "
                      "rmsprop (default sgd)");
  command->add_option("--seed", arguments->seed,
                      "seed of the parameters and of the example batch (default 0)");
  add_format_option(command, arguments->format_text);
  command->callback([arguments] {
    const Format format = parse_format(arguments->format_text);
    require_at_least(arguments->batch_size, 0, "--batch");
    require_at_least(arguments->seq_len, 0, "--seq-len");
    require_at_least(arguments->warmup_runs, 0, "--warmup");
    require_at_least(arguments->timed_runs, 1, "--repeats");
    // Installed before the model exists so that its parameters are counted like everything else.
    MemoryTracker::instance();
    ModelOptions model_options;
    model_options.batch_size = arguments->batch_size;
    model_options.seq_len = arguments->seq_len;
    model_options.granularity = arguments->granularity;
    model_options.seed = arguments->seed;
    Model model = make_model(arguments->model, model_options);
    model.chain->train();
    const Batch batch = model.example_batch(arguments->seed);

    std::string description = model.info.name + ", batch " +
                              std::to_string(batch.inputs.empty() ? 0 : batch.inputs.front().size(0)) + ", " +
                              arguments->granularity + " stages";
    if (arguments->seq_len > 0) description += ", seq-len " + std::to_string(arguments->seq_len);
    const ProfilerOptions options =
        ProfilerOptions()
            .warmup_runs(arguments->warmup_runs)
            .timed_runs(arguments->timed_runs)
            .optimizer_bytes(optimizer_state_bytes(arguments->optimizer, *model.chain))
            .model(description);
    const ChainProfile profile = profile_chain(*model.chain, batch, model.loss, options);
    write_profile(profile, arguments->out_path);
    if (format == Format::Json) {
      print_json(profile_to_json(profile));
    } else {
      print_text(profile, arguments->out_path);
    }
  });
}

}  // namespace memento::cli
