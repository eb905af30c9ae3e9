// The optimum over recomputation and compression together: the lossy tables of
// solve_with_codecs() against every lossy persistent schedule replayed by simulate(), and
// against solve_reference() when no codec is allowed. Also the op state machine's lossy
// forward (ChainState) and the lossy schedule IR.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include <nlohmann/json.hpp>

#include "core/optimal_dp.h"
#include "exhaustive.h"
#include "memento/core/chain_state.h"
#include "memento/core/error.h"
#include "memento/core/planner.h"
#include "memento/core/simulate.h"
#include "test_support.h"

namespace memento {
namespace {

bool near(double a, double b) {
  return std::abs(a - b) <= 1e-9 * std::max({1.0, std::abs(a), std::abs(b)});
}

using testing::add_lossy_costs;

TEST(OptimalLossy, WithoutCodecsItIsTheExactReference) {
  std::mt19937_64 rng(21);
  for (int trial = 0; trial < 60; ++trial) {
    const ChainProfile profile = testing::random_profile(rng, 1 + trial % 7);
    const int64_t budget = testing::random_budget(rng, profile);
    const auto chain = optimal_dp::discretize(profile, budget - profile.fixed_bytes, 60);
    const optimal_dp::Solution exact = optimal_dp::solve_reference(chain);
    const optimal_dp::Solution lossy = optimal_dp::solve_with_codecs(chain);
    ASSERT_EQ(exact.feasible, lossy.feasible) << trial;
    if (!exact.feasible) continue;
    EXPECT_TRUE(near(exact.time_s, lossy.time_s)) << exact.time_s << " vs " << lossy.time_s;
    EXPECT_FALSE(is_lossy(lossy.schedule));
  }
}

TEST(OptimalLossy, MatchesEveryLossyPersistentScheduleReplayed) {
  std::mt19937_64 rng(22);
  int feasible_cases = 0;
  int lossy_optima = 0;
  const std::vector<Codec> codecs = {Codec::BF16, Codec::Int4};
  // Small activations keep the byte-exact tables small (their width is the budget in bytes).
  testing::RandomProfileOptions small;
  small.min_activation_bytes = 16;
  small.max_activation_bytes = 512;
  for (int length = 1; length <= 4; ++length) {
    const std::vector<Schedule> schedules = testing::enumerate_persistent_schedules(length, codecs);
    for (int trial = 0; trial < 12; ++trial) {
      ChainProfile profile = testing::random_profile(rng, length, small);
      add_lossy_costs(rng, profile, Codec::BF16, 0.5);
      add_lossy_costs(rng, profile, Codec::Int4, 0.14);
      std::vector<std::pair<int64_t, double>> replays;
      for (const Schedule& schedule : schedules) {
        const SimulationResult result = simulate(profile, schedule);
        replays.emplace_back(result.peak_bytes, result.time_s);
      }
      int64_t low = replays.front().first;
      int64_t high = low;
      for (const auto& replay : replays) {
        low = std::min(low, replay.first);
        high = std::max(high, replay.first);
      }
      for (int pick = 0; pick < 6; ++pick) {
        const int64_t budget = testing::uniform_int(rng, std::max(profile.fixed_bytes, low - 2), high + 2);
        bool brute_feasible = false;
        double brute_time_s = 0;
        for (const auto& [peak, time_s] : replays) {
          if (peak <= budget && (!brute_feasible || time_s < brute_time_s)) {
            brute_feasible = true;
            brute_time_s = time_s;
          }
        }
        const optimal_dp::Solution dp = optimal_dp::solve_with_codecs(
            optimal_dp::exact_chain(profile, budget - profile.fixed_bytes, codecs));
        ASSERT_EQ(dp.feasible, brute_feasible) << "length " << length << " budget " << budget;
        if (!dp.feasible) continue;
        ++feasible_cases;
        lossy_optima += is_lossy(dp.schedule) ? 1 : 0;
        ASSERT_TRUE(near(dp.time_s, brute_time_s))
            << dp.time_s << " vs " << brute_time_s << ": " << to_string(dp.schedule);
        const SimulationResult replay = simulate(profile, dp.schedule);
        EXPECT_LE(replay.peak_bytes, budget) << to_string(dp.schedule);
        EXPECT_TRUE(near(replay.time_s, dp.time_s));
      }
    }
  }
  EXPECT_GT(feasible_cases, 150);
  EXPECT_GT(lossy_optima, 20);
}

ChainProfile two_stage_profile() {
  ChainProfile profile;
  profile.fixed_bytes = 1000;
  for (int i = 0; i < 2; ++i) {
    StageProfile stage;
    stage.name = "s" + std::to_string(i);
    stage.kind = "mlp";
    stage.forward_s = 1;
    stage.backward_s = 2;
    stage.input_bytes = stage.output_bytes = 100;
    stage.saved_bytes = 300;
    stage.lossy.push_back({Codec::Int8, 80, 10, 20, 0.1, 0.2});
    profile.stages.push_back(stage);
  }
  return profile;
}

TEST(ChainStateLossy, LossyForwardStoresItsOutputAndDropsItsInput) {
  const ChainProfile profile = two_stage_profile();
  ChainState state(profile);
  EXPECT_EQ(state.apply(Op::forward_lossy(0, Codec::Int8)), 1000 + 100 + 80 + 10);
  EXPECT_TRUE(state.lossy_graph(0));
  EXPECT_TRUE(state.stored(1));
  EXPECT_EQ(state.live_bytes(), 1000 + 80 + 100);
  state.apply(Op::forward_lossy(1, Codec::Int8));
  EXPECT_FALSE(state.stored(1));  // dropped: graph 1 packed its own copy
  EXPECT_EQ(state.live_bytes(), 1000 + 80 + 80 + 100);
  state.apply(Op::loss());
  state.apply(Op::free(2));
  EXPECT_EQ(state.apply(Op::backward(1)),
            1000 + 160 + 100 + 100 + 20);  // d_2, then d_1 and the unpacked copies
  state.apply(Op::backward(0));
  state.check_complete(6);
  EXPECT_EQ(state.live_bytes(), 1000);
  EXPECT_TRUE(near(state.counters().time_s, 2 * (1 + 0.1 + 2 + 0.2)));
}

TEST(ChainStateLossy, RefusesWhatTheProfileCannotPrice) {
  ChainProfile profile = two_stage_profile();
  ChainState state(profile);
  EXPECT_THROW(state.apply(Op::forward_lossy(0, Codec::BF16)), ScheduleError);
  EXPECT_THROW(state.apply(Op::forward_lossy(0, Codec::None)), ScheduleError);
  profile.stages[1].lossy.clear();
  EXPECT_THROW(optimal_dp::exact_chain(profile, 1000, {Codec::Int8}), InvalidArgument);
}

TEST(ScheduleLossy, TextAndJsonCarryTheCodec) {
  const Schedule schedule = lossy_store_all_schedule(2, Codec::Int4);
  EXPECT_EQ(to_string(schedule), "Fq0:int4 Fq1:int4 L X2 B1 B0");
  EXPECT_TRUE(is_lossy(schedule));
  EXPECT_FALSE(is_lossy(store_all_schedule(2)));
  EXPECT_EQ(schedule_from_json(schedule_to_json(schedule)), schedule);
  const auto bad = nlohmann::json::parse(R"([{"op": "forward_lossy", "stage": 0, "codec": "int3"}])");
  EXPECT_THROW(schedule_from_json(bad), InvalidArgument);
  const auto missing = nlohmann::json::parse(R"([{"op": "forward_lossy", "stage": 0}])");
  EXPECT_THROW(schedule_from_json(missing), InvalidArgument);
  const auto stray = nlohmann::json::parse(R"([{"op": "backward", "stage": 0, "codec": "int8"}])");
  EXPECT_THROW(schedule_from_json(stray), InvalidArgument);
}

TEST(Codec, NamesListsAndSizes) {
  EXPECT_EQ(parse_codec_list("bf16,int8"), (std::vector<Codec>{Codec::BF16, Codec::Int8}));
  EXPECT_TRUE(parse_codec_list("none").empty());
  EXPECT_EQ(parse_codec_list("all").size(), 4u);
  EXPECT_THROW(parse_codec_list("bf16,,int8"), InvalidArgument);
  EXPECT_THROW(parse_codec_list("int8,int8"), InvalidArgument);
  EXPECT_THROW(parse_codec_list("none,int8"), InvalidArgument);
  EXPECT_THROW(codec_from_name("int2"), InvalidArgument);
  EXPECT_EQ(codec_packed_bytes(Codec::BF16, 1000, 4), 2000);
  EXPECT_EQ(codec_packed_bytes(Codec::BF16, 1000, 2), 2000);
  EXPECT_EQ(codec_packed_bytes(Codec::Int8, 1000, 4), 1024 + 4 * 8);
  EXPECT_EQ(codec_packed_bytes(Codec::Int4, 1000, 4), 512 + 4 * 8);
  EXPECT_EQ(bitmask_packed_bytes(17), 3);
}

TEST(ProfileLossy, RoundTripsAndReadsVersionOne) {
  const ChainProfile profile = two_stage_profile();
  const ChainProfile again = profile_from_json(profile_to_json(profile));
  ASSERT_EQ(again.stages[1].lossy.size(), 1u);
  EXPECT_EQ(again.stages[1].lossy[0].saved_bytes, 80);
  EXPECT_EQ(profile_to_json(profile)["format"], kProfileFormat);
  nlohmann::json old = profile_to_json(profile);
  old.erase("format");
  EXPECT_NO_THROW(profile_from_json(old));
  old["format"] = "memento.profile/9";
  EXPECT_THROW(profile_from_json(old), ProfileError);
  nlohmann::json bad = profile_to_json(profile);
  bad["stages"][0]["lossy"][0]["codec"] = "int3";
  EXPECT_THROW(profile_from_json(bad), ProfileError);
}

TEST(OptimalLossyPlanner, IsNeverSlowerThanExactAndFitsBelowItsLeastBudget) {
  std::mt19937_64 rng(41);
  int faster = 0;
  int below_exact_least = 0;
  for (int trial = 0; trial < 20; ++trial) {
    ChainProfile profile = testing::random_profile(rng, 4 + trial % 9);
    add_lossy_costs(rng, profile, Codec::BF16, 0.5);
    add_lossy_costs(rng, profile, Codec::Int8, 0.27);
    const auto optimal = make_planner("optimal");
    const int64_t store_all = simulate(profile, store_all_schedule(profile.length())).peak_bytes;
    const int64_t exact_least = optimal->plan(profile, PlannerOptions(store_all)).min_feasible_budget_bytes;
    for (double share : {0.0, 0.3, 0.7}) {
      const int64_t budget =
          exact_least + static_cast<int64_t>(share * static_cast<double>(store_all - exact_least));
      const Plan exact = optimal->plan(profile, PlannerOptions(budget));
      const Plan lossy = optimal->plan(profile, PlannerOptions(budget).codecs({Codec::BF16, Codec::Int8}));
      ASSERT_TRUE(exact.feasible && lossy.feasible);
      EXPECT_LE(lossy.predicted_time_s, exact.predicted_time_s * (1 + 1e-12));
      EXPECT_LE(lossy.predicted_peak_bytes, budget);
      EXPECT_EQ(lossy.codecs, (std::vector<Codec>{Codec::BF16, Codec::Int8}));
      faster += lossy.predicted_time_s < exact.predicted_time_s * (1 - 1e-9) ? 1 : 0;
    }
    const Plan least = optimal->plan(profile, PlannerOptions(store_all).codecs({Codec::BF16, Codec::Int8}));
    EXPECT_LE(least.min_feasible_budget_bytes, exact_least);
    below_exact_least += least.min_feasible_budget_bytes < exact_least ? 1 : 0;
    const Plan at_least = optimal->plan(
        profile, PlannerOptions(least.min_feasible_budget_bytes).codecs({Codec::BF16, Codec::Int8}));
    EXPECT_TRUE(at_least.feasible);
  }
  EXPECT_GT(faster, 10);
  EXPECT_GT(below_exact_least, 5);
}

TEST(OptimalLossyPlanner, RefusesCodecsItCannotUseOrPrice) {
  std::mt19937_64 rng(42);
  ChainProfile profile = testing::random_profile(rng, 5);
  add_lossy_costs(rng, profile, Codec::Int8, 0.27);
  const int64_t budget = simulate(profile, store_all_schedule(5)).peak_bytes;
  EXPECT_THROW(make_planner("uniform")->plan(profile, PlannerOptions(budget).codecs({Codec::Int8})),
               InvalidArgument);
  EXPECT_THROW(make_planner("optimal")->plan(profile, PlannerOptions(budget).codecs({Codec::Int4})),
               InvalidArgument);
  EXPECT_THROW(make_planner("optimal")->plan(profile, PlannerOptions(budget).codecs({Codec::None})),
               InvalidArgument);
  const std::vector<std::string> capable = codec_planner_names();
  EXPECT_EQ(capable, (std::vector<std::string>{"store-all", "optimal", "gac"}));
}

TEST(OptimalLossyPlanner, StoreAllPacksEveryStageWithTheFastestCodecThatFits) {
  std::mt19937_64 rng(43);
  ChainProfile profile = testing::random_profile(rng, 6);
  add_lossy_costs(rng, profile, Codec::BF16, 0.5);
  add_lossy_costs(rng, profile, Codec::Int4, 0.14);
  const auto store_all = make_planner("store-all");
  const int64_t exact_peak = simulate(profile, store_all_schedule(6)).peak_bytes;
  const int64_t int4_peak = simulate(profile, lossy_store_all_schedule(6, Codec::Int4)).peak_bytes;
  ASSERT_LT(int4_peak, exact_peak);
  const Plan packed = store_all->plan(profile, PlannerOptions(int4_peak).codecs({Codec::BF16, Codec::Int4}));
  ASSERT_TRUE(packed.feasible);
  EXPECT_EQ(to_string(packed.schedule), to_string(lossy_store_all_schedule(6, Codec::Int4)));
  const nlohmann::json json = plan_to_json(packed);
  EXPECT_EQ(json.at("codecs"), "bf16,int4");
  EXPECT_EQ(json.at("lossy"), true);
  const Plan exact = store_all->plan(profile, PlannerOptions(exact_peak).codecs({Codec::BF16, Codec::Int4}));
  EXPECT_FALSE(is_lossy(exact.schedule));
  EXPECT_FALSE(store_all->plan(profile, PlannerOptions(int4_peak - 1).codecs({Codec::Int4})).feasible);
  EXPECT_EQ(plan_to_json(store_all->plan(profile, PlannerOptions(exact_peak))).at("codecs"), "none");
}

}  // namespace
}  // namespace memento
