#include "memento/train/benchmark.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <torch/torch.h>
#include <torch/version.h>
#include <nlohmann/json.hpp>

#include "memento/core/budget.h"
#include "memento/core/error.h"
#include "memento/core/planner.h"
#include "memento/models/zoo.h"
#include "memento/torch/executor.h"
#include "memento/torch/memory.h"
#include "memento/torch/plan_runner.h"
#include "memento/torch/profiler.h"
#include "memento/torch/step_state.h"

namespace memento {

namespace {

// The budget text that puts each planner at its own least feasible budget.
constexpr const char* kLeastBudget = "min";

// A row whose measured peak exceeds its budget by more than this share is "over_budget".
constexpr double kBudgetTolerance = 0.05;
// The max-batch search does not profile a batch whose store-all step, extrapolated from a
// smaller batch, would take more than this share of physical memory: profiling runs a
// plain step, and swapping a shared machine to death measures nothing.
constexpr double kProfileMemoryShare = 0.6;

double median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t mid = values.size() / 2;
  return values.size() % 2 == 1 ? values[mid] : 0.5 * (values[mid - 1] + values[mid]);
}

std::string os_name() {
  std::ifstream release("/etc/os-release");
  std::string line;
  while (std::getline(release, line)) {
    if (line.rfind("PRETTY_NAME=", 0) != 0) continue;
    std::string value = line.substr(12);
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"')
      value = value.substr(1, value.size() - 2);
    return value;
  }
  return "unknown OS";
}

std::string machine_description() {
  const unsigned cores = std::thread::hardware_concurrency();
  return std::to_string(cores) + (cores == 1 ? " core, " : " cores, ") + os_name() + ", LibTorch " +
         TORCH_VERSION + (torch::cuda::is_available() ? " CUDA" : " CPU");
}

int64_t physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page_size <= 0) return 0;
  return static_cast<int64_t>(pages) * page_size;
}

// What the observer hook counts during one step: the forwards re-run, weighed with the profile.
struct RecomputeTally {
  const ChainProfile* profile = nullptr;
  double forward_s = 0;
  double flops = 0;
  void reset() { forward_s = flops = 0; }
};

ExecutorHooks tally_hooks(RecomputeTally& tally) {
  ExecutorHooks hooks;
  hooks.after_op = [&tally](Executor&, const OpEvent& event) {
    if (!event.op.is_forward() || !event.recompute || tally.profile == nullptr) return;
    const StageProfile& stage = tally.profile->stages.at(static_cast<size_t>(event.op.stage));
    tally.forward_s += stage.forward_s;
    tally.flops += stage.flops;
  };
  hooks.observe_only = true;
  return hooks;
}

// A built model with its batch, the profile of its step and the state to reset to.
struct Setup {
  Model model;
  Batch batch;
  std::unique_ptr<StepState> state;
  ChainProfile profile;
  int64_t batch_size = 0;
  std::optional<int64_t> seq_len;
};

std::string model_description(const BenchOptions& options, int64_t batch_size,
                              const std::optional<int64_t>& seq_len) {
  std::string text = options.model_name() + " (batch " + std::to_string(batch_size);
  if (seq_len) text += ", seq " + std::to_string(*seq_len);
  if (options.granularity() != "block") text += ", " + options.granularity();
  return text + ")";
}

Setup build_setup(const BenchOptions& options, int64_t batch_size, const ProfilerOptions& profiler_options) {
  ModelOptions model_options;
  model_options.batch_size = batch_size;
  model_options.seq_len = options.seq_len();
  model_options.granularity = options.granularity();
  model_options.seed = options.seed();
  Setup setup{make_model(options.model_name(), model_options), {}, nullptr, {}, 0, std::nullopt};
  setup.batch = setup.model.example_batch(options.seed());
  const torch::Tensor& first_input = setup.batch.inputs.at(0);
  setup.batch_size = first_input.size(0);
  const std::string& family = setup.model.info.family;
  if ((family == "gpt" || family == "bert") && first_input.dim() >= 2) setup.seq_len = first_input.size(1);
  setup.state = std::make_unique<StepState>(*setup.model.chain);
  setup.state->reset(options.seed());  // gradients allocated before profiling, as fixed bytes
  ProfilerOptions with_model = profiler_options;
  with_model.model(model_description(options, setup.batch_size, setup.seq_len))
      .optimizer_bytes(optimizer_state_bytes(options.optimizer(), *setup.model.chain))
      .codecs(options.codecs());
  setup.profile = profile_chain(*setup.model.chain, setup.batch, setup.model.loss, with_model);
  return setup;
}

