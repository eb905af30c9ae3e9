#include "memento/torch/plan_runner.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <mutex>

#include <nlohmann/json.hpp>
#include <utility>

#include "dtr_runtime.h"
#include "memento/core/error.h"
#include "memento/core/simulate.h"
#include "memento/torch/gradient_proxies.h"

namespace memento {

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
}  // namespace

PlanRunner::PlanRunner(Executor& executor, Plan plan, ChainProfile profile)
    : executor_(executor), plan_(std::move(plan)), profile_(std::move(profile)) {
  require_feasible(plan_);
  if (profile_.length() != executor_.chain().length()) {
    throw InvalidArgument("the plan's profile has " + std::to_string(profile_.length()) +
                          " stages but the executor's chain has " +
                          std::to_string(executor_.chain().length()) +
                          "; profile the same chain (and granularity) that runs the plan");
  }
  if (plan_.runtime_policy.empty()) {
    executed_ = plan_.schedule;
  } else if (plan_.runtime_policy == "dtr") {
    executed_ = store_all_schedule(profile_.length());
    dtr_ = std::make_unique<detail::DtrRuntime>(executor_, profile_, plan_.budget_bytes);
  } else if (plan_.runtime_policy == "gac") {
    gac_ = std::make_unique<GacController>(profile_, plan_.budget_bytes, plan_.gac, plan_.codecs);
    executed_ = gac_->schedule();
  } else {
    throw InvalidArgument("plan of planner " + plan_.planner + " asks for the run-time policy \"" +
                          plan_.runtime_policy + "\", which this build does not know (known: dtr, gac)");
  }
}

PlanRunner::~PlanRunner() = default;

namespace {

double proxy_value(const GradientProxy& proxy, GacProxy kind) {
  switch (kind) {
    case GacProxy::Frobenius:
      return proxy.frobenius;
    case GacProxy::Trace:
      return proxy.trace;
    case GacProxy::ParameterMeanAbs:
      return proxy.parameter_mean_abs;
    case GacProxy::ParameterFrobenius:
      return proxy.parameter_frobenius;
    default:
      return proxy.mean_abs;
  }
}

}  // namespace

namespace detail {

// What a step changes besides its result: the gradients it accumulates (parameters and
// inputs that require them), the module buffers (BatchNorm statistics) and the CPU
// generator (dropout). Captured, it lets the same step run again from the same state and
// the state after the real step be put back, so a measurement leaves no trace.
struct StepReplay {
  std::vector<torch::Tensor> holders;  // tensors whose .grad() the step accumulates into
  std::vector<torch::Tensor> grads;    // their gradients (undefined where none yet)
  std::vector<torch::Tensor> buffers;
  at::Tensor generator_state;

  static std::vector<torch::Tensor> gradient_holders(Chain& chain, const Batch& batch) {
    std::vector<torch::Tensor> holders;
    for (const torch::Tensor& parameter : chain.parameters())
      if (parameter.requires_grad()) holders.push_back(parameter);
    for (const torch::Tensor& input : batch.inputs)
      if (input.requires_grad()) holders.push_back(input);
    return holders;
  }

  static StepReplay capture(Chain& chain, const Batch& batch) {
    torch::NoGradGuard no_grad;
    StepReplay replay;
    replay.holders = gradient_holders(chain, batch);
    for (const torch::Tensor& holder : replay.holders)
      replay.grads.push_back(holder.grad().defined() ? holder.grad().clone() : torch::Tensor());
    for (const torch::Tensor& buffer : chain.buffers())
      replay.buffers.push_back(buffer.defined() ? buffer.clone() : buffer);
    at::Generator generator = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(generator.mutex());
    replay.generator_state = generator.get_state();
    return replay;
  }

  void restore(Chain& chain) const {
    torch::NoGradGuard no_grad;
    for (size_t k = 0; k < holders.size(); ++k) {
      torch::Tensor holder = holders[k];
      if (!grads[k].defined()) {
        holder.mutable_grad() = torch::Tensor();
      } else if (holder.grad().defined()) {
        holder.mutable_grad().copy_(grads[k]);
      } else {
        holder.mutable_grad() = grads[k].clone();
      }
    }
    auto current = chain.buffers();
    for (size_t k = 0; k < current.size(); ++k)
      if (current[k].defined()) current[k].copy_(buffers[k]);
    at::Generator generator = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(generator_state);
  }

  // Σ over holders of ‖grad − other.grad‖² (an undefined gradient counts as zeros).
  double squared_distance(const StepReplay& other) const {
    double total = 0;
    for (size_t k = 0; k < grads.size(); ++k) {
      if (!grads[k].defined() && !other.grads[k].defined()) continue;
      const torch::Tensor a = grads[k].defined() ? grads[k] : torch::zeros_like(other.grads[k]);
      const torch::Tensor b = other.grads[k].defined() ? other.grads[k] : torch::zeros_like(a);
      total += (a.to(torch::kDouble) - b.to(torch::kDouble)).pow(2).sum().item<double>();
    }
    return total;
  }
};

}  // namespace detail

