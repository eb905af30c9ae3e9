#include <algorithm>
#include <cstdlib>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/test_support.h"
#include "memento/core/budget.h"
#include "memento/core/error.h"
#include "memento/core/planner.h"
#include "memento/core/simulate.h"
#include "memento/torch/executor.h"
#include "memento/torch/memory.h"
#include "memento/torch/profiler.h"
#include "support.h"

namespace memento {
namespace {

using testing::TinyModel;

// What a step leaves behind, to compare a schedule's step with the plain one.
struct Outcome {
  std::vector<torch::Tensor> parameter_grads;
  std::vector<torch::Tensor> input_grads;
  std::vector<torch::Tensor> buffers;
  torch::Tensor next_random;  // a draw after the step: the generator advanced identically
  double loss = 0;
  StepResult step;
};

// Runs one step from a fixed state: cleared gradients, `initial_buffers`, the batch of
// `seed` and the generator seeded for dropout. `schedule` empty means a plain step.
Outcome run_step(TinyModel& model, const std::vector<torch::Tensor>& initial_buffers, uint64_t seed,
                 const Schedule* schedule, Executor* executor = nullptr) {
  testing::clear_gradients(*model.chain);
  testing::restore_buffers(*model.chain, initial_buffers);
  Batch batch = model.batch(seed);
  testing::seed_all(seed + 1000);
  Outcome outcome;
  if (schedule == nullptr) {
    outcome.step = plain_step(*model.chain, model.loss, batch);
  } else if (executor != nullptr) {
    outcome.step = executor->step(*schedule, batch);
  } else {
    Executor own(model.chain, model.loss);
    outcome.step = own.step(*schedule, batch);
  }
  outcome.loss = outcome.step.loss;
  outcome.parameter_grads = testing::gradients(*model.chain);
  for (const torch::Tensor& input : batch.inputs) outcome.input_grads.push_back(input.grad());
  outcome.buffers = testing::buffers(*model.chain);
  outcome.next_random = torch::rand({4});
  return outcome;
}

void expect_identical(const Outcome& plain, const Outcome& scheduled, const std::string& what) {
  EXPECT_EQ(plain.loss, scheduled.loss) << what;
  ASSERT_EQ(plain.parameter_grads.size(), scheduled.parameter_grads.size()) << what;
  for (size_t k = 0; k < plain.parameter_grads.size(); ++k) {
    EXPECT_TRUE(testing::bitwise_equal(plain.parameter_grads[k], scheduled.parameter_grads[k]))
        << what << ": parameter " << k << " differs by "
        << testing::max_abs_diff(plain.parameter_grads[k], scheduled.parameter_grads[k]);
  }
  for (size_t k = 0; k < plain.input_grads.size(); ++k) {
    EXPECT_TRUE(testing::bitwise_equal(plain.input_grads[k], scheduled.input_grads[k]))
        << what << ": input " << k;
  }
  EXPECT_TRUE(testing::bitwise_equal(plain.buffers, scheduled.buffers))
      << what << ": buffers (BatchNorm statistics)";
  EXPECT_TRUE(testing::bitwise_equal(plain.next_random, scheduled.next_random))
      << what << ": generator state";
}

// Recompute-all for a chain of `length` stages (the planner ignores costs at an unlimited budget).
Schedule recompute_all(int length) {
  std::mt19937_64 rng(1);
  return make_planner("recompute-all")
      ->plan(testing::random_profile(rng, length), PlannerOptions(int64_t{1} << 50))
      .schedule;
}

std::vector<TinyModel> test_models() {
  testing::seed_all(3);
  std::vector<TinyModel> models;
  models.push_back(testing::residual_mask_chain({}));
  testing::TinyOptions no_grad_input;
  no_grad_input.input_requires_grad = false;
  no_grad_input.blocks = 2;
  models.push_back(testing::residual_mask_chain(no_grad_input));
  models.push_back(testing::sequential_chain());
  return models;
}

TEST(Executor, StoreAllMatchesPlainAutogradBitwise) {
  for (TinyModel& model : test_models()) {
    const auto initial = testing::buffers(*model.chain);
    const Outcome plain = run_step(model, initial, 11, nullptr);
    const Schedule schedule = store_all_schedule(model.chain->length());
    const Outcome scheduled = run_step(model, initial, 11, &schedule);
    expect_identical(plain, scheduled, "store-all");
    EXPECT_EQ(scheduled.step.recompute_count, 0);
  }
}

TEST(Executor, InputGradientsReachTheModelInputs) {
  TinyModel model = test_models()[0];
  const auto initial = testing::buffers(*model.chain);
  const Schedule schedule = store_all_schedule(model.chain->length());
  const Outcome scheduled = run_step(model, initial, 5, &schedule);
  ASSERT_EQ(scheduled.input_grads.size(), 2u);
  EXPECT_FALSE(scheduled.input_grads[0].defined());  // token ids: no gradient
  ASSERT_TRUE(scheduled.input_grads[1].defined());
  EXPECT_GT(scheduled.input_grads[1].abs().sum().item<double>(), 0);
}

// Every planner's schedule, on random profiles of each chain at random budgets, gives
// exactly the plain gradients, buffers and generator state.
TEST(Executor, EveryPlannerMatchesPlainAutogradBitwise) {
  std::mt19937_64 rng(2024);
  int recomputing_plans = 0;
  int checked_plans = 0;
  for (TinyModel& model : test_models()) {
    const auto initial = testing::buffers(*model.chain);
    const Outcome plain = run_step(model, initial, 21, nullptr);
    const int length = model.chain->length();
    for (int trial = 0; trial < 3; ++trial) {
      const ChainProfile profile = testing::random_profile(rng, length);
      std::vector<int64_t> budgets = {store_all_peak_bytes(profile)};
      for (int k = 0; k < 3; ++k) budgets.push_back(testing::random_budget(rng, profile));
      for (const std::string& name : planner_names()) {
        const auto planner = make_planner(name);
        for (int64_t budget : budgets) {
          Plan plan;
          try {
            plan = planner->plan(profile, PlannerOptions(budget).memory_slots(60));
          } catch (const std::logic_error&) {
            continue;  // a planner still being written
          }
          if (!plan.feasible) continue;
          const Outcome scheduled = run_step(model, initial, 21, &plan.schedule);
          expect_identical(plain, scheduled, name + " " + to_string(plan.schedule));
          EXPECT_EQ(scheduled.step.recompute_count, plan.recompute_count) << name;
          ++checked_plans;
          if (plan.recompute_count > 0) ++recomputing_plans;
        }
      }
    }
  }
  EXPECT_GT(checked_plans, 20);
  EXPECT_GT(recomputing_plans, 5);  // the test must exercise recomputation
}

// Recompute-all runs every stage twice; BatchNorm's running statistics must move once.
TEST(Executor, RecomputationUpdatesBatchNormStatisticsOnce) {
  TinyModel model = testing::sequential_chain();
  const auto initial = testing::buffers(*model.chain);
  const Outcome plain = run_step(model, initial, 4, nullptr);
  const Schedule schedule = recompute_all(model.chain->length());
  const Outcome scheduled = run_step(model, initial, 4, &schedule);
  EXPECT_EQ(scheduled.step.recompute_count, 6);
  expect_identical(plain, scheduled, "recompute-all");
  // num_batches_tracked went from 0 to 1, not 2.
  for (const auto& item : model.chain->named_buffers()) {
    if (item.key().find("num_batches_tracked") != std::string::npos) {
      EXPECT_EQ(item.value().item<int64_t>(), 1);
    }
  }
}

TEST(Executor, GradientsAccumulateAcrossStepsLikePlainAutograd) {
  TinyModel model = test_models()[0];
  const auto initial = testing::buffers(*model.chain);
  auto two_steps = [&](bool scheduled) {
    testing::clear_gradients(*model.chain);
    testing::restore_buffers(*model.chain, initial);
    const Schedule schedule = recompute_all(model.chain->length());
    Executor executor(model.chain, model.loss);
    for (uint64_t seed : {31u, 32u}) {
      Batch batch = model.batch(seed);
      testing::seed_all(seed + 7);
      if (scheduled) {
        executor.step(schedule, batch);
      } else {
        plain_step(*model.chain, model.loss, batch);
      }
    }
    return testing::gradients(*model.chain);
  };
  const auto plain = two_steps(false);
  const auto scheduled = two_steps(true);
  EXPECT_TRUE(testing::bitwise_equal(plain, scheduled)) << testing::max_abs_diff(plain, scheduled);
}

// A stage whose output shape changes between runs cannot be recomputed.
TEST(Executor, RecomputedShapeChangeThrowsNamingTheStage) {
  auto chain = std::make_shared<Chain>();
  auto linear = torch::nn::Linear(4, 4);
  chain->add_stage(
      "linear", "layer",
      std::make_shared<LambdaStage>(
          [linear](const TensorList& in) mutable -> TensorList { return {linear->forward(in[0])}; },
          linear.ptr()));
  int calls = 0;
  chain->add_stage("shifty", "layer",
                   std::make_shared<LambdaStage>([&calls](const TensorList& in) -> TensorList {
                     return {++calls == 1 ? in[0] * 2 : in[0].narrow(1, 0, 3) * 2};
                   }));
  LossFunction loss = [](const TensorList& out, const TensorList&) { return out[0].sum(); };
  Executor executor(chain, loss);
  const Schedule schedule = {Op::forward_checkpoint(0),
                             Op::forward_checkpoint(1),
                             Op::free(2),
                             Op::forward_with_graph(1),
                             Op::loss(),
                             Op::backward(1),
                             Op::forward_with_graph(0),
                             Op::backward(0)};
  try {
    executor.step(schedule, Batch{{torch::randn({2, 4})}, {}});
    FAIL() << "expected RuntimeError";
  } catch (const RuntimeError& e) {
    EXPECT_NE(std::string(e.what()).find("shifty"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("stage 1"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(executor.in_step());
}

TEST(Executor, InvalidScheduleThrowsBeforeAnythingRuns) {
  TinyModel model = testing::sequential_chain();
  testing::clear_gradients(*model.chain);
  Executor executor(model.chain, model.loss);
  Schedule schedule = store_all_schedule(model.chain->length());
  schedule.erase(schedule.begin() + model.chain->length());  // drop the Loss
  try {
    executor.step(schedule, model.batch(1));
    FAIL() << "expected ScheduleError";
  } catch (const ScheduleError& e) {
    EXPECT_NE(std::string(e.what()).find("B6"), std::string::npos) << e.what();
  }
  for (const torch::Tensor& parameter : model.chain->parameters()) EXPECT_FALSE(parameter.grad().defined());
  // A schedule for another chain length is rejected as well.
  EXPECT_THROW(executor.step(store_all_schedule(3), model.batch(1)), ScheduleError);
}

TEST(Executor, HooksSeeEveryOpInOrder) {
  TinyModel model = test_models()[0];
  const Schedule schedule = recompute_all(model.chain->length());
  std::vector<int> before, after;
  int recomputes_seen = 0;
  ExecutorHooks hooks;
  hooks.before_op = [&](Executor& executor, const OpEvent& event) {
    EXPECT_TRUE(executor.in_step());
    EXPECT_EQ(event.op, schedule[event.op_index]);
    before.push_back(event.op_index);
  };
  hooks.after_op = [&](Executor& executor, const OpEvent& event) {
    after.push_back(event.op_index);
    if (event.recompute) ++recomputes_seen;
    if (event.op.kind == OpKind::ForwardWithGraph) {
      EXPECT_TRUE(executor.graph_alive(event.op.stage));
    }
    if (event.op.kind == OpKind::ForwardCheckpoint) {
      EXPECT_TRUE(executor.stored(event.op.stage + 1));
      EXPECT_GT(executor.activation_bytes(event.op.stage + 1), 0);
    }
    EXPECT_GT(event.live_bytes, 0);
  };
  Executor executor(model.chain, model.loss);
  executor.set_hooks(hooks);
  const StepResult result = executor.step(schedule, model.batch(2));
  std::vector<int> expected(schedule.size());
  for (size_t k = 0; k < expected.size(); ++k) expected[k] = static_cast<int>(k);
  EXPECT_EQ(before, expected);
  EXPECT_EQ(after, expected);
  EXPECT_EQ(recomputes_seen, result.recompute_count);
  EXPECT_GT(result.recompute_count, 0);
  EXPECT_THROW(executor.available(0), RuntimeError);  // outside a step
}

// A run-time policy evicts a checkpoint; the executor recomputes it when needed and the
// gradients stay exact.
TEST(Executor, EvictedCheckpointIsRecomputedOnDemand) {
  TinyModel model = test_models()[0];
  const auto initial = testing::buffers(*model.chain);
  const Outcome plain = run_step(model, initial, 8, nullptr);
  const int length = model.chain->length();
  const Schedule schedule = recompute_all(length);
  Executor executor(model.chain, model.loss);
  int evictions = 0;
  std::vector<int> on_demand_ops;
  ExecutorHooks hooks;
  hooks.after_op = [&](Executor& ex, const OpEvent& event) {
    if (event.op_index < 0) on_demand_ops.push_back(event.op.stage);
    // Evict every kept stage input once the forward phase moved past it.
    if (event.op.kind == OpKind::ForwardCheckpoint && event.op.stage >= 2 && event.op_index >= 0) {
      ex.evict(event.op.stage - 1);
      ++evictions;
    }
  };
  executor.set_hooks(hooks);
  const Outcome scheduled = run_step(model, initial, 8, &schedule, &executor);
  EXPECT_GT(evictions, 0);
  EXPECT_GT(scheduled.step.on_demand_count, 0);
  EXPECT_EQ(static_cast<int>(on_demand_ops.size()), scheduled.step.on_demand_count);
  expect_identical(plain, scheduled, "recompute-all with evictions");
}

TEST(Executor, EvictedGraphIsRebuiltOnDemand) {
  TinyModel model = test_models()[0];
  const auto initial = testing::buffers(*model.chain);
  const Outcome plain = run_step(model, initial, 9, nullptr);
  const Schedule schedule = store_all_schedule(model.chain->length());
  Executor executor(model.chain, model.loss);
  ExecutorHooks hooks;
  hooks.after_op = [&](Executor& ex, const OpEvent& event) {
    if (event.op == Op::forward_with_graph(2) && event.op_index >= 0) {
      ex.evict_graph(2);
      EXPECT_FALSE(ex.available(3));
      EXPECT_THROW(ex.evict(3), ScheduleError);  // not stored
    }
  };
  executor.set_hooks(hooks);
  const Outcome scheduled = run_step(model, initial, 9, &schedule, &executor);
  EXPECT_EQ(scheduled.step.on_demand_count, 2);  // a_3 for Fg3, then graph 2 for B2
  expect_identical(plain, scheduled, "store-all with an evicted graph");
}

// Memory is deterministic: the measured peak of every planner's schedule, above the bytes
// alive at the start, tracks simulate's prediction above the fixed bytes of the Profiler's
// profile of the same chain. With dropout the mask is a temporary of a no-grad forward and
// saved by a forward with grad; the profile's two forward temporaries keep them apart.
void check_peaks(double dropout) {
  MemoryTracker::instance();
  testing::seed_all(5);
  TinyModel model = testing::sequential_chain(/*batch_size=*/1024, /*width=*/512, dropout);
  Batch batch = model.batch(1);
  const ChainProfile profile =
      profile_chain(*model.chain, batch, model.loss, ProfilerOptions().warmup_runs(0).timed_runs(1));
  plain_step(*model.chain, model.loss, batch);  // allocate the parameter gradients (fixed bytes)
  const int64_t store_all_bytes = store_all_peak_bytes(profile);
  Executor executor(model.chain, model.loss);
  int checked = 0;
  for (const std::string& name : planner_names()) {
    for (double fraction : {1.0, 0.7, 0.5}) {
      Plan plan;
      try {
        plan = make_planner(name)->plan(profile,
                                        PlannerOptions(static_cast<int64_t>(fraction * store_all_bytes)));
      } catch (const std::logic_error&) {
        continue;
      }
      if (!plan.feasible) continue;
      for (torch::Tensor& parameter : model.chain->parameters()) parameter.mutable_grad().zero_();
      const StepResult result = executor.step(plan.schedule, batch);
      const double measured = static_cast<double>(result.peak_bytes - result.start_bytes);
      const double predicted = static_cast<double>(plan.predicted_peak_bytes - profile.fixed_bytes);
      const double tolerance = std::max(0.01 * predicted, 64.0 * 1024.0);
      const std::string what =
          name + " at " + std::to_string(fraction) + " of store-all: " + to_string(plan.schedule);
      EXPECT_NEAR(measured, predicted, tolerance) << what;
      EXPECT_EQ(result.end_bytes, result.start_bytes) << name << ": the step must release all it allocated";
      ++checked;
    }
  }
  EXPECT_GE(checked, 6);
  EXPECT_GT(store_all_bytes - profile.fixed_bytes, 16 * 1024 * 1024);  // the 1% bound is the binding one
}

TEST(Executor, MeasuredPeakMatchesSimulatedPeak) {
  check_peaks(/*dropout=*/0.0);
}

TEST(Executor, MeasuredPeakMatchesSimulatedPeakWithDropout) {
  check_peaks(/*dropout=*/0.2);
}

}  // namespace
}  // namespace memento