// One distinct schedule and what its steps measured.
struct Measurement {
  Plan plan;
  std::vector<double> step_s;
  std::vector<double> recompute_s;
  int64_t peak_bytes = 0;
  int recompute_count = 0;
  double recompute_forward_s = 0;
  double recompute_flops = 0;
  GradientComparison gradients;
  bool compared = false;
  std::string error;
  std::vector<Codec> codecs_used;  // of the last step's schedule (a gac policy's changes)
};

// The key under which rows share a measurement: the same ops give the same step.
std::string measurement_key(const Plan& plan) {
  // A run-time policy's schedule is its simulated run, not what executes: its rows share
  // a measurement only with the same policy at the same budget.
  if (plan.runtime_policy.empty()) return to_string(plan.schedule);
  return plan.runtime_policy + "@" + std::to_string(plan.budget_bytes) + " " + codec_list_name(plan.codecs) +
         ": " + to_string(plan.schedule);
}

class Measurer {
 public:
  Measurer(Setup& setup, uint64_t step_seed)
      : setup_(setup), step_seed_(step_seed), executor_(setup.model.chain, setup.model.loss) {
    tally_.profile = &setup_.profile;
    hooks_id_ = executor_.add_hooks(tally_hooks(tally_));
  }
  ~Measurer() { executor_.remove_hooks(hooks_id_); }
  Measurer(const Measurer&) = delete;
  Measurer& operator=(const Measurer&) = delete;

  // Runs one step of `measurement` from the reset state and records it; the first step of
  // the store-all measurement (index 0) keeps its gradients as the reference.
  void step(Measurement& measurement, bool timed, bool is_reference) {
    if (!measurement.error.empty()) return;
    try {
      setup_.state->reset(step_seed_);
      tally_.reset();
      PlanRunner& runner = runner_of(measurement);
      measurement.codecs_used = codecs_used(runner.executed_schedule());
      const StepResult result = runner.step(setup_.batch);
      const int64_t peak_bytes = result.peak_bytes - result.start_bytes + setup_.profile.fixed_bytes;
      measurement.peak_bytes = std::max(measurement.peak_bytes, peak_bytes);
      measurement.recompute_count = result.recompute_count;
      measurement.recompute_forward_s = tally_.forward_s;
      measurement.recompute_flops = tally_.flops;
      if (timed) {
        measurement.step_s.push_back(result.step_s);
        measurement.recompute_s.push_back(result.recompute_s);
      }
      // A policy's schedule may change from step to step: its last step is compared.
      if (!measurement.compared || !measurement.plan.runtime_policy.empty()) {
        std::vector<torch::Tensor> grads = setup_.state->gradients();
        if (is_reference) reference_ = std::move(grads);
        measurement.gradients = compare_gradients(is_reference ? reference_ : grads, reference_);
        measurement.compared = true;
      }
    } catch (const std::exception& e) {
      std::string message = e.what();
      measurement.error = message.substr(0, message.find('\n'));
    }
  }

 private:
  Setup& setup_;
  uint64_t step_seed_;
  Executor executor_;
  RecomputeTally tally_;
  int hooks_id_ = -1;
  std::vector<torch::Tensor> reference_;
  // One runner per measurement for all its steps, so a policy that learns across steps
  // (gac) runs as in training; they go before the executor they run on.
  std::map<const Measurement*, std::unique_ptr<PlanRunner>> runners_;

  PlanRunner& runner_of(const Measurement& measurement) {
    std::unique_ptr<PlanRunner>& runner = runners_[&measurement];
    if (!runner) runner = std::make_unique<PlanRunner>(executor_, measurement.plan, setup_.profile);
    return *runner;
  }
};

