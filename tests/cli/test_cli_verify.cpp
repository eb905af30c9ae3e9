// `memento verify` end to end with lossy storage: exact rows are judged by bitwise equality,
// lossy rows beside them by gradient cosine against plain autograd (--min-grad-cosine), and
// an `inaccurate` lossy row makes the report's outcome negative (exit 1).
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli_support.h"

namespace {

using namespace memento::cli_test;
using json = nlohmann::json;

// At 90% on mlp batch 256 exact store-all does not fit, int8 store-all and both optimal rows do.
std::vector<std::string> lossy_verify_args() {
  return {"verify",     "--model",           "mlp",      "--batch", "256", "--budget", "90%",
          "--planners", "store-all,optimal", "--codecs", "int8"};
}

const json& row_of(const json& document, const std::string& planner, bool lossy_row) {
  for (const json& row : document.at("planners")) {
    if (row.at("planner") == planner && (row.at("codecs") != "none") == lossy_row) return row;
  }
  throw std::runtime_error("no row for " + planner);
}

TEST(CliVerify, LossyRowsAreJudgedByGradientCosineBesideExactOnes) {
  std::vector<std::string> args = lossy_verify_args();
  for (const char* arg : {"--format", "json"}) args.push_back(arg);
  const CommandResult result = run_memento(args);
  ASSERT_EQ(result.exit_code, 0) << result.err << result.out;
  const json document = json::parse(result.out);
  EXPECT_EQ(document.at("codecs"), "int8");
  EXPECT_EQ(document.at("min_grad_cosine"), 0.999);
  EXPECT_TRUE(document.at("all_ok").get<bool>());
  ASSERT_EQ(document.at("planners").size(), 4u);

  const json& exact_store_all = row_of(document, "store-all", false);
  EXPECT_EQ(exact_store_all.at("status"), "infeasible");
  EXPECT_FALSE(exact_store_all.at("lossy").get<bool>());
  const json& exact_optimal = row_of(document, "optimal", false);
  EXPECT_EQ(exact_optimal.at("status"), "ok");
  EXPECT_TRUE(exact_optimal.at("bitwise_equal").get<bool>());
  EXPECT_EQ(exact_optimal.at("grad_cosine"), 1.0);
  EXPECT_EQ(exact_optimal.at("grad_rel_l2"), 0.0);

  for (const std::string planner : {"store-all", "optimal"}) {
    const json& row = row_of(document, planner, true);
    EXPECT_EQ(row.at("status"), "ok") << planner;
    // Lossy optimal packs only where a measured pack is cheaper than recomputing, which
    // depends on the machine's load: a row that chose no codec is judged as an exact one.
    // Lossy store-all must pack, since exact store-all does not fit.
    if (planner == "optimal" && !row.at("lossy").get<bool>()) {
      EXPECT_TRUE(row.at("bitwise_equal").get<bool>()) << planner;
      continue;
    }
    EXPECT_TRUE(row.at("lossy").get<bool>()) << planner;
    EXPECT_EQ(row.at("codecs_used"), "int8") << planner;
    EXPECT_FALSE(row.at("bitwise_equal").get<bool>()) << planner;
    EXPECT_GE(row.at("grad_cosine").get<double>(), 0.999) << planner;
    EXPECT_LT(row.at("grad_cosine").get<double>(), 1.0) << planner;
    EXPECT_GT(row.at("grad_rel_l2").get<double>(), 0.0) << planner;
    const double measured = row.at("measured_peak_bytes").get<double>();
    const double predicted = row.at("predicted_peak_bytes").get<double>();
    EXPECT_LE(std::abs(measured / predicted - 1), 0.02) << planner << ": measured " << measured;
  }
}

TEST(CliVerify, LossyRowBelowTheCosineThresholdIsInaccurateAndExitsOne) {
  std::vector<std::string> args = lossy_verify_args();
  for (const char* arg : {"--min-grad-cosine", "0.9999999"}) args.push_back(arg);
  const CommandResult text = run_memento(args);
  EXPECT_EQ(text.exit_code, 1) << text.err;
  EXPECT_NE(text.out.find("store-all (lossy: int8)"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("inaccurate"), std::string::npos) << text.out;

  for (const char* arg : {"--format", "json"}) args.push_back(arg);
  const json document = json::parse(run_memento(args).out);
  EXPECT_FALSE(document.at("all_ok").get<bool>());
  EXPECT_EQ(row_of(document, "store-all", true).at("status"), "inaccurate");
  EXPECT_EQ(row_of(document, "optimal", false).at("status"), "ok") << "the exact row is still bitwise";
}

TEST(CliVerify, BadCodecInputIsOneLineAndExitTwo) {
  expect_bad_input({"verify", "--model", "mlp", "--codecs", "int3"}, "--codecs");
  expect_bad_input({"verify", "--model", "mlp", "--planners", "recompute-all", "--codecs", "int8"},
                   "--codecs");
  expect_bad_input({"verify", "--model", "mlp", "--codecs", "int8", "--min-grad-cosine", "1.5"},
                   "--min-grad-cosine");
}

}  // namespace
