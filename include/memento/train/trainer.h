#pragma once
/// \file
/// `Trainer`: trains a zoo `Model` with AdamW, a warm-up + cosine learning-rate schedule
/// and gradient clipping, running every step through a `PlanRunner` (a planner's static
/// schedule, or a run-time policy such as `dtr`); evaluates validation loss and accuracy;
/// saves and resumes the whole training state (parameters, buffers, optimizer state, step,
/// RNG, data position) so that a resumed run continues the same loss trajectory bit for bit.
///
/// Example:
/// \code
///   memento::Model model = memento::make_model("gpt-nano", options);
///   memento::TextSplit split = memento::split_text(memento::generate_corpus(), "generated corpus", 32);
///   memento::TrainOptions train_options;
///   train_options.steps = 100;
///   memento::Trainer trainer(model, split.train, split.validation, train_options);
///   trainer.set_plan(plan, profile);               // default: store-all
///   while (!trainer.finished()) {
///     memento::TrainStep step = trainer.train_step();
///     if (step.step % 50 == 0) trainer.save("run.ckpt");   // atomic: temp file + rename
///   }
///   memento::Evaluation eval = trainer.evaluate();         // eval.loss, eval.accuracy
/// \endcode

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "memento/core/planner.h"
#include "memento/core/profile.h"
#include "memento/core/schedule.h"
#include "memento/data/dataset.h"
#include "memento/distributed/gradient_averager.h"
#include "memento/distributed/process_group.h"
#include "memento/models/zoo.h"
#include "memento/torch/executor.h"
#include "memento/torch/plan_runner.h"

namespace memento {

/// Hyper-parameters and cadence of a training run.
struct TrainOptions {
  int64_t steps = 300;                      ///< optimizer steps in the whole run
  int64_t batch_size = 8;                   ///< samples per step (and per evaluation batch)
  double learning_rate = 3e-3;              ///< peak learning rate, reached after warm-up
  double min_learning_rate_fraction = 0.1;  ///< the cosine ends at this fraction of the peak
  int64_t warmup_steps = -1;                ///< < 0: 5% of steps (at least 1)
  double weight_decay = 0.01;               ///< AdamW decoupled weight decay
  double beta1 = 0.9;
  double beta2 = 0.99;
  double clip_grad_norm = 1.0;  ///< max global L2 norm of the gradients; <= 0 disables
  int64_t eval_batches = 8;     ///< validation batches per evaluation; <= 0: all
  uint64_t seed = 0;            ///< seeds torch's RNG (dropout) and the data order
};

/// Learning rate of the step with 0-based index `step`: linear warm-up from
/// peak / warmup to the peak over the warm-up steps, then a cosine from the peak down to
/// min_learning_rate_fraction x peak at the last step.
double learning_rate_at(const TrainOptions& options, int64_t step);

/// What one training step did.
struct TrainStep {
  int64_t step = 0;          ///< steps completed, this one included (1-based)
  double loss = 0;           ///< training loss of the batch, before the update
  double learning_rate = 0;  ///< learning rate of the update
  double grad_norm = 0;      ///< global L2 norm of the gradients before clipping
  double step_s = 0;         ///< wall time of the whole step (data, forward/backward, update)
  double compute_s = 0;      ///< wall time of forward + loss + backward in the Executor
  int64_t peak_bytes =
      0;  ///< state_bytes() + what the step allocated above its start: comparable to the plan
  int recompute_count = 0;  ///< forwards recomputed by the schedule
  int64_t items = 0;        ///< tokens or images in the batch (for throughput)
};

/// Validation loss and accuracy over the run's fixed evaluation batches.
struct Evaluation {
  int64_t step = 0;     ///< steps completed when evaluated
  double loss = 0;      ///< mean loss over the batches
  double accuracy = 0;  ///< mean accuracy (next-token or class); NaN when the model has none
};

/// Trains one model on one data set. Not copyable; owns the optimizer and the Executor.
class Trainer {
 public:
  /// Seeds torch's RNG with options.seed, builds AdamW over the chain's parameters, the
  /// data loader (shuffled by options.seed) and the fixed evaluation batches. Throws
  /// InvalidArgument for non-positive steps, batch size or learning rate.
  ///
  /// With a `group` of several processes the trainer is one rank of a data-parallel run
  /// (docs/distributed.md): it trains on its shard of every global batch of
  /// world_size x batch_size samples, averages the gradients over the ranks in buckets
  /// launched during backward (GradientAverager), reports the ranks' mean loss, and hands
  /// the gac policy the ranks' mean proxies, so that every rank holds the same parameters
  /// and takes the same decisions. Construction checks, on every rank, that all ranks
  /// built the same model (names, shapes and values of the parameters) and options, and
  /// throws InvalidArgument naming the first rank that differs.
  Trainer(Model model, std::shared_ptr<const Dataset> train, std::shared_ptr<const Dataset> validation,
          TrainOptions options, std::shared_ptr<ProcessGroup> group = nullptr);

