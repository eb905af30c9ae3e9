// `memento train`: trains a zoo model under a planner's schedule and a memory budget, and
// reports what checkpointing cost and saved. With no arguments it is the demo (`make demo`):
// gpt-mini on the generated corpus, `optimal` at 50% of the store-all peak.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "commands.h"
#include "launcher.h"
#include "memento/core/budget.h"
#include "memento/core/error.h"
#include "memento/core/planner.h"
#include "memento/core/simulate.h"
#include "memento/data/images.h"
#include "memento/data/text.h"
#include "memento/models/zoo.h"
#include "memento/torch/profiler.h"
#include "memento/train/progress.h"
#include "memento/train/trainer.h"

namespace memento::cli {

namespace {

struct TrainArguments {
  std::string model = "gpt-mini";
  std::string planner = "optimal";
  std::string budget = "50%";
  std::string codecs = "none";
  int64_t steps = 300;
  int64_t batch = 16;
  int64_t seq_len = 64;
  int64_t image_size = 32;
  double lr = 3e-3;
  double dropout = -1;
  int64_t eval_every = 100;
  int64_t eval_batches = 16;
  int64_t compare_repeats = 3;
  std::string save;
  std::string resume;
  uint64_t seed = 0;
  std::string format = "text";
  std::string data;
  // 0: the zoo model's own shape.
  int64_t layers = 0;
  int64_t hidden = 0;
  int64_t heads = 0;
  int64_t patch_size = 0;
  std::string granularity = "block";
  GacArguments gac;
  DistributedArguments distributed;
};

struct DataSets {
  std::shared_ptr<const Dataset> train;
  std::shared_ptr<const Dataset> validation;
};

bool is_language_model(const ModelInfo& info) {
  return info.family == "gpt" || info.family == "bert";
}
bool is_masked_language_model(const ModelInfo& info) {
  return info.family == "bert";
}
bool is_image_model(const ModelInfo& info) {
  return info.family == "resnet" || info.family == "vit";
}

DataSets load_data(const TrainArguments& args, const ModelInfo& info) {
  if (is_language_model(info)) {
    std::vector<uint8_t> bytes;
    std::string source;
    if (args.data.empty()) {
      bytes = generate_corpus(CorpusOptions().bytes(1 << 20).seed(args.seed));
      source = "generated corpus";
    } else {
      bytes = read_text_file(args.data);
      source = args.data;
    }
    if (is_masked_language_model(info)) {
      MaskedTextSplit split = split_masked_text(bytes, source, args.seq_len, args.seed);
      return {split.train, split.validation};
    }
    TextSplit split = split_text(bytes, source, args.seq_len);
    return {split.train, split.validation};
  }
  const auto options = ShapesOptions().image_size(args.image_size);
  if (!args.data.empty()) {
    // A directory of MNIST-format files (Fashion-MNIST): grey 28x28, fitted to the models' input.
    auto train =
        std::make_shared<ImageSet>(fit_images(read_mnist_dir(args.data, "train"), 3, args.image_size));
    auto validation =
        std::make_shared<ImageSet>(fit_images(read_mnist_dir(args.data, "t10k"), 3, args.image_size));
    return {train, validation};
  }
  auto train =
      std::make_shared<ImageSet>(generate_shapes(ShapesOptions(options).count(4096).seed(args.seed)));
  auto validation = std::make_shared<ImageSet>(
      generate_shapes(ShapesOptions(options).count(512).seed(args.seed + 1000003)));
  return {train, validation};
}

double sum(const std::vector<double>& values) {
  double total = 0;
  for (double value : values) total += value;
  return total;
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t middle = values.size() / 2;
  return values.size() % 2 ? values[middle] : 0.5 * (values[middle - 1] + values[middle]);
}

// Store-all and the plan, measured side by side on the same batch and parameters, so the
// ratio is free of drift between the beginning and the end of a run.
struct Comparison {
  double store_all_step_s = 0;
  double planned_step_s = 0;
  int64_t store_all_peak_bytes = 0;
  int64_t planned_peak_bytes = 0;
};

// The plan runs through the trainer's PlanRunner, so a run-time policy (dtr) is measured
// as it trains.
Comparison compare_with_store_all(Trainer& trainer, int64_t repeats) {
  const Schedule store_all = store_all_schedule(trainer.model().chain->length());
  trainer.measure_step(store_all);  // warm-up: first-touch allocations, thread pools
  trainer.measure_plan_step();
  std::vector<double> store_all_s, planned_s;
  Comparison out;
  for (int64_t r = 0; r < repeats; ++r) {
    const TrainStep a = trainer.measure_step(store_all);
    const TrainStep b = trainer.measure_plan_step();
    store_all_s.push_back(a.compute_s);
    planned_s.push_back(b.compute_s);
    out.store_all_peak_bytes = std::max(out.store_all_peak_bytes, a.peak_bytes);
    out.planned_peak_bytes = std::max(out.planned_peak_bytes, b.peak_bytes);
  }
  out.store_all_step_s = median(store_all_s);
  out.planned_step_s = median(planned_s);
  return out;
}

std::string format_loss(double loss) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.4f", loss);
  return buffer;
}

// One token per stage: S stored, R recomputed, F frozen, the codec of a packed stage.
std::string gac_decisions_text(const GacController& gac) {
  std::string text;
  int recomputed = 0, packed = 0;
  for (size_t i = 0; i < gac.decisions().size(); ++i) {
    const GacDecision decision = gac.decisions()[i];
    std::string token = decision == GacDecision::Store ? "S" : decision == GacDecision::Recompute ? "R" : "F";
    if (decision == GacDecision::Compress) token = codec_name(gac.stage_codecs()[i]);
    recomputed += decision == GacDecision::Recompute;
    packed += decision == GacDecision::Compress;
    text += (text.empty() ? "" : " ") + token;
  }
  return "gac [" + text + "]: " + std::to_string(recomputed) + " recomputed, " + std::to_string(packed) +
         " packed, " + std::to_string(gac.frozen_stages()) + " frozen of " +
         std::to_string(gac.decisions().size()) + " stages";
}

nlohmann::json gac_json(const PlanRunner& runner, double compute_s) {
  const GacController& gac = *runner.gac();
  nlohmann::json history = nlohmann::json::array();
  for (const GacRecord& record : gac.history()) history.push_back(gac_record_to_json(record));
  nlohmann::json decisions = nlohmann::json::array();
  for (size_t i = 0; i < gac.decisions().size(); ++i) {
    nlohmann::json item = {{"stage", i},
                           {"name", runner.profile().stages[i].name},
                           {"kind", runner.profile().stages[i].kind},
                           {"decision", gac_decision_name(gac.decisions()[i])}};
    if (gac.decisions()[i] == GacDecision::Compress) item["codec"] = codec_name(gac.stage_codecs()[i]);
    decisions.push_back(item);
  }
  return {{"options", gac_options_to_json(gac.options())},
          {"mode", gac_mode_name(gac.mode())},
          {"proxy_s", runner.proxy_s()},
          {"proxy_share_of_compute", compute_s > 0 ? runner.proxy_s() / compute_s : 0.0},
          {"final_decisions", decisions},
          {"history", history}};
}

nlohmann::json evaluation_json(const Evaluation& evaluation) {
  return {{"step", evaluation.step},
          {"loss", evaluation.loss},
          {"accuracy",
           std::isfinite(evaluation.accuracy) ? nlohmann::json(evaluation.accuracy) : nlohmann::json()}};
}

// Rank 0 profiles; the others plan from its profile (the planners are deterministic, and
// Trainer::set_plan checks every rank's plan against rank 0's). A data-parallel run counts
// its gradient buckets in the fixed bytes.
ChainProfile training_profile(const Model& model, const Dataset& train, int64_t batch,
                              const std::vector<Codec>& codecs, const std::string& description,
                              ProcessGroup* group) {
  if (group != nullptr && group->rank() != 0)
    return profile_from_json(nlohmann::json::parse(group->broadcast("")), "rank 0's profile");
  std::vector<int64_t> indices(static_cast<size_t>(batch));
  for (int64_t i = 0; i < batch; ++i) indices[static_cast<size_t>(i)] = i;
  const Batch probe = train.get_batch(indices);
  ChainProfile profile = profile_chain(*model.chain, probe, model.loss,
                                       ProfilerOptions()
                                           .optimizer_bytes(optimizer_state_bytes("adamw", *model.chain))
                                           .codecs(codecs)
                                           .model(description));
  if (group != nullptr) {
    add_communication_bytes(profile, gradient_buffer_bytes(*model.chain));
    group->broadcast(profile_to_json(profile).dump());
  }
  return profile;
}

// What data parallelism cost a run: the all-reduce time backward did not hide (measured
// in every step) against the time the same all-reduces take with nothing to overlap.
nlohmann::json distributed_json(const Trainer& trainer, const std::vector<double>& exposed_s,
                                double unhidden_s) {
  const ProcessGroup* group = trainer.process_group();
  if (group == nullptr) return nullptr;
  const GradientAverager& averager = *trainer.gradient_averager();
  const double exposed = median(exposed_s);
  return {{"world_size", group->world_size()},
          {"global_batch", trainer.options().batch_size * group->world_size()},
          {"buckets", averager.bucket_count()},
          {"bucket_bytes", averager.buffer_bytes()},
          {"median_exposed_allreduce_s", exposed},
          {"unhidden_allreduce_s", unhidden_s},
          {"hidden_share", unhidden_s > 0 ? std::max(0.0, 1.0 - exposed / unhidden_s) : 0.0}};
}

void run_train(const TrainArguments& args) {
  const Format format = parse_format(args.format);
  require_at_least(args.steps, 1, "--steps");
  require_at_least(args.batch, 1, "--batch");
  require_at_least(args.seq_len, 2, "--seq-len");
  require_at_least(args.eval_every, 0, "--eval-every");
  require_at_least(args.compare_repeats, 1, "--compare-repeats");
  require_at_least(args.layers, 0, "--layers");
  require_at_least(args.hidden, 0, "--hidden");
  require_at_least(args.heads, 0, "--heads");
  require_at_least(args.patch_size, 0, "--patch-size");
  if (args.granularity != "block" && args.granularity != "fine")
    throw InvalidArgument("--granularity must be block or fine, got \"" + args.granularity + "\"");
  if (!(args.lr > 0) || !std::isfinite(args.lr)) throw InvalidArgument("--lr must be a positive number");
  if (!(args.dropout < 1))
    throw InvalidArgument("--dropout must be in [0, 1), got " + std::to_string(args.dropout));
  make_planner(args.planner);  // an unknown planner fails before any work
  const std::vector<Codec> codecs = read_codecs(args.codecs);
  check_planner_uses_codecs(codecs, args.planner);
  const GacOptions gac_options = read_gac_options(args.gac, args.planner, codecs);
  const DistributedOptions distributed = read_distributed_options(args.distributed);
  // A checkpoint that cannot be written is found now, not after the whole run (by rank 0,
  // the one that writes it).
  if (!args.save.empty() && distributed.rank == 0) check_output(args.save, "--save");

  ModelOptions model_options;
  model_options.batch_size = args.batch;
  model_options.seq_len = args.seq_len;
  model_options.image_size = args.image_size;
  model_options.seed = args.seed;
  model_options.dropout = args.dropout;
  model_options.num_layers = args.layers;
  model_options.hidden_size = args.hidden;
  model_options.num_heads = args.heads;
  model_options.patch_size = args.patch_size;
  model_options.granularity = args.granularity;
  const ModelInfo info = model_info(args.model, model_options);
  // Byte-level text with [MASK]; the GPT models keep their own vocabulary.
  if (is_masked_language_model(info)) model_options.vocab_size = MaskedTokenWindows::kVocabularySize;
  if (!is_language_model(info) && !is_image_model(info)) {
    throw InvalidArgument(
        "memento train trains gpt-*/bert-* models on text and resnet*/vit-* models on images; " + args.model +
        " is a " + info.family + " model: choose another --model");
  }
  if (launches_processes(args.distributed)) {
    if (!args.data.empty() && ::access(args.data.c_str(), R_OK) != 0)
      throw InvalidArgument("cannot read --data " + args.data + ": " + std::strerror(errno));
    const int code = launch_processes(args.distributed);
    if (code != 0) throw CLI::RuntimeError(code);
    return;
  }
  std::shared_ptr<ProcessGroup> group;
  if (distributed.distributed()) {
    set_error_rank(distributed.rank);
    quiet_library_logging();
    group = std::make_shared<ProcessGroup>(distributed);
  }
  const bool leader = distributed.rank == 0;
  const DataSets data = load_data(args, info);
  if (const auto* images = dynamic_cast<const ImageSet*>(data.train.get()))
    model_options.num_classes = images->num_classes();
  Model model = make_model(args.model, model_options);

  // The progress and the notes go to stderr when stdout carries JSON; ranks other than 0
  // train silently (their errors still reach stderr).
  std::ostream silent(nullptr);
  std::ostream& log = !leader ? silent : format == Format::Json ? std::cerr : std::cout;
  const bool interactive = leader && stream_is_terminal(format == Format::Json ? stderr : stdout);

  // Profile before the trainer exists: the trainer seeds the RNG and resets the gradients
  // afterwards, so profiling leaves no trace in the trajectory.
  const std::string description =
      args.model + " (batch " + std::to_string(args.batch) +
      (is_language_model(model.info) ? ", seq-len " + std::to_string(args.seq_len) : "") + ")";
  const ChainProfile profile =
      training_profile(model, *data.train, args.batch, codecs, description, group.get());
  TrainOptions train_options;
  train_options.steps = args.steps;
  train_options.batch_size = args.batch;
  train_options.learning_rate = args.lr;
  train_options.eval_batches = args.eval_batches;
  train_options.seed = args.seed;
  Trainer trainer(model, data.train, data.validation, train_options, group);

  const int64_t store_all_bytes = store_all_peak_bytes(profile);
  const int64_t budget_bytes = read_budget(args.budget, profile);
  const Plan plan = plan_training_step(profile, args.planner, budget_bytes, codecs, gac_options);
  // A gac run packs stages only once gradients are seen: its allowed codecs label it.
  const bool lossy_run = plan.runtime_policy == "gac" ? !plan.codecs.empty() : is_lossy(plan.schedule);
  const std::string planner_label = args.planner + (plan.runtime_policy == "gac" && lossy_run
                                                        ? " (lossy: " + codec_list_name(plan.codecs) + ")"
                                                        : lossy_label(plan.schedule));
  trainer.set_plan(plan, profile);

  if (!args.resume.empty()) trainer.resume(args.resume);
  if (trainer.finished()) {
    throw InvalidArgument("checkpoint " + args.resume + " already did " + std::to_string(trainer.step()) +
                          " steps; raise --steps above that to train further");
  }

  log << "memento train: " << args.model << " (" << model.info.parameter_count << " parameters) on "
      << data.train->describe() << "\n";
  log << "plan: " << planner_label << " under " << format_bytes(budget_bytes) << " ("
      << format_percent(static_cast<double>(budget_bytes) / static_cast<double>(store_all_bytes))
      << " of the store-all peak " << format_bytes(store_all_bytes) << "): predicted peak "
      << format_bytes(plan.predicted_peak_bytes) << ", " << plan.recompute_count
      << " recomputed forwards per step\n";
  if (trainer.step() > 0) log << "resumed from " << args.resume << " at step " << trainer.step() << "\n";
  log << std::flush;

  const Comparison comparison = compare_with_store_all(trainer, args.compare_repeats);
  const double overhead = comparison.planned_step_s / comparison.store_all_step_s - 1.0;

  const int64_t first_step = trainer.step();
  const Evaluation initial = trainer.evaluate();
  std::vector<Evaluation> evaluations{initial};
  ProgressBar progress(log, args.steps, interactive, data.train->item_unit());
  progress.message("step " + std::to_string(initial.step) + ": val loss " + format_loss(initial.loss));

  int64_t peak_bytes = 0, last_step_peak_bytes = 0, items = 0, recompute_count = 0;
  double train_s = 0;
  std::vector<double> compute_s, train_losses, exposed_allreduce_s;
  while (!trainer.finished()) {
    const TrainStep step = trainer.train_step();
    train_losses.push_back(step.loss);
    if (const GradientAverager* averager = trainer.gradient_averager())
      exposed_allreduce_s.push_back(averager->last_step().exposed_s);
    progress.update(step);
    peak_bytes = std::max(peak_bytes, step.peak_bytes);
    last_step_peak_bytes = step.peak_bytes;
    items += step.items;
    train_s += step.step_s;
    compute_s.push_back(step.compute_s);
    recompute_count = step.recompute_count;
    const bool last = trainer.finished();
    if ((args.eval_every > 0 && step.step % args.eval_every == 0) || last) {
      const Evaluation evaluation = trainer.evaluate();
      if (evaluations.back().step != evaluation.step) evaluations.push_back(evaluation);
      std::string line =
          "step " + std::to_string(evaluation.step) + ": val loss " + format_loss(evaluation.loss);
      if (std::isfinite(evaluation.accuracy)) line += ", accuracy " + format_percent(evaluation.accuracy);
      if (const GacController* gac = trainer.runner().gac()) line += "; " + gac_decisions_text(*gac);
      // Saving at every evaluation bounds what an interruption loses; the write is atomic.
      if (!args.save.empty()) {
        trainer.save(args.save);
        line += " (saved " + args.save + ")";
      }
      progress.message(line);
    }
  }
  progress.finish();
  const Evaluation final_evaluation = evaluations.back();
  double unhidden_allreduce_s = 0;
  if (group) {
    // Collectives on every rank, in the same order: the measurement, then the end of the run.
    unhidden_allreduce_s = trainer.gradient_averager()->measure_unhidden_s();
    group->barrier();
  }
  if (!leader) return;

  if (format == Format::Json) {
    nlohmann::json evaluations_json = nlohmann::json::array();
    for (const auto& evaluation : evaluations) evaluations_json.push_back(evaluation_json(evaluation));
    print_json(
        {{"format", "memento.train/1"},
         {"model", args.model},
         {"parameters", model.info.parameter_count},
         {"data", data.train->describe()},
         {"planner", args.planner},
         {"codecs", codec_list_name(codecs)},
         {"lossy", lossy_run},
         {"steps", trainer.step()},
         {"first_step", first_step},
         {"batch", args.batch},
         {"seq_len", is_language_model(model.info) ? nlohmann::json(args.seq_len) : nlohmann::json()},
         {"initial_val_loss", initial.loss},
         {"final_val_loss", final_evaluation.loss},
         {"initial_val_accuracy", evaluation_json(initial)["accuracy"]},
         {"final_val_accuracy", evaluation_json(final_evaluation)["accuracy"]},
         {"budget_bytes", budget_bytes},
         {"peak_bytes", peak_bytes},
         {"last_step_peak_bytes", last_step_peak_bytes},
         {"predicted_peak_bytes", plan.predicted_peak_bytes},
         {"store_all_peak_bytes", store_all_bytes},
         {"store_all_measured_peak_bytes", comparison.store_all_peak_bytes},
         {"fixed_bytes", profile.fixed_bytes},
         {"min_feasible_budget_bytes", plan.min_feasible_budget_bytes},
         {"recompute_count_per_step", recompute_count},
         {"step_s", comparison.planned_step_s},
         {"store_all_step_s", comparison.store_all_step_s},
         {"overhead_vs_store_all", overhead},
         {"train_time_s", train_s},
         {"median_train_compute_s", median(compute_s)},
         {"items_per_s", train_s > 0 ? static_cast<double>(items) / train_s : 0.0},
         {"item_unit", data.train->item_unit()},
         {"evaluations", evaluations_json},
         {"checkpoint", args.save.empty() ? nlohmann::json() : nlohmann::json(args.save)},
         {"train_losses", train_losses},
         {"distributed", distributed_json(trainer, exposed_allreduce_s, unhidden_allreduce_s)},
         {"gac", trainer.runner().gac() ? gac_json(trainer.runner(), sum(compute_s)) : nlohmann::json()}});
    return;
  }
  auto share = [&](int64_t bytes) {
    return format_bytes(bytes) + " (" +
           format_percent(static_cast<double>(bytes) / static_cast<double>(store_all_bytes)) +
           " of store-all)";
  };
  std::vector<std::pair<std::string, std::string>> fields = {
      {"validation loss", format_loss(initial.loss) + " -> " + format_loss(final_evaluation.loss) +
                              " (step " + std::to_string(initial.step) + " -> " +
                              std::to_string(final_evaluation.step) + ")"},
  };
  if (std::isfinite(final_evaluation.accuracy)) {
    fields.push_back({"validation accuracy",
                      format_percent(initial.accuracy) + " -> " + format_percent(final_evaluation.accuracy)});
  }
  fields.push_back({"budget", share(budget_bytes) + ", planner " + planner_label});
  fields.push_back({"measured peak", share(peak_bytes) + " (largest training step)"});
  fields.push_back({"predicted peak", share(plan.predicted_peak_bytes)});
  fields.push_back({"store-all peak", format_bytes(store_all_bytes) + " predicted, " +
                                          format_bytes(comparison.store_all_peak_bytes) + " measured"});
  fields.push_back({"step time", format_seconds(comparison.planned_step_s) + " vs " +
                                     format_seconds(comparison.store_all_step_s) + " store-all: " +
                                     format_change(overhead) + " (" + std::to_string(recompute_count) +
                                     " recomputed forwards per step; median of " +
                                     std::to_string(args.compare_repeats) + " side-by-side steps)"});
  char rate[64];
  std::snprintf(rate, sizeof rate, "%.0f %s/s", train_s > 0 ? static_cast<double>(items) / train_s : 0.0,
                data.train->item_unit().c_str());
  fields.push_back({"training", std::to_string(trainer.step() - first_step) + " steps in " +
                                    format_seconds(train_s) + ", " + rate});
  if (const GacController* gac = trainer.runner().gac()) {
    fields.push_back(
        {"gac", gac_decisions_text(*gac) + "; proxies took " +
                    format_percent(trainer.runner().proxy_s() / std::max(sum(compute_s), 1e-12)) +
                    " of the compute (--gac-every " + std::to_string(args.gac.every) + ")"});
  }
  if (group) {
    const nlohmann::json dp = distributed_json(trainer, exposed_allreduce_s, unhidden_allreduce_s);
    fields.push_back(
        {"data parallel", std::to_string(group->world_size()) + " processes, global batch " +
                              std::to_string(dp["global_batch"].get<int64_t>()) + "; all-reduce " +
                              format_seconds(dp["unhidden_allreduce_s"].get<double>()) + " per step alone, " +
                              format_seconds(dp["median_exposed_allreduce_s"].get<double>()) +
                              " not hidden by backward (median)"});
  }
  if (!args.save.empty()) fields.push_back({"checkpoint", args.save});
  std::cout << "\nsummary\n" << format_fields(fields, "  ");
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto args = std::make_shared<TrainArguments>();
  CLI::App* command = app.add_subcommand(
      "train",
      "Train a model under a planner's schedule and a memory budget (no arguments: the gpt-mini demo)");
  command
      ->add_option("--model", args->model,
                   "model from `memento models`: gpt-* (next token) and bert-* (masked bytes) on text, "
                   "resnet*/vit-* on images")
      ->capture_default_str();
  command->add_option("--planner", args->planner, "planner from `memento plan --list`")
      ->capture_default_str();
  command->add_option("--budget", args->budget, "memory budget: bytes (300MiB) or % of the store-all peak")
      ->capture_default_str();
  add_codecs_option(command, args->codecs, "measured on the model, then planned with (store-all, optimal)");
  command->add_option("--steps", args->steps, "optimizer steps")->capture_default_str();
  command->add_option("--batch", args->batch, "samples per step")->capture_default_str();
  command->add_option("--seq-len", args->seq_len, "tokens per sample (language models)")
      ->capture_default_str();
  command->add_option("--image-size", args->image_size, "pixels per side (vision models)")
      ->capture_default_str();
  command->add_option("--patch-size", args->patch_size, "vit-*: pixels per patch side (0: the model's)");
  command->add_option("--layers", args->layers, "transformers: number of blocks (0: the model's)");
  command->add_option("--hidden", args->hidden, "transformers: model width (0: the model's)");
  command->add_option("--heads", args->heads,
                      "transformers: attention heads, dividing --hidden (0: the model's)");
  command->add_option("--dropout", args->dropout, "dropout probability in [0, 1) (default: the model's)");
  command->add_option("--granularity", args->granularity, "stages: block, or fine (sub-blocks)")
      ->capture_default_str();
  command->add_option("--lr", args->lr, "peak learning rate (AdamW, warm-up + cosine)")
      ->capture_default_str();
  command
      ->add_option("--eval-every", args->eval_every,
                   "steps between validation evaluations (0: only at the end)")
      ->capture_default_str();
  command->add_option("--eval-batches", args->eval_batches, "validation batches per evaluation")
      ->capture_default_str();
  command
      ->add_option("--compare-repeats", args->compare_repeats,
                   "side-by-side store-all vs plan steps measured before training")
      ->capture_default_str();
  command->add_option("--save", args->save,
                      "checkpoint file written at every evaluation and at the end (atomically)");
  command->add_option("--resume", args->resume, "checkpoint file to continue from");
  command->add_option("--seed", args->seed, "seed of the model, the data and dropout")->capture_default_str();
  command->add_option(
      "--data", args->data,
      "gpt-*/bert-*: a text file to train on instead of the generated corpus; resnet*/vit-*: a "
      "directory of MNIST-format idx files (.gz too), e.g. /usr/share/datasets/fashion-mnist, "
      "instead of the generated shapes");
  add_gac_options(command, args->gac);
  add_distributed_options(command, args->distributed);
  add_format_option(command, args->format);
  command->callback([args] { run_train(*args); });
}

}  // namespace memento::cli
