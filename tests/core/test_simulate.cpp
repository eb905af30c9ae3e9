#include <gtest/gtest.h>

#include <vector>

#include "memento/core/error.h"
#include "memento/core/simulate.h"

namespace memento {
namespace {

ChainProfile two_stage_profile() {
  ChainProfile profile;
  profile.fixed_bytes = 1000;
  profile.stages = {{"s0", "mlp", 1.0, 2.0, 10, 20, 50, 5, 7, 0, std::nullopt, 0},
                    {"s1", "head", 3.0, 4.0, 20, 30, 60, 0, 0, 0, std::nullopt, 0}};
  return profile;
}

TEST(Simulate, StoreAllPeakAndTime) {
  const auto result = simulate(two_stage_profile(), store_all_schedule(2));
  // Fg0: 1000+50+5; Fg1: 1050+60; L: 1110+30; B1: 1140+20(d_1); B0: d_1 20 + graph0 50 = 1070 + 7.
  EXPECT_EQ(result.peak_bytes, 1160);
  EXPECT_DOUBLE_EQ(result.time_s, 10.0);
  EXPECT_EQ(result.recompute_count, 0);
  ASSERT_EQ(result.timeline.size(), 5u);
  EXPECT_EQ(result.timeline.back().live_bytes, 1000);
}

TEST(Simulate, LastGraphDropsItsOutputAfterTheLoss) {
  ChainProfile profile = two_stage_profile();
  profile.stages[1].output_droppable_bytes = 30;  // a head whose backward does not read its output
  profile.loss_temp_bytes = 45;
  const auto result = simulate(profile, store_all_schedule(2));
  ASSERT_EQ(result.timeline.size(), 5u);
  // L: 1110 + 30 (d_L) + 45 (loss transients); then graph 1 holds 60 - 30.
  EXPECT_EQ(result.timeline[2].peak_bytes, 1185);
  EXPECT_EQ(result.timeline[2].live_bytes, 1110);
  // B1: 1110 + 20 (d_1); B1 frees graph 1 (30 left) and d_L.
  EXPECT_EQ(result.timeline[3].peak_bytes, 1130);
  EXPECT_EQ(result.timeline[3].live_bytes, 1070);
  EXPECT_EQ(result.timeline.back().live_bytes, 1000);

  // A stored a_L (Fc) is not dropped: the Loss may meet all of it, and the graph rebuilt
  // after the Loss holds only saved - droppable.
  const Schedule stored = {Op::forward_with_graph(0), Op::forward_checkpoint(1), Op::loss(),     Op::free(2),
                           Op::forward_with_graph(1), Op::backward(1),           Op::backward(0)};
  const auto replay = simulate(profile, stored);
  // Fc1: 1050 + 30; L: 1080 + 30 + 45 + 30 (droppable); Free(2): 1080; Fg1: 1080 + 60 -> 1110.
  EXPECT_EQ(replay.timeline[2].peak_bytes, 1185);
  EXPECT_EQ(replay.timeline[3].live_bytes, 1080);
  EXPECT_EQ(replay.timeline[4].peak_bytes, 1140);
  EXPECT_EQ(replay.timeline[4].live_bytes, 1110);
  EXPECT_EQ(replay.timeline.back().live_bytes, 1000);
}

// A residual block split in two: stage 1 passes x (made by stage 0) through in its tuple.
// Stored a_1 = (x) and a_2 = (x, h1) hold x once, not twice.
TEST(Simulate, PassedThroughStorageIsCountedOnce) {
  ChainProfile profile;
  profile.fixed_bytes = 1000;
  profile.stages = {{"s0", "conv", 1.0, 1.0, 10, 100, 150, 0, 0, 0, std::nullopt, 0},
                    {"s1", "conv", 1.0, 1.0, 100, 140, 60, 0, 0, 0, std::nullopt, 0},
                    {"s2", "conv", 1.0, 1.0, 140, 100, 120, 0, 0, 0, std::nullopt, 0}};
  profile.stages[1].output_passthrough = {{1, 100}};
  const Schedule schedule = {Op::forward_checkpoint(0),
                             Op::forward_checkpoint(1),
                             Op::forward_with_graph(2),
                             Op::loss(),
                             Op::backward(2),
                             Op::forward_with_graph(1),
                             Op::backward(1),
                             Op::forward_with_graph(0),
                             Op::backward(0)};
  const auto result = simulate(profile, schedule);
  const std::vector<int64_t> peaks = {1100, 1140, 1260, 1360, 1500, 1300, 1400, 1250, 1250};
  const std::vector<int64_t> lives = {1100, 1140, 1260, 1360, 1240, 1300, 1100, 1250, 1000};
  ASSERT_EQ(result.timeline.size(), peaks.size());
  for (size_t k = 0; k < peaks.size(); ++k) {
    EXPECT_EQ(result.timeline[k].peak_bytes, peaks[k]) << "op " << k << " " << to_string(schedule[k]);
    EXPECT_EQ(result.timeline[k].live_bytes, lives[k]) << "op " << k << " " << to_string(schedule[k]);
  }
  EXPECT_EQ(result.peak_bytes, 1500);

  // Without the pass-through, x counts in both stored activations (and in stage 1's graph).
  profile.stages[1].output_passthrough.clear();
  profile.stages[1].saved_bytes = 160;
  EXPECT_EQ(simulate(profile, schedule).timeline[1].live_bytes, 1240);
}

TEST(Simulate, RejectsBackwardWithoutGraph) {
  Schedule schedule = {Op::forward_checkpoint(0), Op::forward_with_graph(1), Op::loss(), Op::backward(1),
                       Op::backward(0)};
  try {
    simulate(two_stage_profile(), schedule);
    FAIL() << "expected ScheduleError";
  } catch (const ScheduleError& e) {
    EXPECT_NE(std::string(e.what()).find("op 4 (B0)"), std::string::npos) << e.what();
  }
}

TEST(Simulate, RejectsUseAfterFree) {
  Schedule schedule = {Op::forward_checkpoint(0), Op::free(1), Op::forward_with_graph(1)};
  EXPECT_THROW(simulate(two_stage_profile(), schedule), ScheduleError);
}

TEST(Simulate, CountsRecomputation) {
  Schedule schedule = {Op::forward_checkpoint(0), Op::forward_with_graph(1), Op::loss(),
                       Op::backward(1),           Op::forward_with_graph(0), Op::backward(0)};
  const auto result = simulate(two_stage_profile(), schedule);
  EXPECT_EQ(result.recompute_count, 1);
  EXPECT_DOUBLE_EQ(result.recompute_s, 1.0);
  EXPECT_DOUBLE_EQ(result.time_s, 11.0);
}

}  // namespace
}  // namespace memento
