#include "memento/torch/timeline.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>

#include <nlohmann/json.hpp>

#include "memento/core/error.h"
#include "memento/torch/plan_runner.h"

namespace memento {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point start, Clock::time_point end) {
  return std::chrono::duration<double>(end - start).count();
}

// Keeps every event with the time it was seen and the order in which it arrived. The
// arrival count read from a hook is an exact op boundary: between ops the intra-op worker
// threads are idle, so every event of the op before has been delivered.
class StampingListener : public MemoryEventListener {
 public:
  struct Entry {
    MemoryEvent event;
    Clock::time_point time;
    int64_t arrival = 0;
  };

  void on_memory_event(const MemoryEvent& event) override {
    const Clock::time_point now = Clock::now();
    std::lock_guard<std::mutex> lock(mutex_);
    entries_.push_back({event, now, static_cast<int64_t>(entries_.size())});
  }
  int64_t arrived() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return static_cast<int64_t>(entries_.size());
  }
  std::vector<Entry> take() {
    std::lock_guard<std::mutex> lock(mutex_);
    return std::move(entries_);
  }

 private:
  mutable std::mutex mutex_;
  std::vector<Entry> entries_;
};

// Storage address -> category of every tensor alive before the step whose role is known.
struct KnownStorages {
  std::unordered_map<const void*, MemoryCategory> category;
  CategoryBytes bytes{};

  void add(const torch::Tensor& tensor, MemoryCategory role) {
    if (!tensor.defined() || !tensor.has_storage() || !tensor.device().is_cpu()) return;
    const void* address = tensor.storage().data_ptr().get();
    if (address == nullptr || category.count(address) > 0) return;
    category.emplace(address, role);
    bytes[static_cast<int>(role)] += static_cast<int64_t>(tensor.storage().nbytes());
  }
};

// The state tensors of LibTorch's optimizers; OptimizerParamState exposes none generically.
void add_optimizer_state(const torch::optim::Optimizer& optimizer, KnownStorages& known) {
  const auto add = [&known](const torch::Tensor& tensor) {
    known.add(tensor, MemoryCategory::OptimizerState);
  };
  for (const auto& entry : optimizer.state()) {
    const torch::optim::OptimizerParamState* state = entry.second.get();
    if (const auto* adam = dynamic_cast<const torch::optim::AdamParamState*>(state)) {
      add(adam->exp_avg());
      add(adam->exp_avg_sq());
      add(adam->max_exp_avg_sq());
    } else if (const auto* adamw = dynamic_cast<const torch::optim::AdamWParamState*>(state)) {
      add(adamw->exp_avg());
      add(adamw->exp_avg_sq());
      add(adamw->max_exp_avg_sq());
    } else if (const auto* sgd = dynamic_cast<const torch::optim::SGDParamState*>(state)) {
      add(sgd->momentum_buffer());
    } else if (const auto* adagrad = dynamic_cast<const torch::optim::AdagradParamState*>(state)) {
      add(adagrad->sum());
    } else if (const auto* rmsprop = dynamic_cast<const torch::optim::RMSpropParamState*>(state)) {
      add(rmsprop->square_avg());
      add(rmsprop->momentum_buffer());
      add(rmsprop->grad_avg());
    }
  }
}

// Follows the executor's stored activations and graphs op by op (through its hooks) and
// turns each op into a phase and each stored output or graph into a lifetime instance.
class OpRecorder {
 public:
  OpRecorder(const StampingListener& listener, Clock::time_point start, int length)
      : listener_(listener), start_(start), stored_(length + 1, -1), graphs_(length, -1) {}

