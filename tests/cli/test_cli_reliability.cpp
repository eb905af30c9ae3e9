// Reliability of the command line (docs/reliability.md): hostile and malformed input, bad
// paths and numbers, damaged checkpoints, write failures on files and on stdout, exit
// codes by the one rule, and SIGKILL during training. Each bad input must give exit 2, one
// stderr line under 300 characters that names what to change, leave no temporary behind
// and leave an earlier good file byte for byte as it was.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli_support.h"

namespace memento::cli_test {
namespace {

namespace fs = std::filesystem;

fs::path fresh_dir(const std::string& name) {
  const fs::path dir = scratch_dir() / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

void write_file(const fs::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

// Files in `dir` that a failed write left behind (our temporaries are .<name>.memento-tmp).
std::vector<std::string> temporaries_in(const fs::path& dir) {
  std::vector<std::string> found;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.find(".memento-tmp") != std::string::npos || name.find(".tmp") != std::string::npos)
      found.push_back(name);
  }
  return found;
}

// Runs `memento <args>` through /bin/sh with `prefix` (ulimit, trap) before it and stdout
// sent to `stdout_path`.
CommandResult run_redirected(const std::vector<std::string>& args, const std::string& prefix,
                             const std::string& stdout_path) {
  const fs::path err_path = scratch_dir() / "stderr_redirected.txt";
  std::string command = prefix + " OMP_NUM_THREADS=1 exec " + quote(MEMENTO_CLI_PATH);
  for (const std::string& arg : args) command += " " + quote(arg);
  command += " >" + quote(stdout_path) + " 2>" + quote(err_path.string());
  const int status = std::system(("/bin/sh -c " + quote(command)).c_str());
  CommandResult result;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.err = read_file(err_path);
  return result;
}

void expect_one_line_error(const CommandResult& result, const std::string& expected_word) {
  EXPECT_EQ(result.exit_code, 2) << result.err;
  ASSERT_FALSE(result.err.empty());
  EXPECT_EQ(result.err.find('\n'), result.err.size() - 1) << "expected one line, got: " << result.err;
  EXPECT_LT(result.err.size(), 300u) << result.err;
  EXPECT_NE(result.err.find(expected_word), std::string::npos)
      << "\"" << expected_word << "\" not in: " << result.err;
}

std::string profile_path() {
  return std::string(MEMENTO_SOURCE_DIR) + "/examples/profiles/gpt2-small.json";
}

TEST(CliReliability, HostileJsonIsRefusedOnOneShortLine) {
  const fs::path dir = fresh_dir("hostile_json");
  // 70,000 levels once overflowed the stack while the error message was being built.
  write_file(dir / "deep.json",
             "{\"fixed_bytes\": " + std::string(70000, '[') + std::string(70000, ']') + ", \"stages\": []}");
  expect_bad_input({"plan", "--profile", (dir / "deep.json").string(), "--budget", "50%"}, "nested deeper");
  // A huge value in a bad field is quoted by a short prefix only.
  write_file(dir / "long.json", "{\"fixed_bytes\": \"" + std::string(300000, 'x') + "\", \"stages\": []}");
  expect_bad_input({"plan", "--profile", (dir / "long.json").string(), "--budget", "50%"}, "fixed_bytes");
  nlohmann::json profile = nlohmann::json::parse(read_file(profile_path()));
  profile["stages"][3]["name"] = std::string(300000, 'n');
  profile["stages"][3]["saved_bytes"] = -5;
  write_file(dir / "long_name.json", profile.dump());
  expect_bad_input({"plan", "--profile", (dir / "long_name.json").string(), "--budget", "50%"},
                   "saved_bytes");
  write_file(dir / "not_json.json", std::string("{\"fixed_bytes\": 1,") + std::string(5000, '\x01'));
  expect_bad_input({"plan", "--profile", (dir / "not_json.json").string(), "--budget", "50%"},
                   "not valid JSON");
  expect_bad_input({"report", (dir / "deep.json").string(), "-o", (dir / "r.html").string()},
                   "nested deeper");
  EXPECT_TRUE(temporaries_in(dir).empty());
}

TEST(CliReliability, OutOfRangeNumbersAndBareSizesAreRefusedWithTheRange) {
  expect_bad_input({"train", "--steps", "99999999999999999999"}, "--steps");
  expect_bad_input({"train", "--steps", "99999999999999999999"}, "9223372036854775807");
  expect_bad_input({"profile", "--model", "mlp", "--seed", "-1"}, "--seed");
  expect_bad_input({"train", "--seed", "-1"}, "--seed");
  expect_bad_input({"verify", "--model", "mlp", "--seed", "-3"}, "--seed");
  expect_bad_input({"plan", "--profile", profile_path(), "--budget", "50%", "--slots", "1e3"}, "--slots");
  expect_bad_input({"plan", "--profile", profile_path(), "--budget", "50"}, "50MiB");
  expect_bad_input({"bench", "--model", "mlp", "--max-batch", "--memory-cap", "4096"}, "--memory-cap");
}

TEST(CliReliability, ConflictingAndUnusedOptionsAreErrors) {
  expect_bad_input(
      {"plan", "--profile", profile_path(), "--budget", "50%", "--planner", "optimal", "--planners", "all"},
      "--planners");
  expect_bad_input({"plan", "--list", "--profile", profile_path()}, "--list");
  expect_bad_input({"plan", "--profile", profile_path(), "--sweep", "--planner", "optimal"}, "--planner");
  expect_bad_input({"plan", "--profile", profile_path(), "--budget", "50%", "--segments", "3"}, "uniform");
  const fs::path dir = fresh_dir("conflicts");
  nlohmann::json sweep = nlohmann::json::parse(run_memento({"plan", "--profile", profile_path(), "--sweep",
                                                            "--budgets", "40%,80%", "--format", "json"})
                                                   .out);
  sweep["store_all_peak_bytes"] = nullptr;
  write_file(dir / "sweep.json", sweep.dump());
  expect_bad_input({"report", (dir / "sweep.json").string(), "-o", (dir / "r.html").string()},
                   "store_all_peak_bytes");
  EXPECT_FALSE(fs::exists(dir / "r.html"));
}

// Every output path is checked before the work starts: nothing is printed, nothing lost.
TEST(CliReliability, UnwritableOutputsAreFoundBeforeAnyWork) {
  const fs::path dir = fresh_dir("outputs");
  const std::string missing = (dir / "missing" / "file").string();
  expect_bad_input({"train", "--model", "gpt-nano", "--steps", "60", "--eval-every", "0", "--save", missing},
                   "--save");
  expect_bad_input({"bench", "--model", "mlp", "--out", missing}, "--out");
  expect_bad_input({"profile", "--model", "mlp", "--out", missing}, "--out");
  expect_bad_input({"profile", "--model", "mlp", "--timeline", missing}, "--timeline");
  expect_bad_input({"profile", "--model", "mlp", "--report", missing}, "--report");
  const std::string fixture = std::string(MEMENTO_SOURCE_DIR) + "/tests/report/fixtures/bench_small.json";
  expect_bad_input({"report", fixture, "-o", dir.string()}, "directory");
  expect_bad_input({"train", "--data", dir.string(), "--steps", "2"}, "directory");
  expect_bad_input({"train", "--resume", (dir / "none.ckpt").string(), "--steps", "2"}, "No such file");
  EXPECT_TRUE(temporaries_in(dir).empty());
}

// A write that fails (a full disk: here a file-size limit) exits 2, leaves the earlier file
// byte for byte and no temporary; stdout on /dev/full or past the limit exits 2 as well.
TEST(CliReliability, WriteFailuresOnFilesAndStdoutAreReported) {
  const fs::path dir = fresh_dir("full_disk");
  const fs::path out = dir / "profile.json";
  const CommandResult first =
      run_memento({"profile", "--model", "mlp", "--repeats", "1", "--out", out.string()});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  const std::string good = read_file(out);
  const std::string limit = "trap '' XFSZ; ulimit -f 1;";  // 1 KiB files: the profile does not fit
  const CommandResult full = run_redirected(
      {"profile", "--model", "mlp", "--repeats", "1", "--out", out.string()}, limit, "/dev/null");
  expect_one_line_error(full, "--out");
  EXPECT_EQ(read_file(out), good) << "the earlier profile must be left as it was";
  EXPECT_TRUE(temporaries_in(dir).empty());

  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"models"},
           {"plan", "--list"},
           {"plan", "--list", "--format", "json"},
           {"plan", "--profile", profile_path(), "--budget", "50%", "--format", "json"}}) {
    SCOPED_TRACE(args.front() + (args.size() > 1 ? " " + args[1] : ""));
    expect_one_line_error(run_redirected(args, "", "/dev/full"), "standard output");
  }
  const CommandResult cut =
      run_redirected({"plan", "--profile", profile_path(), "--sweep", "--format", "json"}, limit,
                     (dir / "sweep.json").string());
  expect_one_line_error(cut, "standard output");
}

