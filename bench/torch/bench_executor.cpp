// Executor overhead and time model, measured side by side in one run.
//
// BM_StoreAllOverhead: each iteration runs one plain step (chain->forward, loss,
//   backward) and one Executor step of the store-all schedule on the same MLP chain and
//   batch, interleaved so that drift hits both; counters: plain_ms, executor_ms and
//   overhead (executor / plain - 1). Target: at most 3%.
// BM_StepVsPredicted/<planner>: one study shared by the four rows. The chain is profiled,
//   each planner plans at 60% of the store-all activation bytes above the fixed bytes
//   (store-all and recompute-all without a limit), and then kRounds rounds each re-profile
//   the chain and run every schedule kStepsPerRound times, the schedules interleaved in a
//   rotating order so that load from other processes hits all of them alike. Per round:
//   error = (median step) / (simulate's time from that round's profile) - 1. Counters:
//   measured_ms and predicted_ms (medians over the rounds), error (median of the round
//   errors), err_lo / err_hi (smallest and largest round error), rel_error (the same with
//   both sides divided by store-all's measured and predicted time of the round: the error
//   in the schedule's cost relative to store-all, which machine-speed drift cancels from),
//   cpu_ms (median CPU time of the stepping thread) and rel_cpu_err (rel_error with CPU
//   times measured: the error of the profile's proportions with other processes' load
//   taken out), and per op class measured / predicted time, summed over a step from Executor hooks:
//   fwd (first forward of each stage), re_ng (recomputing forwards without grad: Fn, Fc),
//   re_g (recomputing forwards with grad), bwd (backwards and the loss, which the profile
//   charges to the last backward). Target: error within 15%.
// BM_ForwardNoGradVsWithGrad: every stage's forward with and without grad, alternated, in
//   CPU time; counter no_grad_ratio (no-grad / with-grad).
// Run with OMP_NUM_THREADS set to the core count you want measured.
#include <algorithm>
#include <array>
#include <chrono>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include "memento/core/budget.h"
#include "memento/core/planner.h"
#include "memento/core/simulate.h"
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

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t middle = values.size() / 2;
  return values.size() % 2 == 1 ? values[middle] : 0.5 * (values[middle - 1] + values[middle]);
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
  const double plain_median_s = median(plain_s);
  const double executor_median_s = median(executor_s);
  state.counters["plain_ms"] = plain_median_s * 1e3;
  state.counters["executor_ms"] = executor_median_s * 1e3;
  state.counters["overhead"] = executor_median_s / plain_median_s - 1;
}
BENCHMARK(BM_StoreAllOverhead)->Unit(benchmark::kMillisecond)->Iterations(30);

// Op classes whose measured time is compared with the profile's.
enum OpClass { kFirstForward, kRecomputeNoGrad, kRecomputeWithGraph, kBackward, kOpClasses };
using ClassTimes = std::array<double, kOpClasses>;

OpClass classify(const memento::Op& op, bool recompute) {
  if (!op.is_forward()) return kBackward;
  if (!recompute) return kFirstForward;
  return op.kind == memento::OpKind::ForwardWithGraph ? kRecomputeWithGraph : kRecomputeNoGrad;
}

// What simulate charges each op class for one step of `schedule`.
ClassTimes predicted_class_times(const memento::ChainProfile& profile, const memento::Schedule& schedule) {
  ClassTimes times{};
  std::vector<int> forwards(profile.length(), 0);
  for (const memento::Op& op : schedule) {
    if (op.is_forward()) {
      times[classify(op, forwards[op.stage]++ > 0)] += profile.stages[op.stage].forward_s;
    } else if (op.kind == memento::OpKind::Backward) {
      times[kBackward] += profile.stages[op.stage].backward_s;
    }
  }
  return times;
}

constexpr int kRounds = 7;
constexpr int kStepsPerRound = 5;
const std::vector<std::string> kPlanners = {"store-all", "sqrt-n", "optimal", "recompute-all"};

struct Candidate {
  memento::Plan plan;
  std::vector<double> measured_s;   // per round: median step time
  std::vector<double> predicted_s;  // per round: simulate's time from the round's profile
  std::vector<double> cpu_s;        // per round: median CPU time of the calling thread per step
  std::vector<ClassTimes> measured_classes;
  std::vector<ClassTimes> predicted_classes;
  std::string error;  // why the planner has no row
};

struct Study {
  std::vector<Candidate> candidates;  // in kPlanners order
};

