// run_bench on tiny models: rows, statuses, gradient agreement, the JSON document and the
// max-batch search.
#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "memento/core/budget.h"
#include "memento/core/error.h"
#include "memento/train/benchmark.h"

namespace {

memento::BenchOptions tiny_options() {
  memento::BenchOptions options("mlp");
  options.batch_size(8).steps(2).warmup_steps(1).seed(3);
  return options;
}

const memento::BenchRow& find_row(const memento::BenchResult& result, const std::string& planner,
                                  const std::string& budget) {
  for (const memento::BenchRow& row : result.rows) {
    if (row.planner == planner && row.budget == budget) return row;
  }
  throw std::runtime_error("no row for " + planner + " at " + budget);
}

TEST(BenchRun, OneRowPerPlannerAndBudgetFromIdenticalState) {
  const std::vector<std::string> planners = {"store-all", "recompute-all", "sqrt-n", "optimal"};
  memento::BenchOptions options = tiny_options();
  options.planners(planners).budgets({"50%", "100%"});
  std::vector<std::string> progress;
  options.progress([&progress](const std::string& line) { progress.push_back(line); });
  const memento::BenchResult result = memento::run_bench(options);

  EXPECT_FALSE(progress.empty());
  EXPECT_EQ(result.model, "mlp");
  EXPECT_EQ(result.batch, 8);
  EXPECT_FALSE(result.seq_len.has_value());
  EXPECT_EQ(result.steps, 2);
  EXPECT_GT(result.threads, 0);
  ASSERT_EQ(result.rows.size(), planners.size() * 2);
  for (size_t k = 0; k < result.rows.size(); ++k) {
    EXPECT_EQ(result.rows[k].planner, planners[k / 2]);
    EXPECT_EQ(result.rows[k].budget, k % 2 == 0 ? "50%" : "100%");
  }
  const int64_t full_bytes = memento::store_all_peak_bytes(result.profile);
  EXPECT_EQ(find_row(result, "store-all", "100%").budget_bytes, full_bytes);
  EXPECT_GT(result.store_all.measured_peak_bytes, result.profile.fixed_bytes);
  EXPECT_GT(result.store_all.step_s, 0);

  // Store-all's own row is the baseline's measurement: no overhead, no recomputation.
  const memento::BenchRow& store_all = find_row(result, "store-all", "100%");
  ASSERT_EQ(store_all.status, "ok") << store_all.message;
  EXPECT_EQ(store_all.overhead, 0.0);
  EXPECT_EQ(store_all.step_s, result.store_all.step_s);
  EXPECT_EQ(store_all.measured_peak_bytes, result.store_all.measured_peak_bytes);
  EXPECT_EQ(store_all.recompute_count, 0);
  EXPECT_EQ(store_all.recompute_ratio, 0.0);

  // Store-all cannot fit half its own peak and says so instead of running.
  const memento::BenchRow& too_small = find_row(result, "store-all", "50%");
  EXPECT_EQ(too_small.status, "infeasible");
  EXPECT_FALSE(too_small.ran);
  EXPECT_GT(too_small.min_feasible_budget_bytes, too_small.budget_bytes);
  EXPECT_FALSE(too_small.message.empty());

  const memento::BenchRow& recompute_all = find_row(result, "recompute-all", "100%");
  ASSERT_TRUE(recompute_all.ran) << recompute_all.message;
  EXPECT_GT(recompute_all.recompute_count, 0);
  EXPECT_GT(recompute_all.recompute_ratio, 0.0);
  EXPECT_LE(recompute_all.recompute_ratio, 1.0 + 1e-9);
  EXPECT_LT(recompute_all.measured_peak_bytes, result.store_all.measured_peak_bytes);

  for (const memento::BenchRow& row : result.rows) {
    SCOPED_TRACE(row.planner + " at " + row.budget);
    if (!row.ran) {
      EXPECT_EQ(row.status, "infeasible") << row.message;
      continue;
    }
    // Exact planners reproduce store-all's gradients bit for bit.
    EXPECT_EQ(row.grad_cosine, 1.0);
    EXPECT_EQ(row.grad_rel_l2, 0.0);
    EXPECT_LE(row.predicted_peak_bytes, row.budget_bytes);
    EXPECT_GT(row.step_s, 0);
    const bool over =
        static_cast<double>(row.measured_peak_bytes) > 1.05 * static_cast<double>(row.budget_bytes);
    EXPECT_EQ(row.status, over ? "over_budget" : "ok");
    EXPECT_FALSE(over) << "measured " << row.measured_peak_bytes << " budget " << row.budget_bytes;
    // The prediction is an upper bound of the measurement (docs/measurement.md).
    EXPECT_LE(row.measured_peak_bytes, row.predicted_peak_bytes + (int64_t{1} << 20));
    EXPECT_NEAR(row.overhead, row.step_s / result.store_all.step_s - 1, 1e-12);
  }
}

// A run-time policy that learns across steps keeps one runner over the measured steps: a
// lossy gac row, exact in its first step (no gradients seen yet), packs once it has
// seen one, and says so; its exact twin at the same budget is measured apart.
TEST(BenchRun, GacRowsLearnAcrossTheirStepsAndLabelWhatTheyPacked) {
  memento::BenchOptions options("gpt-nano");
  options.batch_size(4).seq_len(16).warmup_steps(1).seed(3);
  options.planners({"store-all", "gac"}).budgets({"85%"}).codecs({memento::Codec::Int8}).steps(3);
  const memento::BenchResult result = memento::run_bench(options);
  std::vector<const memento::BenchRow*> gac;
  for (const memento::BenchRow& row : result.rows) {
    if (row.planner == "gac") gac.push_back(&row);
  }
  ASSERT_EQ(gac.size(), 2u);
  EXPECT_TRUE(gac[0]->codecs_used.empty());
  EXPECT_EQ(gac[0]->grad_cosine, 1.0);
  ASSERT_EQ(gac[1]->status, "ok") << gac[1]->message;
  EXPECT_EQ(gac[1]->codecs_used, std::vector<memento::Codec>{memento::Codec::Int8})
      << "below-threshold stages are packed once proxies exist";
  EXPECT_LT(gac[1]->grad_cosine, 1.0);
}

TEST(BenchRun, JsonFollowsTheBenchFormat) {
  memento::BenchOptions options = tiny_options();
  options.planners({"store-all", "recompute-all"}).budgets({"100%"}).steps(1).warmup_steps(0);
  const memento::BenchResult result = memento::run_bench(options);
  const nlohmann::json document = memento::bench_to_json(result);
  EXPECT_EQ(document.at("format"), "memento.bench/1");
  EXPECT_EQ(document.at("model"), "mlp");
  EXPECT_EQ(document.at("batch"), 8);
  EXPECT_TRUE(document.at("seq_len").is_null());
  EXPECT_EQ(document.at("steps"), 1);
  EXPECT_EQ(document.at("warmup_steps"), 0);
  EXPECT_TRUE(document.at("machine").is_string());
  EXPECT_EQ(document.at("profile").at("stages").size(), result.profile.stages.size());
  EXPECT_EQ(document.at("store_all").at("measured_peak_bytes"), result.store_all.measured_peak_bytes);
  ASSERT_EQ(document.at("rows").size(), 2u);
  const std::set<std::string> keys = {"planner",
                                      "budget",
                                      "budget_bytes",
                                      "status",
                                      "message",
                                      "min_feasible_budget_bytes",
                                      "predicted_peak_bytes",
                                      "measured_peak_bytes",
                                      "predicted_step_s",
                                      "step_s",
                                      "overhead",
                                      "recompute_s",
                                      "recompute_count",
                                      "recompute_ratio",
                                      "recompute_flops",
                                      "grad_cosine",
                                      "grad_rel_l2"};
  for (const nlohmann::json& row : document.at("rows")) {
    for (const std::string& key : keys) EXPECT_TRUE(row.contains(key)) << key;
  }
  EXPECT_EQ(document.at("rows")[1].at("planner"), "recompute-all");
  EXPECT_EQ(document.at("rows")[1].at("recompute_count"), result.rows[1].recompute_count);
  EXPECT_FALSE(document.contains("max_batch"));
}

TEST(BenchRun, ABudgetBelowTheFixedBytesIsAnInfeasibleRow) {
  memento::BenchOptions options = tiny_options();
  options.planners({"optimal", "recompute-all"}).budgets({"1KiB"}).steps(1).warmup_steps(0);
  const memento::BenchResult result = memento::run_bench(options);
  ASSERT_EQ(result.rows.size(), 2u);
  for (const memento::BenchRow& row : result.rows) {
    EXPECT_EQ(row.status, "infeasible") << row.planner;
    EXPECT_EQ(row.budget_bytes, 1024);
    EXPECT_GT(row.min_feasible_budget_bytes, result.profile.fixed_bytes);
    EXPECT_NE(row.message.find("needs at least"), std::string::npos) << row.message;
  }
  EXPECT_GT(result.store_all.measured_peak_bytes, 0);  // the baseline still ran
}

TEST(BenchRun, BadOptionsNameTheOption) {
  auto expect_invalid = [](memento::BenchOptions options, const std::string& word) {
    try {
      memento::run_bench(options);
      ADD_FAILURE() << "no error for " << word;
    } catch (const memento::InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find(word), std::string::npos) << e.what();
    }
  };
  expect_invalid(memento::BenchOptions("no-such-model"), "no-such-model");
  expect_invalid(tiny_options().steps(0), "--steps");
  expect_invalid(tiny_options().warmup_steps(-1), "--warmup");
  expect_invalid(tiny_options().budgets({"abc"}), "--budgets");
  expect_invalid(tiny_options().planners({"nope"}), "nope");
  expect_invalid(tiny_options().optimizer("lion"), "lion");
  expect_invalid(tiny_options().memory_cap(0), "--memory-cap");
  expect_invalid(tiny_options().granularity("coarse"), "--granularity");
}