TEST(CliReliability, ExitCodesFollowTheOneRule) {
  // A complete but negative report: 1.
  EXPECT_EQ(run_memento({"plan", "--profile", profile_path(), "--budget", "1GiB"}).exit_code, 1);
  const CommandResult verify = run_memento({"verify", "--model", "mlp", "--budget", "1KiB"});
  EXPECT_EQ(verify.exit_code, 1) << verify.err;
  EXPECT_NE(verify.err.find("nothing was verified"), std::string::npos) << verify.err;
  // A command that needs a plan and gets a budget no plan fits: input to change, 2.
  expect_bad_input({"train", "--model", "gpt-nano", "--steps", "2", "--budget", "1KiB"}, "--budget");
  expect_bad_input({"profile", "--model", "mlp", "--repeats", "1", "--budget", "1KiB"}, "--budget");
  // Success: 0.
  EXPECT_EQ(run_memento({"models"}).exit_code, 0);
  EXPECT_EQ(run_memento({"plan", "--profile", profile_path(), "--budget", "60%"}).exit_code, 0);
}

std::vector<std::string> train_args(const std::string& save) {
  std::vector<std::string> args = {
      "train", "--model",           "gpt-nano", "--steps",  "24",  "--batch",
      "4",     "--seq-len",         "32",       "--budget", "80%", "--eval-every",
      "4",     "--compare-repeats", "1",        "--format", "json"};
  if (!save.empty()) {
    args.push_back("--save");
    args.push_back(save);
  }
  return args;
}

