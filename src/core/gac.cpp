#include "memento/core/gac.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>

#include <nlohmann/json.hpp>

#include "memento/core/error.h"
#include "memento/core/simulate.h"

namespace memento {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInfinity = std::numeric_limits<double>::infinity();

template <typename Enum>
struct Named {
  Enum value;
  const char* name;
};

constexpr Named<GacMode> kModes[] = {
    {GacMode::Exact, "exact"}, {GacMode::Lossy, "lossy"}, {GacMode::Freeze, "freeze"}};
constexpr Named<GacProxy> kProxies[] = {{GacProxy::MeanAbs, "mag"},
                                        {GacProxy::Frobenius, "frobenius"},
                                        {GacProxy::Trace, "trace"},
                                        {GacProxy::ParameterMeanAbs, "param-mag"},
                                        {GacProxy::ParameterFrobenius, "param-frobenius"},
                                        {GacProxy::Sensitivity, "sensitivity"}};
constexpr Named<GacThreshold> kThresholds[] = {
    {GacThreshold::Ema, "ema"}, {GacThreshold::NormMedian, "norm-median"}, {GacThreshold::Kind, "kind"}};
constexpr Named<GacDecision> kDecisions[] = {{GacDecision::Store, "store"},
                                             {GacDecision::Compress, "compress"},
                                             {GacDecision::Recompute, "recompute"},
                                             {GacDecision::Freeze, "freeze"}};

template <typename Enum, size_t N>
const char* name_of(const Named<Enum> (&table)[N], Enum value) {
  for (const auto& entry : table) {
    if (entry.value == value) return entry.name;
  }
  return "?";
}

template <typename Enum, size_t N>
Enum from_name(const Named<Enum> (&table)[N], const std::string& name, const char* what) {
  std::string valid;
  for (const auto& entry : table) {
    if (name == entry.name) return entry.value;
    valid += std::string(valid.empty() ? "" : ", ") + entry.name;
  }
  throw InvalidArgument(std::string("unknown GAC ") + what + " \"" + name + "\"; valid: " + valid);
}

std::string number(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%g", value);
  return buffer;
}

double median(std::vector<double> values) {
  if (values.empty()) return kNaN;
  const size_t middle = values.size() / 2;
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(middle), values.end());
  const double upper = values[middle];
  if (values.size() % 2 == 1) return upper;
  const double lower =
      *std::max_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(middle));
  return 0.5 * (lower + upper);
}

nlohmann::json finite_or_null(double value) {
  return std::isfinite(value) ? nlohmann::json(value) : nlohmann::json(nullptr);
}

}  // namespace

const char* gac_mode_name(GacMode mode) {
  return name_of(kModes, mode);
}
GacMode gac_mode_from_name(const std::string& name) {
  return from_name(kModes, name, "mode");
}
const char* gac_proxy_name(GacProxy proxy) {
  return name_of(kProxies, proxy);
}
GacProxy gac_proxy_from_name(const std::string& name) {
  return from_name(kProxies, name, "proxy");
}
const char* gac_threshold_name(GacThreshold threshold) {
  return name_of(kThresholds, threshold);
}
GacThreshold gac_threshold_from_name(const std::string& name) {
  return from_name(kThresholds, name, "threshold");
}
const char* gac_decision_name(GacDecision decision) {
  return name_of(kDecisions, decision);
}

double GacOptions::resolved_alpha() const {
  if (alpha >= 0) return alpha;
  return threshold == GacThreshold::Ema ? 0.8 : 1.0;
}

