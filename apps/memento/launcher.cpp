#include "launcher.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <thread>
#include <vector>

#include <glog/logging.h>

#include "memento/core/error.h"

namespace memento::cli {

namespace {

// Set in the processes the launcher starts, so that they run as ranks instead of launching.
constexpr char kLaunchedVariable[] = "MEMENTO_LAUNCHED";
int error_rank = -1;

bool launched_by_memento() {
  const char* value = std::getenv(kLaunchedVariable);
  return value != nullptr && std::string(value) == "1";
}

bool has_environment(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0';
}

// A free TCP port on loopback, for the rendezvous of ranks this launcher starts. The port
// is released before the ranks bind it; a process taking it in between makes rank 0 fail
// with "in use", which names --master-port.
int free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw IoError(std::string("cannot open a socket to find a free port: ") + std::strerror(errno));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof address;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    const int error = errno;
    ::close(fd);
    throw IoError(std::string("cannot find a free port on 127.0.0.1: ") + std::strerror(error) +
                  "; pass --master-port");
  }
  ::close(fd);
  return ntohs(address.sin_port);
}

std::vector<std::string> own_command_line() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> arguments;
  size_t begin = 0;
  while (begin < bytes.size()) {
    const size_t end = bytes.find('\0', begin);
    arguments.push_back(bytes.substr(begin, end - begin));
    if (end == std::string::npos) break;
    begin = end + 1;
  }
  if (arguments.empty()) throw IoError("cannot read this process's command line from /proc/self/cmdline");
  return arguments;
}

pid_t start_rank(const std::vector<std::string>& arguments, int rank, int world_size,
                 const std::string& address, int port) {
  const pid_t pid = ::fork();
  if (pid < 0)
    throw IoError(std::string("cannot start rank ") + std::to_string(rank) + ": " + std::strerror(errno));
  if (pid > 0) return pid;
  ::setenv("RANK", std::to_string(rank).c_str(), 1);
  ::setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);
  ::setenv("WORLD_SIZE", std::to_string(world_size).c_str(), 1);
  ::setenv("MASTER_ADDR", address.c_str(), 1);
  ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
  ::setenv(kLaunchedVariable, "1", 1);
  std::vector<char*> argv;
  for (const auto& argument : arguments) argv.push_back(const_cast<char*>(argument.c_str()));
  argv.push_back(nullptr);
  ::execv("/proc/self/exe", argv.data());
  std::cerr << "memento: cannot start rank " << rank << ": " << std::strerror(errno) << "\n";
  ::_exit(127);
}

std::string describe_end(int status) {
  if (WIFSIGNALED(status)) {
    const int signal_number = WTERMSIG(status);
    return "was killed by signal " + std::to_string(signal_number) + " (" + ::strsignal(signal_number) + ")";
  }
  return "failed with exit status " + std::to_string(WEXITSTATUS(status));
}

int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 2;
}

void check_range(int64_t value, int64_t low, int64_t high, const std::string& name) {
  if (value < low || value > high) {
    throw InvalidArgument(name + " must be in [" + std::to_string(low) + ", " + std::to_string(high) +
                          "], got " + std::to_string(value));
  }
}

}  // namespace

void add_distributed_options(CLI::App* command, DistributedArguments& args) {
  command
      ->add_option(
          "--nproc", args.nproc,
          "data-parallel: start this many processes on this machine (c10d Gloo, loopback rendezvous)")
      ->capture_default_str();
  command->add_option("--rank", args.rank, "data-parallel across machines: this process's rank (env RANK)");
  command->add_option("--world-size", args.world_size, "data-parallel: number of processes (env WORLD_SIZE)");
  command->add_option("--master-addr", args.master_addr,
                      "host of rank 0 (env MASTER_ADDR; default 127.0.0.1)");
  command->add_option(
      "--master-port", args.master_port,
      "TCP port of the rendezvous on rank 0 (env MASTER_PORT; default 29500, --nproc: a free one)");
  command
      ->add_option("--timeout", args.timeout_s,
                   "seconds to wait for the rendezvous and for each collective before giving up")
      ->capture_default_str();
}

bool launches_processes(const DistributedArguments& args) {
  return args.nproc > 1 && !launched_by_memento();
}

