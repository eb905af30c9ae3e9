// Solve time of the optimal planner's dynamic programs: the plain reference DP against
// the fast solver on the same seeded heterogeneous chains, and the whole planner at
// 1000 stages. Run: build/bin/bench_optimal (method in docs/planners-optimal.md).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "core/optimal_dp.h"
#include "memento/core/planner.h"
#include "memento/core/simulate.h"

namespace {

using memento::ChainProfile;
using memento::StageProfile;

// A transformer-like chain at block/sub-block granularity: attention and MLP stages of a
// hidden-size activation with log-normal jitter, heavier saved tensors for attention,
// an embedding in front and a head with a large output at the end.
ChainProfile realistic_chain(int length, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::lognormal_distribution<double> jitter(0.0, 0.25);
  std::uniform_real_distribution<double> backward_factor(1.6, 2.4);
  const double hidden_bytes = 8.0 * 1024 * 1024;
  ChainProfile profile;
  profile.model = "bench-transformer-" + std::to_string(length);
  profile.fixed_bytes = int64_t{2} << 30;
  int64_t input_bytes = static_cast<int64_t>(hidden_bytes / 4);
  for (int i = 0; i < length; ++i) {
    StageProfile stage;
    const bool head = i == length - 1;
    const bool attention = i % 2 == 0;
    stage.name = "stage" + std::to_string(i);
    stage.kind = head ? "head" : (attention ? "attention" : "mlp");
    stage.input_bytes = input_bytes;
    stage.output_bytes = static_cast<int64_t>(hidden_bytes * (head ? 4.0 : jitter(rng)));
    const double saved_factor = head ? 1.5 : (attention ? 6.0 : 4.0) * jitter(rng);
    stage.saved_bytes = stage.output_bytes + static_cast<int64_t>(hidden_bytes * saved_factor);
    stage.forward_temp_bytes = static_cast<int64_t>(hidden_bytes * (attention ? 2.0 : 1.0) * jitter(rng));
    stage.backward_temp_bytes = static_cast<int64_t>(hidden_bytes * (attention ? 3.0 : 1.5) * jitter(rng));
    stage.forward_s = (attention ? 2.0e-3 : 1.5e-3) * jitter(rng);
    stage.backward_s = stage.forward_s * backward_factor(rng);
    stage.flops = stage.forward_s * 1e13;
    profile.stages.push_back(stage);
    input_bytes = stage.output_bytes;
  }
  return profile;
}

// A budget at `fraction` of the way from the fixed bytes to the store-all peak.
int64_t budget_at(const ChainProfile& profile, double fraction) {
  const int64_t store_all =
      memento::simulate(profile, memento::store_all_schedule(profile.length())).peak_bytes;
  return profile.fixed_bytes +
         static_cast<int64_t>(fraction * static_cast<double>(store_all - profile.fixed_bytes));
}

memento::optimal_dp::DiscreteChain bench_chain(int length, int slots) {
  const ChainProfile profile = realistic_chain(length, 20240 + length);
  const int64_t budget = budget_at(profile, 0.25);
  return memento::optimal_dp::discretize(profile, budget - profile.fixed_bytes, slots);
}

void report(benchmark::State& state, const memento::optimal_dp::Solution& solution) {
  state.counters["feasible"] = solution.feasible ? 1 : 0;
  state.counters["optimum_s"] = solution.time_s;
  state.counters["ops"] = static_cast<double>(solution.schedule.size());
}

void BM_OptimalReference(benchmark::State& state) {
  const auto chain = bench_chain(static_cast<int>(state.range(0)), static_cast<int>(state.range(1)));
  memento::optimal_dp::Solution solution;
  for (auto _ : state) {
    solution = memento::optimal_dp::solve_reference(chain);
    benchmark::DoNotOptimize(solution);
  }
  report(state, solution);
}

void BM_OptimalFast(benchmark::State& state) {
  const auto chain = bench_chain(static_cast<int>(state.range(0)), static_cast<int>(state.range(1)));
  memento::optimal_dp::Solution solution;
  for (auto _ : state) {
    solution = memento::optimal_dp::solve_fast(chain, static_cast<int>(state.range(2)));
    benchmark::DoNotOptimize(solution);
  }
  report(state, solution);
}

// The whole planner: exact min-peak DP, discretization, fast DP, replay by simulate().
void BM_OptimalPlanner(benchmark::State& state) {
  const ChainProfile profile = realistic_chain(static_cast<int>(state.range(0)), 20240 + state.range(0));
  const memento::PlannerOptions options =
      memento::PlannerOptions(budget_at(profile, 0.25)).memory_slots(static_cast<int>(state.range(1)));
  const auto planner = memento::make_planner("optimal");
  memento::Plan plan;
  for (auto _ : state) {
    plan = planner->plan(profile, options);
    // The whole object, not a double field: GCC 12 with Debian's benchmark 1.7 may take the
    // "+m,r" register alternative for a lone double and leave garbage in the field (the
    // planner's predicted_s counter read 5e-324 while simulate() gave 6.79 s).
    benchmark::DoNotOptimize(plan);
  }
  state.counters["feasible"] = plan.feasible ? 1 : 0;
  state.counters["predicted_s"] = plan.predicted_time_s;
  state.counters["recompute_count"] = plan.recompute_count;
}

// Arguments: stages, slots[, threads]. The reference needs seconds at 200 stages: one
// iteration; real time because the fast solver may use threads, and the CPU column
// counts every thread of the process (MeasureProcessCPUTime) so that it compares with a
// one-thread run on a loaded machine.
BENCHMARK(BM_OptimalReference)
    ->Args({50, 500})
    ->Args({200, 500})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_OptimalFast)
    ->Args({50, 500, 1})
    ->Args({200, 500, 1})
    ->Args({200, 500, 2})
    ->Unit(benchmark::kMillisecond)
    ->MeasureProcessCPUTime()
    ->UseRealTime();
BENCHMARK(BM_OptimalFast)
    ->Args({1000, 500, 1})
    ->Args({1000, 500, 2})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond)
    ->MeasureProcessCPUTime()
    ->UseRealTime();
BENCHMARK(BM_OptimalPlanner)
    ->Args({1000, 500})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond)
    ->MeasureProcessCPUTime()
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
