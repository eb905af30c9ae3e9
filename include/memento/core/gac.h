#pragma once
/// \file
/// Gradient-aware checkpointing (GAC), the decision logic: per-stage gradient proxies in,
/// thresholds, one storage decision per stage and the next step's schedule out. It is
/// plain core code (no LibTorch): the runtime measures the proxies
/// (memento/torch/gradient_proxies.h) and runs the schedules (PlanRunner, policy "gac").
///
/// Every observed step, the proxies g_l (one per stage, of the selected kind) are divided by
/// the step's largest, so every threshold compares shares of the most impactful stage and
/// θ_min is scale-free. Threshold families (GacThreshold):
/// - `ema`: θ_l ← α·g_l + (1−α)·θ_l (α = 0.8); stage l is impactful when g_l > θ_l, with θ_l
///   the value before this step's update (a stage whose gradient grows against its own
///   history);
/// - `norm-median`: ĝ_l ← β·ĝ_l + (1−β)·g_l² (β = 0.95), τ = α·median over stages of ĝ
///   (α = 1); impactful when ĝ_l > τ (a stage above the chain's typical magnitude);
/// - `kind`: as norm-median, with the median taken over the stages of the same kind
///   (StageProfile::kind: attention, mlp, conv, norm, embed, ...).
/// Temporal adaptation (every family, `temporal_beta` > 0): on each validation loss ε the
/// thresholds scale by (1 + β_t·Δε/T) with Δε = (ε_prev − ε)/ε_prev the relative improvement,
/// and never fall below θ_min: while the loss improves more stages count as unimportant.
///
/// Decisions (GacMode), each stage's `importance` being its value over its threshold:
/// - exact: impactful stages keep their graph, the others are recomputed. When that exceeds
///   the budget, the least important kept stages are recomputed until it fits; memory left
///   over is spent (`fill_spare_memory`) keeping the most important recomputed stages that
///   still fit. Gradients are bit-identical to store-all.
/// - lossy: unimpactful stages are stored packed instead of recomputed, the least
///   important with the most aggressive codec of the allowed list (int4), the nearly
///   impactful with the mildest (bf16); the budget steps storage down one notch at a time
///   (exact → bf16 → ... → int4 → recompute), least important first.
/// - freeze: as exact, and a prefix of stages whose proxies stayed below θ_min for
///   `freeze_after` consecutive observations is frozen (runs without autograd, no
///   backward, its parameters not updated); it is unfrozen when the validation loss stops
///   improving.
///
/// Example:
/// \code
///   memento::GacOptions options;                      // exact, MAG, EMA threshold
///   memento::GacController gac(profile, budget_bytes, options);
///   executor.step(gac.schedule(), batch);             // step 0: no proxies yet
///   gac.observe(0, {0.2, 0.01, 0.5});                 // one proxy per stage
///   gac.observe_validation(1, 2.31);                  // after an evaluation
///   executor.step(gac.schedule(), next_batch);        // shaped by step 0's backward
///   for (const memento::GacRecord& r : gac.history()) { /* r.stage, r.proxy, r.decision */ }
/// \endcode

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "memento/core/codec.h"
#include "memento/core/profile.h"
#include "memento/core/schedule.h"