  void before_op(Executor& executor, const OpEvent& event) {
    const Clock::time_point now = Clock::now();
    const int phase_index = static_cast<int>(phases_.size());
    TimelinePhase phase;
    phase.stage = event.op.stage;
    phase.op_index = event.op_index;
    phase.start_s = seconds_between(start_, now);
    phase.first_event = listener_.arrived();
    switch (event.op.kind) {
      case OpKind::ForwardNoGrad:
      case OpKind::ForwardCheckpoint:
      case OpKind::ForwardWithGraph:
      case OpKind::ForwardLossy:
      case OpKind::ForwardFrozen:
        phase.kind = event.recompute ? "recompute" : "forward";
        break;
      case OpKind::Loss:
        phase.kind = "loss";
        break;
      case OpKind::Backward:
        phase.kind = "backward";
        break;
      case OpKind::Free:
        phase.kind = "free";
        break;
    }
    phase.label = phase.kind == "loss" ? phase.kind : phase.kind + " " + std::to_string(phase.stage);
    phases_.push_back(phase);
    uses_.emplace_back();
    reads_.emplace_back();
    // Another hook set (a run-time policy) may have evicted something since the last op.
    sync(executor, phase_index, phase.start_s);

    std::vector<Read>& reads = reads_.back();
    if (event.op.is_forward()) reads.push_back({false, event.op.stage});
    if (event.op.kind == OpKind::Loss) reads.push_back({false, static_cast<int>(graphs_.size())});
    if (event.op.kind == OpKind::Backward) {
      reads.push_back({false, event.op.stage});
      reads.push_back({true, event.op.stage});
    }
    resolve(phase_index);
    open_.push_back(phase_index);
    tags_.push_back(std::make_unique<MemoryPhase>(phase.label));
  }

  void after_op(Executor& executor, const OpEvent&) {
    if (open_.empty()) return;  // unreachable: before_op always precedes after_op
    const Clock::time_point now = Clock::now();
    const int phase_index = open_.back();
    open_.pop_back();
    tags_.pop_back();
    TimelinePhase& phase = phases_[phase_index];
    phase.end_s = seconds_between(start_, now);
    phase.end_event = listener_.arrived();
    // Resolved again now: an op run on demand inside this one may have rebuilt what it reads.
    resolve(phase_index);
    for (int instance : uses_[phase_index]) {
      ActivationLifetime& lifetime = lifetimes_[instance];
      if (lifetime.freed_phase >= 0) {
        lifetime.last_used_s = lifetime.freed_s;  // freed by an op nested in this one
        lifetime.last_used_phase = lifetime.freed_phase;
      } else {
        lifetime.last_used_s = phase.end_s;
        lifetime.last_used_phase = phase_index;
      }
    }
    sync(executor, phase_index, phase.end_s);
  }

  // Whatever is still held when the step ends goes with it.
  void finish(double end_s) {
    drop_open_tags();
    for (ActivationLifetime& lifetime : lifetimes_) {
      if (lifetime.freed_phase < 0) lifetime.freed_s = end_s;
    }
  }

  std::vector<TimelinePhase>& phases() { return phases_; }
  std::vector<ActivationLifetime>& lifetimes() { return lifetimes_; }
  // Innermost first: a MemoryPhase restores the tag that was current when it was made.
  void drop_open_tags() {
    while (!tags_.empty()) tags_.pop_back();
  }

 private:
  struct Read {
    bool graph = false;  // the graph of stage `index`, else activation a_index
    int index = 0;
  };

  // The lifetime instances a phase's reads refer to in the current snapshot.
  void resolve(int phase_index) {
    std::vector<int>& uses = uses_[phase_index];
    for (const Read& read : reads_[phase_index]) {
      int instance = -1;
      if (read.graph) {
        instance = graphs_[read.index];
      } else if (read.index > 0) {  // a_0 is the input: never stored, never freed
        instance = graphs_[read.index - 1] >= 0 ? graphs_[read.index - 1] : stored_[read.index];
      }
      if (instance >= 0 && std::find(uses.begin(), uses.end(), instance) == uses.end())
        uses.push_back(instance);
    }
  }

  // Compares the executor's holdings with the last snapshot: what appeared was created by
  // `phase_index`, what vanished was freed by it.
  void sync(Executor& executor, int phase_index, double now_s) {
    for (int activation = 1; activation < static_cast<int>(stored_.size()); ++activation) {
      update(stored_[activation], executor.stored(activation), "activation", activation - 1, phase_index,
             now_s);
    }
    for (int stage = 0; stage < static_cast<int>(graphs_.size()); ++stage) {
      update(graphs_[stage], executor.graph_alive(stage), "saved", stage, phase_index, now_s);
    }
  }

