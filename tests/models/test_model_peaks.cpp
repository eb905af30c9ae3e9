// Measured peak against predicted peak on the zoo: for gpt-nano, mlp and resnet18, at block
// and fine granularity, every exact planner's schedule executed at three budgets measures
// within 1% of simulate()'s prediction above the fixed bytes (64 KiB at least). The models
// are sized so that 1% is far above 64 KiB: a 6% error (the RNG snapshots once were) fails.
#include <gtest/gtest.h>

#include <string>
#include <tuple>

#include "memento/core/budget.h"
#include "memento/core/planner.h"
#include "memento/models/zoo.h"
#include "memento/torch/executor.h"
#include "memento/torch/memory.h"
#include "memento/torch/profiler.h"
#include "support.h"

namespace memento {
namespace {

using PeakCase = std::tuple<std::string, std::string>;  // model, granularity

ModelOptions peak_options(const std::string& model, const std::string& granularity) {
  ModelOptions options;
  options.granularity = granularity;
  options.seed = 5;
  if (model == "gpt-nano") {
    options.batch_size = 8;
    options.seq_len = 64;
  } else if (model == "resnet18") {
    options.batch_size = 4;
    options.image_size = 32;
  } else {
    options.batch_size = 256;
  }
  return options;
}

class ZooPeaks : public ::testing::TestWithParam<PeakCase> {};

TEST_P(ZooPeaks, MeasuredPeakWithinOnePercentOfPredictedForEveryExactPlanner) {
  const auto& [name, granularity] = GetParam();
  MemoryTracker::instance();
  Model model = make_model(name, peak_options(name, granularity));
  model.chain->train();
  const Batch batch = model.example_batch(1);
  testing::seed_all(2);
  plain_step(*model.chain, model.loss, batch);  // allocates the parameter gradients (fixed bytes)
  const ChainProfile profile =
      profile_chain(*model.chain, batch, model.loss, ProfilerOptions().warmup_runs(0).timed_runs(1));
  const int64_t store_all = store_all_peak_bytes(profile);
  const double activation_bytes = static_cast<double>(store_all - profile.fixed_bytes);
  ASSERT_GT(0.01 * activation_bytes, 64.0 * 1024) << "the model is too small for the 1% bound to bind";

  Executor executor(model.chain, model.loss);
  int checked = 0;
  for (const std::string& planner : planner_names()) {
    // dtr's evictions follow measured memory; gac's plan is its first step's schedule, measured here.
    if (planner == "dtr") continue;
    const int64_t least =
        make_planner(planner)->plan(profile, PlannerOptions(store_all)).min_feasible_budget_bytes;
    for (double share : {0.2, 0.6, 1.0}) {
      const int64_t budget = least + static_cast<int64_t>(share * static_cast<double>(store_all - least));
      const Plan plan = make_planner(planner)->plan(profile, PlannerOptions(budget));
      if (!plan.feasible) continue;
      for (torch::Tensor& parameter : model.chain->parameters()) parameter.mutable_grad().zero_();
      testing::seed_all(3);
      const StepResult result = executor.step(plan.schedule, batch);
      const double measured = static_cast<double>(result.peak_bytes - result.start_bytes);
      const double predicted = static_cast<double>(plan.predicted_peak_bytes - profile.fixed_bytes);
      EXPECT_NEAR(measured, predicted, std::max(0.01 * predicted, 64.0 * 1024))
          << name << " " << granularity << ", " << planner << " at " << format_bytes(budget) << ": "
          << to_string(plan.schedule);
      EXPECT_EQ(result.end_bytes, result.start_bytes)
          << planner << ": the step must release all it allocated";
      ++checked;
    }
  }
  EXPECT_GE(checked, 15);
}

std::string peak_case_name(const ::testing::TestParamInfo<PeakCase>& param_info) {
  std::string text = std::get<0>(param_info.param) + "_" + std::get<1>(param_info.param);
  for (char& c : text) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return text;
}

INSTANTIATE_TEST_SUITE_P(Zoo, ZooPeaks,
                         ::testing::Combine(::testing::Values("gpt-nano", "mlp", "resnet18"),
                                            ::testing::Values("block", "fine")),
                         peak_case_name);

}  // namespace
}  // namespace memento
