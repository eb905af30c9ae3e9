// Gradient proxies (MAG, Frobenius, trace) of each stage's output gradient, measured in
// Backward(i): equal to the same quantities of plain autograd's gradients, the same under
// every schedule, and without effect on the step's gradients.
#include <cmath>
#include <map>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "core/test_support.h"
#include "memento/core/error.h"
#include "memento/core/planner.h"
#include "memento/core/simulate.h"
#include "memento/torch/executor.h"
#include "memento/torch/gradient_proxies.h"
#include "support.h"

namespace memento {
namespace {

Schedule recompute_all(int length) {
  std::mt19937_64 rng(1);
  return make_planner("recompute-all")
      ->plan(testing::random_profile(rng, length), PlannerOptions(int64_t{1} << 50))
      .schedule;
}

// Plain autograd, stage by stage, with every stage output's gradient retained.
std::map<int, GradientProxy> plain_proxies(testing::TinyModel& model, const Batch& batch) {
  TensorList activation = batch.inputs;
  std::vector<TensorList> outputs;
  for (int i = 0; i < model.chain->length(); ++i) {
    activation = model.chain->forward_stage(i, activation);
    for (torch::Tensor& t : activation) t.retain_grad();
    outputs.push_back(activation);
  }
  model.loss(activation, batch.targets).backward();
  std::map<int, GradientProxy> proxies;
  for (int i = 0; i < model.chain->length(); ++i) {
    TensorList gradients;
    for (const torch::Tensor& t : outputs[i]) gradients.push_back(t.grad());
    proxies[i] = gradient_proxy(gradients);
    TensorList parameter_gradients;
    for (const torch::Tensor& p : model.chain->stage(i).parameters()) parameter_gradients.push_back(p.grad());
    const GradientProxy parameters = gradient_proxy(parameter_gradients);
    if (parameters.values > 0) {  // a stage without parameters has no parameter proxy (NaN)
      proxies[i].parameter_mean_abs = parameters.mean_abs;
      proxies[i].parameter_frobenius = parameters.frobenius;
    }
  }
  return proxies;
}

TEST(GradientProxies, EqualPlainAutogradsAndLeaveGradientsBitIdentical) {
  testing::seed_all(5);
  testing::TinyModel model = testing::sequential_chain(4, 6, /*dropout=*/0.0);
  const Batch batch = model.batch(3);
  testing::clear_gradients(*model.chain);
  const std::map<int, GradientProxy> plain = plain_proxies(model, batch);
  const std::vector<torch::Tensor> plain_grads = testing::gradients(*model.chain);

  const int length = model.chain->length();
  for (const Schedule& schedule : {store_all_schedule(length), recompute_all(length)}) {
    testing::clear_gradients(*model.chain);
    Executor executor(model.chain, model.loss);
    GradientProxyRecorder recorder(executor);
    executor.step(schedule, batch);
    EXPECT_TRUE(testing::bitwise_equal(plain_grads, testing::gradients(*model.chain)));
    const std::vector<GradientProxy> records = recorder.last_step();
    ASSERT_EQ(static_cast<int>(records.size()), length);
    for (const GradientProxy& proxy : records) {
      const GradientProxy& expected = plain.at(proxy.stage);
      EXPECT_EQ(proxy.step, 0);
      EXPECT_EQ(proxy.values, expected.values) << "stage " << proxy.stage;
      EXPECT_DOUBLE_EQ(proxy.mean_abs, expected.mean_abs) << "stage " << proxy.stage;
      EXPECT_DOUBLE_EQ(proxy.frobenius, expected.frobenius) << "stage " << proxy.stage;
      EXPECT_NEAR(proxy.trace, proxy.frobenius * proxy.frobenius, 1e-12 * proxy.trace);
      EXPECT_EQ(std::isnan(proxy.parameter_mean_abs), std::isnan(expected.parameter_mean_abs));
      if (!std::isnan(expected.parameter_mean_abs)) {
        EXPECT_DOUBLE_EQ(proxy.parameter_mean_abs, expected.parameter_mean_abs) << "stage " << proxy.stage;
        EXPECT_DOUBLE_EQ(proxy.parameter_frobenius, expected.parameter_frobenius) << "stage " << proxy.stage;
      }
      EXPECT_GT(proxy.mean_abs, 0) << "stage " << proxy.stage;
    }
    EXPECT_GE(recorder.proxy_s(), 0);
  }
}

TEST(GradientProxies, HandComputedValuesAndEverySteps) {
  const GradientProxy proxy = gradient_proxy(
      {torch::tensor({3.0f, -4.0f}), torch::tensor({0, 1}), torch::Tensor(), torch::tensor({0.0f})});
  EXPECT_EQ(proxy.values, 3);  // the integer tensor and the undefined one are skipped
  EXPECT_DOUBLE_EQ(proxy.mean_abs, 7.0 / 3.0);
  EXPECT_DOUBLE_EQ(proxy.frobenius, 5.0);
  EXPECT_DOUBLE_EQ(proxy.trace, 25.0);

  testing::TinyModel model = testing::sequential_chain(4, 6, 0.0);
  Executor executor(model.chain, model.loss);
  GradientProxyRecorder recorder(executor, /*every_steps=*/2);
  const Schedule schedule = store_all_schedule(model.chain->length());
  for (uint64_t seed = 0; seed < 5; ++seed) executor.step(schedule, model.batch(seed));
  EXPECT_EQ(recorder.steps_seen(), 5);
  std::vector<int64_t> steps;
  for (const GradientProxy& record : recorder.history()) {
    if (steps.empty() || steps.back() != record.step) steps.push_back(record.step);
  }
  EXPECT_EQ(steps, (std::vector<int64_t>{0, 2, 4}));
  EXPECT_THROW(GradientProxyRecorder(executor, 0), InvalidArgument);
}

}  // namespace
}  // namespace memento
