// Data-parallel `memento train` (docs/distributed.md) with 2 processes on this machine:
// the same trajectory as one process with the whole batch, a lost rank that stops the
// others with its name and leaves a checkpoint that resumes, ranks that disagree, and the
// options' bad input.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "cli_support.h"
#include "memento/core/sealed.h"

namespace {

using namespace memento::cli_test;
using json = nlohmann::json;

// A loopback port no one listens on (released before use; the tests take it at once).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

std::vector<std::string> small_run(const std::string& batch, const std::string& steps,
                                   const std::string& eval_every = "3") {
  return {"train", "--model",      "gpt-nano", "--batch",        batch,     "--steps",
          steps,   "--dropout",    "0",        "--planner",      "optimal", "--budget",
          "60%",   "--eval-every", eval_every, "--eval-batches", "2",       "--compare-repeats",
          "1"};
}

int64_t checkpoint_step(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  std::istringstream payload(memento::unseal(bytes.str(), path).payload);
  torch::serialize::InputArchive archive;
  archive.load_from(payload);
  torch::Tensor step;
  archive.read("step", step);
  return step.item<int64_t>();
}

std::vector<torch::Tensor> checkpoint_parameters(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  const memento::Unsealed content = memento::unseal(bytes.str(), path);
  std::istringstream payload(content.payload);
  torch::serialize::InputArchive archive;
  archive.load_from(payload);
  c10::IValue names;
  archive.read("parameter_names", names);
  const std::string& text = names.toStringRef();
  const auto count = std::count(text.begin(), text.end(), '\n');
  std::vector<torch::Tensor> parameters;
  for (int64_t i = 0; i < count; ++i) {
    torch::Tensor value;
    archive.read("parameter" + std::to_string(i), value);
    parameters.push_back(value);
  }
  return parameters;
}

std::string shell_output(const std::string& script) {
  FILE* pipe = popen(("sh -c " + quote(script) + " 2>&1").c_str(), "r");
  std::string out;
  char buffer[4096];
  size_t count = 0;
  while ((count = fread(buffer, 1, sizeof buffer, pipe)) > 0) out.append(buffer, count);
  pclose(pipe);
  return out;
}

// One rank started as torchrun starts it: the rendezvous in the environment.
std::string rank_command(int rank, int port, const std::vector<std::string>& args) {
  std::string command = "RANK=" + std::to_string(rank) +
                        " WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(port) +
                        " OMP_NUM_THREADS=1 " + quote(MEMENTO_CLI_PATH);
  for (const auto& arg : args) command += " " + quote(arg);
  return command;
}

TEST(CliDistributed, TwoProcessesTrainAsOneProcessWithTheWholeBatch) {
  const std::string one_path = (scratch_dir() / "dp_one.ckpt").string();
  const std::string two_path = (scratch_dir() / "dp_two.ckpt").string();
  auto one_args = small_run("8", "6");
  auto two_args = small_run("4", "6");
  for (const char* arg : {"--format", "json", "--save"}) {
    one_args.push_back(arg);
    two_args.push_back(arg);
  }
  one_args.push_back(one_path);
  two_args.push_back(two_path);
  two_args.push_back("--nproc");
  two_args.push_back("2");
  const CommandResult one = run_memento(one_args);
  const CommandResult two = run_memento(two_args);
  ASSERT_EQ(one.exit_code, 0) << one.err;
  ASSERT_EQ(two.exit_code, 0) << two.err;
  const json a = json::parse(one.out);
  const json b = json::parse(two.out);  // rank 0's report only
  ASSERT_EQ(a.at("train_losses").size(), 6u);
  ASSERT_EQ(b.at("train_losses").size(), 6u);
  for (size_t i = 0; i < 6; ++i) {
    const double x = a["train_losses"][i], y = b["train_losses"][i];
    EXPECT_LE(std::abs(x - y), 1e-5 * std::abs(x)) << "step " << i + 1;
  }
  EXPECT_EQ(b.at("distributed").at("world_size"), 2);
  EXPECT_EQ(b.at("distributed").at("global_batch"), 8);
  EXPECT_TRUE(a.at("distributed").is_null());
  // The gradient buckets are planned for: the measured peak stays the predicted one.
  EXPECT_LE(b.at("peak_bytes").get<int64_t>(), b.at("budget_bytes").get<int64_t>());
  const auto p = checkpoint_parameters(one_path);
  const auto q = checkpoint_parameters(two_path);
  ASSERT_EQ(p.size(), q.size());
  // Relative L2 distances: over all parameters within 1e-5. Per tensor, AdamW divides by
  // sqrt(v), so in the zero-initialised biases, whose gradients are tiny, the summation
  // order's last-bit differences grow to ~3e-5 of the tensor's norm in 6 steps.
  double distance = 0, norm = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    const double tensor_distance = (p[i] - q[i]).norm().item<double>();
    const double tensor_norm = std::max(1e-12, p[i].norm().item<double>());
    EXPECT_LE(tensor_distance, 1e-4 * tensor_norm) << "parameter " << i;
    distance += tensor_distance * tensor_distance;
    norm += tensor_norm * tensor_norm;
  }
  EXPECT_LE(std::sqrt(distance), 1e-5 * std::sqrt(norm));
}