void report(const BenchOptions& options, const std::string& line) {
  if (options.progress()) options.progress()(line);
}

std::vector<std::string> planner_list(const BenchOptions& options) {
  return options.planners().empty() ? planner_names() : options.planners();
}

void validate(const BenchOptions& options) {
  if (options.model_name().empty())
    throw InvalidArgument("--model is required (see `memento models` for the names)");
  if (options.steps() < 1)
    throw InvalidArgument("--steps must be at least 1, got " + std::to_string(options.steps()));
  if (options.warmup_steps() < 0) {
    throw InvalidArgument("--warmup must be at least 0, got " + std::to_string(options.warmup_steps()));
  }
  if (options.memory_slots() < 1) {
    throw InvalidArgument("--slots must be at least 1, got " + std::to_string(options.memory_slots()));
  }
  if (options.batch_size() < 0)
    throw InvalidArgument("--batch must be at least 1 (or 0 for the model's default)");
  if (options.seq_len() < 0)
    throw InvalidArgument("--seq-len must be at least 1 (or 0 for the model's default)");
  if (options.granularity() != "block" && options.granularity() != "fine") {
    throw InvalidArgument("--granularity must be block or fine, got \"" + options.granularity() + "\"");
  }
  if (options.memory_cap_bytes() && *options.memory_cap_bytes() <= 0) {
    throw InvalidArgument("--memory-cap must be positive, got " +
                          std::to_string(*options.memory_cap_bytes()) + " bytes");
  }
  if (options.threads() < 0) {
    throw InvalidArgument("--threads must be at least 0, got " + std::to_string(options.threads()));
  }
  if (options.max_batch_limit() < 1) {
    throw InvalidArgument("--max-batch-limit must be at least 1, got " +
                          std::to_string(options.max_batch_limit()));
  }
  // Budget syntax is checked before the (slow) profile exists: a one-stage stand-in
  // profile lets parse_budget judge "40%" and "1.5GiB" alike.
  ChainProfile stand_in;
  stand_in.stages.resize(1);
  stand_in.stages[0].input_bytes = stand_in.stages[0].output_bytes = stand_in.stages[0].saved_bytes = 1;
  for (const std::string& text : options.budgets()) {
    if (text == kLeastBudget) continue;
    try {
      parse_budget(text, stand_in);
    } catch (const InvalidArgument& e) {
      throw InvalidArgument("--budgets item \"" + text + "\": " + e.what());
    }
  }
  for (const std::string& name : options.planners()) {
    const std::vector<std::string> known = planner_names();
    if (std::find(known.begin(), known.end(), name) == known.end())
      make_planner(name);  // throws, listing names
  }
  if (!options.codecs().empty() && codec_planners_among(planner_list(options)).empty()) {
    throw InvalidArgument("--codecs " + codec_list_name(options.codecs()) +
                          ": none of --planners uses codecs; add one of " + codec_planner_names_text() +
                          ", or drop --codecs");
  }
  model_info(options.model_name());  // throws InvalidArgument listing the models
}

// Plans with `name`; a planner whose factory or solver throws a logic_error (a placeholder,
// an internal bug) gives an error string instead of ending the whole benchmark.
std::optional<Plan> try_plan(const std::string& name, const ChainProfile& profile, int64_t budget_bytes,
                             int memory_slots, const std::vector<Codec>& codecs, std::string& error) {
  try {
    return make_planner(name)->plan(profile,
                                    PlannerOptions(budget_bytes).memory_slots(memory_slots).codecs(codecs));
  } catch (const InvalidArgument&) {
    throw;
  } catch (const std::exception& e) {
    error = e.what();
    return std::nullopt;
  }
}

