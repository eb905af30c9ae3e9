// `memento profile` end to end: the profile file, the memory timelines (--timeline), the
// peak breakdown in the text output, and bad input.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "memento/core/profile.h"

#include "cli_support.h"

namespace {

using nlohmann::json;
namespace fs = std::filesystem;

using namespace memento::cli_test;

// A small, fast model: the tiny GPT with 4 sequences of 32 tokens.
std::vector<std::string> tiny_profile_args() {
  return {"profile", "--model",  "gpt-nano", "--batch",   "4", "--seq-len",
          "32",      "--warmup", "0",        "--repeats", "1"};
}

TEST(CliProfile, TimelineHoldsStoreAllThenThePlan) {
  const std::string timeline_path = (scratch_dir() / "timeline.json").string();
  const std::string profile_path = (scratch_dir() / "profile.json").string();
  std::vector<std::string> args = tiny_profile_args();
  for (const char* arg : {"--planner", "optimal", "--budget", "70%", "--optimizer", "adam", "--timeline"})
    args.push_back(arg);
  args.push_back(timeline_path);
  args.push_back("--out");
  args.push_back(profile_path);
  const CommandResult result = run_memento(args);
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_TRUE(result.err.empty()) << result.err;

  const memento::ChainProfile profile = memento::read_profile(profile_path);
  std::ifstream file(timeline_path);
  ASSERT_TRUE(file.good());
  const json document = json::parse(file);
  EXPECT_EQ(document["format"], "memento.timelines/1");
  ASSERT_EQ(document["timelines"].size(), 2u);
  EXPECT_EQ(document["timelines"][0]["planner"], "store-all");
  EXPECT_TRUE(document["timelines"][0]["budget_bytes"].is_null());
  EXPECT_EQ(document["timelines"][1]["planner"], "optimal");
  EXPECT_TRUE(document["timelines"][1]["budget_bytes"].is_number_integer());
  for (const json& timeline : document["timelines"]) {
    EXPECT_EQ(timeline["format"], "memento.timeline/1");
    ASSERT_FALSE(timeline["events"].empty());
    int64_t live = 0;
    for (const auto& entry : timeline["start_by_category"].items()) live += entry.value().get<int64_t>();
    for (const json& event : timeline["events"]) {
      live += (event["kind"] == "alloc" ? 1 : -1) * event["bytes"].get<int64_t>();
      ASSERT_EQ(event["live_bytes"].get<int64_t>(), live);
    }
    // Adam's two moments are alive from the start of the (steady-state) step.
    EXPECT_EQ(timeline["start_by_category"]["optimizer_state"].get<int64_t>(),
              profile.fixed_breakdown.optimizer_bytes);
    EXPECT_EQ(timeline["phases"].back()["label"], "optimizer");
    int64_t at_peak = 0;
    for (const auto& entry : timeline["peak"]["by_category"].items()) at_peak += entry.value().get<int64_t>();
    EXPECT_EQ(at_peak, timeline["measured_peak_bytes"].get<int64_t>());
    EXPECT_EQ(timeline["lifetimes"].empty(), false);
  }
  // The text output: the per-stage table and the peak breakdown of both steps.
  EXPECT_NE(result.out.find("fixed bytes"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("at the peak"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("optimal @"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("activations"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find(timeline_path), std::string::npos) << result.out;
}

TEST(CliProfile, ReportWritesOneHtmlPage) {
  const std::string report_path = (scratch_dir() / "report.html").string();
  std::vector<std::string> args = tiny_profile_args();
  for (const char* arg : {"--budget", "70%", "--frontier-points", "3", "--report"}) args.push_back(arg);
  args.push_back(report_path);
  const CommandResult result = run_memento(args);
  ASSERT_EQ(result.exit_code, 0) << result.err;
  std::ifstream file(report_path);
  std::stringstream page;
  page << file.rdbuf();
  EXPECT_EQ(page.str().rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(page.str().find("gpt-nano"), std::string::npos);
  EXPECT_NE(result.out.find(report_path), std::string::npos) << result.out;
}

TEST(CliProfile, PlannerWithoutBudgetIsBadInput) {
  std::vector<std::string> args = tiny_profile_args();
  args.push_back("--planner");
  args.push_back("optimal");
  const CommandResult result = run_memento(args);
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_TRUE(result.out.empty()) << result.out;
  EXPECT_NE(result.err.find("--budget"), std::string::npos) << result.err;
}

TEST(CliProfile, InfeasibleBudgetIsBadInputNamingTheMinimum) {
  std::vector<std::string> args = tiny_profile_args();
  for (const char* arg : {"--budget", "1KiB", "--timeline"}) args.push_back(arg);
  args.push_back((scratch_dir() / "never.json").string());
  const CommandResult result = run_memento(args);
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("minimum feasible budget"), std::string::npos) << result.err;
  EXPECT_FALSE(fs::exists(scratch_dir() / "never.json"));
}

TEST(CliProfile, UnwritableTimelineIsBadInput) {
  std::vector<std::string> args = tiny_profile_args();
  args.push_back("--timeline");
  args.push_back((scratch_dir() / "no-such-dir" / "timeline.json").string());
  const CommandResult result = run_memento(args);
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("--timeline"), std::string::npos) << result.err;
}

}  // namespace

namespace {

// Lossy storage end to end: a profile measured with codecs plans lossy, the plan says so,
// and the three kinds of bad --codecs input are one line with exit 2.
TEST(CliProfile, CodecsAreMeasuredPlannedAndLabelledLossy) {
  const std::string profile_path = (scratch_dir() / "lossy-profile.json").string();
  std::vector<std::string> args = tiny_profile_args();
  for (const char* arg : {"--codecs", "bf16,int4", "--budget", "60%", "--out"}) args.push_back(arg);
  args.push_back(profile_path);
  const CommandResult measured = run_memento(args);
  ASSERT_EQ(measured.exit_code, 0) << measured.err;
  EXPECT_NE(measured.out.find("lossy storage"), std::string::npos) << measured.out;
  const memento::ChainProfile profile = memento::read_profile(profile_path);
  ASSERT_TRUE(profile.has_codec(memento::Codec::BF16) && profile.has_codec(memento::Codec::Int4));

  // At the least budget exact optimal reaches, packing can only help.
  const CommandResult exact =
      run_memento({"plan", "--profile", profile_path, "--budget", "1B", "--format", "json"});
  const json minimum = json::parse(exact.out);
  const std::string least = std::to_string(minimum["min_feasible_budget_bytes"].get<int64_t>()) + "B";
  const CommandResult lossy = run_memento(
      {"plan", "--profile", profile_path, "--budget", least, "--codecs", "bf16,int4", "--format", "json"});
  ASSERT_EQ(lossy.exit_code, 0) << lossy.err;
  const json plan = json::parse(lossy.out);
  EXPECT_EQ(plan["codecs"], "bf16,int4");
  EXPECT_TRUE(plan["lossy"].is_boolean());
  // store-all with int4: its least budget is every stage packed, and the plan there says so.
  const json packed_minimum =
      json::parse(run_memento({"plan", "--profile", profile_path, "--budget", "1B", "--codecs", "int4",
                               "--planner", "store-all", "--format", "json"})
                      .out);
  const std::string packed_least =
      std::to_string(packed_minimum["min_feasible_budget_bytes"].get<int64_t>()) + "B";
  const CommandResult text = run_memento({"plan", "--profile", profile_path, "--budget", packed_least,
                                          "--codecs", "int4", "--planner", "store-all"});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("store-all (lossy: int4)"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("packed:int4"), std::string::npos) << text.out;

  for (const std::vector<std::string>& bad :
       {std::vector<std::string>{"plan", "--profile", profile_path, "--budget", "50%", "--codecs", "int3"},
        std::vector<std::string>{"plan", "--profile", profile_path, "--budget", "50%", "--codecs", "int8"},
        std::vector<std::string>{"plan", "--profile", profile_path, "--budget", "50%", "--codecs", "bf16",
                                 "--planner", "uniform"}}) {
    const CommandResult result = run_memento(bad);
    EXPECT_EQ(result.exit_code, 2) << bad.back();
    EXPECT_NE(result.err.find("--codecs"), std::string::npos) << result.err;
    EXPECT_EQ(std::count(result.err.begin(), result.err.end(), '\n'), 1) << result.err;
  }
}

}  // namespace