// With one intra-op thread a CPU step (forward, and the autograd engine's backward) runs
// on the calling thread, so its CPU time is the step's work without the time other
// processes took the core away: the yardstick that survives a loaded machine.
double thread_cpu_s() {
  timespec now{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + 1e-9 * static_cast<double>(now.tv_nsec);
}

memento::ChainProfile profile_of(Setup& setup) {
  return memento::profile_chain(*setup.chain, setup.batch, setup.loss,
                                memento::ProfilerOptions().warmup_runs(3).timed_runs(15).model("mlp"));
}

Study run_study() {
  Setup setup = make_setup();
  Study study;
  const memento::ChainProfile first_profile = profile_of(setup);
  // 60% of the activation memory above the fixed bytes (parameters and gradients dominate
  // this MLP's total, so 60% of the total would be below any schedule's floor). The two
  // budget-independent schedules run without a limit: recompute-all keeps every stage input,
  // which on this MLP is more than 60% of the activations.
  const int64_t activation_bytes = memento::store_all_peak_bytes(first_profile) - first_profile.fixed_bytes;
  for (const std::string& planner : kPlanners) {
    const bool budget_independent = planner == "store-all" || planner == "recompute-all";
    const double share = budget_independent ? 10.0 : 0.6;
    const int64_t budget =
        first_profile.fixed_bytes + static_cast<int64_t>(share * static_cast<double>(activation_bytes));
    Candidate candidate;
    candidate.plan = memento::make_planner(planner)->plan(first_profile, memento::PlannerOptions(budget));
    if (!candidate.plan.feasible)
      candidate.error = "planner " + planner + " is infeasible at 60% of the activation bytes";
    study.candidates.push_back(std::move(candidate));
  }

  memento::Executor executor(setup.chain, setup.loss);
  // Per-op wall time from the hooks: before_op stamps, after_op charges the op's class.
  ClassTimes step_classes{};
  double op_start_s = 0;
  memento::ExecutorHooks hooks;
  hooks.before_op = [&op_start_s](memento::Executor&, const memento::OpEvent& event) {
    op_start_s = event.elapsed_s;
  };
  hooks.after_op = [&op_start_s, &step_classes](memento::Executor&, const memento::OpEvent& event) {
    if (event.op.kind == memento::OpKind::Free) return;
    step_classes[classify(event.op, event.recompute)] += event.elapsed_s - op_start_s;
  };
  executor.add_hooks(hooks);

  for (Candidate& candidate : study.candidates) {
    if (!candidate.error.empty()) continue;
    for (int warmup = 0; warmup < 3; ++warmup) executor.step(candidate.plan.schedule, setup.batch);
  }
  const int count = static_cast<int>(study.candidates.size());
  for (int round = 0; round < kRounds; ++round) {
    // A fresh profile each round: the prediction carries the profile's own noise, as it
    // does for a user who profiles once and then trains.
    const memento::ChainProfile profile = round == 0 ? first_profile : profile_of(setup);
    for (int k = 0; k < count; ++k) {
      Candidate& candidate = study.candidates[(round + k) % count];
      if (!candidate.error.empty()) continue;
      std::vector<double> steps_s, steps_cpu_s;
      std::vector<ClassTimes> classes;
      for (int step = 0; step < kStepsPerRound; ++step) {
        step_classes = ClassTimes{};
        const double cpu_start_s = thread_cpu_s();
        steps_s.push_back(executor.step(candidate.plan.schedule, setup.batch).step_s);
        steps_cpu_s.push_back(thread_cpu_s() - cpu_start_s);
        classes.push_back(step_classes);
      }
      candidate.cpu_s.push_back(median(steps_cpu_s));
      ClassTimes class_medians{};
      for (int c = 0; c < kOpClasses; ++c) {
        std::vector<double> values;
        for (const ClassTimes& times : classes) values.push_back(times[c]);
        class_medians[c] = median(values);
      }
      candidate.measured_s.push_back(median(steps_s));
      candidate.predicted_s.push_back(memento::simulate(profile, candidate.plan.schedule).time_s);
      candidate.measured_classes.push_back(class_medians);
      candidate.predicted_classes.push_back(predicted_class_times(profile, candidate.plan.schedule));
    }
  }
  return study;
}

const Study& study() {
  static const Study result = run_study();
  return result;
}

void BM_StepVsPredicted(benchmark::State& state, size_t index) {
  const Study& shared = study();
  const Candidate& candidate = shared.candidates.at(index);
  const Candidate& store_all = shared.candidates.at(0);
  if (!candidate.error.empty()) {
    state.SkipWithError(candidate.error.c_str());
    return;
  }
  for (auto _ : state) benchmark::DoNotOptimize(candidate.measured_s.data());
  std::vector<double> errors, relative_errors, cpu_relative_errors;
  for (size_t round = 0; round < candidate.measured_s.size(); ++round) {
    const double predicted_ratio = candidate.predicted_s[round] / store_all.predicted_s[round];
    errors.push_back(candidate.measured_s[round] / candidate.predicted_s[round] - 1);
    relative_errors.push_back((candidate.measured_s[round] / store_all.measured_s[round]) / predicted_ratio -
                              1);
    cpu_relative_errors.push_back((candidate.cpu_s[round] / store_all.cpu_s[round]) / predicted_ratio - 1);
  }
  state.counters["measured_ms"] = median(candidate.measured_s) * 1e3;
  state.counters["predicted_ms"] = median(candidate.predicted_s) * 1e3;
  state.counters["error"] = median(errors);
  state.counters["err_lo"] = *std::min_element(errors.begin(), errors.end());
  state.counters["err_hi"] = *std::max_element(errors.begin(), errors.end());
  state.counters["rel_error"] = median(relative_errors);
  state.counters["cpu_ms"] = median(candidate.cpu_s) * 1e3;
  state.counters["rel_cpu_err"] = median(cpu_relative_errors);
  state.counters["recomputes"] = candidate.plan.recompute_count;
  const char* const names[kOpClasses] = {"fwd", "re_ng", "re_g", "bwd"};
  for (int c = 0; c < kOpClasses; ++c) {
    std::vector<double> ratios;
    for (size_t round = 0; round < candidate.measured_classes.size(); ++round) {
      if (candidate.predicted_classes[round][c] > 0)
        ratios.push_back(candidate.measured_classes[round][c] / candidate.predicted_classes[round][c]);
    }
    // 0 where the schedule has no op of the class.
    state.counters[names[c]] = ratios.empty() ? 0.0 : median(ratios);
  }
}
BENCHMARK_CAPTURE(BM_StepVsPredicted, store_all, size_t{0})->Unit(benchmark::kMillisecond)->Iterations(1);
BENCHMARK_CAPTURE(BM_StepVsPredicted, sqrt_n, size_t{1})->Unit(benchmark::kMillisecond)->Iterations(1);
BENCHMARK_CAPTURE(BM_StepVsPredicted, optimal, size_t{2})->Unit(benchmark::kMillisecond)->Iterations(1);
BENCHMARK_CAPTURE(BM_StepVsPredicted, recompute_all, size_t{3})->Unit(benchmark::kMillisecond)->Iterations(1);

// A forward without grad against the same forward with grad, stage by stage, alternated,
// in CPU time of the calling thread (median over the iterations of each side's sum over
// the stages): the profile's forward_s is the with-grad one, and ForwardNoGrad /
// ForwardCheckpoint run the other.
void BM_ForwardNoGradVsWithGrad(benchmark::State& state) {
  Setup setup = make_setup();
  memento::Chain& chain = *setup.chain;
  std::vector<memento::TensorList> inputs{setup.batch.inputs};
  {
    torch::NoGradGuard no_grad;
    for (int i = 0; i < chain.length(); ++i) inputs.push_back(chain.forward_stage(i, inputs.back()));
  }
  std::vector<double> with_grad_s, no_grad_s;
  for (auto _ : state) {
    double with_grad_sum_s = 0, no_grad_sum_s = 0;
    for (int i = 0; i < chain.length(); ++i) {
      double start_s = thread_cpu_s();
      {
        torch::AutoGradMode enable_grad(true);
        memento::TensorList local;
        for (const torch::Tensor& input : inputs[i]) local.push_back(input.detach().requires_grad_(i > 0));
        benchmark::DoNotOptimize(chain.forward_stage(i, local));
      }
      with_grad_sum_s += thread_cpu_s() - start_s;
      start_s = thread_cpu_s();
      {
        torch::NoGradGuard no_grad;
        benchmark::DoNotOptimize(chain.forward_stage(i, inputs[i]));
      }
      no_grad_sum_s += thread_cpu_s() - start_s;
    }
    with_grad_s.push_back(with_grad_sum_s);
    no_grad_s.push_back(no_grad_sum_s);
  }
  state.counters["with_grad_ms"] = median(with_grad_s) * 1e3;
  state.counters["no_grad_ms"] = median(no_grad_s) * 1e3;
  state.counters["no_grad_ratio"] = median(no_grad_s) / median(with_grad_s);
}
BENCHMARK(BM_ForwardNoGradVsWithGrad)->Unit(benchmark::kMillisecond)->Iterations(30);

}  // namespace

BENCHMARK_MAIN();