namespace memento {

/// What GAC decides per stage.
enum class GacMode { Exact, Lossy, Freeze };
/// Which proxy of GradientProxy drives the decisions: of the stage's output gradient, its
/// mean absolute value (MAG), Frobenius norm, or the trace Tr(∇ᵀ∇) (= the squared Frobenius
/// norm); or of the stage's parameter gradients, MAG or Frobenius norm (AutoFreeze's kind
/// of signal; a stage without parameters has none); or `sensitivity`, GACT's estimate:
/// how far the parameter gradient moves, ‖g̃ − g‖²/‖g‖², when only the stage's saved
/// tensors are packed with the harshest allowed codec (int4 when none is allowed), measured
/// by repeating the step (PlanRunner: every stage at the first measured step, then one
/// stage per measured step in turn, each estimate kept until it is measured again).
enum class GacProxy { MeanAbs, Frobenius, Trace, ParameterMeanAbs, ParameterFrobenius, Sensitivity };
/// Threshold family (see the file comment).
enum class GacThreshold { Ema, NormMedian, Kind };
/// One stage's storage decision in one step.
enum class GacDecision { Store, Compress, Recompute, Freeze };

/// Names: "exact", "lossy", "freeze"; "mag", "frobenius", "trace", "param-mag",
/// "param-frobenius", "sensitivity"; "ema", "norm-median",
/// "kind"; "store", "compress", "recompute", "freeze". The from_name functions throw
/// InvalidArgument listing the valid names.
const char* gac_mode_name(GacMode mode);
GacMode gac_mode_from_name(const std::string& name);
const char* gac_proxy_name(GacProxy proxy);
GacProxy gac_proxy_from_name(const std::string& name);
const char* gac_threshold_name(GacThreshold threshold);
GacThreshold gac_threshold_from_name(const std::string& name);
const char* gac_decision_name(GacDecision decision);

/// Parameters of the gac planner and policy, defaults as in the design documents.
struct GacOptions {
  GacMode mode = GacMode::Exact;
  GacProxy proxy = GacProxy::MeanAbs;
  GacThreshold threshold = GacThreshold::Ema;
  /// ema: the EMA weight α in (0, 1] (default 0.8); norm-median and kind: the multiplier α
  /// of the median in [0.5, 2] (default 1). < 0: the family's default.
  double alpha = -1;
  double beta = 0.95;             ///< norm-median and kind: EMA weight β in [0.9, 0.99]
  double temporal_beta = 0.1;     ///< β_t of the temporal adaptation in [0, 1]; 0 disables it
  double temperature = 1.0;       ///< T of the temporal adaptation, > 0
  double theta_min = 1e-3;        ///< floor of every threshold, in (0, 1) (shares of the largest)
  int every_steps = 1;            ///< measure proxies (and re-decide) every N steps, N >= 1
  int freeze_after = 3;           ///< freeze: K consecutive observations below θ_min, K >= 1
  bool fill_spare_memory = true;  ///< keep below-threshold stages while the budget allows

  /// α after resolving the family default.
  double resolved_alpha() const;
  /// Throws InvalidArgument naming the field, its range and the value. `field_name` words
  /// a field for the message (the CLI passes its option names); default "GacOptions::alpha".
  void validate(const std::function<std::string(const std::string&)>& field_name = {}) const;
};

/// JSON form of the options (docs/formats.md: mode, proxy, threshold, alpha, beta, ...).
nlohmann::json gac_options_to_json(const GacOptions& options);

/// One stage's line in the decision history.
struct GacRecord {
  int64_t step = 0;  ///< the step whose backward measured the proxy
  int stage = 0;
  double proxy = 0;      ///< the proxy over the step's largest (1 for the largest); NaN: none
  double threshold = 0;  ///< the threshold it was compared with (same units)
  GacDecision decision = GacDecision::Store;
  Codec codec = Codec::None;  ///< for Compress
  std::string reason;         ///< "above threshold", "below threshold", "budget", "spare memory", ...
};

/// `{"step", "stage", "proxy", "threshold", "decision", "codec" (compress only), "reason"}`.
nlohmann::json gac_record_to_json(const GacRecord& record);

/// The GAC state of one training run on one chain: thresholds per stage, the current
/// decisions and their schedule. Copies the profile.
class GacController {
 public:
  /// Throws InvalidArgument for invalid options (GacOptions::validate), for the lossy mode
  /// without `codecs` or with a codec the profile has no costs for.
  GacController(ChainProfile profile, int64_t budget_bytes, GacOptions options,
                std::vector<Codec> codecs = {});

