#pragma once
/// \file
/// `GradientAverager`: data-parallel gradients. The parameters of a chain are laid out in
/// buckets in backward order; when the executor's `Backward(i)` has made the last gradient
/// of a bucket final (no later op of the step adds to it: stage i is the first stage that
/// holds each of its parameters), the bucket is copied into its flat buffer and its sum
/// over the ranks launched on c10d, while backward goes on with the stages before. After
/// the step, finish() waits for the buckets still in flight and writes each gradient's mean
/// over the ranks back. Recomputation inside backward changes nothing: a bucket is launched
/// once per step, on the event that makes it final, and never before (the failure DDP's
/// reducer shows with checkpointing, "marked ready twice", cannot happen here).
///
/// The flat buffers hold one copy of every gradient for the whole run:
/// `buffer_bytes()` (count it in the profile's fixed bytes: add_communication_bytes()).
///
/// Example:
/// \code
///   memento::GradientAverager averager(group, *model.chain);
///   int id = executor.add_hooks(averager.hooks());
///   executor.step(schedule, batch);   // buckets launched during backward
///   averager.finish();                // .grad() now holds the mean over the ranks
///   executor.remove_hooks(id);
/// \endcode

#include <cstdint>
#include <vector>

#include "memento/core/profile.h"
#include "memento/distributed/process_group.h"
#include "memento/torch/chain.h"
#include "memento/torch/executor.h"

namespace memento {

/// What the communication of one step cost and how much of it backward hid.
struct GradientSyncStats {
  int buckets = 0;               ///< all-reduces launched
  int launched_in_backward = 0;  ///< of them, launched by a Backward op (the others in finish())
  int64_t bytes = 0;             ///< gradient bytes summed over the ranks
  double exposed_s = 0;          ///< time finish() waited: communication backward did not hide
  double copy_s = 0;             ///< time copying gradients into and out of the buffers
};

class GradientAverager {
 public:
  /// Buckets of at least `bucket_bytes` (the last one may be smaller; 0: one bucket per
  /// stage that owns parameters). Throws InvalidArgument when the chain has no parameter
  /// that requires a gradient, or bucket_bytes < 0.
  GradientAverager(ProcessGroup& group, Chain& chain, int64_t bucket_bytes = kDefaultBucketBytes);

  static constexpr int64_t kDefaultBucketBytes = int64_t{1} << 20;

  /// Observe-only hooks launching each bucket after the Backward op that makes it final.
  ExecutorHooks hooks();
  /// Launches the buckets no Backward launched (a frozen prefix, or a step run without the
  /// hooks), waits for all, and writes the means into the parameters' .grad().
  /// Throws RuntimeError naming the lost rank when a process died.
  void finish();
  /// Bytes of the flat buffers (one copy of the gradients).
  int64_t buffer_bytes() const { return buffer_bytes_; }
  int bucket_count() const { return static_cast<int>(buckets_.size()); }
  const GradientSyncStats& last_step() const { return last_; }
  /// Seconds one step's all-reduces take when nothing overlaps them: the median of
  /// `repeats` runs of every bucket, one after the other (the parameters' gradients are
  /// left as they were). With last_step().exposed_s it gives the time backward hid.
  double measure_unhidden_s(int repeats = 3);

 private:
  struct Bucket {
    std::vector<torch::Tensor> parameters;
    torch::Tensor flat;
    int final_stage = 0;  // Backward(final_stage) makes every gradient of the bucket final
    PendingReduction pending;
    bool launched = false;
  };
  void launch(Bucket& bucket);

  ProcessGroup& group_;
  std::vector<Bucket> buckets_;
  int64_t buffer_bytes_ = 0;
  GradientSyncStats current_, last_;
};

/// Bytes of one copy of the gradients of `chain`'s distinct parameters that require one:
/// what a GradientAverager over it allocates.
int64_t gradient_buffer_bytes(const Chain& chain);

/// Counts `bytes` of communication buffers in `profile`'s fixed bytes (and breakdown), so
/// that plans and measured peaks of a data-parallel run agree.
void add_communication_bytes(ChainProfile& profile, int64_t bytes);

}  // namespace memento