  void update(int& slot, bool present, const char* kind, int stage, int phase_index, double now_s) {
    if (present && slot < 0) {
      ActivationLifetime lifetime;
      lifetime.kind = kind;
      lifetime.stage = stage;
      lifetime.name =
          lifetime.kind == "saved" ? "saved_" + std::to_string(stage) : "a_" + std::to_string(stage + 1);
      lifetime.created_s = lifetime.last_used_s = now_s;
      lifetime.created_phase = lifetime.last_used_phase = phase_index;
      lifetime.freed_s = -1;
      slot = static_cast<int>(lifetimes_.size());
      lifetimes_.push_back(lifetime);
    } else if (!present && slot >= 0) {
      lifetimes_[slot].freed_s = now_s;
      lifetimes_[slot].freed_phase = phase_index;
      slot = -1;
    }
  }

  const StampingListener& listener_;
  Clock::time_point start_;
  std::vector<int> stored_;  // lifetime index of the stored copy of a_i, -1 when none
  std::vector<int> graphs_;  // lifetime index of the graph of stage i, -1 when none
  std::vector<TimelinePhase> phases_;
  std::vector<std::vector<Read>> reads_;  // per phase: what its op reads
  std::vector<std::vector<int>> uses_;    // per phase: the lifetime instances those reads hit
  std::vector<int> open_;                 // phases started and not yet ended, innermost last
  std::vector<std::unique_ptr<MemoryPhase>> tags_;
  std::vector<ActivationLifetime> lifetimes_;
};

// Detaches everything record_timeline attached, also when the step throws.
struct Attachments {
  Executor& executor;
  std::shared_ptr<StampingListener> listener;
  OpRecorder* recorder = nullptr;
  int hooks_id = -1;
  ~Attachments() {
    if (recorder != nullptr) recorder->drop_open_tags();
    if (hooks_id >= 0) executor.remove_hooks(hooks_id);
    MemoryTracker::instance().remove_listener(listener);
  }
};

void run_optimizer(torch::optim::Optimizer* optimizer) {
  if (optimizer == nullptr) return;
  MemoryScope scope(MemoryCategory::OptimizerState);
  optimizer->step();
}

// Which phase each arriving event belongs to. Inside a phase's event span: the innermost
// such phase. Between spans (a run-time policy's hook evicting before the next op, the
// executor's release at the end of the step): the next op to start, else the last op.
struct EventOwners {
  std::vector<int> phase;
  std::vector<char> inside;  // the event happened while its phase's op ran
};

EventOwners owners_of_arrivals(const std::vector<TimelinePhase>& phases, int64_t arrivals) {
  EventOwners owners;
  owners.phase.assign(static_cast<size_t>(arrivals), -1);
  owners.inside.assign(static_cast<size_t>(arrivals), 0);
  // Phases are in start order, so a later phase overlapping an earlier one is nested in it.
  for (int index = 0; index < static_cast<int>(phases.size()); ++index) {
    for (int64_t k = phases[index].first_event; k < phases[index].end_event && k < arrivals; ++k) {
      owners.phase[static_cast<size_t>(k)] = index;
      owners.inside[static_cast<size_t>(k)] = 1;
    }
  }
  int last_op = -1;
  for (int index = 0; index < static_cast<int>(phases.size()); ++index) {
    if (phases[index].kind != "optimizer") last_op = index;
  }
  int next = 0;  // the first op phase starting at or after event k
  for (int64_t k = 0; k < arrivals; ++k) {
    if (owners.inside[static_cast<size_t>(k)]) continue;
    while (next < static_cast<int>(phases.size()) &&
           (phases[next].first_event < k || phases[next].kind == "optimizer")) {
      ++next;
    }
    owners.phase[static_cast<size_t>(k)] =
        next < static_cast<int>(phases.size()) ? next : std::max(last_op, 0);
  }
  return owners;
}

}  // namespace

int MemoryTimeline::find_phase(const std::string& label) const {
  for (int index = 0; index < static_cast<int>(phases.size()); ++index) {
    if (phases[index].label == label) return index;
  }
  return -1;
}

