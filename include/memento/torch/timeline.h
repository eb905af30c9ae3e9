#pragma once
/// \file
/// `record_timeline()`: the exact memory timeline of one training step (forward, loss,
/// backward under a `Plan`, then an optimizer step): every allocation and free the
/// `MemoryTracker` saw, each with its time, bytes, category and the op (phase) that made
/// it; the lifetime of every stage output and saved set; and the peak with its breakdown
/// by category. `timeline_to_json()` writes it in the `memento.timeline/1` format of
/// docs/formats.md.
///
/// Categories. An allocation made during the step keeps the category of the
/// `MemoryScope` it was made in (the Executor tags forwards and the loss "activations",
/// backwards "gradients"; the optimizer step runs under "optimizer_state"), except that an
/// allocation made and freed inside the same op is reclassified "temporaries". Bytes alive
/// when the step starts are classified by what holds them: parameters and buffers
/// ("parameters"), parameter gradients ("gradients"), the optimizer's state tensors
/// ("optimizer_state"), the batch's inputs and targets ("inputs"); whatever else is alive
/// is "other". A free carries the category of its allocation, so at every event the
/// per-category bytes sum to the tracker's live bytes.
///
/// Phases. One per executed op, in the order they start: `forward i` (the first forward of
/// stage i in the step), `recompute i` (every later one, on-demand ones included),
/// `backward i`, `loss`, `free i`, then `optimizer`. An op the Executor runs on demand
/// inside another op (a run-time policy evicted its input) is a phase of its own, nested
/// in the other's time span; an event belongs to the innermost op running when it happened.
///
/// Lifetimes. One per instance of a stored stage output `a_{i+1}` (kind "activation") and
/// of a saved set, the graph of a `ForwardWithGraph(i)` (kind "saved"), as the Executor
/// holds them: created at the end of the op that made it, last used at the end of the last
/// op that read it (a forward or the loss reading it as input, a backward needing it),
/// freed at the end of the op after which it is gone (or when the step ends). Its bytes are
/// those the creating op allocated and did not free.
///
/// Requirements: the MemoryTracker must be installed (`MemoryTracker::instance()`) before
/// the model and batch are built, or their bytes are not tracked.
/// Side effects: `warmup_steps` full training steps run first (lazily allocated gradients
/// and optimizer state then exist, as in a steady-state step); gradients are zeroed in
/// place before the recorded step; the optimizer updates the parameters as in training.
///
/// Example:
/// \code
///   memento::MemoryTracker::instance();
///   memento::Model model = memento::make_model("gpt-nano", options);
///   torch::optim::SGD sgd(model.chain->parameters(), torch::optim::SGDOptions(0.01));
///   memento::Executor executor(model.chain, model.loss);
///   memento::Plan plan = memento::make_planner("optimal")->plan(profile, memento::PlannerOptions(budget));
///   memento::MemoryTimeline timeline =
///       memento::record_timeline(executor, plan, profile, batch,
///       memento::TimelineOptions().optimizer(&sgd));
///   int64_t activation_bytes = timeline.peak.by_category[int(memento::MemoryCategory::Activations)];
///   nlohmann::json document = memento::timeline_to_json(timeline);
/// \endcode

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <torch/torch.h>
#include <nlohmann/json_fwd.hpp>

#include "memento/core/planner.h"
#include "memento/core/profile.h"
#include "memento/torch/chain.h"
#include "memento/torch/executor.h"
#include "memento/torch/memory.h"

namespace memento {

/// How `record_timeline` runs the step. Chainable setters.
class TimelineOptions {
 public:
  TimelineOptions() = default;

  /// Optimizer whose `step()` ends the recorded step (default none: no optimizer phase).
  /// Its state tensors count as "optimizer_state" at the start of the step.
  TimelineOptions& optimizer(torch::optim::Optimizer* optimizer) {
    optimizer_ = optimizer;
    return *this;
  }
  torch::optim::Optimizer* optimizer() const { return optimizer_; }

  /// Unrecorded full steps before the recorded one (default 1, at least 0).
  TimelineOptions& warmup_steps(int steps) {
    warmup_steps_ = steps;
    return *this;
  }
  int warmup_steps() const { return warmup_steps_; }

  /// The budget the plan was made for; unset (default) writes `"budget_bytes": null`.
  TimelineOptions& budget_bytes(std::optional<int64_t> bytes) {
    budget_bytes_ = bytes;
    return *this;
  }
  std::optional<int64_t> budget_bytes() const { return budget_bytes_; }

