#pragma once
// The data-parallel options of `memento train` and the local launcher behind `--nproc N`:
// N copies of this very command, each told its rank through the environment torchrun
// uses (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, LOCAL_RANK), with a TCPStore
// rendezvous on loopback.
#include <string>

#include <CLI/CLI.hpp>

#include "memento/distributed/process_group.h"

namespace memento::cli {

/// The options as typed; -1 / empty: not given (the environment's value, else the default).
struct DistributedArguments {
  int64_t nproc = 1;
  int64_t rank = -1;
  int64_t world_size = -1;
  std::string master_addr;
  int64_t master_port = -1;
  double timeout_s = 60;
};

/// Adds --nproc, --rank, --world-size, --master-addr, --master-port and --timeout.
void add_distributed_options(CLI::App* command, DistributedArguments& args);

/// This process's place in the run: the options, over the environment (RANK, WORLD_SIZE,
/// MASTER_ADDR, MASTER_PORT), over the defaults (one process). Throws InvalidArgument
/// naming the option: a world size below 1, a rank out of range, a port outside
/// [1, 65535], a timeout that is not positive, --nproc with --rank or --world-size.
DistributedOptions read_distributed_options(const DistributedArguments& args);

/// True in the process the user started with --nproc N > 1 (not in the N it launches).
bool launches_processes(const DistributedArguments& args);

/// Runs N copies of this process's command line as ranks 0..N-1 on this machine and waits
/// for them (call read_distributed_options first, so that its errors are told once, not by
/// every rank). When one fails (an error, or killed by a signal) it says which on stderr,
/// gives the others --timeout seconds to stop on their own (they report the lost rank),
/// then stops them. Returns 0 when every rank succeeded, else the first failure's exit
/// status (2 for a rank ended by a signal).
int launch_processes(const DistributedArguments& args);

/// "rank R: " in a rank of a data-parallel run (errors of several processes are told
/// apart by it), "" otherwise.
std::string error_prefix();
/// c10d and Gloo log their own warnings through glog (a failed bind, each connection):
/// the CLI reports failures itself, on one line, so only glog's fatal messages remain.
void quiet_library_logging();
void set_error_rank(int rank);

}  // namespace memento::cli