MemoryTimeline record_timeline(Executor& executor, const Plan& plan, const ChainProfile& profile,
                               const Batch& batch, const TimelineOptions& options) {
  if (options.warmup_steps() < 0) {
    throw InvalidArgument("TimelineOptions::warmup_steps is " + std::to_string(options.warmup_steps()) +
                          "; use 0 or more");
  }
  MemoryTracker& tracker = MemoryTracker::instance();
  Chain& chain = executor.chain();
  torch::optim::Optimizer* optimizer = options.optimizer();
  {
    PlanRunner warmup(executor, plan, profile);  // refuses an infeasible plan before anything runs
    for (int step = 0; step < options.warmup_steps(); ++step) {
      warmup.step(batch);
      run_optimizer(optimizer);
    }
  }
  {
    torch::NoGradGuard no_grad;
    for (torch::Tensor& parameter : chain.parameters()) {
      if (parameter.grad().defined()) parameter.mutable_grad().zero_();
    }
  }

  KnownStorages known;
  for (const torch::Tensor& parameter : chain.parameters()) known.add(parameter, MemoryCategory::Parameters);
  for (const torch::Tensor& buffer : chain.buffers()) known.add(buffer, MemoryCategory::Parameters);
  for (const torch::Tensor& parameter : chain.parameters())
    known.add(parameter.grad(), MemoryCategory::Gradients);
  if (optimizer != nullptr) add_optimizer_state(*optimizer, known);
  for (const torch::Tensor& input : batch.inputs) known.add(input, MemoryCategory::Inputs);
  for (const torch::Tensor& target : batch.targets) known.add(target, MemoryCategory::Inputs);

  MemoryTimeline timeline;
  timeline.model = options.model().empty() ? profile.model : options.model();
  timeline.planner = plan.planner;
  timeline.budget_bytes = options.budget_bytes();
  timeline.predicted_peak_bytes = plan.predicted_peak_bytes;

  auto listener = std::make_shared<StampingListener>();
  const Clock::time_point start = Clock::now();
  OpRecorder recorder(*listener, start, chain.length());
  Attachments attachments{executor, listener};
  tracker.add_listener(listener);
  timeline.start_bytes = tracker.live_bytes();
  attachments.recorder = &recorder;
  ExecutorHooks hooks;
  hooks.before_op = [&recorder](Executor& ex, const OpEvent& event) { recorder.before_op(ex, event); };
  hooks.after_op = [&recorder](Executor& ex, const OpEvent& event) { recorder.after_op(ex, event); };
  hooks.observe_only = true;  // the timeline shows the step as it runs without it
  // Added before the runner installs a plan's run-time policy, so that the policy's
  // evictions fall between this recorder's op spans rather than inside them.
  attachments.hooks_id = executor.add_hooks(std::move(hooks));
  PlanRunner runner(executor, plan, profile);

  timeline.step = runner.step(batch);
  const Clock::time_point step_end = Clock::now();
  recorder.finish(seconds_between(start, step_end));
  executor.remove_hooks(attachments.hooks_id);
  attachments.hooks_id = -1;
  if (optimizer != nullptr) {
    TimelinePhase phase;
    phase.label = phase.kind = "optimizer";
    phase.start_s = seconds_between(start, Clock::now());
    phase.first_event = listener->arrived();
    {
      MemoryPhase tag("optimizer");
      run_optimizer(optimizer);
    }
    phase.end_s = seconds_between(start, Clock::now());
    phase.end_event = listener->arrived();
    recorder.phases().push_back(phase);
  }
  timeline.end_bytes = tracker.live_bytes();
  timeline.step_s = seconds_between(start, Clock::now());
  tracker.remove_listener(listener);

  // Starting bytes by category: the tensors whose role is known, the rest "other".
  int64_t known_bytes = 0;
  for (int64_t bytes : known.bytes) known_bytes += bytes;
  if (known_bytes > timeline.start_bytes) {
    throw RuntimeError("the model's parameters, gradients, optimizer state and batch hold " +
                       std::to_string(known_bytes) + " bytes but the MemoryTracker tracks only " +
                       std::to_string(timeline.start_bytes) +
                       "; call memento::MemoryTracker::instance() before building the model and the batch");
  }
  timeline.start_by_category = known.bytes;
  timeline.start_by_category[static_cast<int>(MemoryCategory::Other)] += timeline.start_bytes - known_bytes;

  timeline.phases = std::move(recorder.phases());
  timeline.lifetimes = std::move(recorder.lifetimes());
  std::vector<StampingListener::Entry> entries = listener->take();
  const EventOwners owners = owners_of_arrivals(timeline.phases, static_cast<int64_t>(entries.size()));
  std::sort(entries.begin(), entries.end(),
            [](const StampingListener::Entry& a, const StampingListener::Entry& b) {
              return a.event.sequence < b.event.sequence;
            });

  // Categories: an allocation freed by the op that made it is a temporary; a free carries
  // its allocation's category (or, for bytes alive before the step, their known role).
  timeline.events.reserve(entries.size());
  struct OpenAllocation {
    size_t event = 0;
    bool inside = false;
  };
  std::unordered_map<uintptr_t, OpenAllocation> open_allocations;  // by address
  for (const StampingListener::Entry& entry : entries) {
    const size_t arrival = static_cast<size_t>(entry.arrival);
    TimelineEvent event;
    event.t_s = seconds_between(start, entry.time);
    event.allocate = entry.event.kind == MemoryEvent::Kind::Allocate;
    event.bytes = entry.event.bytes;
    event.category = entry.event.category;
    event.phase_index = timeline.phases.empty() ? 0 : owners.phase[arrival];
    event.live_bytes = entry.event.live_bytes;
    if (event.allocate) {
      open_allocations[entry.event.address] = {timeline.events.size(), owners.inside[arrival] != 0};
    } else {
      auto found = open_allocations.find(entry.event.address);
      if (found != open_allocations.end()) {
        TimelineEvent& allocation = timeline.events[found->second.event];
        if (found->second.inside && owners.inside[arrival] && allocation.phase_index == event.phase_index) {
          allocation.category = MemoryCategory::Temporaries;
        }
        event.category = allocation.category;
        open_allocations.erase(found);
      } else {
        const auto role = known.category.find(reinterpret_cast<const void*>(entry.event.address));
        event.category = role != known.category.end() ? role->second : MemoryCategory::Other;
      }
    }
    timeline.events.push_back(event);
  }

  // Lifetime bytes: the activations the creating op allocated and kept.
  std::vector<int64_t> kept_by_phase(timeline.phases.size(), 0);
  for (const TimelineEvent& event : timeline.events) {
    if (event.allocate && event.category == MemoryCategory::Activations && !timeline.phases.empty())
      kept_by_phase[static_cast<size_t>(event.phase_index)] += event.bytes;
  }
  for (ActivationLifetime& lifetime : timeline.lifetimes) {
    lifetime.bytes = kept_by_phase[static_cast<size_t>(lifetime.created_phase)];
  }

  // The peak: the first event with the largest live bytes, and the categories then.
  CategoryBytes running = timeline.start_by_category;
  timeline.peak.bytes = timeline.start_bytes;
  timeline.peak.by_category = running;
  for (size_t k = 0; k < timeline.events.size(); ++k) {
    const TimelineEvent& event = timeline.events[k];
    running[static_cast<int>(event.category)] += event.allocate ? event.bytes : -event.bytes;
    if (event.live_bytes > timeline.peak.bytes) {
      timeline.peak.bytes = event.live_bytes;
      timeline.peak.event = static_cast<int64_t>(k);
      timeline.peak.t_s = event.t_s;
      timeline.peak.phase_index = event.phase_index;
      timeline.peak.by_category = running;
    }
  }
  timeline.measured_peak_bytes = timeline.peak.bytes;
  return timeline;
}