  /// Feeds the proxies one step's backward measured, one per stage (NaN where a stage's
  /// output has no floating-point gradient), and re-decides. Throws InvalidArgument when
  /// the count differs from the chain's length.
  void observe(int64_t step, const std::vector<double>& proxies);
  /// Feeds the validation loss after `step` steps: temporal adaptation and, in freeze mode,
  /// unfreezing. A second loss for a step already fed (a resumed run's first evaluation)
  /// is ignored, so an interrupted run decides as an uninterrupted one.
  void observe_validation(int64_t step, double loss);

  /// The schedule of the next step (the initial one before any observation).
  const Schedule& schedule() const { return schedule_; }
  const std::vector<GacDecision>& decisions() const { return decisions_; }
  /// The codec of each stage (Codec::None unless its decision is Compress).
  const std::vector<Codec>& stage_codecs() const { return stage_codecs_; }
  /// Number of leading stages frozen now (freeze mode), 0 otherwise.
  int frozen_stages() const { return frozen_; }
  /// Every stage's record of every observation, in order.
  const std::vector<GacRecord>& history() const { return history_; }
  const GacOptions& options() const { return options_; }
  /// The effective mode: lossy when codecs were given (exact otherwise), or freeze.
  GacMode mode() const { return mode_; }
  int64_t budget_bytes() const { return budget_bytes_; }

  /// The least budget any decision vector of this controller fits: every stage but a
  /// frozen prefix recomputed (or packed with the most aggressive codec, when lower).
  int64_t least_budget_bytes() const;

  /// The controller's state (thresholds, EMAs, counters, decisions) for a checkpoint, and
  /// its inverse; from_state_json throws DataError when it does not fit this chain.
  std::string state_json() const;
  void restore_state_json(const std::string& text);

 private:
  int levels() const;
  int level_of(int stage) const;
  void set_level(int stage, int level);
  int64_t current_peak_bytes() const;
  std::vector<double> shares(const std::vector<double>& proxies) const;
  void compare(const std::vector<double>& share, std::vector<double>& value, std::vector<double>& threshold);
  void update_freeze(const std::vector<double>& share);
  void decide(const std::vector<double>& importance, std::vector<std::string>& reasons);
  std::vector<int> give_up_order(const std::vector<double>& importance) const;
  std::vector<char> enforce_budget(const std::vector<double>& importance, std::vector<std::string>& reasons);
  void fill_spare(const std::vector<double>& importance, const std::vector<char>& given_up,
                  const std::vector<int>& ceiling, std::vector<std::string>& reasons, bool given_up_only);

  ChainProfile profile_;
  int64_t budget_bytes_;
  GacOptions options_;
  GacMode mode_;
  std::vector<Codec> codecs_;     // mildest first
  std::vector<double> theta_;     // ema: per-stage threshold; norm families: ĝ
  std::vector<int> below_count_;  // consecutive observations below θ_min
  double temporal_scale_ = 1.0;
  double last_validation_loss_ = -1;
  double best_validation_loss_ = -1;
  int64_t last_validation_step_ = -1;
  int frozen_ = 0;
  std::vector<GacDecision> decisions_;
  std::vector<Codec> stage_codecs_;
  std::vector<double> last_importance_;
  Schedule schedule_;
  std::vector<GacRecord> history_;
};

/// The schedule of one storage decision per stage: Store → Fg(i), Compress → Fq(i, codec)
/// (then Free(L) after the Loss when the last stage is packed), Recompute → Fc(i) and Fg(i)
/// again before Backward(i), Freeze (a prefix only) → Ff(i) with no backward. Throws
/// InvalidArgument when the sizes differ, a Compress has no lossy codec, or Freeze is not a prefix.
Schedule gac_schedule(const ChainProfile& profile, const std::vector<GacDecision>& decisions,
                      const std::vector<Codec>& codecs);

}  // namespace memento
