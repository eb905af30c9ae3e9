// Gradient-aware checkpointing's decision logic (core/gac.h): the threshold families, the
// budget that always holds, the lossy codec tiers, the frozen prefix, temporal adaptation,
// the schedules it emits (valid under the op state machine), and its saved state.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include <nlohmann/json.hpp>

#include "memento/core/error.h"
#include "memento/core/gac.h"
#include "memento/core/planner.h"
#include "memento/core/simulate.h"
#include "test_support.h"

namespace memento {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

int64_t store_all_peak(const ChainProfile& profile) {
  return simulate(profile, store_all_schedule(profile.length())).peak_bytes;
}

GacOptions no_spare(GacOptions options = {}) {
  options.fill_spare_memory = false;
  return options;
}

TEST(GacNames, RoundTripAndUnknownNamesListTheValidOnes) {
  for (GacMode mode : {GacMode::Exact, GacMode::Lossy, GacMode::Freeze})
    EXPECT_EQ(gac_mode_from_name(gac_mode_name(mode)), mode);
  for (GacProxy proxy : {GacProxy::MeanAbs, GacProxy::Frobenius, GacProxy::Trace, GacProxy::ParameterMeanAbs,
                         GacProxy::ParameterFrobenius})
    EXPECT_EQ(gac_proxy_from_name(gac_proxy_name(proxy)), proxy);
  for (GacThreshold threshold : {GacThreshold::Ema, GacThreshold::NormMedian, GacThreshold::Kind})
    EXPECT_EQ(gac_threshold_from_name(gac_threshold_name(threshold)), threshold);
  try {
    gac_proxy_from_name("hessian");
    FAIL() << "expected InvalidArgument";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("mag, frobenius, trace"), std::string::npos) << e.what();
  }
  EXPECT_THROW(gac_mode_from_name("fast"), InvalidArgument);
  EXPECT_THROW(gac_threshold_from_name(""), InvalidArgument);
}

TEST(GacOptions, RangesAreCheckedAndNamedByTheCaller) {
  GacOptions options;
  EXPECT_NO_THROW(options.validate());
  EXPECT_DOUBLE_EQ(options.resolved_alpha(), 0.8);
  options.threshold = GacThreshold::NormMedian;
  EXPECT_DOUBLE_EQ(options.resolved_alpha(), 1.0);
  auto refused = [](GacOptions bad, const std::string& field) {
    try {
      bad.validate([](const std::string& name) { return "<" + name + ">"; });
      return std::string("accepted");
    } catch (const InvalidArgument& e) {
      return std::string(e.what()).find("<" + field + ">") != std::string::npos ? std::string("named")
                                                                                : std::string(e.what());
    }
  };
  GacOptions bad;
  bad.alpha = 1.5;  // ema: (0, 1]
  EXPECT_EQ(refused(bad, "alpha"), "named");
  bad.threshold = GacThreshold::NormMedian;  // median multiplier: [0.5, 2]
  EXPECT_EQ(refused(bad, "alpha"), "accepted");
  bad.alpha = 2.5;
  EXPECT_EQ(refused(bad, "alpha"), "named");
  bad.alpha = 0.4;
  EXPECT_EQ(refused(bad, "alpha"), "named");
  bad = GacOptions();
  bad.beta = 0.5;
  EXPECT_EQ(refused(bad, "beta"), "named");
  bad = GacOptions();
  bad.theta_min = 0;
  EXPECT_EQ(refused(bad, "theta_min"), "named");
  bad = GacOptions();
  bad.every_steps = 0;
  EXPECT_EQ(refused(bad, "every_steps"), "named");
  bad = GacOptions();
  bad.freeze_after = 0;
  EXPECT_EQ(refused(bad, "freeze_after"), "named");
  bad = GacOptions();
  bad.temperature = 0;
  EXPECT_EQ(refused(bad, "temperature"), "named");
  bad = GacOptions();
  bad.temporal_beta = -0.1;
  EXPECT_EQ(refused(bad, "temporal_beta"), "named");
}