double final_loss(const CommandResult& result) {
  EXPECT_EQ(result.exit_code, 0) << result.err;
  return nlohmann::json::parse(result.out).at("final_val_loss").get<double>();
}

// SIGKILL at several moments of a run that saves at every evaluation; the checkpoint left
// is always loadable, the resumed run ends at the uninterrupted run's final loss bit for bit,
// and no temporary survives the resumed run.
TEST(CliReliability, KilledTrainingResumesToTheSameFinalLoss) {
  const double expected = final_loss(run_memento(train_args("")));
  const fs::path dir = fresh_dir("killed");
  for (int delay_ms : {0, 40, 120, 300}) {
    SCOPED_TRACE("killed " + std::to_string(delay_ms) + " ms after the first checkpoint");
    const fs::path checkpoint = dir / ("run" + std::to_string(delay_ms) + ".ckpt");
    std::vector<std::string> args = train_args(checkpoint.string());
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      std::vector<char*> argv;
      std::string program = MEMENTO_CLI_PATH;
      argv.push_back(program.data());
      for (std::string& arg : args) argv.push_back(arg.data());
      argv.push_back(nullptr);
      std::freopen("/dev/null", "w", stdout);
      std::freopen("/dev/null", "w", stderr);
      setenv("OMP_NUM_THREADS", "1", 1);
      execv(program.c_str(), argv.data());
      _exit(127);
    }
    const auto start = std::chrono::steady_clock::now();
    while (!fs::exists(checkpoint) && std::chrono::steady_clock::now() - start < std::chrono::seconds(120)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    kill(child, SIGKILL);
    int status = 0;
    waitpid(child, &status, 0);
    ASSERT_TRUE(fs::exists(checkpoint)) << "no checkpoint was written within 120 s";
    std::vector<std::string> resume = train_args(checkpoint.string());
    resume.push_back("--resume");
    resume.push_back(checkpoint.string());
    EXPECT_EQ(final_loss(run_memento(resume)), expected);
    EXPECT_TRUE(temporaries_in(dir).empty());
  }
}