namespace {

// `schedule` with `stage`'s saved tensors packed with `codec`. A lossy graph does not hold
// its output, so an exact graph turned lossy stores a_{stage+1} instead: the op that reads
// it first keeps it (a checkpoint, not a no-grad forward that would drop it) until
// Backward(stage + 1) frees it, or for the last stage a Free after the loss. The result is
// checked by the caller (simulate): not every schedule allows this.
Schedule with_stage_packed(const Schedule& schedule, int length, int stage, Codec codec) {
  Schedule packed;
  bool was_exact = false;
  for (Op op : schedule) {
    if (op.stage == stage && (op.kind == OpKind::ForwardWithGraph || op.kind == OpKind::ForwardLossy)) {
      was_exact = was_exact || op.kind == OpKind::ForwardWithGraph;
      op = Op::forward_lossy(stage, codec);
    } else if (was_exact && op.stage == stage + 1 && op.kind == OpKind::ForwardNoGrad) {
      op = Op::forward_checkpoint(stage + 1);
    }
    packed.push_back(op);
    if (was_exact && op.kind == OpKind::Loss && stage + 1 == length) packed.push_back(Op::free(length));
  }
  return packed;
}

// Stages whose saved tensors the schedule keeps for a backward other than packed with
// `codec` already: the ones packing with `codec` changes.
std::vector<int> stages_codec_changes(const Schedule& schedule, Codec codec) {
  std::vector<int> stages;
  for (const Op& op : schedule) {
    const bool changes =
        op.kind == OpKind::ForwardWithGraph || (op.kind == OpKind::ForwardLossy && op.codec != codec);
    if (changes && std::find(stages.begin(), stages.end(), op.stage) == stages.end())
      stages.push_back(op.stage);
  }
  std::sort(stages.begin(), stages.end());
  return stages;
}

Codec harshest(const std::vector<Codec>& allowed) {
  if (allowed.empty()) return Codec::Int4;
  return *std::max_element(allowed.begin(), allowed.end());  // Codec lists precision, decreasing
}

}  // namespace

StepResult PlanRunner::step(const Batch& batch, bool feed_policy) {
  if (gac_) return gac_step(batch, feed_policy);
  if (!dtr_) return run_executor(batch, feed_policy);
  dtr_->begin_step();
  struct EndStep {
    detail::DtrRuntime& runtime;
    ~EndStep() { runtime.end_step(); }
  } end_step{*dtr_};
  return run_executor(batch, feed_policy);
}

void PlanRunner::set_training_hooks(ExecutorHooks hooks) {
  training_hooks_ = std::move(hooks);
}

void PlanRunner::set_statistics_reducer(StatisticsReducer reducer) {
  statistics_reducer_ = std::move(reducer);
}

// The training hooks see the step whose gradients train, never a side measurement or a
// repeated step (sensitivity), which would otherwise reach them as a second backward.
StepResult PlanRunner::run_executor(const Batch& batch, bool training_step) {
  if (!training_step || !training_hooks_) return executor_.step(executed_, batch);
  struct Installed {
    Executor& executor;
    int id;
    ~Installed() { executor.remove_hooks(id); }
  } installed{executor_, executor_.add_hooks(*training_hooks_)};
  return executor_.step(executed_, batch);
}

// The recorder lives for the measured step only, so steps other runners take on the same
// executor (a side-by-side measurement) never reach this policy.
StepResult PlanRunner::gac_step(const Batch& batch, bool feed_policy) {
  if (!feed_policy) return executor_.step(executed_, batch);
  const int64_t step = gac_steps_++;
  if (step % gac_->options().every_steps != 0) return run_executor(batch, true);
  std::vector<double> proxies(static_cast<size_t>(profile_.length()),
                              std::numeric_limits<double>::quiet_NaN());
  StepResult result;
  if (gac_->options().proxy == GacProxy::Sensitivity) {
    const detail::StepReplay before = detail::StepReplay::capture(executor_.chain(), batch);
    result = run_executor(batch, true);
    measure_sensitivities(batch, before);
    proxies = sensitivity_;
  } else {
    GradientProxyRecorder recorder(executor_, 1);
    result = run_executor(batch, true);
    for (const GradientProxy& proxy : recorder.last_step()) {
      proxies[static_cast<size_t>(proxy.stage)] = proxy_value(proxy, gac_->options().proxy);
    }
    proxy_s_ += recorder.proxy_s();
  }
  if (statistics_reducer_) {
    proxies = statistics_reducer_(proxies);
    if (proxies.size() != static_cast<size_t>(profile_.length()))
      throw RuntimeError("the statistics reducer returned " + std::to_string(proxies.size()) +
                         " values for a chain of " + std::to_string(profile_.length()) + " stages");
  }
  gac_->observe(step + 1, proxies);
  executed_ = gac_->schedule();
  return result;
}

