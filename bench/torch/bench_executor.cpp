// Executor overhead and time model, measured side by side in one run.
//
// BM_StoreAllOverhead: each iteration runs one plain step (chain->forward, loss,
//   backward) and one Executor step of the store-all schedule on the same MLP chain and
//   batch, interleaved so that drift hits both; counters: plain_ms, executor_ms and
//   overhead (executor / plain - 1). Target: at most 3%.
// BM_StepVsPredicted/<planner>: the chain is profiled with the Profiler, planned at 60%
//   of the store-all activation bytes above the fixed bytes (store-all at 100%), and executed; counters:
//   measured_ms, predicted_ms (simulate's time from the profile) and error (measured / predicted - 1).
//   Target: within 15%.
// Run with OMP_NUM_THREADS set to the core count you want measured.
#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include "memento/core/budget.h"
#include "memento/core/planner.h"
#include "memento/torch/executor.h"
#include "memento/torch/memory.h"
#include "memento/torch/profiler.h"

namespace {

struct Setup {
  std::shared_ptr<memento::Chain> chain;
  memento::LossFunction loss;
  memento::Batch batch;
};

// An MLP of `depth` Linear and GELU stages: large enough that a step takes milliseconds, so
// per-op bookkeeping would show.
Setup make_setup(int64_t batch_size = 256, int64_t width = 512, int depth = 8) {
  memento::MemoryTracker::instance();
  torch::manual_seed(0);
  torch::nn::Sequential net;
  for (int k = 0; k < depth; ++k) {
    net->push_back(torch::nn::Linear(width, width));
    net->push_back(torch::nn::GELU());
  }
  net->push_back(torch::nn::Linear(width, 10));
  Setup setup;
  setup.chain = memento::Chain::from_sequential(net);
  setup.loss = [](const memento::TensorList& out, const memento::TensorList& target) {
    return torch::nn::functional::cross_entropy(out[0], target[0]);
  };
  setup.batch.inputs = {torch::randn({batch_size, width})};
  setup.batch.targets = {torch::randint(0, 10, {batch_size}, torch::kInt64)};
  return setup;
}

void BM_StoreAllOverhead(benchmark::State& state) {
  Setup setup = make_setup();
  memento::Executor executor(setup.chain, setup.loss);
  const memento::Schedule schedule = memento::store_all_schedule(setup.chain->length());
  for (int warmup = 0; warmup < 3; ++warmup) {
    memento::plain_step(*setup.chain, setup.loss, setup.batch);
    executor.step(schedule, setup.batch);
  }
  std::vector<double> plain_s, executor_s;
  for (auto _ : state) {
    plain_s.push_back(memento::plain_step(*setup.chain, setup.loss, setup.batch).step_s);
    executor_s.push_back(executor.step(schedule, setup.batch).step_s);
  }
  // Medians: a step that an unrelated process preempted says nothing about the executor.
  auto median = [](std::vector<double> values) {
    std::sort(values.begin(), values.end());
    return values[values.size() / 2];
  };
  const double plain_median_s = median(plain_s);
  const double executor_median_s = median(executor_s);
  state.counters["plain_ms"] = plain_median_s * 1e3;
  state.counters["executor_ms"] = executor_median_s * 1e3;
  state.counters["overhead"] = executor_median_s / plain_median_s - 1;
}
BENCHMARK(BM_StoreAllOverhead)->Unit(benchmark::kMillisecond)->Iterations(30);

void BM_StepVsPredicted(benchmark::State& state, const std::string& planner) {
  Setup setup = make_setup();
  const memento::ChainProfile profile =
      memento::profile_chain(*setup.chain, setup.batch, setup.loss,
                             memento::ProfilerOptions().warmup_runs(3).timed_runs(15).model("mlp"));
  // 60% of the activation memory above the fixed bytes (parameters and gradients dominate
  // this MLP's total, so 60% of the total would be below any schedule's floor). The two
  // budget-independent schedules run without a limit: recompute-all keeps every stage input,
  // which on this MLP is more than 60% of the activations.
  const int64_t activation_bytes = memento::store_all_peak_bytes(profile) - profile.fixed_bytes;
  const bool budget_independent = planner == "store-all" || planner == "recompute-all";
  const double share = budget_independent ? 10.0 : 0.6;
  const int64_t budget =
      profile.fixed_bytes + static_cast<int64_t>(share * static_cast<double>(activation_bytes));
  const memento::Plan plan = memento::make_planner(planner)->plan(profile, memento::PlannerOptions(budget));
  if (!plan.feasible) {
    state.SkipWithError(("planner " + planner + " is infeasible at 60% of the activation bytes").c_str());
    return;
  }
  memento::Executor executor(setup.chain, setup.loss);
  for (int warmup = 0; warmup < 3; ++warmup) executor.step(plan.schedule, setup.batch);
  std::vector<double> measured_s;
  for (auto _ : state) measured_s.push_back(executor.step(plan.schedule, setup.batch).step_s);
  std::sort(measured_s.begin(), measured_s.end());
  const double median_s = measured_s[measured_s.size() / 2];
  state.counters["measured_ms"] = median_s * 1e3;
  state.counters["predicted_ms"] = plan.predicted_time_s * 1e3;
  state.counters["error"] = median_s / plan.predicted_time_s - 1;
  state.counters["recomputes"] = plan.recompute_count;
}
BENCHMARK_CAPTURE(BM_StepVsPredicted, store_all, std::string("store-all"))
    ->Unit(benchmark::kMillisecond)
    ->Iterations(20);
BENCHMARK_CAPTURE(BM_StepVsPredicted, sqrt_n, std::string("sqrt-n"))
    ->Unit(benchmark::kMillisecond)
    ->Iterations(20);
BENCHMARK_CAPTURE(BM_StepVsPredicted, optimal, std::string("optimal"))
    ->Unit(benchmark::kMillisecond)
    ->Iterations(20);
BENCHMARK_CAPTURE(BM_StepVsPredicted, recompute_all, std::string("recompute-all"))
    ->Unit(benchmark::kMillisecond)
    ->Iterations(20);

}  // namespace

BENCHMARK_MAIN();
