// `memento plan` end to end: runs the built binary and checks its output and exit codes.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "memento/core/budget.h"
#include "memento/core/planner.h"
#include "memento/core/profile.h"
#include "memento/core/schedule.h"
#include "memento/core/simulate.h"

#include "cli_support.h"

namespace {

using nlohmann::json;
namespace fs = std::filesystem;

using namespace memento::cli_test;

std::string example(const std::string& name) {
  return std::string(MEMENTO_SOURCE_DIR) + "/examples/profiles/" + name + ".json";
}

std::string write_scratch(const std::string& name, const std::string& text) {
  const fs::path path = scratch_dir() / name;
  std::ofstream(path) << text;
  return path.string();
}

// Planners whose factory works in this build (placeholders throw std::logic_error).
std::vector<std::string> available_planners() {
  std::vector<std::string> names;
  for (const std::string& name : memento::planner_names()) {
    try {
      memento::make_planner(name);
      names.push_back(name);
    } catch (const std::logic_error&) {
    }
  }
  return names;
}

const memento::ChainProfile& gpt2_small() {
  static const memento::ChainProfile profile = memento::read_profile(example("gpt2-small"));
  return profile;
}

TEST(CliPlanList, NamesEveryPlannerWithDescription) {
  const CommandResult result = run_memento({"plan", "--list"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_TRUE(result.err.empty()) << result.err;
  for (const std::string& name : memento::planner_names()) {
    EXPECT_NE(result.out.find(name + " "), std::string::npos) << name << " missing from:\n" << result.out;
  }
  for (const std::string& name : available_planners()) {
    EXPECT_NE(result.out.find(memento::planner_description(name)), std::string::npos) << name;
  }
}

TEST(CliPlanList, JsonListsAvailability) {
  const CommandResult result = run_memento({"plan", "--list", "--format", "json"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const json document = json::parse(result.out);
  const std::vector<std::string> names = memento::planner_names();
  const std::vector<std::string> available = available_planners();
  ASSERT_EQ(document["planners"].size(), names.size());
  for (size_t i = 0; i < names.size(); ++i) {
    const json& entry = document["planners"][i];
    EXPECT_EQ(entry["name"], names[i]);
    const bool is_available = std::find(available.begin(), available.end(), names[i]) != available.end();
    EXPECT_EQ(entry["available"].get<bool>(), is_available) << names[i];
    EXPECT_FALSE(entry["description"].get<std::string>().empty());
  }
}

TEST(CliPlanText, StoreAllSummaryScheduleAndStageTable) {
  const CommandResult result =
      run_memento({"plan", "--profile", example("gpt2-small"), "--budget", "100%", "--planner", "store-all"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_TRUE(result.err.empty()) << result.err;
  const std::string& out = result.out;
  EXPECT_NE(out.find("planner     store-all"), std::string::npos) << out;
  EXPECT_NE(out.find("100.0% of the store-all peak"), std::string::npos) << out;
  EXPECT_NE(out.find("+0.0% over store-all"), std::string::npos) << out;
  EXPECT_NE(out.find("0 stage forwards"), std::string::npos) << out;
  // The schedule in short form (it wraps, so check its two ends).
  EXPECT_NE(out.find("Fg0 Fg1 Fg2"), std::string::npos) << out;
  EXPECT_NE(out.find("B1 B0"), std::string::npos) << out;
  // One table row per stage, every one kept with its graph.
  const int length = gpt2_small().length();
  int graph_rows = 0;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    if (line.find(" graph ") != std::string::npos) ++graph_rows;
  }
  EXPECT_EQ(graph_rows, length) << out;
  EXPECT_NE(out.find("block11"), std::string::npos);
}

TEST(CliPlanText, RecomputeAllShowsOverheadAndCheckpoints) {
  const CommandResult result = run_memento(
      {"plan", "--profile", example("gpt2-small"), "--budget", "100%", "--planner", "recompute-all"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const int length = gpt2_small().length();
  EXPECT_NE(result.out.find(std::to_string(length - 1) + " stage forwards"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("checkpoint"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("1x"), std::string::npos) << result.out;
  EXPECT_EQ(result.out.find("+0.0% over"), std::string::npos) << "recompute-all costs time:\n" << result.out;
}

TEST(CliPlanJson, RecomputeAllFieldsAgreeWithTheCore) {
  const memento::ChainProfile& profile = gpt2_small();
  const CommandResult result = run_memento({"plan", "--profile", example("gpt2-small"), "--budget", "100%",
                                            "--planner", "recompute-all", "--format", "json"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const json plan = json::parse(result.out);
  const memento::SimulationResult store_all =
      memento::simulate(profile, memento::store_all_schedule(profile.length()));
  EXPECT_EQ(plan["planner"], "recompute-all");
  EXPECT_EQ(plan["profile"], profile.model);
  EXPECT_EQ(plan["profile_file"], example("gpt2-small"));
  EXPECT_EQ(plan["stage_count"], profile.length());
  EXPECT_EQ(plan["fixed_bytes"], profile.fixed_bytes);
  EXPECT_EQ(plan["store_all_peak_bytes"].get<int64_t>(), store_all.peak_bytes);
  EXPECT_DOUBLE_EQ(plan["store_all_time_s"].get<double>(), store_all.time_s);
  EXPECT_TRUE(plan["feasible"].get<bool>());
  EXPECT_EQ(plan["budget_bytes"].get<int64_t>(), store_all.peak_bytes);
  EXPECT_EQ(plan["recompute_count"], profile.length() - 1);
  EXPECT_GE(plan["solve_time_s"].get<double>(), 0.0);

  const memento::Schedule schedule = memento::schedule_from_json(plan["schedule"]);
  const memento::SimulationResult replay = memento::simulate(profile, schedule);
  EXPECT_EQ(plan["predicted_peak_bytes"].get<int64_t>(), replay.peak_bytes);
  EXPECT_DOUBLE_EQ(plan["predicted_time_s"].get<double>(), replay.time_s);
  EXPECT_DOUBLE_EQ(plan["recompute_s"].get<double>(), replay.recompute_s);
  EXPECT_LT(replay.peak_bytes, store_all.peak_bytes);
  EXPECT_NEAR(plan["time_overhead"].get<double>(), replay.time_s / store_all.time_s - 1, 1e-12);
  EXPECT_EQ(plan["min_feasible_budget_bytes"].get<int64_t>(), replay.peak_bytes);

  ASSERT_EQ(plan["stages"].size(), static_cast<size_t>(profile.length()));
  for (int i = 0; i < profile.length(); ++i) {
    const json& stage = plan["stages"][i];
    EXPECT_EQ(stage["index"], i);
    EXPECT_EQ(stage["name"], profile.stages[i].name);
    const bool last = i == profile.length() - 1;
    EXPECT_EQ(stage["decision"], last ? "graph" : "checkpoint") << i;
    EXPECT_EQ(stage["forward_count"], last ? 1 : 2) << i;
    EXPECT_EQ(stage["recompute_count"], last ? 0 : 1) << i;
  }
}

TEST(CliPlanJson, EveryAvailablePlannerPredictsWhatItsScheduleSimulates) {
  const memento::ChainProfile& profile = gpt2_small();
  for (const std::string& name : available_planners()) {
    SCOPED_TRACE(name);
    const CommandResult result = run_memento({"plan", "--profile", example("gpt2-small"), "--budget", "60%",
                                              "--planner", name, "--format", "json"});
    const json plan = json::parse(result.out);
    const bool feasible = plan["feasible"].get<bool>();
    EXPECT_EQ(result.exit_code, feasible ? 0 : 1) << result.err;
    EXPECT_EQ(plan["budget_bytes"].get<int64_t>(), memento::parse_budget("60%", profile));
    if (!feasible) {
      EXPECT_GT(plan["min_feasible_budget_bytes"].get<int64_t>(), plan["budget_bytes"].get<int64_t>());
      EXPECT_TRUE(plan["schedule"].empty());
      continue;
    }
    const memento::SimulationResult replay =
        memento::simulate(profile, memento::schedule_from_json(plan["schedule"]));
    EXPECT_EQ(plan["predicted_peak_bytes"].get<int64_t>(), replay.peak_bytes);
    EXPECT_LE(replay.peak_bytes, plan["budget_bytes"].get<int64_t>());
    EXPECT_DOUBLE_EQ(plan["predicted_time_s"].get<double>(), replay.time_s);
    EXPECT_EQ(plan["recompute_count"].get<int>(), replay.recompute_count);
  }
}

TEST(CliPlanInfeasible, JsonExitOneWithMinimum) {
  const memento::ChainProfile& profile = gpt2_small();
  const CommandResult result = run_memento({"plan", "--profile", example("gpt2-small"), "--budget", "50%",
                                            "--planner", "store-all", "--format", "json"});
  EXPECT_EQ(result.exit_code, 1) << result.err;
  EXPECT_TRUE(result.err.empty()) << result.err;
  const json plan = json::parse(result.out);
  EXPECT_FALSE(plan["feasible"].get<bool>());
  EXPECT_EQ(plan["min_feasible_budget_bytes"].get<int64_t>(), memento::store_all_peak_bytes(profile));
  EXPECT_TRUE(plan["predicted_peak_bytes"].is_null());
  EXPECT_TRUE(plan["schedule"].empty());
  EXPECT_TRUE(plan["stages"].empty());
}

TEST(CliPlanInfeasible, TextSaysTheMinimumAndWhatToChange) {
  const memento::ChainProfile& profile = gpt2_small();
  const CommandResult result = run_memento(
      {"plan", "--profile", example("gpt2-small"), "--budget", "1GiB", "--planner", "recompute-all"});
  EXPECT_EQ(result.exit_code, 1) << result.err;
  const int64_t minimum = memento::make_planner("recompute-all")
                              ->plan(profile, memento::PlannerOptions(1))
                              .min_feasible_budget_bytes;
  int infeasible_lines = 0;
  std::istringstream lines(result.out);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("infeasible:", 0) != 0) continue;
    ++infeasible_lines;
    EXPECT_NE(line.find(std::to_string(minimum) + " B"), std::string::npos) << line;
    EXPECT_NE(line.find("raise --budget"), std::string::npos) << line;
  }
  EXPECT_EQ(infeasible_lines, 1) << result.out;
}

TEST(CliPlanSweep, JsonFrontierOverDefaultBudgets) {
  const memento::ChainProfile& profile = gpt2_small();
  const CommandResult result =
      run_memento({"plan", "--profile", example("gpt2-small"), "--sweep", "--format", "json"});
  const json sweep = json::parse(result.out);
  const int64_t store_all_peak = memento::store_all_peak_bytes(profile);
  EXPECT_EQ(result.exit_code, sweep["errors"].empty() ? 0 : 1) << result.err;

  const std::vector<int64_t> budgets = sweep["budgets_bytes"].get<std::vector<int64_t>>();
  ASSERT_GE(budgets.size(), 2u);
  EXPECT_LE(budgets.size(), 10u);
  EXPECT_EQ(budgets.back(), store_all_peak);
  for (size_t b = 1; b < budgets.size(); ++b) EXPECT_LT(budgets[b - 1], budgets[b]);

  const std::vector<std::string> names = memento::planner_names();
  const std::vector<std::string> available = available_planners();
  ASSERT_EQ(sweep["planners"].size(), names.size());
  int64_t lowest_minimum = store_all_peak;
  for (size_t p = 0; p < names.size(); ++p) {
    const json& column = sweep["planners"][p];
    SCOPED_TRACE(names[p]);
    EXPECT_EQ(column["planner"], names[p]);
    const bool is_available = std::find(available.begin(), available.end(), names[p]) != available.end();
    if (!is_available) {
      // A placeholder planner is listed as an error, never dropped silently.
      EXPECT_FALSE(column["error"].is_null());
      EXPECT_NE(result.err.find("planner " + names[p] + " failed"), std::string::npos) << result.err;
      continue;
    }
    ASSERT_TRUE(column["error"].is_null()) << column["error"];
    const int64_t minimum = column["min_feasible_budget_bytes"].get<int64_t>();
    lowest_minimum = std::min(lowest_minimum, minimum);
    ASSERT_EQ(column["points"].size(), budgets.size());
    for (size_t b = 0; b < budgets.size(); ++b) {
      const json& point = column["points"][b];
      EXPECT_EQ(point["budget_bytes"].get<int64_t>(), budgets[b]);
      if (!point["feasible"].get<bool>()) {
        EXPECT_TRUE(point["predicted_time_s"].is_null());
        continue;
      }
      EXPECT_LE(point["predicted_peak_bytes"].get<int64_t>(), budgets[b]);
      EXPECT_GE(point["time_overhead"].get<double>(), -1e-12);
    }
  }
  EXPECT_EQ(budgets.front(), lowest_minimum);
  // store-all: feasible only at 100%, with no overhead there.
  const json& store_all = sweep["planners"][0];
  ASSERT_EQ(store_all["planner"], "store-all");
  EXPECT_FALSE(store_all["points"][0]["feasible"].get<bool>());
  EXPECT_TRUE(store_all["points"].back()["feasible"].get<bool>());
  EXPECT_DOUBLE_EQ(store_all["points"].back()["time_overhead"].get<double>(), 0.0);
}

TEST(CliPlanSweep, TextTableWithGivenBudgetsAndPlanners) {
  const CommandResult result =
      run_memento({"plan", "--profile", example("gpt2-small"), "--sweep", "--budgets", "50%,100%",
                   "--planners", "store-all,recompute-all"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_TRUE(result.err.empty()) << result.err;
  std::vector<std::string> rows;
  std::istringstream lines(result.out);
  for (std::string line; std::getline(lines, line);) {
    // Frontier rows read "<size> <unit> <share> <cells...>"; the minima table puts its share later.
    std::istringstream tokens(line);
    std::string size, unit, share;
    tokens >> size >> unit >> share;
    if (share == "50.0%" || share == "100.0%") rows.push_back(line);
  }
  ASSERT_EQ(rows.size(), 2u) << result.out;
  // At 50% store-all is infeasible ("—") and recompute-all fits; at 100% both fit.
  EXPECT_NE(rows[0].find("—"), std::string::npos) << rows[0];
  EXPECT_NE(rows[0].find("s +"), std::string::npos) << rows[0];
  EXPECT_EQ(rows[1].find("—"), std::string::npos) << rows[1];
  EXPECT_NE(rows[1].find("+0.0%"), std::string::npos) << rows[1];
  EXPECT_NE(result.out.find("store-all"), std::string::npos);
  EXPECT_NE(result.out.find("recompute-all"), std::string::npos);
}

TEST(CliPlanBadInput, MissingOrMalformedProfile) {
  expect_bad_input(
      {"plan", "--profile", "/nonexistent/profile.json", "--budget", "50%", "--planner", "store-all"},
      "/nonexistent/profile.json");
  expect_bad_input({"plan", "--budget", "50%", "--planner", "store-all"}, "--profile");
  const std::string not_json = write_scratch("not_json.json", "{\"stages\": [");
  expect_bad_input({"plan", "--profile", not_json, "--budget", "50%", "--planner", "store-all"},
                   "not valid JSON");
  const std::string inconsistent = write_scratch("inconsistent.json",
                                                 R"({"fixed_bytes": 10, "stages": [
          {"name": "a", "kind": "layer", "forward_s": 1, "backward_s": 2, "input_bytes": 4, "output_bytes": 8, "saved_bytes": 8},
          {"name": "b", "kind": "layer", "forward_s": 1, "backward_s": 2, "input_bytes": 9, "output_bytes": 8, "saved_bytes": 8}]})");
  expect_bad_input({"plan", "--profile", inconsistent, "--budget", "50%", "--planner", "store-all"},
                   "input_bytes");
  const std::string negative = write_scratch("negative.json",
                                             R"({"fixed_bytes": 10, "stages": [
          {"name": "a", "kind": "layer", "forward_s": -1, "backward_s": 2, "input_bytes": 4, "output_bytes": 8, "saved_bytes": 8}]})");
  expect_bad_input({"plan", "--profile", negative, "--sweep"}, "forward_s");
}

TEST(CliPlanBadInput, BadBudgets) {
  const std::string profile = example("gpt2-small");
  expect_bad_input({"plan", "--profile", profile, "--planner", "store-all"}, "--budget");
  expect_bad_input({"plan", "--profile", profile, "--budget", "12 parsecs", "--planner", "store-all"},
                   "--budget");
  expect_bad_input({"plan", "--profile", profile, "--budget", "abc%", "--planner", "store-all"}, "--budget");
  expect_bad_input({"plan", "--profile", profile, "--budget", "0%", "--planner", "store-all"}, "--budget");
  expect_bad_input({"plan", "--profile", profile, "--budget", "0", "--planner", "store-all"}, "--budget");
  expect_bad_input({"plan", "--profile", profile, "--budget", "50", "--planner", "store-all"}, "50MiB");
  expect_bad_input({"plan", "--profile", profile, "--sweep", "--budgets", "30%,x"}, "--budgets");
  expect_bad_input({"plan", "--profile", profile, "--sweep", "--budgets", ","}, "--budgets");
  expect_bad_input({"plan", "--profile", profile, "--sweep", "--budget", "30%"}, "--budgets");
  expect_bad_input({"plan", "--profile", profile, "--budgets", "30%", "--planner", "store-all"}, "--sweep");
}

TEST(CliPlanBadInput, BadPlannerSlotsSegmentsFormat) {
  const std::string profile = example("gpt2-small");
  expect_bad_input({"plan", "--profile", profile, "--budget", "50%", "--planner", "no-such-planner"},
                   "no-such-planner");
  expect_bad_input({"plan", "--profile", profile, "--sweep", "--planners", "store-all,nope"}, "nope");
  expect_bad_input(
      {"plan", "--profile", profile, "--budget", "50%", "--planner", "store-all", "--slots", "0"}, "--slots");
  expect_bad_input(
      {"plan", "--profile", profile, "--budget", "50%", "--planner", "store-all", "--slots", "many"},
      "--slots");
  expect_bad_input(
      {"plan", "--profile", profile, "--budget", "50%", "--planner", "store-all", "--slots", "1e9"},
      "--slots");
  expect_bad_input(
      {"plan", "--profile", profile, "--budget", "50%", "--planner", "store-all", "--segments", "-1"},
      "--segments");
  expect_bad_input(
      {"plan", "--profile", profile, "--budget", "50%", "--planner", "store-all", "--format", "xml"},
      "--format");
  expect_bad_input({"plan", "--list", "--format", "yaml"}, "--format");
  expect_bad_input({"plan", "--profile", profile, "--bogus-option"}, "bogus");
}

TEST(CliPlanBadInput, PlaceholderPlannerIsACleanError) {
  for (const std::string& name : memento::planner_names()) {
    const std::vector<std::string> available = available_planners();
    if (std::find(available.begin(), available.end(), name) != available.end()) continue;
    expect_bad_input({"plan", "--profile", example("gpt2-small"), "--budget", "50%", "--planner", name},
                     name);
  }
}

TEST(CliPlanExamples, EveryExampleProfilePlansAtFullBudget) {
  for (const std::string name :
       {"gpt2-small", "gpt2-medium", "gpt2-large", "bert-large", "resnet50", "gpt3-175b"}) {
    SCOPED_TRACE(name);
    const CommandResult result = run_memento({"plan", "--profile", example(name), "--budget", "100%",
                                              "--planner", "recompute-all", "--format", "json"});
    ASSERT_EQ(result.exit_code, 0) << result.err;
    const json plan = json::parse(result.out);
    EXPECT_TRUE(plan["feasible"].get<bool>());
    EXPECT_LT(plan["predicted_peak_bytes"].get<int64_t>(), plan["store_all_peak_bytes"].get<int64_t>());
    EXPECT_GT(plan["time_overhead"].get<double>(), 0.0);
  }
}

}  // namespace
