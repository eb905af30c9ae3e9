// `memento bench` end to end: bad input exits 2 with one line; the JSON report on stdout
// and in --out follow the Bench format.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli_support.h"

namespace {

namespace fs = std::filesystem;

using namespace memento::cli_test;

TEST(CliBench, BadInputExitsTwoWithOneLine) {
  expect_bad_input({"bench"}, "--model");
  expect_bad_input({"bench", "--model", "no-such-model"}, "no-such-model");
  expect_bad_input({"bench", "--model", "mlp", "--budgets", "abc"}, "--budgets");
  expect_bad_input({"bench", "--model", "mlp", "--budgets", ","}, "--budgets");
  expect_bad_input({"bench", "--model", "mlp", "--planners", "nope"}, "nope");
  expect_bad_input({"bench", "--model", "mlp", "--steps", "0"}, "--steps");
  expect_bad_input({"bench", "--model", "mlp", "--format", "yaml"}, "--format");
  expect_bad_input({"bench", "--model", "mlp", "--max-batch"}, "--memory-cap");
  expect_bad_input({"bench", "--model", "mlp", "--max-batch", "--memory-cap", "40%"}, "--memory-cap");
  expect_bad_input({"bench", "--model", "mlp", "--memory-cap", "1GiB"}, "--max-batch");
  expect_bad_input({"bench", "--model", "mlp", "--out", (scratch_dir() / "missing" / "b.json").string()},
                   "--out");
}

TEST(CliBench, JsonOnStdoutAndInOutFile) {
  const std::string out_path = (scratch_dir() / "bench.json").string();
  const CommandResult result =
      run_memento({"bench", "--model", "mlp", "--batch", "4", "--budgets", "50%,100%", "--planners",
                   "store-all,recompute-all", "--steps", "1", "--warmup", "0", "--format", "json", "--quiet",
                   "--out", out_path});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_TRUE(result.err.empty()) << result.err;
  const nlohmann::json document = nlohmann::json::parse(result.out);
  EXPECT_EQ(document.at("format"), "memento.bench/1");
  EXPECT_EQ(document.at("model"), "mlp");
  EXPECT_EQ(document.at("batch"), 4);
  ASSERT_EQ(document.at("rows").size(), 4u);
  EXPECT_EQ(document.at("rows")[0].at("planner"), "store-all");
  EXPECT_EQ(document.at("rows")[0].at("status"), "infeasible");
  EXPECT_EQ(document.at("rows")[1].at("status"), "ok");
  EXPECT_EQ(document.at("rows")[1].at("overhead"), 0.0);
  EXPECT_EQ(document.at("rows")[3].at("grad_cosine"), 1.0);
  EXPECT_EQ(document.at("rows")[3].at("grad_rel_l2"), 0.0);

  std::ifstream file(out_path);
  ASSERT_TRUE(file.good());
  EXPECT_EQ(nlohmann::json::parse(file), document);
  for (const auto& entry : fs::directory_iterator(scratch_dir())) {
    EXPECT_EQ(entry.path().filename().string().find(".tmp"), std::string::npos) << entry.path();
  }
}

TEST(CliBench, TextTableHasOneLinePerRow) {
  const CommandResult result =
      run_memento({"bench", "--model", "mlp", "--batch", "4", "--budgets", "100%", "--planners",
                   "store-all,sqrt-n", "--steps", "1", "--warmup", "0"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_NE(result.out.find("grad cosine"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("sqrt-n"), std::string::npos) << result.out;
  EXPECT_NE(result.err.find("memento bench: "), std::string::npos) << "progress lines on stderr";
}

// With --codecs every codec-capable planner is measured exact and lossy side by side; lossy
// rows say so in JSON and text, and carry their gradient error against store-all.
TEST(CliBench, CodecsAddLossyRowsBesideExactOnes) {
  const std::vector<std::string> args = {"bench",    "--model",    "mlp",
                                         "--batch",  "256",        "--budgets",
                                         "90%",      "--planners", "store-all,optimal,recompute-all",
                                         "--codecs", "int8",       "--steps",
                                         "1",        "--warmup",   "0",
                                         "--quiet"};
  std::vector<std::string> json_args = args;
  for (const char* arg : {"--format", "json"}) json_args.push_back(arg);
  const CommandResult result = run_memento(json_args);
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const nlohmann::json document = nlohmann::json::parse(result.out);
  const nlohmann::json& rows = document.at("rows");
  ASSERT_EQ(rows.size(), 5u) << "store-all and optimal twice, recompute-all once";
  std::vector<std::string> labels;
  for (const nlohmann::json& row : rows) {
    labels.push_back(row.at("planner").get<std::string>() + "/" + row.at("codecs").get<std::string>());
    EXPECT_EQ(row.at("lossy").get<bool>(), row.at("codecs_used") != "none") << labels.back();
    if (row.at("status") != "ok") continue;
    if (row.at("lossy").get<bool>()) {
      EXPECT_GE(row.at("grad_cosine").get<double>(), 0.999) << labels.back();
      EXPECT_GT(row.at("grad_rel_l2").get<double>(), 0.0) << labels.back();
    } else {
      EXPECT_EQ(row.at("grad_rel_l2"), 0.0) << labels.back();
    }
  }
  EXPECT_EQ(labels, (std::vector<std::string>{"store-all/none", "store-all/int8", "optimal/none",
                                              "optimal/int8", "recompute-all/none"}));
  EXPECT_EQ(rows[0].at("status"), "infeasible") << "exact store-all does not fit 90%";
  EXPECT_EQ(rows[1].at("status"), "ok");
  EXPECT_EQ(rows[1].at("codecs_used"), "int8");

  const CommandResult text = run_memento(args);
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("store-all (lossy: int8)"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("grad rel l2"), std::string::npos) << text.out;

  expect_bad_input({"bench", "--model", "mlp", "--planners", "recompute-all,sqrt-n", "--codecs", "int8"},
                   "--codecs");
  expect_bad_input({"bench", "--model", "mlp", "--codecs", "int3"}, "--codecs");
}

// --budgets min: every planner and codec variant at its own least feasible budget, and it runs there.
TEST(CliBench, MinBudgetIsEachPlannersLeastFeasibleBudget) {
  const CommandResult result =
      run_memento({"bench", "--model", "mlp", "--batch", "256", "--budgets", "min,90%", "--planners",
                   "recompute-all,optimal", "--codecs", "int8", "--steps", "1", "--warmup", "0", "--quiet",
                   "--format", "json"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const nlohmann::json document = nlohmann::json::parse(result.out);
  int least_rows = 0;
  for (const nlohmann::json& row : document.at("rows")) {
    if (row.at("budget") != "min") continue;
    ++least_rows;
    const std::string label =
        row.at("planner").get<std::string>() + "/" + row.at("codecs").get<std::string>();
    EXPECT_EQ(row.at("status"), "ok") << label << ": " << row.at("message");
    // A discretizing planner's minimum depends a little on the budget it plans at.
    EXPECT_LE(row.at("budget_bytes").get<double>(), row.at("min_feasible_budget_bytes").get<double>() * 1.03)
        << label;
    EXPECT_LE(row.at("predicted_peak_bytes").get<int64_t>(), row.at("budget_bytes").get<int64_t>()) << label;
    EXPECT_LT(row.at("budget_bytes").get<int64_t>(),
              document.at("store_all").at("measured_peak_bytes").get<int64_t>())
        << label;
  }
  EXPECT_EQ(least_rows, 3) << "recompute-all, optimal exact and optimal lossy";
}

}  // namespace