void GacOptions::validate(const std::function<std::string(const std::string&)>& field_name) const {
  auto name = [&](const std::string& field) {
    return field_name ? field_name(field) : "GacOptions::" + field;
  };
  auto require = [&](bool ok, const std::string& field, const std::string& range, double value) {
    if (!ok) throw InvalidArgument(name(field) + " must be " + range + ", got " + number(value));
  };
  const double a = resolved_alpha();
  if (threshold == GacThreshold::Ema) {
    require(a > 0 && a <= 1, "alpha", "in (0, 1] for the ema threshold", a);
  } else {
    require(a >= 0.5 && a <= 2, "alpha",
            std::string("in [0.5, 2] for the ") + gac_threshold_name(threshold) + " threshold", a);
  }
  require(beta >= 0.9 && beta <= 0.99, "beta", "in [0.9, 0.99]", beta);
  require(temporal_beta >= 0 && temporal_beta <= 1, "temporal_beta", "in [0, 1] (0 disables it)",
          temporal_beta);
  require(temperature > 0 && std::isfinite(temperature), "temperature", "a positive number", temperature);
  require(theta_min > 0 && theta_min < 1, "theta_min", "in (0, 1) (a share of the largest proxy)", theta_min);
  require(every_steps >= 1, "every_steps", "at least 1", every_steps);
  require(freeze_after >= 1, "freeze_after", "at least 1", freeze_after);
}

nlohmann::json gac_options_to_json(const GacOptions& options) {
  return {{"mode", gac_mode_name(options.mode)},
          {"proxy", gac_proxy_name(options.proxy)},
          {"threshold", gac_threshold_name(options.threshold)},
          {"alpha", options.resolved_alpha()},
          {"beta", options.beta},
          {"temporal_beta", options.temporal_beta},
          {"temperature", options.temperature},
          {"theta_min", options.theta_min},
          {"every_steps", options.every_steps},
          {"freeze_after", options.freeze_after},
          {"fill_spare_memory", options.fill_spare_memory}};
}

nlohmann::json gac_record_to_json(const GacRecord& record) {
  nlohmann::json out = {{"step", record.step},
                        {"stage", record.stage},
                        {"proxy", finite_or_null(record.proxy)},
                        {"threshold", finite_or_null(record.threshold)},
                        {"decision", gac_decision_name(record.decision)}};
  if (record.decision == GacDecision::Compress) out["codec"] = codec_name(record.codec);
  out["reason"] = record.reason;
  return out;
}

Schedule gac_schedule(const ChainProfile& profile, const std::vector<GacDecision>& decisions,
                      const std::vector<Codec>& codecs) {
  const int length = profile.length();
  if (static_cast<int>(decisions.size()) != length || static_cast<int>(codecs.size()) != length) {
    throw InvalidArgument("GAC decisions: got " + std::to_string(decisions.size()) + " decisions and " +
                          std::to_string(codecs.size()) + " codecs for a chain of " + std::to_string(length) +
                          " stages; give one of each per stage");
  }
  int frozen = 0;
  while (frozen < length && decisions[frozen] == GacDecision::Freeze) ++frozen;
  Schedule schedule;
  for (int i = 0; i < length; ++i) {
    switch (decisions[i]) {
      case GacDecision::Freeze:
        if (i >= frozen) {
          throw InvalidArgument(
              "GAC decisions: stage " + std::to_string(i) +
              " is frozen but an earlier stage is not; only a prefix of stages can be frozen");
        }
        schedule.push_back(Op::forward_frozen(i));
        break;
      case GacDecision::Store:
        schedule.push_back(Op::forward_with_graph(i));
        break;
      case GacDecision::Compress:
        if (!is_lossy(codecs[i])) {
          throw InvalidArgument("GAC decisions: stage " + std::to_string(i) +
                                " is compressed without a lossy codec");
        }
        schedule.push_back(Op::forward_lossy(i, codecs[i]));
        break;
      case GacDecision::Recompute:
        schedule.push_back(Op::forward_checkpoint(i));
        break;
    }
  }
  if (frozen == length) throw InvalidArgument("GAC decisions: every stage is frozen; the last must train");
  schedule.push_back(Op::loss());
  if (decisions.back() == GacDecision::Compress) schedule.push_back(Op::free(length));
  for (int i = length - 1; i >= frozen; --i) {
    if (decisions[i] == GacDecision::Recompute) schedule.push_back(Op::forward_with_graph(i));
    schedule.push_back(Op::backward(i));
  }
  return schedule;
}