// The least budget `planner` succeeds at with `codecs`; the store-all peak itself when
// planning fails, so that the row then says why. A discretizing planner's minimum is
// rounded to its memory slots, which scale with the budget, so it is asked again at the
// minimum it reported until that no longer shrinks (a few rounds).
int64_t least_budget_bytes(const std::string& planner, const ChainProfile& profile, int memory_slots,
                           const std::vector<Codec>& codecs) {
  std::string error;
  int64_t budget_bytes = store_all_peak_bytes(profile);
  std::optional<Plan> plan = try_plan(planner, profile, budget_bytes, memory_slots, codecs, error);
  for (int round = 0; round < 4 && plan && plan->feasible; ++round) {
    const int64_t least_bytes = plan->min_feasible_budget_bytes;
    if (least_bytes <= 0 || least_bytes >= budget_bytes) break;
    std::optional<Plan> at_least = try_plan(planner, profile, least_bytes, memory_slots, codecs, error);
    if (!at_least || !at_least->feasible) break;  // keep the last budget that planned
    budget_bytes = least_bytes;
    plan = std::move(at_least);
  }
  return budget_bytes;
}

// Plans `row` (planner, budget, codecs) and fills what planning tells; nothing when the
// row cannot run (its status then says why).
std::optional<Plan> plan_row(BenchRow& row, const ChainProfile& profile, int memory_slots) {
  std::string error;
  std::optional<Plan> plan =
      try_plan(row.planner, profile, row.budget_bytes, memory_slots, row.codecs, error);
  if (!plan) {
    row.status = "error";
    row.message = error;
    return std::nullopt;
  }
  if (!plan->feasible) {
    row.status = "infeasible";
    row.min_feasible_budget_bytes = plan->min_feasible_budget_bytes;
    row.message = "needs at least " + format_bytes(plan->min_feasible_budget_bytes) + " (" +
                  std::to_string(plan->min_feasible_budget_bytes) + " B); raise the budget";
    return std::nullopt;
  }
  row.min_feasible_budget_bytes = plan->min_feasible_budget_bytes;
  row.predicted_peak_bytes = plan->predicted_peak_bytes;
  row.predicted_step_s = plan->predicted_time_s;
  row.codecs_used = codecs_used(plan->schedule);
  return plan;
}

// Every batch's profile is measured once and shared by the planners; one model is kept
// built at a time (the one of the batch being measured).
class MaxBatchSearch {
 public:
  explicit MaxBatchSearch(const BenchOptions& options) : options_(options) {}

  MaxBatchResult run(const std::string& planner, const std::vector<Codec>& codecs) {
    MaxBatchResult result;
    result.planner = planner;
    result.codecs = codecs;
    result.memory_cap_bytes = *options_.memory_cap_bytes();
    result.max_batch = search_max_batch(options_.max_batch_limit(), [&](int64_t batch) {
      const MaxBatchPoint point = probe(planner, codecs, batch);
      result.points.push_back(point);
      return point.fits;
    });
    result.reached_limit = result.max_batch == options_.max_batch_limit();
    std::sort(result.points.begin(), result.points.end(),
              [](const MaxBatchPoint& a, const MaxBatchPoint& b) { return a.batch < b.batch; });
    return result;
  }

 private:
  MaxBatchPoint probe(const std::string& planner, const std::vector<Codec>& codecs, int64_t batch) {
    MaxBatchPoint point;
    point.batch = batch;
    const int64_t cap_bytes = *options_.memory_cap_bytes();
    const std::string label = planner + codecs_label(codecs, {}) + " at batch " + std::to_string(batch);
    if (const auto skip = too_large_to_profile(batch)) {
      point.note = *skip;
      report(options_, label + ": skipped, " + *skip);
      return point;
    }
    Setup* setup = nullptr;
    try {
      setup = &setup_for(batch);
    } catch (const InvalidArgument&) {
      throw;
    } catch (const std::exception& e) {
      // Out of memory while profiling a batch counts as "does not fit", with the reason.
      std::string message = e.what();
      point.note = "profiling failed: " + message.substr(0, message.find('\n'));
      current_.reset();
      return point;
    }
    std::string error;
    const std::optional<Plan> plan =
        try_plan(planner, setup->profile, cap_bytes, options_.memory_slots(), codecs, error);
    if (!plan) {
      point.note = "planner error: " + error;
      return point;
    }
    if (!plan->feasible) {
      point.note = "infeasible: needs at least " + format_bytes(plan->min_feasible_budget_bytes);
      report(options_, label + ": " + point.note);
      return point;
    }
    point.feasible = true;
    point.predicted_peak_bytes = plan->predicted_peak_bytes;
    report(options_, label + ": measuring");
    Measurement measurement;
    measurement.plan = *plan;
    {
      Measurer measurer(*setup, options_.seed() + 1);
      measurer.step(measurement, /*timed=*/true, /*is_reference=*/true);
    }
    if (!measurement.error.empty()) {
      point.note = "step failed: " + measurement.error;
      return point;
    }
    point.measured_peak_bytes = measurement.peak_bytes;
    point.fits = measurement.peak_bytes <= cap_bytes;
    return point;
  }