DistributedOptions read_distributed_options(const DistributedArguments& args) {
  check_range(args.nproc, 1, 1024, "--nproc");
  if (args.nproc > 1 && (args.rank >= 0 || args.world_size >= 0)) {
    throw InvalidArgument(
        "--nproc starts every rank itself: leave out --rank and --world-size (they are for "
        "processes started one by one, e.g. on several machines)");
  }
  if (!(args.timeout_s > 0) || args.timeout_s > 86400)
    throw InvalidArgument("--timeout must be a number of seconds in (0, 86400], got " +
                          std::to_string(args.timeout_s));
  DistributedOptions options = DistributedOptions::from_environment();
  if (launched_by_memento()) {
    options.timeout_s = args.timeout_s;
    options.validate();
    return options;
  }
  std::string rank_name = has_environment("RANK") ? "RANK" : "--rank";
  std::string world_name = has_environment("WORLD_SIZE") ? "WORLD_SIZE" : "--world-size";
  if (args.rank >= 0) {
    check_range(args.rank, 0, INT32_MAX, "--rank");
    options.rank = static_cast<int>(args.rank);
    rank_name = "--rank";
  } else if (args.rank != -1) {
    throw InvalidArgument("--rank must be at least 0, got " + std::to_string(args.rank));
  }
  if (args.world_size != -1) {
    check_range(args.world_size, 1, 1 << 20, "--world-size");
    options.world_size = static_cast<int>(args.world_size);
    world_name = "--world-size";
  }
  if (!args.master_addr.empty()) options.master_addr = args.master_addr;
  if (args.master_port != -1) {
    check_range(args.master_port, 1, 65535, "--master-port");
    options.master_port = static_cast<int>(args.master_port);
  }
  options.timeout_s = args.timeout_s;
  if (options.world_size < 1)
    throw InvalidArgument(world_name + " must be at least 1, got " + std::to_string(options.world_size));
  if (options.rank < 0 || options.rank >= options.world_size) {
    throw InvalidArgument(rank_name + " " + std::to_string(options.rank) + " is out of range for " +
                          world_name + " " + std::to_string(options.world_size) + ": ranks are 0 to " +
                          std::to_string(options.world_size - 1));
  }
  if (options.master_port < 1 || options.master_port > 65535)
    throw InvalidArgument("MASTER_PORT must be in [1, 65535], got " + std::to_string(options.master_port));
  options.validate();
  return options;
}

int launch_processes(const DistributedArguments& args) {
  const int world_size = static_cast<int>(args.nproc);
  const std::string address = args.master_addr.empty() ? "127.0.0.1" : args.master_addr;
  const int port = args.master_port != -1 ? static_cast<int>(args.master_port) : free_loopback_port();
  const std::vector<std::string> arguments = own_command_line();
  std::vector<pid_t> pids;
  for (int rank = 0; rank < world_size; ++rank)
    pids.push_back(start_rank(arguments, rank, world_size, address, port));

  int first_failure = 0;
  int running = world_size;
  auto deadline = std::chrono::steady_clock::time_point::max();
  while (running > 0) {
    int status = 0;
    const pid_t ended = ::waitpid(-1, &status, WNOHANG);
    if (ended <= 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        for (pid_t pid : pids)
          if (pid > 0) ::kill(pid, SIGKILL);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    int rank = 0;
    while (rank < world_size && pids[static_cast<size_t>(rank)] != ended) ++rank;
    if (rank == world_size) continue;
    pids[static_cast<size_t>(rank)] = -1;
    --running;
    const bool failed = !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    if (!failed) continue;
    if (first_failure == 0) {
      first_failure = exit_code_of(status);
      // The others find the lost rank at their next collective; past the timeout they are stopped.
      deadline = std::chrono::steady_clock::now() +
                 std::chrono::milliseconds(static_cast<int64_t>((args.timeout_s + 5) * 1000.0));
      std::cerr << "memento: rank " << rank << " (pid " << ended << ") " << describe_end(status)
                << (running > 0 ? "; the other ranks stop" : "") << "\n";
    }
  }
  return first_failure;
}

std::string error_prefix() {
  return error_rank >= 0 ? "rank " + std::to_string(error_rank) + ": " : "";
}

void quiet_library_logging() {
  FLAGS_minloglevel = google::GLOG_FATAL;
}

void set_error_rank(int rank) {
  error_rank = rank;
}

}  // namespace memento::cli