TEST(GacSchedule, EveryDecisionVectorIsAValidCompleteSchedule) {
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    const int length = static_cast<int>(testing::uniform_int(rng, 1, 7));
    ChainProfile profile = testing::random_profile(rng, length);
    testing::add_lossy_costs(rng, profile, Codec::Int8, 0.3);
    std::vector<GacDecision> decisions(static_cast<size_t>(length));
    std::vector<Codec> codecs(static_cast<size_t>(length), Codec::None);
    const int frozen = static_cast<int>(testing::uniform_int(rng, 0, length - 1));
    for (int i = 0; i < length; ++i) {
      if (i < frozen) {
        decisions[i] = GacDecision::Freeze;
        continue;
      }
      decisions[i] = static_cast<GacDecision>(testing::uniform_int(rng, 0, 2));
      if (decisions[i] == GacDecision::Compress) codecs[i] = Codec::Int8;
    }
    const Schedule schedule = gac_schedule(profile, decisions, codecs);
    ASSERT_NO_THROW(simulate(profile, schedule)) << to_string(schedule);
    int backwards = 0;
    for (const Op& op : schedule) backwards += op.kind == OpKind::Backward;
    EXPECT_EQ(backwards, length - frozen) << to_string(schedule);
  }
}

TEST(GacSchedule, RefusesAFrozenStageAfterATrainingOneAndAllFrozen) {
  std::mt19937_64 rng(8);
  const ChainProfile profile = testing::random_profile(rng, 3);
  const std::vector<Codec> none(3, Codec::None);
  EXPECT_THROW(gac_schedule(profile, {GacDecision::Store, GacDecision::Freeze, GacDecision::Store}, none),
               InvalidArgument);
  EXPECT_THROW(gac_schedule(profile, {GacDecision::Freeze, GacDecision::Freeze, GacDecision::Freeze}, none),
               InvalidArgument);
  EXPECT_THROW(gac_schedule(profile, {GacDecision::Compress, GacDecision::Store, GacDecision::Store}, none),
               InvalidArgument);
  EXPECT_EQ(to_string(gac_schedule(profile, {GacDecision::Freeze, GacDecision::Recompute, GacDecision::Store},
                                   none)),
            "Ff0 Fc1 Fg2 L B2 Fg1 B1");
}

TEST(GacController, BeforeAnyProxyItStoresWhatFitsAndTheBudgetAlwaysHolds) {
  std::mt19937_64 rng(11);
  for (int trial = 0; trial < 100; ++trial) {
    const int length = static_cast<int>(testing::uniform_int(rng, 2, 8));
    const ChainProfile profile = testing::random_profile(rng, length);
    const int64_t budget = testing::random_budget(rng, profile);
    const GacController probe(profile, store_all_peak(profile), GacOptions());
    if (probe.least_budget_bytes() > budget) continue;
    GacController gac(profile, budget, GacOptions());
    EXPECT_LE(simulate(profile, gac.schedule()).peak_bytes, budget);
    for (int step = 1; step <= 5; ++step) {
      std::vector<double> proxies;
      for (int i = 0; i < length; ++i) proxies.push_back(testing::log_uniform(rng, 1e-6, 1.0));
      gac.observe(step, proxies);
      EXPECT_LE(simulate(profile, gac.schedule()).peak_bytes, budget) << to_string(gac.schedule());
    }
  }
}

TEST(GacController, TheLeastBudgetIsEveryStageRecomputed) {
  std::mt19937_64 rng(12);
  const ChainProfile profile = testing::random_profile(rng, 5);
  const GacController gac(profile, store_all_peak(profile), GacOptions());
  const std::vector<GacDecision> all(5, GacDecision::Recompute);
  EXPECT_EQ(gac.least_budget_bytes(),
            simulate(profile, gac_schedule(profile, all, std::vector<Codec>(5))).peak_bytes);
  const Plan plan = make_planner("gac")->plan(profile, PlannerOptions(gac.least_budget_bytes() - 1));
  EXPECT_FALSE(plan.feasible);
  EXPECT_EQ(plan.min_feasible_budget_bytes, gac.least_budget_bytes());
  const Plan fits = make_planner("gac")->plan(profile, PlannerOptions(gac.least_budget_bytes()));
  ASSERT_TRUE(fits.feasible);
  EXPECT_EQ(fits.runtime_policy, "gac");
  EXPECT_EQ(plan_to_json(fits)["gac"]["threshold"], "ema");
}