  // The store-all peak at `batch`, extrapolated linearly from the largest profiled batch
  // below it, when that exceeds the share of physical memory profiling may take.
  std::optional<std::string> too_large_to_profile(int64_t batch) const {
    const int64_t physical_bytes = physical_memory_bytes();
    if (physical_bytes <= 0) return std::nullopt;
    auto below = profiles_.lower_bound(batch);
    if (below == profiles_.begin()) return std::nullopt;
    --below;
    const ChainProfile& profile = below->second;
    const int64_t peak_bytes = store_all_peak_bytes(profile);
    const int64_t parameter_bytes = profile.fixed_breakdown.parameters_bytes +
                                    profile.fixed_breakdown.gradients_bytes +
                                    profile.fixed_breakdown.optimizer_bytes;
    const double scale = static_cast<double>(batch) / static_cast<double>(below->first);
    const double estimate_bytes =
        static_cast<double>(parameter_bytes) + scale * static_cast<double>(peak_bytes - parameter_bytes);
    if (estimate_bytes <= kProfileMemoryShare * static_cast<double>(physical_bytes)) return std::nullopt;
    return "profiling would need about " + format_bytes(static_cast<int64_t>(estimate_bytes)) +
           " (store-all step), over " + std::to_string(static_cast<int>(kProfileMemoryShare * 100)) +
           "% of this machine's " + format_bytes(physical_bytes);
  }

  Setup& setup_for(int64_t batch) {
    if (current_ && current_->batch_size == batch) return *current_;
    current_.reset();  // free the previous model before building the next
    report(options_, "profiling batch " + std::to_string(batch));
    current_ =
        std::make_unique<Setup>(build_setup(options_, batch, ProfilerOptions().warmup_runs(1).timed_runs(1)));
    profiles_[batch] = current_->profile;
    return *current_;
  }

  const BenchOptions& options_;
  std::unique_ptr<Setup> current_;
  std::map<int64_t, ChainProfile> profiles_;
};

}  // namespace

int64_t search_max_batch(int64_t limit, const std::function<bool(int64_t)>& fits) {
  if (limit < 1)
    throw InvalidArgument("the max-batch limit must be at least 1, got " + std::to_string(limit));
  if (!fits(1)) return 0;
  int64_t good = 1;
  int64_t bad = limit + 1;  // the first batch known not to fit (limit + 1: none known)
  while (good < limit) {
    const int64_t next = std::min(limit, good * 2);
    if (fits(next)) {
      good = next;
    } else {
      bad = next;
      break;
    }
  }
  while (bad - good > 1) {
    const int64_t mid = good + (bad - good) / 2;
    if (fits(mid)) {
      good = mid;
    } else {
      bad = mid;
    }
  }
  return good;
}

