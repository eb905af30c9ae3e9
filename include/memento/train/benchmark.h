#pragma once
/// \file
/// `run_bench()`: the measured comparison of planners behind `memento bench`. For one zoo
/// model it profiles a training step, plans it with every requested planner under every
/// requested budget, runs each plan through `PlanRunner` from identical model state (same
/// parameters, zeroed gradients, same batch, same RNG seed) and reports per planner and
/// budget the measured peak bytes, the median step time, the overhead against store-all,
/// the recomputation done and how far the gradients are from store-all's. With a memory
/// cap it also finds, per planner, the largest batch whose measured step fits the cap.
///
/// Method (docs/measurement.md, docs/results.md):
/// - Peaks are whole-step bytes, comparable to budgets: the tracker's peak during the step
///   minus the live bytes at its start, plus the profile's `fixed_bytes` (parameters,
///   gradients, optimizer state of `BenchOptions::optimizer`, batch).
/// - Times: every distinct schedule (store-all first) runs `warmup_steps` untimed steps,
///   then `steps` timed steps; the schedules take turns step by step, so a slow moment of
///   a shared machine falls on all of them alike. `step_s` is the median; rows with the
///   same schedule share one measurement, so store-all's own row has overhead 0.
/// - Recomputation: `recompute_s` and `recompute_count` are measured (medians of the
///   timed steps); `recompute_ratio` and `recompute_flops` count the forwards the step
///   actually re-ran (seen through executor hooks, so run-time policies count too) and
///   weigh them with the profile: ratio = sum of their `forward_s` / total `forward_s`,
///   flops = sum of their `flops` (0 while the profile has no flops).
/// - Gradients: all parameter gradients of the row's first step, flattened, against
///   those of store-all's first step: cosine similarity and ||g - g_ref|| / ||g_ref||.
///   Exact rows give 1 and 0; lossy rows (BenchOptions::codecs) show their error there.
///
/// Example:
/// \code
///   memento::BenchOptions options("gpt-nano");
///   options.budgets({"30%", "50%", "70%"}).planners({"store-all", "optimal", "sqrt-n"}).steps(5);
///   options.codecs({memento::Codec::BF16});  // optimal and store-all also get lossy rows
///   options.progress([](const std::string& line) { std::cerr << line << "\n"; });
///   memento::BenchResult result = memento::run_bench(options);
///   for (const memento::BenchRow& row : result.rows) { /* row.status, row.measured_peak_bytes */ }
///   nlohmann::json document = memento::bench_to_json(result);  // "memento.bench/1"
/// \endcode

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "memento/core/codec.h"
#include "memento/core/profile.h"

namespace memento {

/// What `run_bench` measures and how. Required: the model name; the rest have defaults.
class BenchOptions {
 public:
  explicit BenchOptions(std::string model_name) : model_name_(std::move(model_name)) {}

