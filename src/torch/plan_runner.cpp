#include "memento/torch/plan_runner.h"

#include <limits>

#include <nlohmann/json.hpp>
#include <utility>

#include "dtr_runtime.h"
#include "memento/core/error.h"
#include "memento/torch/gradient_proxies.h"

namespace memento {

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

StepResult PlanRunner::step(const Batch& batch, bool feed_policy) {
  if (gac_) return gac_step(batch, feed_policy);
  if (!dtr_) return executor_.step(executed_, batch);
  dtr_->begin_step();
  struct EndStep {
    detail::DtrRuntime& runtime;
    ~EndStep() { runtime.end_step(); }
  } end_step{*dtr_};
  return executor_.step(executed_, batch);
}

// The recorder lives for the measured step only, so steps other runners take on the same
// executor (a side-by-side measurement) never reach this policy.
StepResult PlanRunner::gac_step(const Batch& batch, bool feed_policy) {
  if (!feed_policy) return executor_.step(executed_, batch);
  const int64_t step = gac_steps_++;
  if (step % gac_->options().every_steps != 0) return executor_.step(executed_, batch);
  std::vector<double> proxies(static_cast<size_t>(profile_.length()),
                              std::numeric_limits<double>::quiet_NaN());
  StepResult result;
  {
    GradientProxyRecorder recorder(executor_, 1);
    result = executor_.step(executed_, batch);
    for (const GradientProxy& proxy : recorder.last_step()) {
      proxies[static_cast<size_t>(proxy.stage)] = proxy_value(proxy, gac_->options().proxy);
    }
    proxy_s_ += recorder.proxy_s();
  }
  gac_->observe(step + 1, proxies);
  executed_ = gac_->schedule();
  return result;
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
  return nlohmann::json{{"policy", "gac"}, {"steps", gac_steps_}, {"state", gac_->state_json()}}.dump();
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