BenchResult run_bench(const BenchOptions& options) {
  validate(options);
  const std::vector<std::string> planners = planner_list(options);
  MemoryTracker::instance();  // before the model: its tensors are counted
  if (options.threads() > 0) torch::set_num_threads(options.threads());

  BenchResult result;
  result.model = options.model_name();
  result.steps = options.steps();
  result.warmup_steps = options.warmup_steps();
  result.threads = torch::get_num_threads();
  result.machine = machine_description();

  {
    report(options, "profiling " + options.model_name());
    Setup setup = build_setup(options, options.batch_size(), ProfilerOptions());
    result.batch = setup.batch_size;
    result.seq_len = setup.seq_len;
    result.profile = setup.profile;
    const ChainProfile& profile = setup.profile;

    std::vector<std::pair<std::string, int64_t>> budgets;
    for (const std::string& text : options.budgets()) {
      if (text == kLeastBudget) {
        budgets.emplace_back(text, 0);  // resolved per planner and codec variant
        continue;
      }
      try {
        budgets.emplace_back(text, parse_budget(text, profile));
      } catch (const InvalidArgument& e) {
        throw InvalidArgument("--budgets item \"" + text + "\": " + e.what());
      }
      if (budgets.back().second <= 0)
        throw InvalidArgument("--budgets item \"" + text + "\" must be positive");
    }

    // Distinct schedules to measure, store-all first; rows point at them.
    std::vector<Measurement> measurements;
    std::map<std::string, size_t> by_key;
    auto add_measurement = [&](const Plan& plan) {
      const std::string key = measurement_key(plan);
      auto found = by_key.find(key);
      if (found != by_key.end()) return found->second;
      Measurement measurement;
      measurement.plan = plan;
      measurements.push_back(std::move(measurement));
      by_key.emplace(key, measurements.size() - 1);
      return measurements.size() - 1;
    };
    const int64_t store_all_budget_bytes = store_all_peak_bytes(profile);
    std::string error;
    const std::optional<Plan> store_all =
        try_plan("store-all", profile, store_all_budget_bytes, options.memory_slots(), {}, error);
    if (!store_all || !store_all->feasible) {
      throw RuntimeError("the store-all baseline of " + options.model_name() +
                         " could not be planned: " + error);
    }
    add_measurement(*store_all);

    std::vector<std::optional<size_t>> row_measurement;
    for (const std::string& planner : planners) {
      const std::vector<std::vector<Codec>> variants = codec_variants(options.codecs(), planner);
      for (const auto& [text, budget_bytes] : budgets) {
        for (const std::vector<Codec>& codecs : variants) {
          BenchRow row;
          row.planner = planner;
          row.budget = text;
          row.budget_bytes = text == kLeastBudget
                                 ? least_budget_bytes(planner, profile, options.memory_slots(), codecs)
                                 : budget_bytes;
          row.codecs = codecs;
          const std::optional<Plan> plan = plan_row(row, profile, options.memory_slots());
          row_measurement.push_back(plan ? std::optional<size_t>(add_measurement(*plan)) : std::nullopt);
          result.rows.push_back(row);
        }
      }
    }

    // Schedules take turns step by step: a busy moment of the machine slows all alike.
    {
      Measurer measurer(setup, options.seed() + 1);
      const int rounds = options.warmup_steps() + options.steps();
      for (int round = 0; round < rounds; ++round) {
        const bool timed = round >= options.warmup_steps();
        report(options, "step " + std::to_string(round + 1) + "/" + std::to_string(rounds) +
                            (timed ? "" : " (warm-up)") + ": " + std::to_string(measurements.size()) +
                            " schedules");
        for (size_t k = 0; k < measurements.size(); ++k) measurer.step(measurements[k], timed, k == 0);
      }
    }
    const Measurement& baseline = measurements.front();
    if (!baseline.error.empty()) {
      throw RuntimeError("the store-all step of " + options.model_name() + " failed: " + baseline.error);
    }
    result.store_all.measured_peak_bytes = baseline.peak_bytes;
    result.store_all.predicted_peak_bytes = baseline.plan.predicted_peak_bytes;
    result.store_all.step_s = median(baseline.step_s);
    result.store_all.predicted_step_s = baseline.plan.predicted_time_s;

    const double total_forward_s = profile.total_forward_s();
    for (size_t r = 0; r < result.rows.size(); ++r) {
      if (!row_measurement[r]) continue;
      BenchRow& row = result.rows[r];
      const Measurement& measured = measurements[*row_measurement[r]];
      if (!measured.error.empty()) {
        row.status = "error";
        row.message = measured.error;
        continue;
      }
      row.ran = true;
      row.measured_peak_bytes = measured.peak_bytes;
      row.step_s = median(measured.step_s);
      row.overhead = result.store_all.step_s > 0 ? row.step_s / result.store_all.step_s - 1 : 0;
      row.recompute_s = median(measured.recompute_s);
      row.recompute_count = measured.recompute_count;
      row.recompute_ratio = total_forward_s > 0 ? measured.recompute_forward_s / total_forward_s : 0;
      row.recompute_flops = measured.recompute_flops;
      row.grad_cosine = measured.gradients.cosine;
      row.codecs_used = measured.codecs_used;
      row.grad_rel_l2 = measured.gradients.rel_l2;
      const double limit_bytes = static_cast<double>(row.budget_bytes) * (1 + kBudgetTolerance);
      if (static_cast<double>(row.measured_peak_bytes) > limit_bytes) {
        row.status = "over_budget";
        row.message = "measured peak " + format_bytes(row.measured_peak_bytes) + " exceeds the budget " +
                      format_bytes(row.budget_bytes) + " by more than 5%";
      } else {
        row.status = "ok";
      }
    }
  }  // the benchmark's model is freed before the max-batch search builds its own

  if (options.memory_cap_bytes()) {
    MaxBatchSearch search(options);
    std::vector<std::string> searched = {"store-all"};
    for (const std::string& planner : planners) {
      if (planner != "store-all") searched.push_back(planner);
    }
    for (const std::string& planner : searched) {
      for (const std::vector<Codec>& codecs : codec_variants(options.codecs(), planner))
        result.max_batch.push_back(search.run(planner, codecs));
    }
  }
  return result;
}