TEST(GacController, EmaStoresAStageWhoseGradientRisesAboveItsOwnAverage) {
  std::mt19937_64 rng(13);
  const ChainProfile profile = testing::random_profile(rng, 3);
  GacController gac(profile, store_all_peak(profile), no_spare());
  gac.observe(1, {1.0, 0.5, 0.5});
  // First sight: every stage sits at its own threshold, none is above it.
  EXPECT_EQ(gac.decisions(), std::vector<GacDecision>(3, GacDecision::Recompute));
  gac.observe(2, {1.0, 0.9, 0.2});  // stage 1 rises against its EMA, stage 2 falls
  EXPECT_EQ(gac.decisions()[1], GacDecision::Store);
  EXPECT_EQ(gac.decisions()[2], GacDecision::Recompute);
  const GacRecord& record = gac.history().back();
  EXPECT_EQ(record.step, 2);
  EXPECT_EQ(record.stage, 2);
  EXPECT_DOUBLE_EQ(record.proxy, 0.2);
  EXPECT_DOUBLE_EQ(record.threshold, 0.5);  // the EMA before this step's update
  EXPECT_EQ(record.reason, "below threshold");
  // θ ← 0.8·0.2 + 0.2·0.5 = 0.26: at 0.3 next, stage 2 is above it.
  gac.observe(3, {1.0, 0.9, 0.3});
  EXPECT_EQ(gac.decisions()[2], GacDecision::Store);
  EXPECT_NEAR(gac.history().back().threshold, 0.26, 1e-12);
}

TEST(GacController, NormMedianStoresTheStagesAboveAlphaTimesTheMedian) {
  std::mt19937_64 rng(14);
  const ChainProfile profile = testing::random_profile(rng, 5);
  GacOptions options = no_spare();
  options.threshold = GacThreshold::NormMedian;
  GacController gac(profile, store_all_peak(profile), options);
  gac.observe(1, {4.0, 1.0, 2.0, 0.5, 3.0});
  // Shares 1, .25, .5, .125, .75; squared .0625..1; median .25 (share .5): above it 0 and 4.
  EXPECT_EQ(gac.decisions(),
            (std::vector<GacDecision>{GacDecision::Store, GacDecision::Recompute, GacDecision::Recompute,
                                      GacDecision::Recompute, GacDecision::Store}));
  EXPECT_DOUBLE_EQ(gac.history()[2].threshold, 0.25);
  // The EMA moves with β = 0.95: one step of stage 3 at the top barely moves it.
  gac.observe(2, {0.5, 1.0, 2.0, 4.0, 3.0});
  EXPECT_NEAR(gac.history()[5 + 3].proxy, 0.95 * 0.015625 + 0.05 * 1.0, 1e-12);
}

TEST(GacController, KindThresholdsTakeTheMedianWithinEachLayerKind) {
  std::mt19937_64 rng(15);
  const ChainProfile profile = testing::random_profile(rng, 4);  // kinds attention, mlp, attention, mlp
  GacOptions options = no_spare();
  options.threshold = GacThreshold::Kind;
  options.alpha = 0.5;
  GacController gac(profile, store_all_peak(profile), options);
  // Attention stages (0, 2) are small, MLP stages (1, 3) large: each kind has a stage above
  // half its own median, which one median over the chain would not give the attention stages.
  gac.observe(1, {0.1, 1.0, 0.02, 0.5});
  EXPECT_EQ(gac.decisions()[0], GacDecision::Store);
  EXPECT_EQ(gac.decisions()[1], GacDecision::Store);
  EXPECT_EQ(gac.decisions()[2], GacDecision::Recompute);
  EXPECT_EQ(gac.decisions()[3], GacDecision::Recompute);
}

TEST(GacController, OverBudgetTheLeastImportantStoredStageIsGivenUpFirst) {
  ChainProfile profile;
  profile.model = "equal";
  for (int i = 0; i < 4; ++i) {
    StageProfile stage;
    stage.name = "s" + std::to_string(i);
    stage.forward_s = stage.backward_s = 1e-3;
    stage.input_bytes = stage.output_bytes = 100;
    stage.saved_bytes = 1000;
    profile.stages.push_back(stage);
  }
  GacOptions options = no_spare();
  options.threshold = GacThreshold::NormMedian;
  options.alpha = 0.5;
  const int64_t all = store_all_peak(profile);
  GacController gac(profile, all - 500, options);  // one stage fewer than all stored fits
  gac.observe(1, {1.0, 0.9, 0.8, 0.7});            // every stage above half the median
  int recomputed = 0;
  for (GacDecision decision : gac.decisions()) recomputed += decision == GacDecision::Recompute;
  // The last stage is the least important, but recomputing it does not lower the peak (its
  // graph is rebuilt right after the Loss): it keeps its graph, and stage 2 is recomputed.
  EXPECT_EQ(recomputed, 1);
  EXPECT_EQ(gac.decisions()[2], GacDecision::Recompute);
  EXPECT_EQ(gac.history()[2].reason, "budget");
  EXPECT_EQ(gac.decisions()[3], GacDecision::Store);
  EXPECT_LE(simulate(profile, gac.schedule()).peak_bytes, all - 500);
}