namespace {

nlohmann::json category_json(const CategoryBytes& bytes) {
  nlohmann::json json = nlohmann::json::object();
  for (int index = 0; index < kMemoryCategoryCount; ++index) {
    json[memory_category_name(static_cast<MemoryCategory>(index))] = bytes[index];
  }
  return json;
}

}  // namespace

nlohmann::json timeline_to_json(const MemoryTimeline& timeline) {
  nlohmann::json categories = nlohmann::json::array();
  for (int index = 0; index < kMemoryCategoryCount; ++index) {
    categories.push_back(memory_category_name(static_cast<MemoryCategory>(index)));
  }
  const auto phase_label = [&timeline](int index) -> nlohmann::json {
    if (index < 0 || index >= static_cast<int>(timeline.phases.size())) return nullptr;
    return timeline.phases[index].label;
  };
  const auto phase_op = [&timeline](int index) -> int {
    if (index < 0 || index >= static_cast<int>(timeline.phases.size())) return -1;
    return timeline.phases[index].op_index;
  };

  nlohmann::json events = nlohmann::json::array();
  for (const TimelineEvent& event : timeline.events) {
    events.push_back({{"t_s", event.t_s},
                      {"kind", event.allocate ? "alloc" : "free"},
                      {"bytes", event.bytes},
                      {"category", memory_category_name(event.category)},
                      {"phase", phase_label(event.phase_index)},
                      {"phase_index", event.phase_index},
                      {"op_index", phase_op(event.phase_index)},
                      {"live_bytes", event.live_bytes}});
  }
  nlohmann::json phases = nlohmann::json::array();
  for (const TimelinePhase& phase : timeline.phases) {
    phases.push_back({{"label", phase.label},
                      {"kind", phase.kind},
                      {"stage", phase.stage >= 0 ? nlohmann::json(phase.stage) : nlohmann::json(nullptr)},
                      {"op_index", phase.op_index},
                      {"start_s", phase.start_s},
                      {"end_s", phase.end_s},
                      {"first_event", phase.first_event},
                      {"end_event", phase.end_event}});
  }
  nlohmann::json lifetimes = nlohmann::json::array();
  for (const ActivationLifetime& lifetime : timeline.lifetimes) {
    lifetimes.push_back({{"name", lifetime.name},
                         {"kind", lifetime.kind},
                         {"stage", lifetime.stage},
                         {"bytes", lifetime.bytes},
                         {"created_s", lifetime.created_s},
                         {"last_used_s", lifetime.last_used_s},
                         {"freed_s", lifetime.freed_s},
                         {"created_by", lifetime.created_phase},
                         {"last_used_by", lifetime.last_used_phase},
                         {"freed_by", lifetime.freed_phase >= 0 ? nlohmann::json(lifetime.freed_phase)
                                                                : nlohmann::json(nullptr)}});
  }
  return {{"format", "memento.timeline/1"},
          {"model", timeline.model},
          {"planner", timeline.planner},
          {"budget_bytes",
           timeline.budget_bytes ? nlohmann::json(*timeline.budget_bytes) : nlohmann::json(nullptr)},
          {"predicted_peak_bytes", timeline.predicted_peak_bytes},
          {"measured_peak_bytes", timeline.measured_peak_bytes},
          {"step_s", timeline.step_s},
          {"start_bytes", timeline.start_bytes},
          {"end_bytes", timeline.end_bytes},
          {"recompute_count", timeline.step.recompute_count},
          {"recompute_s", timeline.step.recompute_s},
          {"categories", categories},
          {"start_by_category", category_json(timeline.start_by_category)},
          {"events", events},
          {"phases", phases},
          {"peak",
           {{"bytes", timeline.peak.bytes},
            {"event", timeline.peak.event},
            {"t_s", timeline.peak.t_s},
            {"phase", phase_label(timeline.peak.phase_index)},
            {"phase_index", timeline.peak.phase_index},
            {"by_category", category_json(timeline.peak.by_category)}}},
          {"lifetimes", lifetimes}};
}

nlohmann::json timelines_to_json(const std::vector<MemoryTimeline>& timelines) {
  nlohmann::json list = nlohmann::json::array();
  for (const MemoryTimeline& timeline : timelines) list.push_back(timeline_to_json(timeline));
  return {{"format", "memento.timelines/1"}, {"timelines", list}};
}

}  // namespace memento
