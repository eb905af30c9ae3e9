// `memento train --planner gac`: every decision visible (gac.history in the JSON, the
// decisions in the text), exact runs bit-identical to store-all, lossy runs labelled lossy,
// and bad --gac-* input as one line with exit 2.
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli_support.h"

namespace {

using namespace memento::cli_test;
using json = nlohmann::json;

std::vector<std::string> gac_train(const std::vector<std::string>& extra) {
  std::vector<std::string> args = {
      "train", "--model",   "gpt-nano", "--steps",           "4", "--eval-every",   "2", "--batch",
      "4",     "--seq-len", "16",       "--compare-repeats", "1", "--eval-batches", "2"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

TEST(CliGac, TrainWritesEveryDecisionAsGacHistory) {
  const CommandResult result = run_memento(gac_train(
      {"--planner", "gac", "--budget", "80%", "--gac-threshold", "norm-median", "--format", "json"}));
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const json document = json::parse(result.out);
  EXPECT_EQ(document.at("planner"), "gac");
  EXPECT_FALSE(document.at("lossy").get<bool>());
  EXPECT_LE(document.at("peak_bytes").get<int64_t>(), document.at("budget_bytes").get<int64_t>());
  const json& gac = document.at("gac");
  EXPECT_EQ(gac.at("mode"), "exact");
  EXPECT_EQ(gac.at("options").at("threshold"), "norm-median");
  EXPECT_EQ(gac.at("options").at("alpha"), 1.0);
  const json& history = gac.at("history");
  const size_t stages = gac.at("final_decisions").size();
  ASSERT_GT(stages, 1u);
  EXPECT_EQ(history.size(), 4 * stages);
  std::set<int64_t> steps;
  for (const json& record : history) {
    for (const char* field : {"step", "stage", "proxy", "threshold", "decision", "reason"})
      EXPECT_TRUE(record.contains(field)) << field << " in " << record.dump();
    steps.insert(record.at("step").get<int64_t>());
    const std::string decision = record.at("decision");
    EXPECT_TRUE(decision == "store" || decision == "recompute") << record.dump();
  }
  EXPECT_EQ(steps, (std::set<int64_t>{1, 2, 3, 4}));
  EXPECT_GE(gac.at("proxy_share_of_compute").get<double>(), 0.0);
  EXPECT_LT(gac.at("proxy_share_of_compute").get<double>(), 0.5);
}

TEST(CliGac, ExactGacEndsWhereStoreAllEndsAndLossyIsLabelled) {
  const json store_all = json::parse(
      run_memento(gac_train({"--planner", "store-all", "--budget", "100%", "--format", "json"})).out);
  const json exact =
      json::parse(run_memento(gac_train({"--planner", "gac", "--budget", "85%", "--format", "json"})).out);
  EXPECT_EQ(exact.at("final_val_loss"), store_all.at("final_val_loss")) << "exact gac is bit-identical";
  const CommandResult lossy = run_memento(
      gac_train({"--planner", "gac", "--gac-mode", "lossy", "--codecs", "int8", "--budget", "85%"}));
  ASSERT_EQ(lossy.exit_code, 0) << lossy.err;
  EXPECT_NE(lossy.out.find("planner gac (lossy: int8)"), std::string::npos) << lossy.out;
  EXPECT_NE(lossy.out.find("gac ["), std::string::npos) << lossy.out;
}

TEST(CliGac, BadGacInputIsOneLineAndExitTwo) {
  const std::vector<std::string> gac = {"--planner", "gac"};
  auto with = [&](std::vector<std::string> extra) {
    extra.insert(extra.begin(), gac.begin(), gac.end());
    return gac_train(extra);
  };
  expect_bad_input(with({"--gac-mode", "fast"}), "--gac-mode");
  expect_bad_input(with({"--gac-proxy", "hessian"}), "--gac-proxy");
  expect_bad_input(with({"--gac-threshold", "mean"}), "--gac-threshold");
  expect_bad_input(with({"--gac-alpha", "1.5"}), "--gac-alpha");
  expect_bad_input(with({"--gac-threshold", "norm-median", "--gac-alpha", "3"}), "--gac-alpha");
  expect_bad_input(with({"--gac-beta", "0.5"}), "--gac-beta");
  expect_bad_input(with({"--gac-theta-min", "0"}), "--gac-theta-min");
  expect_bad_input(with({"--gac-theta-min", "1"}), "--gac-theta-min");
  expect_bad_input(with({"--gac-every", "0"}), "--gac-every");
  expect_bad_input(with({"--gac-freeze-after", "0"}), "--gac-freeze-after");
  expect_bad_input(with({"--gac-temporal-beta", "-1"}), "--gac-temporal-beta");
  expect_bad_input(with({"--gac-spare", "maybe"}), "--gac-spare");
  expect_bad_input(with({"--gac-mode", "lossy"}), "--codecs");
  expect_bad_input(with({"--codecs", "int8"}), "--gac-mode lossy");
  expect_bad_input(gac_train({"--planner", "optimal", "--gac-alpha", "0.5"}), "--planner gac");
}

}  // namespace