TEST(GacController, WithoutSpareMemoryNoBelowThresholdStageEndsMoreExactThanItsTier) {
  std::mt19937_64 rng(21);
  GacOptions options = no_spare();
  options.threshold = GacThreshold::NormMedian;
  int checked = 0;
  for (int trial = 0; trial < 200; ++trial) {
    const int length = static_cast<int>(testing::uniform_int(rng, 2, 7));
    ChainProfile profile = testing::random_profile(rng, length);
    testing::add_lossy_costs(rng, profile, Codec::BF16, 0.5);
    testing::add_lossy_costs(rng, profile, Codec::Int4, 0.14);
    const int64_t budget = testing::random_budget(rng, profile);
    if (GacController(profile, store_all_peak(profile), {}).least_budget_bytes() > budget) continue;
    GacController gac(profile, budget, options, {Codec::BF16, Codec::Int4});
    std::vector<double> proxies;
    for (int i = 0; i < length; ++i) proxies.push_back(testing::log_uniform(rng, 1e-4, 1.0));
    gac.observe(1, proxies);
    for (const GacRecord& record : gac.history()) {
      if (record.proxy > record.threshold) continue;
      EXPECT_NE(record.decision, GacDecision::Store) << "stage " << record.stage << ": " << record.reason;
      ++checked;
    }
  }
  EXPECT_GT(checked, 100);
}

TEST(GacController, SpareMemoryKeepsTheMostImportantBelowThresholdStages) {
  std::mt19937_64 rng(16);
  const ChainProfile profile = testing::random_profile(rng, 4);
  GacController gac(profile, store_all_peak(profile), GacOptions());
  gac.observe(1, {1.0, 0.5, 0.5, 0.5});
  EXPECT_EQ(gac.decisions(), std::vector<GacDecision>(4, GacDecision::Store));
  EXPECT_EQ(gac.history()[1].reason, "spare memory");
}

TEST(GacController, LossyPacksTheLeastImportantWithTheMostAggressiveCodec) {
  std::mt19937_64 rng(17);
  ChainProfile profile = testing::random_profile(rng, 4);
  testing::add_lossy_costs(rng, profile, Codec::BF16, 0.5);
  testing::add_lossy_costs(rng, profile, Codec::Int4, 0.14);
  GacOptions options = no_spare();
  options.mode = GacMode::Lossy;
  options.threshold = GacThreshold::NormMedian;
  EXPECT_THROW(GacController(profile, store_all_peak(profile), options), InvalidArgument);  // no codecs
  EXPECT_THROW(GacController(profile, store_all_peak(profile), options, {Codec::Int8}), InvalidArgument);
  GacController gac(profile, store_all_peak(profile), options, {Codec::Int4, Codec::BF16});
  EXPECT_EQ(gac.mode(), GacMode::Lossy);
  // Squared shares 1, .81, .49, .0001 against the median .65: stage 2 just below, 3 far below.
  gac.observe(1, {1.0, 0.9, 0.7, 0.01});
  EXPECT_EQ(gac.decisions()[0], GacDecision::Store);
  EXPECT_EQ(gac.decisions()[1], GacDecision::Store);
  EXPECT_EQ(gac.decisions()[2], GacDecision::Compress);
  EXPECT_EQ(gac.stage_codecs()[2], Codec::BF16);
  EXPECT_EQ(gac.decisions()[3], GacDecision::Compress);
  EXPECT_EQ(gac.stage_codecs()[3], Codec::Int4);
  EXPECT_TRUE(is_lossy(gac.schedule()));
  EXPECT_EQ(gac_record_to_json(gac.history()[3])["codec"], "int4");
}

