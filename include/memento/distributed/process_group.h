#pragma once
/// \file
/// `ProcessGroup`: the processes of one data-parallel run, joined through PyTorch's c10d
/// (a `TCPStore` hosted by rank 0 for the rendezvous, `ProcessGroupGloo` for the
/// collectives). memento adds what a training run needs on top: the options as `torchrun`
/// passes them (`RANK`, `WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`), errors that name the
/// cause (a port in use, a master that cannot be reached, the rank that was lost), a
/// timeout on every wait, and consistency checks of what every rank must share.
///
/// Example:
/// \code
///   memento::DistributedOptions options = memento::DistributedOptions::from_environment();
///   memento::ProcessGroup group(options);               // blocks until every rank joined
///   group.require_same("model", model_fingerprint);     // throws on every rank if one differs
///   torch::Tensor gradients = ...;
///   group.all_reduce_sum(gradients);                     // in place, on every rank
/// \endcode

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace memento {

/// Where a process stands in a data-parallel run. One process: rank 0 of world size 1.
struct DistributedOptions {
  int rank = 0;                           ///< this process, 0 <= rank < world_size
  int world_size = 1;                     ///< number of processes
  std::string master_addr = "127.0.0.1";  ///< host of rank 0, which holds the rendezvous store
  int master_port = 29500;                ///< TCP port of the store on master_addr
  double timeout_s = 60;                  ///< longest wait for the rendezvous or a collective

  /// Throws InvalidArgument naming the field: world_size < 1, rank outside [0, world_size),
  /// a port outside [1, 65535], an empty master_addr, a timeout that is not positive.
  void validate() const;
  bool distributed() const { return world_size > 1; }

  /// `defaults` with the fields the environment sets, as torchrun sets them: RANK,
  /// WORLD_SIZE, MASTER_ADDR, MASTER_PORT. Throws InvalidArgument naming the variable when
  /// one is not a number.
  static DistributedOptions from_environment(DistributedOptions defaults);
  static DistributedOptions from_environment() { return from_environment(DistributedOptions()); }
};

/// A completed or pending collective launched by ProcessGroup::all_reduce_sum_async.
class PendingReduction {
 public:
  PendingReduction();
  ~PendingReduction();
  PendingReduction(PendingReduction&&) noexcept;
  PendingReduction& operator=(PendingReduction&&) noexcept;
  /// Blocks until the reduction is done; throws RuntimeError as ProcessGroup's collectives do.
  void wait();
  bool valid() const;

 private:
  friend class ProcessGroup;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// The run's processes. Not copyable; one per process for the whole run.
class ProcessGroup {
 public:
  /// Joins the run: rank 0 opens the store on master_port (InvalidArgument when the port is
  /// in use), the others connect to it (InvalidArgument naming the address when it cannot
  /// be reached within timeout_s); then c10d's Gloo group forms over loopback or the
  /// master's network. Throws InvalidArgument for invalid options.
  explicit ProcessGroup(const DistributedOptions& options);
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const { return options_.rank; }
  int world_size() const { return options_.world_size; }
  const DistributedOptions& options() const { return options_; }

  /// Sums `tensor` (contiguous, CPU) over the ranks, in place. Throws RuntimeError naming
  /// the lost rank when a process died, or saying that the collective timed out.
  void all_reduce_sum(torch::Tensor& tensor);
  /// As all_reduce_sum, returning at once; `tensor` holds the sum after wait().
  PendingReduction all_reduce_sum_async(torch::Tensor& tensor);
  /// Mean of `values` over the ranks, element by element (every rank gets the same).
  std::vector<double> all_reduce_mean(const std::vector<double>& values);
  /// Rank 0's `text` on every rank (the others' argument is ignored).
  std::string broadcast(const std::string& text);
  /// Throws InvalidArgument on every rank, naming `what` and the first rank whose
  /// `fingerprint` differs from rank 0's (with both values when they are short), so a
  /// run whose processes disagree stops at once instead of training different things.
  void require_same(const std::string& what, const std::string& fingerprint);
  /// Waits until every rank arrived.
  void barrier();

  /// Seconds spent inside collectives of this process (waiting included), for reports.
  double collective_s() const { return collective_s_; }

 private:
  struct Impl;
  [[noreturn]] void fail(const std::string& operation, const std::exception& error) const;
  friend class PendingReduction;

  DistributedOptions options_;
  std::unique_ptr<Impl> impl_;
  double collective_s_ = 0;
  int64_t sequence_ = 0;  // numbers the store keys of broadcasts and checks
};

}  // namespace memento