  /// Description of the model (default: the profile's `model`).
  TimelineOptions& model(std::string description) {
    model_ = std::move(description);
    return *this;
  }
  const std::string& model() const { return model_; }

 private:
  torch::optim::Optimizer* optimizer_ = nullptr;
  int warmup_steps_ = 1;
  std::optional<int64_t> budget_bytes_;
  std::string model_;
};

/// One allocation or free of the recorded step.
struct TimelineEvent {
  double t_s = 0;        ///< seconds since the step started
  bool allocate = true;  ///< false for a free
  int64_t bytes = 0;     ///< always >= 0
  MemoryCategory category = MemoryCategory::Other;
  int phase_index = 0;     ///< index into MemoryTimeline::phases
  int64_t live_bytes = 0;  ///< tracker live bytes right after the event
};

/// One executed op (or the optimizer step).
struct TimelinePhase {
  std::string label;  ///< "forward 3", "recompute 3", "backward 3", "loss", "free 3", "optimizer"
  std::string kind;   ///< "forward", "recompute", "backward", "loss", "free", "optimizer"
  int stage = -1;     ///< -1 for the loss and the optimizer
  int op_index = -1;  ///< index in the schedule; -1 for on-demand ops and the optimizer
  double start_s = 0;
  double end_s = 0;
  int64_t first_event = 0;  ///< first event index in the phase's time span
  int64_t end_event = 0;    ///< one past the last (nested phases lie inside the span)
};

/// Lifetime of one instance of a stage output or a saved set.
struct ActivationLifetime {
  std::string name;  ///< "a_3" (output of stage 2) or "saved_2" (graph of stage 2)
  std::string kind;  ///< "activation" or "saved"
  int stage = 0;     ///< the stage that produced it
  int64_t bytes = 0;
  double created_s = 0;
  double last_used_s = 0;
  double freed_s = 0;
  int created_phase = 0;
  int last_used_phase = 0;  ///< == created_phase when nothing read it
  int freed_phase = -1;     ///< -1: alive until the step ended
};

/// Where the step's live bytes were highest.
struct TimelinePeak {
  int64_t bytes = 0;
  int64_t event = -1;  ///< index into events; -1 when the peak is the starting state
  double t_s = 0;
  int phase_index = -1;  ///< -1 when the peak is the starting state
  CategoryBytes by_category{};
};

/// The recorded step (see the file comment for the definitions).
struct MemoryTimeline {
  std::string model;
  std::string planner;
  std::optional<int64_t> budget_bytes;
  int64_t predicted_peak_bytes = 0;  ///< the plan's prediction
  int64_t measured_peak_bytes = 0;   ///< == peak.bytes: absolute tracker bytes
  int64_t start_bytes = 0;           ///< tracker live bytes when the step started
  int64_t end_bytes = 0;             ///< ... and after the optimizer step
  double step_s = 0;                 ///< forward, loss, backward and optimizer step
  StepResult step;                   ///< what the Executor measured (without the optimizer)
  CategoryBytes start_by_category{};
  std::vector<TimelineEvent> events;  ///< in tracker order
  std::vector<TimelinePhase> phases;  ///< in start order
  std::vector<ActivationLifetime> lifetimes;
  TimelinePeak peak;

  /// Index of the first phase with this label, -1 when none.
  int find_phase(const std::string& label) const;
};

/// Records one training step of `plan` (run through a `PlanRunner` on `executor`, so
/// run-time policies apply) on `batch`, followed by the optimizer step when one is set.
/// Throws InvalidArgument for an infeasible plan or negative warm-up steps, and
/// RuntimeError when the parameters or batch were allocated before the MemoryTracker was
/// installed (the classified starting bytes then exceed the tracked ones).
MemoryTimeline record_timeline(Executor& executor, const Plan& plan, const ChainProfile& profile,
                               const Batch& batch, const TimelineOptions& options = TimelineOptions());

/// The `memento.timeline/1` document of docs/formats.md.
nlohmann::json timeline_to_json(const MemoryTimeline& timeline);

/// `{"format": "memento.timelines/1", "timelines": [...]}` (pass store-all first).
nlohmann::json timelines_to_json(const std::vector<MemoryTimeline>& timelines);

}  // namespace memento