  /// Schedule of every following step (a planner's Plan::schedule). Default: store-all.
  /// Throws ScheduleError when it does not fit the chain's length.
  void set_schedule(Schedule schedule);
  /// Plan of every following step, run through a PlanRunner: a static plan's schedule, or
  /// its run-time policy (`dtr`) driven by `profile` and measured memory. Throws
  /// InvalidArgument when the plan is infeasible or `profile` is of another chain length.
  void set_plan(const Plan& plan, const ChainProfile& profile);
  /// The schedule the executor runs each step (store-all under a run-time policy).
  const Schedule& schedule() const { return runner_->executed_schedule(); }
  /// The runner of the current plan (its policy's counters: `runner().policy_stats()`).
  const PlanRunner& runner() const { return *runner_; }

  /// One step: next batch, forward/backward under the schedule, clipping, AdamW update.
  /// Throws RuntimeError when the loss is not finite (naming the step and --lr).
  TrainStep train_step();
  /// True once options.steps steps are done.
  bool finished() const { return step_ >= options_.steps; }
  int64_t step() const { return step_; }

  /// Mean validation loss and accuracy (eval mode, no gradients; consumes no randomness).
  Evaluation evaluate();

  /// Runs forward/backward of one batch (the next training batch, without consuming it)
  /// under `schedule` and undoes every side effect: gradients are zeroed, buffers
  /// (BatchNorm statistics) and the RNG restored, parameters untouched. For side-by-side
  /// measurements (store-all vs the plan) that must not change the training trajectory.
  TrainStep measure_step(const Schedule& schedule);
  /// measure_step() for the current plan (set_plan/set_schedule), through its runner.
  TrainStep measure_plan_step();

  /// Writes the training state to `path` atomically (memento/core/output_file.h: a
  /// temporary file in the same directory, flushed to disk, then renamed over `path`),
  /// sealed with its format version, length and checksum (memento/core/sealed.h). The same
  /// state always gives the same bytes, so a checkpoint's hash identifies its state. In a
  /// data-parallel run only rank 0 writes: every rank holds the same state, so one file is
  /// the whole run's checkpoint (resume() reads it on every rank).
  /// Throws IoError naming the file when it cannot be written.
  void save(const std::string& path) const;
  /// Restores a state written by save() (or by memento 0.1's unsealed format 1). Throws
  /// DataError naming the file when it is missing, not a memento checkpoint, truncated or
  /// damaged (checksum), and InvalidArgument naming the option when it was written for
  /// another model, parameter shape, batch size, seed, data set or number of processes. A refused checkpoint
  /// leaves the trainer as it was.
  void resume(const std::string& path);

  /// Bytes that stay allocated across steps: parameters and buffers, gradients, AdamW's
  /// two moments and one batch (inputs and targets), counted as the Profiler counts a
  /// profile's fixed bytes (profile_chain with optimizer_state_bytes("adamw", chain)).
  int64_t state_bytes() const;

  const Model& model() const { return model_; }
  Executor& executor() { return *executor_; }
  const TrainOptions& options() const { return options_; }
  const DataLoader& loader() const { return loader_; }
  /// The data-parallel group (nullptr on one process) and its gradient averager.
  const ProcessGroup* process_group() const { return group_.get(); }
  const GradientAverager* gradient_averager() const { return averager_.get(); }
  GradientAverager* gradient_averager() { return averager_.get(); }

 private:
  void zero_gradients();
  TrainStep run_step(const Batch& batch, PlanRunner& runner, bool feed_policy = true);
  void optimizer_step();
  TrainStep measure_with(PlanRunner& runner);
  std::unique_ptr<PlanRunner> static_runner(Schedule schedule);
  int64_t step_peak_bytes(const StepResult& result) const;
  void write_optimizer_state(torch::serialize::OutputArchive& archive) const;
  std::vector<std::unique_ptr<torch::optim::AdamWParamState>> read_optimizer_state(
      torch::serialize::InputArchive& archive) const;

  Model model_;
  std::shared_ptr<const Dataset> train_;
  std::shared_ptr<const Dataset> validation_;
  TrainOptions options_;
  DataLoader loader_;
  std::vector<Batch> evaluation_batches_;
  std::unique_ptr<Executor> executor_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  void join_runner(PlanRunner& runner);
  void require_same_model_on_every_rank();

  std::shared_ptr<ProcessGroup> group_;
  std::unique_ptr<GradientAverager> averager_;
  std::unique_ptr<PlanRunner> runner_;
  int64_t step_ = 0;
};

/// Plans a training step: runs planner `planner_name` on `profile` under `budget_bytes`,
/// allowing lossy `codecs` (PlannerOptions::codecs; empty: exact), with `gac` for the gac
/// planner (PlannerOptions::gac).
/// Throws InvalidArgument when the planner is unknown, or when the budget is infeasible,
/// naming the budget, the store-all peak, the minimum feasible budget (bytes and % of the
/// store-all peak) and `--budget`.
Plan plan_training_step(const ChainProfile& profile, const std::string& planner_name, int64_t budget_bytes,
                        const std::vector<Codec>& codecs = {}, const GacOptions& gac = {});

}  // namespace memento