// ---------------------------------------------------------------------------------------------
// GacController

GacController::GacController(ChainProfile profile, int64_t budget_bytes, GacOptions options,
                             std::vector<Codec> codecs)
    : profile_(std::move(profile)), budget_bytes_(budget_bytes), options_(options) {
  options_.validate();
  if (profile_.length() < 1) throw InvalidArgument("GAC needs a profile with at least one stage");
  if (options_.mode == GacMode::Lossy && codecs.empty()) {
    throw InvalidArgument(
        "the lossy GAC mode stores stages packed and needs codecs (PlannerOptions::codecs)");
  }
  if (options_.mode == GacMode::Freeze && !codecs.empty()) {
    throw InvalidArgument("the freeze GAC mode is exact; give it no codecs (PlannerOptions::codecs)");
  }
  for (Codec codec : codecs) {
    if (!is_lossy(codec)) continue;
    if (!profile_.has_codec(codec)) {
      throw InvalidArgument(std::string("the profile has no costs for codec ") + codec_name(codec) +
                            "; profile with it (ProfilerOptions::codecs)");
    }
    if (std::find(codecs_.begin(), codecs_.end(), codec) == codecs_.end()) codecs_.push_back(codec);
  }
  std::sort(codecs_.begin(), codecs_.end(), [](Codec a, Codec b) { return codec_bits(a) > codec_bits(b); });
  mode_ = options_.mode == GacMode::Freeze ? GacMode::Freeze
          : codecs_.empty()                ? GacMode::Exact
                                           : GacMode::Lossy;
  const size_t length = static_cast<size_t>(profile_.length());
  theta_.assign(length, kNaN);
  below_count_.assign(length, 0);
  decisions_.assign(length, GacDecision::Store);
  stage_codecs_.assign(length, Codec::None);
  last_importance_.assign(length, kInfinity);  // no proxy yet: every stage as important
  std::vector<std::string> reasons(length, "no proxy yet");
  decide(last_importance_, reasons);
}

int GacController::levels() const {
  return static_cast<int>(codecs_.size()) + 2;  // store, each codec (mildest first), recompute
}

int GacController::level_of(int stage) const {
  switch (decisions_[stage]) {
    case GacDecision::Store:
      return 0;
    case GacDecision::Compress:
      return 1 + static_cast<int>(std::find(codecs_.begin(), codecs_.end(), stage_codecs_[stage]) -
                                  codecs_.begin());
    default:
      return levels() - 1;
  }
}

void GacController::set_level(int stage, int level) {
  if (level == 0) {
    decisions_[stage] = GacDecision::Store;
    stage_codecs_[stage] = Codec::None;
  } else if (level == levels() - 1) {
    decisions_[stage] = GacDecision::Recompute;
    stage_codecs_[stage] = Codec::None;
  } else {
    decisions_[stage] = GacDecision::Compress;
    stage_codecs_[stage] = codecs_[static_cast<size_t>(level - 1)];
  }
}

int64_t GacController::current_peak_bytes() const {
  return simulate(profile_, gac_schedule(profile_, decisions_, stage_codecs_)).peak_bytes;
}

int64_t GacController::least_budget_bytes() const {
  std::vector<GacDecision> decisions(decisions_.size(), GacDecision::Recompute);
  for (int i = 0; i < frozen_; ++i) decisions[static_cast<size_t>(i)] = GacDecision::Freeze;
  const std::vector<Codec> codecs(decisions.size(), Codec::None);
  return simulate(profile_, gac_schedule(profile_, decisions, codecs)).peak_bytes;
}

// What the selected proxy becomes before the threshold: the step's values over their
// largest, so that thresholds and θ_min are shares of the most impactful stage.
std::vector<double> GacController::shares(const std::vector<double>& proxies) const {
  double largest = 0;
  for (double value : proxies) {
    if (std::isfinite(value)) largest = std::max(largest, value);
  }
  std::vector<double> out(proxies.size(), kNaN);
  for (size_t i = 0; i < proxies.size(); ++i) {
    if (std::isfinite(proxies[i])) out[i] = largest > 0 ? proxies[i] / largest : 0.0;
  }
  return out;
}