  /// Budgets of the rows, as users write them ("30%", "1.5GiB"), or "min": each planner
  /// (and codec variant) at its own least feasible budget, the least memory it can train
  /// in. Empty: no rows (only the store-all baseline and, when set, the max-batch search).
  /// Default 30%, 50%, 70%.
  BenchOptions& budgets(std::vector<std::string> texts) {
    budgets_ = std::move(texts);
    return *this;
  }
  /// Planner names (see planner_names()); default: every registered planner.
  BenchOptions& planners(std::vector<std::string> names) {
    planners_ = std::move(names);
    return *this;
  }
  /// Codecs for lossy storage (docs/lossy.md); default none: every row exact. With codecs,
  /// the profile measures their costs, and every planner whose supports_codecs() is true
  /// gets, beside each exact row, a row planned with these codecs, measured in the same
  /// run; its gradients are compared with store-all's exact ones.
  BenchOptions& codecs(std::vector<Codec> allowed) {
    codecs_ = std::move(allowed);
    return *this;
  }
  /// Batch size; 0 (default) is the model's default.
  BenchOptions& batch_size(int64_t size) {
    batch_size_ = size;
    return *this;
  }
  /// Tokens per sequence for language models; 0 (default) is the model's default.
  BenchOptions& seq_len(int64_t tokens) {
    seq_len_ = tokens;
    return *this;
  }
  /// "block" (default) or "fine".
  BenchOptions& granularity(std::string name) {
    granularity_ = std::move(name);
    return *this;
  }
  /// Timed steps per schedule whose median is reported (default 5, at least 1).
  BenchOptions& steps(int count) {
    steps_ = count;
    return *this;
  }
  /// Untimed steps per schedule before timing (default 1, at least 0).
  BenchOptions& warmup_steps(int count) {
    warmup_steps_ = count;
    return *this;
  }
  /// Seed of the parameters, the batch and the step's random numbers (default 0).
  BenchOptions& seed(uint64_t value) {
    seed_ = value;
    return *this;
  }
  /// Memory discretization of the dynamic-programming planners (default 500).
  BenchOptions& memory_slots(int slots) {
    memory_slots_ = slots;
    return *this;
  }
  /// Optimizer whose state counts in the fixed bytes (optimizer_state_bytes(): sgd,
  /// momentum, adam, adamw, adagrad, rmsprop; default "adamw", as `memento train`).
  BenchOptions& optimizer(std::string name) {
    optimizer_ = std::move(name);
    return *this;
  }
  /// Enables the max-batch search under `cap_bytes` (whole-step bytes).
  BenchOptions& memory_cap(int64_t cap_bytes) {
    memory_cap_bytes_ = cap_bytes;
    return *this;
  }
  /// Largest batch the max-batch search tries (default 256).
  BenchOptions& max_batch_limit(int64_t limit) {
    max_batch_limit_ = limit;
    return *this;
  }
  /// LibTorch intra-op threads for the run (torch::set_num_threads); 0 (default) leaves
  /// the current setting.
  BenchOptions& threads(int count) {
    threads_ = count;
    return *this;
  }
  /// Receives one line per measurement started ("optimal at 50%: measuring").
  BenchOptions& progress(std::function<void(const std::string&)> callback) {
    progress_ = std::move(callback);
    return *this;
  }

  const std::string& model_name() const { return model_name_; }
  const std::vector<std::string>& budgets() const { return budgets_; }
  const std::vector<std::string>& planners() const { return planners_; }
  const std::vector<Codec>& codecs() const { return codecs_; }
  int64_t batch_size() const { return batch_size_; }
  int64_t seq_len() const { return seq_len_; }
  const std::string& granularity() const { return granularity_; }
  int steps() const { return steps_; }
  int warmup_steps() const { return warmup_steps_; }
  uint64_t seed() const { return seed_; }
  int memory_slots() const { return memory_slots_; }
  const std::string& optimizer() const { return optimizer_; }
  const std::optional<int64_t>& memory_cap_bytes() const { return memory_cap_bytes_; }
  int64_t max_batch_limit() const { return max_batch_limit_; }
  int threads() const { return threads_; }
  const std::function<void(const std::string&)>& progress() const { return progress_; }

