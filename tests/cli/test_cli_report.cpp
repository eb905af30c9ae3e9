// `memento report` end to end: runs the built binary on the report fixtures and on bad input.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

namespace {

namespace fs = std::filesystem;

struct ReportRun {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string quote(const std::string& arg) {
  std::string quoted = "'";
  for (char c : arg) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

class CliReport : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("memento_cli_report_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code error;
    fs::remove_all(dir_, error);
  }

  ReportRun run(const std::vector<std::string>& args) {
    std::string command = quote(MEMENTO_CLI_PATH) + " report";
    for (const std::string& arg : args) command += " " + quote(arg);
    command += " >" + quote((dir_ / "out.txt").string()) + " 2>" + quote((dir_ / "err.txt").string());
    const int status = std::system(command.c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_text(dir_ / "out.txt"),
            read_text(dir_ / "err.txt")};
  }

  static std::string fixture(const std::string& name) {
    return (fs::path(MEMENTO_SOURCE_DIR) / "tests/report/fixtures" / name).string();
  }

  fs::path dir_;
};

TEST_F(CliReport, WritesOneSelfContainedPagePerDocument) {
  const std::vector<std::pair<std::string, int>> fixtures = {
      {"timelines_small.json", 6}, {"bench_small.json", 6}, {"profile_report_small.json", 7}};
  for (const auto& [name, chart_count] : fixtures) {
    const fs::path page = dir_ / (name + ".html");
    const ReportRun result = run({fixture(name), "-o", page.string()});
    ASSERT_EQ(result.exit_code, 0) << name << ": " << result.err;
    EXPECT_NE(result.out.find("wrote " + page.string()), std::string::npos) << result.out;
    EXPECT_NE(result.out.find(std::to_string(chart_count) + " charts"), std::string::npos) << result.out;
    const std::string html = read_text(page);
    EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
    EXPECT_NE(html.find("data-chart-count=\"" + std::to_string(chart_count) + "\""), std::string::npos)
        << name;
    EXPECT_EQ(html.find("<script src"), std::string::npos);
  }
}

TEST_F(CliReport, TitleAndPointLimitOptions) {
  const fs::path page = dir_ / "titled.html";
  const ReportRun result = run({fixture("timelines_small.json"), "--out", page.string(), "--title",
                                "Night run", "--max-points", "64"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_NE(read_text(page).find("<title>Night run</title>"), std::string::npos);
  const ReportRun too_few = run({fixture("timelines_small.json"), "-o", page.string(), "--max-points", "3"});
  EXPECT_EQ(too_few.exit_code, 2);
  EXPECT_NE(too_few.err.find("--max-points"), std::string::npos) << too_few.err;
}

TEST_F(CliReport, BadInputIsOneLineAndExitTwo) {
  auto expect_bad = [&](const std::vector<std::string>& args, const std::string& needle) {
    const ReportRun result = run(args);
    EXPECT_EQ(result.exit_code, 2) << result.err;
    EXPECT_NE(result.err.find(needle), std::string::npos) << result.err;
    EXPECT_EQ(std::count(result.err.begin(), result.err.end(), '\n'), 1) << result.err;
    EXPECT_FALSE(fs::exists(dir_ / "bad.html"));
  };
  const std::string out = (dir_ / "bad.html").string();
  expect_bad({(dir_ / "missing.json").string(), "-o", out}, "missing.json");
  std::ofstream(dir_ / "broken.json") << "{\"format\": ";
  expect_bad({(dir_ / "broken.json").string(), "-o", out}, "not valid JSON");
  std::ofstream(dir_ / "other.json") << "{\"format\": \"something/2\"}";
  expect_bad({(dir_ / "other.json").string(), "-o", out}, "memento.bench/1");
  std::ofstream(dir_ / "rows.json")
      << "{\"format\": \"memento.bench/1\", \"store_all\": {\"measured_peak_bytes\": 1, "
         "\"step_s\": 1}, \"rows\": [{\"status\": \"ok\"}]}";
  expect_bad({(dir_ / "rows.json").string(), "-o", out}, "rows[0].planner");
  expect_bad({fixture("bench_small.json")}, "--out");
}

}  // namespace