void GacController::observe(int64_t step, const std::vector<double>& proxies) {
  if (proxies.size() != theta_.size()) {
    throw InvalidArgument("GAC observe: got " + std::to_string(proxies.size()) + " proxies for a chain of " +
                          std::to_string(theta_.size()) + " stages; give one per stage (NaN where none)");
  }
  const std::vector<double> share = shares(proxies);
  std::vector<double> value(share.size(), kNaN), threshold(share.size(), kNaN);
  compare(share, value, threshold);
  std::vector<double> importance(share.size(), kInfinity);
  std::vector<std::string> reasons(share.size());
  for (size_t i = 0; i < share.size(); ++i) {
    if (static_cast<int>(i) < frozen_) {
      reasons[i] = "frozen";
      continue;
    }
    if (!std::isfinite(value[i])) {
      reasons[i] = "no floating-point gradient";
      continue;
    }
    importance[i] = value[i] / threshold[i];
    reasons[i] = importance[i] > 1 ? "above threshold" : "below threshold";
  }
  if (mode_ == GacMode::Freeze) update_freeze(share);
  last_importance_ = importance;
  decide(importance, reasons);
  for (size_t i = 0; i < share.size(); ++i) {
    GacRecord record;
    record.step = step;
    record.stage = static_cast<int>(i);
    record.proxy = value[i];
    record.threshold = threshold[i];
    record.decision = decisions_[i];
    record.codec = stage_codecs_[i];
    record.reason = reasons[i];
    history_.push_back(record);
  }
}

// The value each family compares and its threshold, both in the family's units, after
// which the family's state takes this step in.
void GacController::compare(const std::vector<double>& share, std::vector<double>& value,
                            std::vector<double>& threshold) {
  const double alpha = options_.resolved_alpha();
  const double floor = options_.theta_min;
  if (options_.threshold == GacThreshold::Ema) {
    for (size_t i = 0; i < share.size(); ++i) {
      if (!std::isfinite(share[i])) continue;
      if (!std::isfinite(theta_[i])) theta_[i] = share[i];  // first sight: its own level
      value[i] = share[i];
      threshold[i] = std::max(floor, theta_[i] * temporal_scale_);
      theta_[i] = alpha * share[i] + (1 - alpha) * theta_[i];
    }
    return;
  }
  // norm-median and kind: ĝ, an EMA of the squared share, against α·median of ĝ.
  const double beta = options_.beta;
  for (size_t i = 0; i < share.size(); ++i) {
    if (!std::isfinite(share[i])) continue;
    const double squared = share[i] * share[i];
    theta_[i] = std::isfinite(theta_[i]) ? beta * theta_[i] + (1 - beta) * squared : squared;
    value[i] = theta_[i];
  }
  std::map<std::string, std::vector<double>> groups;
  auto group_of = [&](size_t i) {
    if (options_.threshold != GacThreshold::Kind) return std::string();
    const std::string& kind = profile_.stages[i].kind;
    return kind.empty() ? std::string("other") : kind;
  };
  for (size_t i = 0; i < share.size(); ++i) {
    if (std::isfinite(value[i])) groups[group_of(i)].push_back(value[i]);
  }
  for (size_t i = 0; i < share.size(); ++i) {
    if (!std::isfinite(value[i])) continue;
    threshold[i] = std::max(floor, alpha * median(groups[group_of(i)]) * temporal_scale_);
  }
}

void GacController::update_freeze(const std::vector<double>& share) {
  const int length = static_cast<int>(share.size());
  for (int i = frozen_; i < length; ++i) {
    const double s = share[static_cast<size_t>(i)];
    below_count_[static_cast<size_t>(i)] =
        std::isfinite(s) && s < options_.theta_min ? below_count_[i] + 1 : 0;
  }
  // The prefix only grows from where it is, and the last stage always trains.
  while (frozen_ < length - 1 && below_count_[static_cast<size_t>(frozen_)] >= options_.freeze_after)
    ++frozen_;
}