void PlanRunner::measure_sensitivities(const Batch& batch, const detail::StepReplay& before) {
  const auto start = std::chrono::steady_clock::now();
  Chain& chain = executor_.chain();
  const detail::StepReplay after = detail::StepReplay::capture(chain, batch);
  const double step_norm = after.squared_distance(before);
  const Codec codec = harshest(plan_.codecs);
  // A stage already packed with the codec cannot be measured (packing changes nothing): it
  // keeps its last estimate, and without one counts as the most important (NaN), which
  // lets it be stored more precisely and measured next time.
  const std::vector<int> stages = stages_codec_changes(executed_, codec);
  std::vector<int> measured;
  if (sensitivity_.empty()) {
    sensitivity_.assign(static_cast<size_t>(profile_.length()), kNaN);
    measured = stages;
  } else if (!stages.empty()) {
    // One stage in turn; an unmeasured one first, since an estimate is worth most where there is none.
    int stage = stages[static_cast<size_t>(next_sensitivity_stage_++) % stages.size()];
    const auto unmeasured = std::find_if(stages.begin(), stages.end(), [&](int i) {
      return std::isnan(sensitivity_[static_cast<size_t>(i)]);
    });
    if (unmeasured != stages.end()) stage = *unmeasured;
    measured = {stage};
  }
  for (int stage : measured) {
    const Schedule packed = with_stage_packed(executed_, profile_.length(), stage, codec);
    try {
      // The repeated step holds the budget too; a stage it cannot be packed within is not measured.
      if (simulate(profile_, packed).peak_bytes > plan_.budget_bytes) continue;
    } catch (const ScheduleError&) {
      continue;
    }
    before.restore(chain);
    executor_.step(packed, batch);
    const detail::StepReplay perturbed = detail::StepReplay::capture(chain, batch);
    sensitivity_[static_cast<size_t>(stage)] =
        step_norm > 0 ? perturbed.squared_distance(after) / step_norm : 0.0;
  }
  after.restore(chain);
  proxy_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void PlanRunner::observe_validation(int64_t step, double loss) {
  if (!gac_) return;
  gac_->observe_validation(step, loss);
  executed_ = gac_->schedule();
}

int PlanRunner::frozen_stages() const {
  int frozen = 0;
  for (const Op& op : executed_) frozen += op.kind == OpKind::ForwardFrozen;
  return frozen;
}

std::string PlanRunner::policy_state() const {
  if (!gac_) return std::string();
  nlohmann::json sensitivity = nlohmann::json::array();
  for (double value : sensitivity_)
    sensitivity.push_back(std::isfinite(value) ? nlohmann::json(value) : nullptr);
  return nlohmann::json{{"policy", "gac"},
                        {"steps", gac_steps_},
                        {"state", gac_->state_json()},
                        {"sensitivity", sensitivity},
                        {"next_sensitivity_stage", next_sensitivity_stage_}}
      .dump();
}

void PlanRunner::restore_policy_state(const std::string& state) {
  if (!gac_ || state.empty()) return;
  try {
    const nlohmann::json saved = nlohmann::json::parse(state);
    if (saved.at("policy").get<std::string>() != "gac") {
      throw DataError("the saved run-time policy state is of policy " +
                      saved.at("policy").get<std::string>() + ", this plan runs gac");
    }
    gac_->restore_state_json(saved.at("state").get<std::string>());
    gac_steps_ = saved.at("steps").get<int64_t>();
    // Absent in states saved before the sensitivity proxy existed.
    sensitivity_.clear();
    for (const nlohmann::json& value : saved.value("sensitivity", nlohmann::json::array()))
      sensitivity_.push_back(value.is_number() ? value.get<double>() : kNaN);
    if (!sensitivity_.empty() && sensitivity_.size() != static_cast<size_t>(profile_.length()))
      throw DataError("the saved sensitivity estimates are for " + std::to_string(sensitivity_.size()) +
                      " stages, this plan has " + std::to_string(profile_.length()));
    next_sensitivity_stage_ = saved.value("next_sensitivity_stage", 0);
  } catch (const nlohmann::json::exception& e) {
    throw DataError(std::string("the saved run-time policy state is damaged: ") + e.what());
  }
  executed_ = gac_->schedule();
}

std::optional<DtrStats> PlanRunner::policy_stats() const {
  if (!dtr_) return std::nullopt;
  return dtr_->stats();
}

}  // namespace memento
