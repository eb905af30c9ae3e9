#pragma once
// Runs the built `memento` binary for the CLI tests: stdout through a pipe, stderr through
// a file in a per-process scratch directory, the exit code decoded.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace memento::cli_test {

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

/// `arg` quoted for /bin/sh.
inline std::string quote(const std::string& arg) {
  std::string quoted = "'";
  for (char c : arg) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

/// A scratch directory of this test process, created on first use.
inline std::filesystem::path scratch_dir() {
  static const std::filesystem::path dir = [] {
    std::filesystem::path path =
        std::filesystem::temp_directory_path() / ("memento_cli_" + std::to_string(getpid()));
    std::filesystem::create_directories(path);
    return path;
  }();
  return dir;
}

/// Runs `memento <args>` on one intra-op thread (tests compare outputs, not speed).
inline CommandResult run_memento(const std::vector<std::string>& args) {
  const std::filesystem::path err_path = scratch_dir() / "stderr.txt";
  std::string command = "OMP_NUM_THREADS=1 " + quote(MEMENTO_CLI_PATH);
  for (const std::string& arg : args) command += " " + quote(arg);
  command += " 2>" + quote(err_path.string());
  CommandResult result;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) throw std::runtime_error("popen failed for " + command);
  char buffer[4096];
  size_t count = 0;
  while ((count = fread(buffer, 1, sizeof buffer, pipe)) > 0) result.out.append(buffer, count);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  std::ifstream err_file(err_path);
  std::stringstream err;
  err << err_file.rdbuf();
  result.err = err.str();
  return result;
}

// One line on stderr, nothing on stdout, exit code 2, and no sign of a crash.
inline void expect_bad_input(const std::vector<std::string>& args, const std::string& expected_word) {
  std::string joined;
  for (const auto& arg : args) joined += arg + " ";
  SCOPED_TRACE("memento " + joined);
  const CommandResult result = run_memento(args);
  EXPECT_EQ(result.exit_code, 2) << result.err;
  EXPECT_TRUE(result.out.empty()) << result.out;
  ASSERT_FALSE(result.err.empty());
  EXPECT_EQ(result.err.find('\n'), result.err.size() - 1) << "expected one line, got: " << result.err;
  EXPECT_EQ(result.err.rfind("memento: ", 0), 0u) << result.err;
  EXPECT_EQ(result.err.find("terminate"), std::string::npos) << result.err;
  EXPECT_EQ(result.err.find("Aborted"), std::string::npos) << result.err;
  EXPECT_NE(result.err.find(expected_word), std::string::npos)
      << "\"" << expected_word << "\" not in: " << result.err;
}

}  // namespace memento::cli_test