void GacController::observe_validation(int64_t step, double loss) {
  if (!std::isfinite(loss) || step <= last_validation_step_) return;
  last_validation_step_ = step;
  if (last_validation_loss_ > 0 && options_.temporal_beta > 0) {
    const double improvement = (last_validation_loss_ - loss) / last_validation_loss_;
    temporal_scale_ =
        std::max(1e-6, temporal_scale_ * (1 + options_.temporal_beta * improvement / options_.temperature));
  }
  last_validation_loss_ = loss;
  const bool improving = best_validation_loss_ < 0 || loss < best_validation_loss_;
  if (improving) best_validation_loss_ = loss;
  if (mode_ == GacMode::Freeze && !improving && frozen_ > 0) {
    // AutoFreeze's guard: a frozen prefix that no longer lets the loss improve trains again.
    frozen_ = 0;
    std::fill(below_count_.begin(), below_count_.end(), 0);
    std::vector<std::string> reasons(decisions_.size(), "unfrozen: validation loss stopped improving");
    decide(last_importance_, reasons);
  }
}

void GacController::decide(const std::vector<double>& importance, std::vector<std::string>& reasons) {
  const int length = static_cast<int>(importance.size());
  const int codec_count = static_cast<int>(codecs_.size());
  for (int i = 0; i < length; ++i) {
    const double weight = importance[static_cast<size_t>(i)];
    if (i < frozen_) {
      decisions_[i] = GacDecision::Freeze;
      stage_codecs_[i] = Codec::None;
    } else if (weight > 1) {
      set_level(i, 0);
    } else if (mode_ == GacMode::Lossy) {
      // The least important share of the below-threshold range gets the most aggressive codec.
      const double r = std::clamp(weight, 0.0, 1.0);
      const int tier = std::min(codec_count - 1, static_cast<int>((1 - r) * codec_count));
      set_level(i, 1 + tier);
    } else {
      set_level(i, levels() - 1);
    }
  }
  std::vector<int> intended(decisions_.size());
  for (int i = 0; i < length; ++i) intended[static_cast<size_t>(i)] = level_of(i);
  const std::vector<std::string> intended_reasons = reasons;
  const std::vector<char> given_up = enforce_budget(importance, reasons);
  // A stage given up that did not lower the peak (the peak was elsewhere) gets its storage
  // back; with fill_spare_memory every stage below its threshold may, most important first.
  // Without it a stage given up climbs back no further than its own tier.
  std::vector<int> ceiling(intended.size(), 0);
  if (!options_.fill_spare_memory) ceiling = intended;
  fill_spare(importance, given_up, ceiling, reasons, /*given_up_only=*/!options_.fill_spare_memory);
  for (int i = frozen_; i < length; ++i) {
    if (level_of(i) == intended[static_cast<size_t>(i)])
      reasons[static_cast<size_t>(i)] = intended_reasons[i];
  }
  schedule_ = gac_schedule(profile_, decisions_, stage_codecs_);
}

// Stages in the order their storage is given up: least important first; among equals
// (before any proxy) the stage that frees the most bytes per second recomputed.
std::vector<int> GacController::give_up_order(const std::vector<double>& importance) const {
  std::vector<int> order;
  for (int i = frozen_; i < static_cast<int>(importance.size()); ++i) order.push_back(i);
  auto saving_rate = [&](int i) {
    const StageProfile& stage = profile_.stages[static_cast<size_t>(i)];
    return static_cast<double>(stage.saved_bytes - stage.output_bytes) / std::max(stage.forward_s, 1e-12);
  };
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    if (importance[static_cast<size_t>(a)] != importance[static_cast<size_t>(b)])
      return importance[static_cast<size_t>(a)] < importance[static_cast<size_t>(b)];
    return saving_rate(a) > saving_rate(b);
  });
  return order;
}