TEST(BenchMaxBatch, SearchFindsTheLastFittingBatchCallingEachOnce) {
  for (int64_t limit : {1, 2, 7, 64, 256}) {
    for (int64_t threshold : {int64_t{0}, int64_t{1}, int64_t{2}, int64_t{3}, int64_t{31}, int64_t{32},
                              int64_t{33}, int64_t{200}, int64_t{256}, int64_t{1000}}) {
      SCOPED_TRACE("limit " + std::to_string(limit) + " threshold " + std::to_string(threshold));
      std::map<int64_t, int> calls;
      const int64_t found = memento::search_max_batch(limit, [&](int64_t batch) {
        EXPECT_GE(batch, 1);
        EXPECT_LE(batch, limit);
        ++calls[batch];
        return batch <= threshold;
      });
      EXPECT_EQ(found, std::min(threshold, limit));
      int total = 0;
      for (const auto& [batch, count] : calls) {
        EXPECT_EQ(count, 1) << "batch " << batch;
        total += count;
      }
      EXPECT_LE(total, 2 * 9 + 1);  // doubling then bisection: O(log limit)
    }
  }
  EXPECT_THROW(memento::search_max_batch(0, [](int64_t) { return true; }), memento::InvalidArgument);
}

TEST(BenchMaxBatch, RecomputationTrainsLargerBatchesUnderTheSameCap) {
  // The cap: fixed bytes plus twice the step bytes of store-all at batch 64, so store-all
  // fits up to about batch 128 and recompute-all further.
  memento::BenchOptions probe = tiny_options();
  probe.batch_size(64).budgets({}).planners({"store-all"}).steps(1).warmup_steps(0);
  const memento::BenchResult first = memento::run_bench(probe);
  EXPECT_TRUE(first.rows.empty());
  const int64_t activation_bytes = first.store_all.measured_peak_bytes - first.profile.fixed_bytes;
  ASSERT_GT(activation_bytes, 0);
  const int64_t cap_bytes = first.store_all.measured_peak_bytes + activation_bytes;

  memento::BenchOptions options = tiny_options();
  options.budgets({}).planners({"recompute-all", "store-all"}).memory_cap(cap_bytes).max_batch_limit(256);
  const memento::BenchResult result = memento::run_bench(options);
  ASSERT_EQ(result.max_batch.size(), 2u);
  EXPECT_EQ(result.max_batch[0].planner, "store-all");  // always first, once
  EXPECT_EQ(result.max_batch[1].planner, "recompute-all");
  const memento::MaxBatchResult& store_all = result.max_batch[0];
  const memento::MaxBatchResult& recompute_all = result.max_batch[1];
  EXPECT_GE(store_all.max_batch, 64);
  EXPECT_LT(store_all.max_batch, 256);
  EXPECT_GT(recompute_all.max_batch, store_all.max_batch);

  for (const memento::MaxBatchResult& search : result.max_batch) {
    SCOPED_TRACE(search.planner);
    EXPECT_EQ(search.memory_cap_bytes, cap_bytes);
    EXPECT_EQ(search.reached_limit, search.max_batch == 256);
    bool found_max = false;
    int64_t previous_batch = 0;
    for (const memento::MaxBatchPoint& point : search.points) {
      EXPECT_GT(point.batch, previous_batch);  // sorted, each batch once
      previous_batch = point.batch;
      // Monotone: everything tried up to the maximum fits, nothing above it does.
      EXPECT_EQ(point.fits, point.batch <= search.max_batch) << "batch " << point.batch;
      if (point.fits) {
        EXPECT_TRUE(point.feasible);
        EXPECT_GT(point.measured_peak_bytes, 0);
        EXPECT_LE(point.measured_peak_bytes, cap_bytes);
      }
      found_max = found_max || point.batch == search.max_batch;
      if (point.batch == search.max_batch + 1) {
        EXPECT_FALSE(point.fits);
      }
    }
    EXPECT_TRUE(found_max);
    if (!search.reached_limit) {
      bool tried_next = false;
      for (const auto& point : search.points) tried_next = tried_next || point.batch == search.max_batch + 1;
      EXPECT_TRUE(tried_next) << "the search must have seen batch max + 1 fail";
    }
  }
  const nlohmann::json document = memento::bench_to_json(result);
  ASSERT_TRUE(document.contains("max_batch"));
  EXPECT_EQ(document.at("max_batch")[1].at("max_batch"), recompute_all.max_batch);
  EXPECT_EQ(document.at("max_batch")[0].at("points").size(), store_all.points.size());
}

}  // namespace