TEST(CliReliability, DamagedCheckpointIsRefusedAndLeftAsItWas) {
  const fs::path dir = fresh_dir("damaged");
  const fs::path checkpoint = dir / "run.ckpt";
  std::vector<std::string> args = train_args(checkpoint.string());
  args[4] = "4";  // --steps 4
  ASSERT_EQ(run_memento(args).exit_code, 0);
  std::string bytes = read_file(checkpoint);
  std::mt19937 random(5);
  for (int trial = 0; trial < 5; ++trial) {
    std::string damaged = bytes;
    damaged[random() % damaged.size()] ^= 0x20;
    write_file(checkpoint, damaged);
    std::vector<std::string> resume = train_args(checkpoint.string());
    resume[4] = "8";
    resume.push_back("--resume");
    resume.push_back(checkpoint.string());
    expect_bad_input(resume, checkpoint.string());
    EXPECT_EQ(read_file(checkpoint), damaged) << "a refused checkpoint must not be overwritten";
  }
}

// Random command lines from a pool of options and hostile values (the CLI's parsing,
// beside fuzz_inputs for its value parsers): every run ends with exit 0, 1 or 2, never a
// signal, and exit 2 prints exactly one short line.
TEST(CliReliability, RandomCommandLinesNeverCrash) {
  // --sweep is left out: a sweep is seconds of real work, not parsing.
  const std::vector<std::string> options = {"--budget",   "--planner", "--slots", "--segments", "--budgets",
                                            "--planners", "--format",  "--list",  "--profile"};
  const std::vector<std::string> values = {"50%",
                                           "0%",
                                           "1000%",
                                           "50",
                                           "-1",
                                           "99999999999999999999",
                                           "1e9",
                                           "optimal",
                                           "all",
                                           "uniform",
                                           "text",
                                           "json",
                                           "",
                                           "\x01",
                                           "3",
                                           "0",
                                           "%",
                                           "NaN",
                                           "1GiB",
                                           "-0",
                                           std::string(500, 'z'),
                                           "12GiB,40%",
                                           ",,",
                                           profile_path(),
                                           "/nonexistent.json",
                                           "--budget"};
  std::mt19937 random(11);
  for (int trial = 0; trial < 30; ++trial) {  // ~0.7 s each, mostly loading LibTorch
    std::vector<std::string> args = {"plan", "--profile", profile_path()};
    const int count = 1 + static_cast<int>(random() % 5);
    for (int k = 0; k < count; ++k) {
      args.push_back(options[random() % options.size()]);
      if (random() % 4 != 0) args.push_back(values[random() % values.size()]);
    }
    std::string joined;
    for (const std::string& arg : args) joined += " " + (arg.size() > 30 ? arg.substr(0, 30) + "..." : arg);
    SCOPED_TRACE("memento" + joined);
    const CommandResult result = run_memento(args);
    ASSERT_TRUE(result.exit_code == 0 || result.exit_code == 1 || result.exit_code == 2)
        << "exit " << result.exit_code << ": " << result.err;
    if (result.exit_code == 2) {
      EXPECT_EQ(result.err.find('\n'), result.err.size() - 1) << result.err;
      EXPECT_LT(result.err.size(), 300u) << result.err;
    }
  }
}

}  // namespace
}  // namespace memento::cli_test