std::vector<char> GacController::enforce_budget(const std::vector<double>& importance,
                                                std::vector<std::string>& reasons) {
  std::vector<char> given_up(importance.size(), 0);
  const std::vector<int> order = give_up_order(importance);
  while (current_peak_bytes() > budget_bytes_) {
    bool stepped = false;
    for (int i : order) {
      if (level_of(i) == levels() - 1) continue;
      set_level(i, level_of(i) + 1);
      reasons[static_cast<size_t>(i)] = "budget";
      given_up[static_cast<size_t>(i)] = 1;
      stepped = true;
      break;
    }
    if (!stepped) break;  // everything recomputed: the least budget is above this one
  }
  return given_up;
}

void GacController::fill_spare(const std::vector<double>& importance, const std::vector<char>& given_up,
                               const std::vector<int>& ceiling, std::vector<std::string>& reasons,
                               bool given_up_only) {
  std::vector<int> order = give_up_order(importance);
  std::reverse(order.begin(), order.end());
  for (int i : order) {
    const bool victim = given_up[static_cast<size_t>(i)] != 0;
    if (given_up_only && !victim) continue;
    while (level_of(i) > ceiling[static_cast<size_t>(i)]) {
      const int level = level_of(i);
      set_level(i, level - 1);
      if (current_peak_bytes() > budget_bytes_) {
        set_level(i, level);
        break;
      }
      if (!victim) reasons[static_cast<size_t>(i)] = "spare memory";
    }
  }
}

std::string GacController::state_json() const {
  nlohmann::json theta = nlohmann::json::array();
  for (double value : theta_) theta.push_back(finite_or_null(value));
  nlohmann::json importance = nlohmann::json::array();
  for (double value : last_importance_) importance.push_back(finite_or_null(value));
  return nlohmann::json{{"theta", theta},
                        {"below_count", below_count_},
                        {"importance", importance},
                        {"temporal_scale", temporal_scale_},
                        {"last_validation_loss", last_validation_loss_},
                        {"best_validation_loss", best_validation_loss_},
                        {"last_validation_step", last_validation_step_},
                        {"frozen", frozen_}}
      .dump();
}

void GacController::restore_state_json(const std::string& text) {
  const size_t length = theta_.size();
  std::vector<double> theta(length), importance(length);
  std::vector<int> below_count(length);
  double temporal_scale = 1, last_loss = -1, best_loss = -1;
  int64_t last_step = -1;
  int frozen = 0;
  try {
    const nlohmann::json state = nlohmann::json::parse(text);
    if (state.at("theta").size() != length || state.at("below_count").size() != length ||
        state.at("importance").size() != length) {
      throw DataError("the saved GAC state is for a chain of " + std::to_string(state.at("theta").size()) +
                      " stages, this chain has " + std::to_string(length));
    }
    auto number_or = [](const nlohmann::json& value, double absent) {
      return value.is_null() ? absent : value.get<double>();
    };
    for (size_t i = 0; i < length; ++i) {
      theta[i] = number_or(state["theta"][i], kNaN);
      below_count[i] = state["below_count"][i].get<int>();
      importance[i] = number_or(state["importance"][i], kInfinity);
    }
    temporal_scale = state.at("temporal_scale").get<double>();
    last_loss = state.at("last_validation_loss").get<double>();
    best_loss = state.at("best_validation_loss").get<double>();
    last_step = state.at("last_validation_step").get<int64_t>();
    frozen = std::clamp(state.at("frozen").get<int>(), 0, static_cast<int>(length) - 1);
  } catch (const nlohmann::json::exception& e) {
    throw DataError(std::string("the saved GAC state is damaged: ") + e.what());
  }
  theta_ = std::move(theta);
  below_count_ = std::move(below_count);
  last_importance_ = std::move(importance);
  temporal_scale_ = temporal_scale;
  last_validation_loss_ = last_loss;
  best_validation_loss_ = best_loss;
  last_validation_step_ = last_step;
  frozen_ = frozen;
  std::vector<std::string> reasons(length, "restored");
  decide(last_importance_, reasons);
}

}  // namespace memento