 private:
  std::string model_name_;
  std::vector<std::string> budgets_ = {"30%", "50%", "70%"};
  std::vector<std::string> planners_;
  std::vector<Codec> codecs_;
  int64_t batch_size_ = 0;
  int64_t seq_len_ = 0;
  std::string granularity_ = "block";
  int steps_ = 5;
  int warmup_steps_ = 1;
  uint64_t seed_ = 0;
  int memory_slots_ = 500;
  std::string optimizer_ = "adamw";
  std::optional<int64_t> memory_cap_bytes_;
  int64_t max_batch_limit_ = 256;
  int threads_ = 0;
  std::function<void(const std::string&)> progress_;
};

/// One planner under one budget.
struct BenchRow {
  std::string planner;
  std::string budget;  ///< as given ("50%", "1.5GiB")
  int64_t budget_bytes = 0;
  std::vector<Codec> codecs;       ///< allowed to the planner (empty: an exact row)
  std::vector<Codec> codecs_used;  ///< by the planned schedule (not empty: lossy, approximate gradients)
  std::string status;              ///< "ok", "infeasible", "over_budget" (measured > 1.05 x budget), "error"
  std::string message;             ///< why, for every status but "ok"
  int64_t min_feasible_budget_bytes = 0;
  int64_t predicted_peak_bytes = 0;
  int64_t measured_peak_bytes = 0;  ///< largest over the measured steps, fixed bytes included
  double predicted_step_s = 0;
  double step_s = 0;           ///< median of the timed steps
  double overhead = 0;         ///< step_s / store-all step_s - 1
  double recompute_s = 0;      ///< measured, median of the timed steps
  int recompute_count = 0;     ///< forwards re-run in one step
  double recompute_ratio = 0;  ///< profile forward_s of the re-run forwards / total forward_s
  double recompute_flops = 0;  ///< profile flops of the re-run forwards
  double grad_cosine = 0;      ///< against store-all's gradients (1 when identical)
  double grad_rel_l2 = 0;      ///< ||g - g_ref|| / ||g_ref|| (0 when identical)
  bool ran = false;            ///< the plan was executed (status ok or over_budget)
};

/// The unconstrained baseline every row is compared with.
struct BenchStoreAll {
  int64_t measured_peak_bytes = 0;
  int64_t predicted_peak_bytes = 0;
  double step_s = 0;
  double predicted_step_s = 0;
};

/// One batch size tried by the max-batch search.
struct MaxBatchPoint {
  int64_t batch = 0;
  int64_t measured_peak_bytes = 0;   ///< 0 when the plan was infeasible (nothing ran)
  int64_t predicted_peak_bytes = 0;  ///< 0 when infeasible
  bool feasible = false;             ///< the planner found a schedule under the cap
  bool fits = false;                 ///< feasible and measured peak <= cap
  std::string note;                  ///< why nothing was measured (infeasible, skipped, error)
};

/// The largest batch one planner trains under the cap (0: not even batch 1).
struct MaxBatchResult {
  std::string planner;
  std::vector<Codec> codecs;  ///< allowed to the planner (empty: exact)
  int64_t memory_cap_bytes = 0;
  int64_t max_batch = 0;
  bool reached_limit = false;         ///< max_batch == the search limit: the true maximum may be larger
  std::vector<MaxBatchPoint> points;  ///< every batch tried, in increasing batch order
};

/// Everything one `run_bench` measured.
struct BenchResult {
  std::string model;
  int64_t batch = 0;
  std::optional<int64_t> seq_len;  ///< language models only
  int steps = 0;
  int warmup_steps = 0;
  int threads = 0;      ///< LibTorch intra-op threads during the run
  std::string machine;  ///< "2 cores, Debian GNU/Linux 12 (bookworm), LibTorch 1.13.0 CPU"
  ChainProfile profile;
  BenchStoreAll store_all;
  std::vector<BenchRow> rows;             ///< planner-major, budgets in the given order
  std::vector<MaxBatchResult> max_batch;  ///< store-all first; empty without a memory cap
};

/// Runs the benchmark. Throws InvalidArgument for an unknown model, planner, optimizer
/// or granularity, a malformed budget, codecs none of the planners uses, or steps < 1 / warmup < 0 / slots <
/// 1 / a non-positive cap or limit (each message names the option to change). A planner that cannot meet a
/// budget does not throw: its row says "infeasible".
BenchResult run_bench(const BenchOptions& options);

/// Searches the largest n in [1, limit] with fits(n), assuming fits is monotone (true up
/// to some n, false after): tries 1, 2, 4, ... until a failure or the limit, then bisects
/// between the last success and the first failure. Returns 0 when fits(1) is false.
/// Calls fits O(log limit) times, never twice for the same n.
///
/// Example:
/// \code
///   int64_t n = memento::search_max_batch(256, [](int64_t b) { return b * b <= 1000; });  // 31
/// \endcode
int64_t search_max_batch(int64_t limit, const std::function<bool(int64_t)>& fits);

/// The Bench JSON of docs/formats.md ("format": "memento.bench/1"); `max_batch` only when
/// the search ran.
nlohmann::json bench_to_json(const BenchResult& result);

}  // namespace memento