TEST(CliDistributed, ALostRankStopsTheOtherNamingItAndTheCheckpointResumes) {
  const int port = free_port();
  const std::string checkpoint = (scratch_dir() / "dp_lost.ckpt").string();
  auto args = small_run("4", "100000", "2");
  for (const char* arg : {"--timeout", "20", "--save"}) args.push_back(arg);
  args.push_back(checkpoint);
  // Rank 1 is killed once a checkpoint exists; rank 0 must stop by itself, naming it.
  const std::string script = rank_command(0, port, args) + " >/dev/null 2>" + quote(checkpoint + ".err0") +
                             " & p0=$!; " + rank_command(1, port, args) +
                             " >/dev/null 2>/dev/null & p1=$!; " + "i=0; while [ ! -s " + quote(checkpoint) +
                             " ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; sleep 0.5; kill -9 $p1; "
                             "start=$(date +%s); wait $p0; echo rc=$?; echo took=$(( $(date +%s) - start ))";
  const std::string out = shell_output(script);
  EXPECT_NE(out.find("rc=2"), std::string::npos) << out;
  std::ifstream err_file(checkpoint + ".err0");
  std::stringstream err;
  err << err_file.rdbuf();
  EXPECT_NE(err.str().find("lost rank 1"), std::string::npos) << err.str();
  const int took = std::atoi(out.substr(out.find("took=") + 5).c_str());
  EXPECT_LE(took, 20) << out;

  // The last checkpoint is intact, and two processes continue from it.
  const std::string steps = std::to_string(checkpoint_step(checkpoint) + 4);
  auto resume = small_run("4", "100000", "2");
  resume[6] = steps;
  for (const char* arg : {"--nproc", "2", "--resume"}) resume.push_back(arg);
  resume.push_back(checkpoint);
  const CommandResult resumed = run_memento(resume);
  EXPECT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_NE(resumed.out.find("resumed from"), std::string::npos) << resumed.out;
  // One process cannot continue a run of two without saying so.
  auto alone = small_run("4", steps, "2");
  alone.push_back("--resume");
  alone.push_back(checkpoint);
  const CommandResult refused = run_memento(alone);
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_NE(refused.err.find("2 processes"), std::string::npos) << refused.err;
}

TEST(CliDistributed, RanksThatBuiltAnotherModelStopAtStart) {
  const int port = free_port();
  auto seed1 = small_run("4", "4");
  auto seed2 = seed1;
  seed1.insert(seed1.end(), {"--seed", "1"});
  seed2.insert(seed2.end(), {"--seed", "2"});
  const std::string script = rank_command(0, port, seed1) + " >/dev/null & p0=$!; " +
                             rank_command(1, port, seed2) + " >/dev/null; echo rc1=$?; wait $p0; echo rc0=$?";
  const std::string out = shell_output(script);
  EXPECT_NE(out.find("rc1=2"), std::string::npos) << out;
  EXPECT_NE(out.find("rc0=2"), std::string::npos) << out;
  EXPECT_NE(out.find("rank 1's"), std::string::npos) << out;
  EXPECT_NE(out.find("differs from rank 0's"), std::string::npos) << out;
}

TEST(CliDistributed, BadOptionsGetOneLine) {
  const auto base = small_run("4", "2");
  auto with = [&](std::vector<std::string> extra) {
    auto args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  };
  expect_bad_input(with({"--nproc", "0"}), "--nproc");
  expect_bad_input(with({"--world-size", "0"}), "--world-size must be in [1");
  expect_bad_input(with({"--rank", "2", "--world-size", "2"}), "out of range");
  expect_bad_input(with({"--master-port", "70000"}), "--master-port");
  expect_bad_input(with({"--nproc", "2", "--rank", "0"}), "leave out --rank");
  expect_bad_input(with({"--timeout", "0"}), "--timeout");
  // A master that is not there: rank 1 gives up after --timeout.
  expect_bad_input(with({"--rank", "1", "--world-size", "2", "--master-port", std::to_string(free_port()),
                         "--timeout", "2"}),
                   "cannot reach the master");
  // A port someone else holds.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_ANY);
  socklen_t length = sizeof address;
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ::listen(fd, 1);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  expect_bad_input(with({"--rank", "0", "--world-size", "2", "--master-port",
                         std::to_string(ntohs(address.sin_port)), "--timeout", "2"}),
                   "in use");
  ::close(fd);
}

}  // namespace
