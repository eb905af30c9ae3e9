#include "memento/distributed/gradient_averager.h"

#include <algorithm>
#include <chrono>
#include <unordered_set>

#include "memento/core/error.h"

namespace memento {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

struct OwnedParameter {
  torch::Tensor parameter;
  int final_stage = 0;
};

// Every distinct parameter that trains, with the first stage that holds it: backward runs
// from the last stage to the first, so a parameter shared by several stages (tied
// embeddings) has its final gradient after the Backward of the first.
std::vector<OwnedParameter> owned_parameters(const Chain& chain) {
  std::unordered_set<const void*> seen;
  std::vector<OwnedParameter> owned;
  for (int stage = 0; stage < chain.length(); ++stage) {
    for (const auto& parameter : chain.stage(stage).parameters()) {
      // A parameter an earlier stage already holds stays with that stage.
      if (parameter.requires_grad() && seen.insert(parameter.unsafeGetTensorImpl()).second)
        owned.push_back({parameter, stage});
    }
  }
  return owned;
}

int64_t bytes_of(const torch::Tensor& tensor) {
  return tensor.numel() * static_cast<int64_t>(tensor.element_size());
}

}  // namespace

int64_t gradient_buffer_bytes(const Chain& chain) {
  int64_t bytes = 0;
  for (const OwnedParameter& owned : owned_parameters(chain)) bytes += bytes_of(owned.parameter);
  return bytes;
}

void add_communication_bytes(ChainProfile& profile, int64_t bytes) {
  if (bytes < 0)
    throw InvalidArgument("communication bytes must not be negative, got " + std::to_string(bytes));
  profile.fixed_bytes += bytes;
  profile.fixed_breakdown.communication_bytes += bytes;
}

GradientAverager::GradientAverager(ProcessGroup& group, Chain& chain, int64_t bucket_bytes) : group_(group) {
  if (bucket_bytes < 0)
    throw InvalidArgument("bucket_bytes must not be negative, got " + std::to_string(bucket_bytes));
  std::vector<OwnedParameter> owned = owned_parameters(chain);
  if (owned.empty()) throw InvalidArgument("GradientAverager needs a chain with parameters that train");
  // Backward order: the last stage's parameters first, so the first bucket is ready first.
  std::stable_sort(owned.begin(), owned.end(), [](const OwnedParameter& a, const OwnedParameter& b) {
    return a.final_stage > b.final_stage;
  });
  Bucket current;
  int64_t current_bytes = 0;
  auto close = [&] {
    if (current.parameters.empty()) return;
    int64_t elements = 0;
    for (const auto& parameter : current.parameters) elements += parameter.numel();
    current.flat = torch::zeros({elements}, current.parameters.front().options().requires_grad(false));
    buffer_bytes_ += bytes_of(current.flat);
    buckets_.push_back(std::move(current));
    current = Bucket();
    current_bytes = 0;
  };
  for (size_t k = 0; k < owned.size(); ++k) {
    const OwnedParameter& item = owned[k];
    // A bucket holds one dtype, and closes at a stage boundary once it is big enough.
    const bool dtype_changes = !current.parameters.empty() &&
                               current.parameters.front().scalar_type() != item.parameter.scalar_type();
    const bool stage_changes = !current.parameters.empty() && current.final_stage != item.final_stage;
    if (dtype_changes || (stage_changes && current_bytes >= bucket_bytes)) close();
    current.parameters.push_back(item.parameter);
    current.final_stage = item.final_stage;  // the lowest stage so far: backward order
    current_bytes += bytes_of(item.parameter);
  }
  close();
}

ExecutorHooks GradientAverager::hooks() {
  ExecutorHooks hooks;
  hooks.observe_only = true;
  hooks.after_op = [this](Executor&, const OpEvent& event) {
    if (event.op.kind != OpKind::Backward) return;
    for (Bucket& bucket : buckets_) {
      if (!bucket.launched && bucket.final_stage == event.op.stage) {
        launch(bucket);
        ++current_.launched_in_backward;
      }
    }
  };
  return hooks;
}

void GradientAverager::launch(Bucket& bucket) {
  const auto start = Clock::now();
  {
    torch::NoGradGuard no_grad;
    int64_t offset = 0;
    for (const auto& parameter : bucket.parameters) {
      const int64_t count = parameter.numel();
      auto slice = bucket.flat.narrow(0, offset, count);
      if (parameter.grad().defined()) {
        slice.copy_(parameter.grad().reshape({count}));
      } else {
        slice.zero_();
      }
      offset += count;
    }
  }
  current_.copy_s += seconds_since(start);
  bucket.pending = group_.all_reduce_sum_async(bucket.flat);
  bucket.launched = true;
  ++current_.buckets;
  current_.bytes += bytes_of(bucket.flat);
}

void GradientAverager::finish() {
  for (Bucket& bucket : buckets_) {
    if (!bucket.launched) launch(bucket);
  }
  const double world = static_cast<double>(group_.world_size());
  for (Bucket& bucket : buckets_) {
    const auto wait_start = Clock::now();
    bucket.pending.wait();
    current_.exposed_s += seconds_since(wait_start);
    const auto copy_start = Clock::now();
    torch::NoGradGuard no_grad;
    bucket.flat.div_(world);
    int64_t offset = 0;
    for (auto& parameter : bucket.parameters) {
      const int64_t count = parameter.numel();
      auto mean = bucket.flat.narrow(0, offset, count).view(parameter.sizes());
      if (parameter.grad().defined()) {
        parameter.mutable_grad().copy_(mean);
      } else {
        parameter.mutable_grad() = mean.clone();
      }
      offset += count;
    }
    current_.copy_s += seconds_since(copy_start);
    bucket.launched = false;
  }
  last_ = current_;
  current_ = GradientSyncStats();
}

double GradientAverager::measure_unhidden_s(int repeats) {
  if (repeats < 1) throw InvalidArgument("repeats must be at least 1, got " + std::to_string(repeats));
  std::vector<double> runs;
  for (int r = 0; r < repeats; ++r) {
    const auto start = Clock::now();
    for (Bucket& bucket : buckets_) group_.all_reduce_sum(bucket.flat);
    runs.push_back(seconds_since(start));
  }
  std::sort(runs.begin(), runs.end());
  return runs[runs.size() / 2];
}

}  // namespace memento