nlohmann::json bench_to_json(const BenchResult& result) {
  nlohmann::json document = {{"format", "memento.bench/1"},
                             {"model", result.model},
                             {"batch", result.batch},
                             {"seq_len", result.seq_len ? nlohmann::json(*result.seq_len) : nlohmann::json()},
                             {"steps", result.steps},
                             {"warmup_steps", result.warmup_steps},
                             {"threads", result.threads},
                             {"machine", result.machine},
                             {"profile", profile_to_json(result.profile)},
                             {"store_all",
                              {{"measured_peak_bytes", result.store_all.measured_peak_bytes},
                               {"predicted_peak_bytes", result.store_all.predicted_peak_bytes},
                               {"step_s", result.store_all.step_s},
                               {"predicted_step_s", result.store_all.predicted_step_s}}},
                             {"rows", nlohmann::json::array()}};
  for (const BenchRow& row : result.rows) {
    document["rows"].push_back({{"planner", row.planner},
                                {"budget", row.budget},
                                {"budget_bytes", row.budget_bytes},
                                {"codecs", codec_list_name(row.codecs)},
                                {"codecs_used", codec_list_name(row.codecs_used)},
                                {"lossy", !row.codecs_used.empty()},
                                {"status", row.status},
                                {"message", row.message},
                                {"min_feasible_budget_bytes", row.min_feasible_budget_bytes},
                                {"predicted_peak_bytes", row.predicted_peak_bytes},
                                {"measured_peak_bytes", row.measured_peak_bytes},
                                {"predicted_step_s", row.predicted_step_s},
                                {"step_s", row.step_s},
                                {"overhead", row.overhead},
                                {"recompute_s", row.recompute_s},
                                {"recompute_count", row.recompute_count},
                                {"recompute_ratio", row.recompute_ratio},
                                {"recompute_flops", row.recompute_flops},
                                {"grad_cosine", row.grad_cosine},
                                {"grad_rel_l2", row.grad_rel_l2}});
  }
  if (!result.max_batch.empty()) {
    document["max_batch"] = nlohmann::json::array();
    for (const MaxBatchResult& search : result.max_batch) {
      nlohmann::json points = nlohmann::json::array();
      for (const MaxBatchPoint& point : search.points) {
        nlohmann::json entry = {{"batch", point.batch},
                                {"measured_peak_bytes", point.measured_peak_bytes},
                                {"predicted_peak_bytes", point.predicted_peak_bytes},
                                {"feasible", point.feasible},
                                {"fits", point.fits}};
        if (!point.note.empty()) entry["note"] = point.note;
        points.push_back(entry);
      }
      document["max_batch"].push_back({{"planner", search.planner},
                                       {"codecs", codec_list_name(search.codecs)},
                                       {"memory_cap_bytes", search.memory_cap_bytes},
                                       {"max_batch", search.max_batch},
                                       {"reached_limit", search.reached_limit},
                                       {"points", points}});
    }
  }
  return document;
}

}  // namespace memento
