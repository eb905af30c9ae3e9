#include "memento/train/trainer.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <mutex>
#include <sstream>
#include <unordered_set>

#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>

#include "memento/core/budget.h"
#include "memento/core/error.h"
#include "memento/core/output_file.h"
#include "memento/core/sealed.h"
#include "memento/core/simulate.h"
#include "memento/torch/profiler.h"

namespace memento {

namespace {

using Clock = std::chrono::steady_clock;

// Format 2: sealed (core/sealed.h: length and checksum), optimizer state per parameter
// index. Format 1 (a bare LibTorch archive, no checksum) is still read.
constexpr int64_t kCheckpointFormat = 2;
constexpr char kCheckpointFormatName[] = "memento.checkpoint";
constexpr double kPi = 3.14159265358979323846;

torch::Tensor rng_state() {
  auto generator = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(generator.mutex());
  return generator.get_state();
}

void set_rng_state(const torch::Tensor& state) {
  auto generator = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_state(state);
}

torch::Tensor scalar(int64_t value) {
  return torch::tensor(value, torch::kInt64);
}

int64_t read_int(torch::serialize::InputArchive& archive, const std::string& key) {
  torch::Tensor value;
  archive.read(key, value);
  return value.item<int64_t>();
}

std::string read_string(torch::serialize::InputArchive& archive, const std::string& key) {
  c10::IValue value;
  archive.read(key, value);
  return value.toStringRef();
}

std::string first_line(const std::string& text) {
  return text.substr(0, text.find('\n'));
}

// Names of parameters and buffers in registration order, one per line: the checkpoint's
// table of contents, so that a checkpoint of another architecture is refused by name.
std::string joined_names(const torch::OrderedDict<std::string, torch::Tensor>& items) {
  std::string names;
  for (const auto& item : items) names += item.key() + "\n";
  return names;
}

// Name of the first parameter holding NaN or infinity, "" when all are finite.
std::string first_non_finite_parameter(const torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (const auto& item : module.named_parameters()) {
    if (!torch::isfinite(item.value()).all().item<bool>()) return item.key();
  }
  return "";
}

std::string read_checkpoint_file(const std::string& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) {
    throw DataError("cannot read checkpoint " + path + ": " + std::strerror(errno) + "; check --resume");
  }
  if (S_ISDIR(info.st_mode))
    throw DataError("cannot read checkpoint " + path + ": it is a directory, not a file");
  std::ifstream in(path, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  if (!in && !in.eof()) throw DataError("cannot read checkpoint " + path + ": reading it failed");
  return bytes.str();
}

DataShard shard_of(const ProcessGroup* group) {
  if (group == nullptr) return {};
  return {group->rank(), group->world_size()};
}

}  // namespace

double learning_rate_at(const TrainOptions& options, int64_t step) {
  const int64_t total = std::max<int64_t>(1, options.steps);
  const int64_t warmup = options.warmup_steps >= 0 ? options.warmup_steps : std::max<int64_t>(1, total / 20);
  const double peak = options.learning_rate;
  if (step < warmup) return peak * static_cast<double>(step + 1) / static_cast<double>(warmup);
  const int64_t decay_steps = total - warmup;
  if (decay_steps <= 1) return peak;
  const double progress =
      std::min(1.0, static_cast<double>(step - warmup) / static_cast<double>(decay_steps - 1));
  const double floor = options.min_learning_rate_fraction * peak;
  return floor + (peak - floor) * 0.5 * (1.0 + std::cos(kPi * progress));
}

Trainer::Trainer(Model model, std::shared_ptr<const Dataset> train, std::shared_ptr<const Dataset> validation,
                 TrainOptions options, std::shared_ptr<ProcessGroup> group)
    : model_(std::move(model)),
      train_(std::move(train)),
      validation_(std::move(validation)),
      options_(options),
      loader_(train_, options.batch_size, options.seed, /*shuffle=*/true, shard_of(group.get())),
      group_(group && group->world_size() > 1 ? std::move(group) : nullptr) {
  if (!model_.chain || !model_.loss) throw InvalidArgument("Trainer needs a model with a chain and a loss");
  if (!validation_) throw InvalidArgument("Trainer needs a validation data set");
  if (options_.steps < 1)
    throw InvalidArgument("--steps must be at least 1, got " + std::to_string(options_.steps));
  if (!(options_.learning_rate > 0) || !std::isfinite(options_.learning_rate)) {
    throw InvalidArgument("--lr must be a positive number, got " + std::to_string(options_.learning_rate));
  }
  torch::manual_seed(options_.seed);
  evaluation_batches_ = evaluation_batches(*validation_, options_.batch_size, options_.eval_batches);
  executor_ = std::make_unique<Executor>(model_.chain, model_.loss);
  optimizer_ = std::make_unique<torch::optim::AdamW>(model_.chain->parameters(),
                                                     torch::optim::AdamWOptions(options_.learning_rate)
                                                         .betas({options_.beta1, options_.beta2})
                                                         .weight_decay(options_.weight_decay));
  // Gradients live for the whole run (zeroed in place, never freed), so every step starts
  // from the same allocations and its peak above the start is activations + temporaries.
  {
    torch::NoGradGuard no_grad;
    for (auto& parameter : model_.chain->parameters()) {
      if (parameter.requires_grad()) parameter.mutable_grad() = torch::zeros_like(parameter);
    }
  }
  if (group_) {
    require_same_model_on_every_rank();
    averager_ = std::make_unique<GradientAverager>(*group_, *model_.chain);
  }
  runner_ = static_runner(store_all_schedule(model_.chain->length()));
  join_runner(*runner_);
  model_.chain->train();
}

// Every rank must train the same thing: a rank started with another model, seed or option
// would silently average unrelated gradients.
void Trainer::require_same_model_on_every_rank() {
  std::string shapes;
  std::string values;
  for (const auto& item : model_.chain->named_parameters()) {
    shapes += item.key() + c10::str(item.value().sizes()) + ";";
    const torch::Tensor contiguous = item.value().detach().contiguous();
    values.append(static_cast<const char*>(contiguous.data_ptr()),
                  static_cast<size_t>(contiguous.numel()) * contiguous.element_size());
  }
  group_->require_same("model (" + model_.info.name + ": parameter names and shapes)",
                       model_.info.name + " " + std::to_string(fnv1a64(shapes)));
  group_->require_same(
      "initial parameter values (fnv1a64; the same --seed on every rank builds the same model)",
      std::to_string(fnv1a64(values)));
  char options[256];
  std::snprintf(options, sizeof options, "steps %lld, batch %lld, lr %.17g, seed %llu, data %s",
                static_cast<long long>(options_.steps), static_cast<long long>(options_.batch_size),
                options_.learning_rate, static_cast<unsigned long long>(options_.seed),
                train_->describe().c_str());
  group_->require_same("training options", options);
}

// The runner whose steps train is joined to the data-parallel run: its backward launches
// the gradient buckets, and its policy decides from the ranks' mean statistics.
void Trainer::join_runner(PlanRunner& runner) {
  if (!group_) return;
  runner.set_training_hooks(averager_->hooks());
  runner.set_statistics_reducer(
      [group = group_](const std::vector<double>& values) { return group->all_reduce_mean(values); });
}

// A static plan of `schedule` over a unit-size profile of the chain: PlanRunner checks
// lengths, and a static plan's schedule runs as is whatever the sizes.
std::unique_ptr<PlanRunner> Trainer::static_runner(Schedule schedule) {
  ChainProfile unit;
  unit.model = model_.info.name;
  for (int i = 0; i < model_.chain->length(); ++i) {
    StageProfile stage;
    stage.name = model_.chain->stage_name(i);
    stage.input_bytes = stage.output_bytes = stage.saved_bytes = 1;
    unit.stages.push_back(stage);
  }
  simulate(unit, schedule);  // throws ScheduleError naming the op when it does not fit this chain
  Plan plan;
  plan.planner = "schedule";
  plan.feasible = true;
  plan.schedule = std::move(schedule);
  return std::make_unique<PlanRunner>(*executor_, std::move(plan), std::move(unit));
}

void Trainer::set_schedule(Schedule schedule) {
  if (group_) group_->require_same("schedule", std::to_string(fnv1a64(to_string(schedule))));
  runner_ = static_runner(std::move(schedule));
  join_runner(*runner_);
}

void Trainer::set_plan(const Plan& plan, const ChainProfile& profile) {
  if (group_) {
    // What decides the steps, not how long planning took (solve_time_s differs per rank).
    nlohmann::json decisive = plan_to_json(plan);
    decisive.erase("solve_time_s");
    group_->require_same("plan (planner " + plan.planner + ")",
                         plan.planner + " " + std::to_string(fnv1a64(decisive.dump())));
  }
  runner_.reset();  // its hooks (if any) leave the executor before the new ones
  runner_ = std::make_unique<PlanRunner>(*executor_, plan, profile);
  join_runner(*runner_);
}

void Trainer::zero_gradients() {
  torch::NoGradGuard no_grad;
  for (auto& parameter : model_.chain->parameters()) {
    if (parameter.grad().defined()) parameter.mutable_grad().zero_();
  }
}

int64_t Trainer::state_bytes() const {
  // Counted exactly as the Profiler counts a profile's fixed bytes, so that measured step
  // peaks and the plan's predictions share one definition.
  TensorList state = model_.chain->parameters();
  for (const auto& buffer : model_.chain->buffers()) state.push_back(buffer);
  TensorList gradients;
  for (const auto& parameter : model_.chain->parameters()) gradients.push_back(parameter.grad());
  const Batch& batch = evaluation_batches_.front();
  TensorList inputs = batch.inputs;
  inputs.insert(inputs.end(), batch.targets.begin(), batch.targets.end());
  return tensor_bytes(state) + tensor_bytes(gradients) + optimizer_state_bytes("adamw", *model_.chain) +
         tensor_bytes(inputs) + (averager_ ? averager_->buffer_bytes() : 0);
}

int64_t Trainer::step_peak_bytes(const StepResult& result) const {
  // The tracker sees the whole process (data sets, evaluation batches); what the plan
  // predicts is the state plus what the step allocated on top of its start.
  return state_bytes() + (result.peak_bytes - result.start_bytes);
}

TrainStep Trainer::run_step(const Batch& batch, PlanRunner& runner, bool feed_policy) {
  const StepResult result = runner.step(batch, feed_policy);
  TrainStep out;
  out.loss = result.loss;
  out.compute_s = result.step_s;
  out.peak_bytes = step_peak_bytes(result);
  out.recompute_count = result.recompute_count;
  out.items = batch.inputs.front().size(0) * train_->items_per_sample();
  return out;
}

TrainStep Trainer::train_step() {
  if (finished()) {
    throw InvalidArgument("the run already did its " + std::to_string(options_.steps) +
                          " steps; raise --steps to train further");
  }
  const auto start = Clock::now();
  zero_gradients();
  const Batch batch = loader_.next();
  const double learning_rate = learning_rate_at(options_, step_);
  for (auto& group : optimizer_->param_groups()) {
    static_cast<torch::optim::AdamWOptions&>(group.options()).lr(learning_rate);
  }
  TrainStep out = run_step(batch, *runner_);
  if (averager_) {
    // Every rank now holds the mean gradient, and reports the mean loss: the same numbers
    // one process with the whole global batch computes (up to the summation order).
    averager_->finish();
    out.loss = group_->all_reduce_mean({out.loss}).front();
    out.items *= group_->world_size();
  }
  if (!std::isfinite(out.loss)) {
    const std::string broken = first_non_finite_parameter(*model_.chain);
    if (!broken.empty()) {
      throw RuntimeError("training loss became " + std::to_string(out.loss) + " at step " +
                         std::to_string(step_ + 1) + " of " + model_.info.name +
                         " because the weights are not finite (parameter " + broken +
                         "): the previous update overflowed; lower --lr (now " +
                         std::to_string(options_.learning_rate) + ")");
    }
    throw RuntimeError("training loss became " + std::to_string(out.loss) + " at step " +
                       std::to_string(step_ + 1) + " of " + model_.info.name +
                       " with finite weights: training diverged; lower --lr (now " +
                       std::to_string(options_.learning_rate) + ")");
  }
  const double max_norm =
      options_.clip_grad_norm > 0 ? options_.clip_grad_norm : std::numeric_limits<double>::infinity();
  out.grad_norm = torch::nn::utils::clip_grad_norm_(model_.chain->parameters(), max_norm);
  optimizer_step();
  ++step_;
  out.step = step_;
  out.learning_rate = learning_rate;
  out.step_s = std::chrono::duration<double>(Clock::now() - start).count();
  return out;
}

// Parameters of a frozen prefix (GAC's freeze mode) are not updated: AdamW would still move
// them with the momentum of earlier steps, so their gradients leave the step for its
// duration (AdamW skips a parameter without one). A parameter shared with a stage that
// trains (tied weights) is updated as usual.
void Trainer::optimizer_step() {
  const int frozen = runner_->frozen_stages();
  if (frozen == 0) {
    optimizer_->step();
    return;
  }
  std::unordered_set<const void*> training;
  for (int i = frozen; i < model_.chain->length(); ++i) {
    for (const auto& parameter : model_.chain->stage(i).parameters())
      training.insert(parameter.unsafeGetTensorImpl());
  }
  std::vector<std::pair<torch::Tensor, torch::Tensor>> set_aside;
  for (int i = 0; i < frozen; ++i) {
    for (auto& parameter : model_.chain->stage(i).parameters()) {
      if (training.count(parameter.unsafeGetTensorImpl()) || !parameter.grad().defined()) continue;
      set_aside.emplace_back(parameter, parameter.grad());
      parameter.mutable_grad() = torch::Tensor();
    }
  }
  struct PutBack {
    std::vector<std::pair<torch::Tensor, torch::Tensor>>& set_aside;
    ~PutBack() {
      for (auto& entry : set_aside) entry.first.mutable_grad() = entry.second;
    }
  } put_back{set_aside};
  optimizer_->step();
}

TrainStep Trainer::measure_step(const Schedule& schedule) {
  const std::unique_ptr<PlanRunner> runner = static_runner(schedule);
  return measure_with(*runner);
}

TrainStep Trainer::measure_plan_step() {
  return measure_with(*runner_);
}

TrainStep Trainer::measure_with(PlanRunner& runner) {
  const LoaderPosition position = loader_.position();
  const Batch batch = loader_.next();
  loader_.set_position(position);
  const torch::Tensor rng = rng_state();
  std::vector<torch::Tensor> buffers;
  {
    torch::NoGradGuard no_grad;
    for (const auto& buffer : model_.chain->buffers()) buffers.push_back(buffer.clone());
  }
  zero_gradients();
  TrainStep out = run_step(batch, runner, /*feed_policy=*/false);
  zero_gradients();
  {
    torch::NoGradGuard no_grad;
    auto current = model_.chain->buffers();
    for (size_t i = 0; i < current.size(); ++i) current[i].copy_(buffers[i]);
  }
  set_rng_state(rng);
  out.step = step_;
  out.step_s = out.compute_s;
  return out;
}

Evaluation Trainer::evaluate() {
  Evaluation out;
  out.step = step_;
  model_.chain->eval();
  struct BackToTrain {
    Chain& chain;
    ~BackToTrain() { chain.train(); }
  } back_to_train{*model_.chain};
  torch::NoGradGuard no_grad;
  double loss = 0, accuracy = 0;
  for (const Batch& batch : evaluation_batches_) {
    const TensorList outputs = model_.chain->forward(batch.inputs);
    loss += model_.loss(outputs, batch.targets).item<double>();
    if (model_.accuracy) accuracy += model_.accuracy(outputs, batch.targets);
  }
  const auto count = static_cast<double>(evaluation_batches_.size());
  out.loss = loss / count;
  out.accuracy = model_.accuracy ? accuracy / count : std::numeric_limits<double>::quiet_NaN();
  runner_->observe_validation(step_, out.loss);
  return out;
}

void Trainer::save(const std::string& path) const {
  if (group_ && group_->rank() != 0) return;
  torch::serialize::OutputArchive archive;
  archive.write("format", scalar(kCheckpointFormat));
  // Absent in single-process checkpoints, so that their bytes stay what they were.
  if (group_) archive.write("world_size", scalar(group_->world_size()));
  archive.write("model_name", c10::IValue(model_.info.name));
  archive.write("data", c10::IValue(train_->describe()));
  archive.write("batch_size", scalar(options_.batch_size));
  archive.write("seed", scalar(static_cast<int64_t>(options_.seed)));
  archive.write("step", scalar(step_));
  archive.write("data_epoch", scalar(loader_.position().epoch));
  archive.write("data_index", scalar(loader_.position().index));
  archive.write("rng_cpu", rng_state());
  const auto parameters = model_.chain->named_parameters();
  const auto buffers = model_.chain->named_buffers();
  archive.write("parameter_names", c10::IValue(joined_names(parameters)));
  archive.write("buffer_names", c10::IValue(joined_names(buffers)));
  for (size_t i = 0; i < parameters.size(); ++i)
    archive.write("parameter" + std::to_string(i), parameters[i].value());
  for (size_t i = 0; i < buffers.size(); ++i) {
    archive.write("buffer" + std::to_string(i), buffers[i].value(), /*is_buffer=*/true);
  }
  write_optimizer_state(archive);
  const std::string policy_state = runner_->policy_state();
  if (!policy_state.empty()) archive.write("policy_state", c10::IValue(policy_state));
  std::ostringstream bytes;
  archive.save_to(bytes);
  write_file_atomically(path, seal(kCheckpointFormatName, static_cast<int>(kCheckpointFormat), bytes.str()));
}

// LibTorch's own optimizer serialization keys the state by tensor addresses and writes it
// in hash-map order, so two identical runs would save different bytes. Here the state is
// written per parameter index: the same state gives the same file.
void Trainer::write_optimizer_state(torch::serialize::OutputArchive& archive) const {
  const auto& states = optimizer_->state();
  const std::vector<torch::Tensor> parameters = model_.chain->parameters();
  for (size_t i = 0; i < parameters.size(); ++i) {
    const auto found = states.find(c10::guts::to_string(parameters[i].unsafeGetTensorImpl()));
    const std::string prefix = "adamw" + std::to_string(i) + "_";
    if (found == states.end()) {
      archive.write(prefix + "step", scalar(-1));
      continue;
    }
    const auto& state = static_cast<const torch::optim::AdamWParamState&>(*found->second);
    archive.write(prefix + "step", scalar(state.step()));
    archive.write(prefix + "exp_avg", state.exp_avg());
    archive.write(prefix + "exp_avg_sq", state.exp_avg_sq());
    if (state.max_exp_avg_sq().defined()) archive.write(prefix + "max_exp_avg_sq", state.max_exp_avg_sq());
  }
}

// Reads what write_optimizer_state wrote into new states (the caller installs them).
std::vector<std::unique_ptr<torch::optim::AdamWParamState>> Trainer::read_optimizer_state(
    torch::serialize::InputArchive& archive) const {
  const std::vector<torch::Tensor> parameters = model_.chain->parameters();
  std::vector<std::unique_ptr<torch::optim::AdamWParamState>> states(parameters.size());
  for (size_t i = 0; i < parameters.size(); ++i) {
    const std::string prefix = "adamw" + std::to_string(i) + "_";
    const int64_t step = read_int(archive, prefix + "step");
    if (step < 0) continue;
    auto state = std::make_unique<torch::optim::AdamWParamState>();
    state->step(step);
    torch::Tensor exp_avg, exp_avg_sq, max_exp_avg_sq;
    archive.read(prefix + "exp_avg", exp_avg);
    archive.read(prefix + "exp_avg_sq", exp_avg_sq);
    if (!exp_avg.sizes().equals(parameters[i].sizes()) || !exp_avg_sq.sizes().equals(parameters[i].sizes())) {
      throw DataError("optimizer state of parameter " + std::to_string(i) + " has the wrong shape");
    }
    state->exp_avg(exp_avg);
    state->exp_avg_sq(exp_avg_sq);
    if (archive.try_read(prefix + "max_exp_avg_sq", max_exp_avg_sq)) state->max_exp_avg_sq(max_exp_avg_sq);
    states[i] = std::move(state);
  }
  return states;
}

void Trainer::resume(const std::string& path) {
  const std::string bytes = read_checkpoint_file(path);
  int64_t sealed_format = 1;
  torch::serialize::InputArchive archive;
  try {
    if (is_sealed(bytes)) {
      const Unsealed content = unseal(bytes, "checkpoint " + path);
      if (content.format != kCheckpointFormatName) {
        throw DataError("checkpoint " + path + " is a " + content.format + " file, not a memento.checkpoint");
      }
      sealed_format = content.version;
      std::istringstream payload(content.payload);
      archive.load_from(payload);
    } else {
      std::istringstream payload(bytes);
      archive.load_from(payload);
    }
  } catch (const c10::Error& e) {
    throw DataError("cannot read checkpoint " + path + ": not a memento checkpoint or damaged (" +
                    first_line(e.what_without_backtrace()) + ")");
  }
  try {
    const int64_t format = read_int(archive, "format");
    if (format != sealed_format || format < 1 || format > kCheckpointFormat) {
      throw DataError("checkpoint " + path + " has format " + std::to_string(format) +
                      "; this memento reads formats 1 to " + std::to_string(kCheckpointFormat));
    }
    auto mismatch = [&](const std::string& what, const std::string& saved, const std::string& now,
                        const std::string& option) {
      throw InvalidArgument("checkpoint " + path + " was written for " + what + " " + saved +
                            ", this run has " + now + "; pass the same " + option + " to resume");
    };
    const std::string model_name = read_string(archive, "model_name");
    if (model_name != model_.info.name) mismatch("model", model_name, model_.info.name, "--model");
    torch::Tensor saved_world;
    const int64_t world_size = archive.try_read("world_size", saved_world) ? saved_world.item<int64_t>() : 1;
    const int64_t this_world = group_ ? group_->world_size() : 1;
    if (world_size != this_world) {
      mismatch("a data-parallel run of", std::to_string(world_size) + " processes",
               std::to_string(this_world), "number of processes (--nproc or WORLD_SIZE)");
    }
    const int64_t batch_size = read_int(archive, "batch_size");
    if (batch_size != options_.batch_size) {
      mismatch("batch size", std::to_string(batch_size), std::to_string(options_.batch_size), "--batch");
    }
    const auto seed = static_cast<uint64_t>(read_int(archive, "seed"));
    if (seed != options_.seed)
      mismatch("seed", std::to_string(seed), std::to_string(options_.seed), "--seed");
    const std::string data = read_string(archive, "data");
    if (data != train_->describe())
      mismatch("data", "\"" + data + "\"", "\"" + train_->describe() + "\"", "--data and --seq-len");

    auto parameters = model_.chain->named_parameters();
    auto buffers = model_.chain->named_buffers();
    if (read_string(archive, "parameter_names") != joined_names(parameters) ||
        read_string(archive, "buffer_names") != joined_names(buffers)) {
      mismatch("a model with other parameters", "(" + model_name + ")", "(" + model_.info.name + ")",
               "--model and model options");
    }
    // Read everything first and assign only when it all fits, so a refused checkpoint
    // leaves the trainer as it was.
    auto read_tensors = [&](const torch::OrderedDict<std::string, torch::Tensor>& items,
                            const std::string& prefix) {
      std::vector<torch::Tensor> values;
      for (size_t i = 0; i < items.size(); ++i) {
        torch::Tensor value;
        archive.read(prefix + std::to_string(i), value, prefix == "buffer");
        if (!value.sizes().equals(items[i].value().sizes()) ||
            value.scalar_type() != items[i].value().scalar_type()) {
          mismatch(prefix + " " + items[i].key() + " of shape", c10::str(value.sizes()),
                   c10::str(items[i].value().sizes()), "--model and model options (--seq-len, --batch)");
        }
        values.push_back(value);
      }
      return values;
    };
    const auto parameter_values = read_tensors(parameters, "parameter");
    for (size_t i = 0; i < parameter_values.size(); ++i) {
      if (!torch::isfinite(parameter_values[i]).all().item<bool>()) {
        throw DataError(
            "checkpoint " + path + " holds weights that are not finite (NaN or inf) in parameter " +
            parameters[i].key() +
            ": it was saved after training diverged; resume from an earlier checkpoint, or start over");
      }
    }
    const auto buffer_values = read_tensors(buffers, "buffer");
    const int64_t step = read_int(archive, "step");
    const LoaderPosition position{read_int(archive, "data_epoch"), read_int(archive, "data_index")};
    torch::Tensor rng;
    archive.read("rng_cpu", rng);
    // The run-time policy's state (GAC thresholds), absent for static plans and before 0.3.
    std::string policy_state;
    c10::IValue policy_value;
    if (archive.try_read("policy_state", policy_value)) policy_state = policy_value.toStringRef();
    torch::serialize::InputArchive optimizer_archive;
    std::vector<std::unique_ptr<torch::optim::AdamWParamState>> optimizer_states;
    if (format == 1) {
      archive.read("optimizer", optimizer_archive);
    } else {
      optimizer_states = read_optimizer_state(archive);
    }

    // The last check that can refuse the checkpoint; it changes the policy only when it fits.
    runner_->restore_policy_state(policy_state);
    {
      torch::NoGradGuard no_grad;
      for (size_t i = 0; i < parameter_values.size(); ++i) parameters[i].value().copy_(parameter_values[i]);
      for (size_t i = 0; i < buffer_values.size(); ++i) buffers[i].value().copy_(buffer_values[i]);
    }
    if (format == 1) {
      optimizer_->load(optimizer_archive);
    } else {
      auto& states = optimizer_->state();
      states.clear();
      const std::vector<torch::Tensor> parameters_in_order = model_.chain->parameters();
      for (size_t i = 0; i < optimizer_states.size(); ++i) {
        if (optimizer_states[i])
          states[c10::guts::to_string(parameters_in_order[i].unsafeGetTensorImpl())] =
              std::move(optimizer_states[i]);
      }
    }
    loader_.set_position(position);
    set_rng_state(rng);
    step_ = step;
    zero_gradients();
  } catch (const c10::Error& e) {
    throw DataError("checkpoint " + path +
                    " is damaged or incomplete: " + first_line(e.what_without_backtrace()));
  }
}

Plan plan_training_step(const ChainProfile& profile, const std::string& planner_name, int64_t budget_bytes,
                        const std::vector<Codec>& codecs, const GacOptions& gac) {
  if (budget_bytes <= 0)
    throw InvalidArgument("--budget must be positive, got " + std::to_string(budget_bytes) + " bytes");
  const auto planner = make_planner(planner_name);
  Plan plan = planner->plan(profile, PlannerOptions(budget_bytes).codecs(codecs).gac(gac));
  if (plan.feasible) return plan;
  const int64_t store_all = store_all_peak_bytes(profile);
  auto percent = [&](int64_t bytes) {
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%.1f%%",
                  100.0 * static_cast<double>(bytes) / static_cast<double>(store_all));
    return std::string(buffer);
  };
  std::string message = "budget " + format_bytes(budget_bytes) + " (" + percent(budget_bytes) +
                        " of the store-all peak " + format_bytes(store_all) + ") is infeasible for planner " +
                        planner_name + " on " + profile.model;
  if (plan.min_feasible_budget_bytes > 0) {
    message += "; the minimum feasible budget is " + format_bytes(plan.min_feasible_budget_bytes) + " (" +
               percent(plan.min_feasible_budget_bytes) + "): raise --budget to at least that";
  } else {
    message += "; raise --budget or choose another --planner";
  }
  throw InvalidArgument(message);
}

}  // namespace memento