TEST(GacController, FreezeFreezesAPrefixBelowThetaMinAndUnfreezesWhenTheLossStalls) {
  std::mt19937_64 rng(18);
  const ChainProfile profile = testing::random_profile(rng, 4);
  GacOptions options;
  options.mode = GacMode::Freeze;
  options.freeze_after = 2;
  options.theta_min = 0.01;
  GacController gac(profile, store_all_peak(profile), options);
  gac.observe_validation(0, 3.0);
  gac.observe(1, {0.001, 0.002, 1.0, 0.001});
  EXPECT_EQ(gac.frozen_stages(), 0);
  gac.observe(2, {0.001, 0.5, 1.0, 0.001});
  EXPECT_EQ(gac.frozen_stages(), 1);  // stage 1 rose above θ_min: the prefix stops at it
  EXPECT_EQ(gac.decisions()[0], GacDecision::Freeze);
  EXPECT_EQ(gac.schedule().front(), Op::forward_frozen(0));
  gac.observe(3, {kNaN, 0.001, 1.0, 0.001});
  gac.observe(4, {kNaN, 0.001, 1.0, 0.001});
  EXPECT_EQ(gac.frozen_stages(), 2);
  gac.observe(5, {kNaN, kNaN, 0.001, 1.0});
  gac.observe(6, {kNaN, kNaN, 0.001, 1.0});
  EXPECT_EQ(gac.frozen_stages(), 3);  // never the last stage
  gac.observe(7, {kNaN, kNaN, kNaN, 0.0});
  EXPECT_EQ(gac.frozen_stages(), 3);
  gac.observe_validation(7, 2.5);  // improving: stays frozen
  EXPECT_EQ(gac.frozen_stages(), 3);
  gac.observe_validation(8, 2.6);  // no better than the best: AutoFreeze's guard unfreezes
  EXPECT_EQ(gac.frozen_stages(), 0);
  EXPECT_EQ(gac.decisions()[0], GacDecision::Store);
}

TEST(GacController, TemporalAdaptationRaisesThresholdsWhileTheLossImproves) {
  std::mt19937_64 rng(19);
  const ChainProfile profile = testing::random_profile(rng, 2);
  GacOptions options = no_spare();
  options.temporal_beta = 0.5;
  options.temperature = 2.0;
  GacController gac(profile, store_all_peak(profile), options);
  gac.observe(1, {1.0, 0.5});
  gac.observe_validation(1, 4.0);
  gac.observe_validation(2, 3.0);  // 25% better: thresholds x (1 + 0.5·0.25/2)
  gac.observe_validation(2, 1.0);  // the same step again (a resumed run): ignored
  gac.observe(3, {1.0, 0.5});
  EXPECT_NEAR(gac.history().back().threshold, 0.5 * (1 + 0.5 * 0.25 / 2), 1e-12);
  options.theta_min = 0.9;  // the floor wins
  GacController floored(profile, store_all_peak(profile), options);
  floored.observe(1, {1.0, 0.5});
  EXPECT_DOUBLE_EQ(floored.history().back().threshold, 0.9);
}

TEST(GacController, SavedStateRestoresTheSameDecisionsAndThresholds) {
  std::mt19937_64 rng(20);
  const ChainProfile profile = testing::random_profile(rng, 5);
  const int64_t budget =
      (store_all_peak(profile) + GacController(profile, store_all_peak(profile), {}).least_budget_bytes()) /
      2;
  GacController a(profile, budget, GacOptions());
  a.observe(1, {0.3, 0.1, 0.9, 0.2, 1.0});
  a.observe(2, {0.4, 0.05, 0.7, 0.3, 1.0});
  a.observe_validation(2, 2.0);
  GacController b(profile, budget, GacOptions());
  b.restore_state_json(a.state_json());
  EXPECT_EQ(b.decisions(), a.decisions());
  EXPECT_EQ(to_string(b.schedule()), to_string(a.schedule()));
  a.observe(3, {0.5, 0.2, 0.6, 0.1, 1.0});
  b.observe(3, {0.5, 0.2, 0.6, 0.1, 1.0});
  EXPECT_EQ(b.decisions(), a.decisions());
  EXPECT_DOUBLE_EQ(b.history().back().threshold, a.history().back().threshold);
  GacController other(testing::random_profile(rng, 3), store_all_peak(profile) * 10, GacOptions());
  EXPECT_THROW(other.restore_state_json(a.state_json()), DataError);
  EXPECT_THROW(b.restore_state_json("{\"theta\": 1"), DataError);
  EXPECT_THROW(a.observe(4, {1.0}), InvalidArgument);
}

}  // namespace
}  // namespace memento
