// The report pages in a real browser: headless Chromium (Debian's `chromium`, installed by
// `make deps`) loads each page from a file with no network, and the test checks that every
// chart rendered an SVG with marks, that the page recorded no errors or warnings, and that
// the page wrote nothing to the console. Screenshots are kept in the build directory
// (report_screenshot*.png) as artifacts. Without Chromium the test fails, never skips.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "memento/report/html.h"

namespace {

using nlohmann::json;
namespace fs = std::filesystem;

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

// $MEMENTO_CHROMIUM, else `chromium` or `chromium-browser` on the PATH; empty when none.
std::string find_chromium() {
  if (const char* configured = std::getenv("MEMENTO_CHROMIUM");
      configured != nullptr && *configured != '\0') {
    return configured;
  }
  const char* path_env = std::getenv("PATH");
  std::stringstream path_list(path_env != nullptr ? path_env : "/usr/bin:/bin");
  std::string directory;
  while (std::getline(path_list, directory, ':')) {
    for (const char* name : {"chromium", "chromium-browser"}) {
      const fs::path candidate = fs::path(directory) / name;
      if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
    }
  }
  return "";
}

// Artifacts go to the build directory: this binary lives in <build>/bin.
fs::path build_dir() {
  std::error_code error;
  const fs::path exe = fs::read_symlink("/proc/self/exe", error);
  if (!error && exe.has_parent_path() && exe.parent_path().filename() == "bin")
    return exe.parent_path().parent_path();
  return fs::current_path();
}

json load_fixture(const std::string& name) {
  std::ifstream in(fs::path(MEMENTO_SOURCE_DIR) / "tests/report/fixtures" / name);
  if (!in) throw std::runtime_error("missing fixture " + name);
  return json::parse(in);
}

struct BrowserRun {
  int exit_code = -1;
  std::string out;
  std::string log;
};

// One headless Chromium run on `page` with its own profile directory (parallel ctest runs
// must not share one) and `action` (--dump-dom or --screenshot=...).
BrowserRun run_chromium(const std::string& chromium, const fs::path& page, const fs::path& work,
                        const std::string& action) {
  const fs::path out_path = work / "stdout.txt";
  const fs::path log_path = work / "stderr.txt";
  // Virtual time runs the page's timers and promises to completion without waiting for
  // wall-clock time, so the result does not depend on machine load.
  std::string command =
      "timeout 180 " + quote(chromium) +
      " --headless=new --disable-gpu --no-sandbox --no-first-run --no-default-browser-check"
      " --disable-extensions --disable-background-networking --hide-scrollbars"
      " --user-data-dir=" +
      quote((work / "profile").string()) +
      " --virtual-time-budget=30000 --window-size=1400,4000 --enable-logging=stderr --v=0 " + action + " " +
      quote("file://" + fs::absolute(page).string()) + " >" + quote(out_path.string()) + " 2>" +
      quote(log_path.string());
  BrowserRun run;
  const int status = std::system(command.c_str());
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  run.out = read_text(out_path);
  run.log = read_text(log_path);
  return run;
}

// The value of `attribute` on the <body> start tag of a dumped DOM ("" when absent).
std::string body_attribute(const std::string& dom, const std::string& attribute) {
  // Library code in the <head> holds "<body" and "</head>" in strings: the element is the
  // last "<body" before the summary section, the first thing in it.
  const size_t summary = dom.find("<section id=\"summary\"");
  if (summary == std::string::npos) return "";
  const size_t body = dom.rfind("<body", summary);
  if (body == std::string::npos) return "";
  const size_t end = dom.find('>', body);
  const std::string tag = dom.substr(body, end - body);
  const std::string key = " " + attribute + "=\"";
  const size_t at = tag.find(key);
  if (at == std::string::npos) return "";
  const size_t begin = at + key.size();
  return tag.substr(begin, tag.find('"', begin) - begin);
}

// Lines the page wrote to the console ("Uncaught ...", console.error/warn/log): Chromium
// logs them as `INFO:CONSOLE(...)] "message", source: file:///...page.html (line)`.
std::vector<std::string> console_lines(const std::string& log, const fs::path& page) {
  std::vector<std::string> lines;
  std::stringstream stream(log);
  std::string line;
  while (std::getline(stream, line)) {
    const bool console = line.find(":CONSOLE") != std::string::npos ||
                         line.find("Uncaught") != std::string::npos ||
                         line.find("console.error") != std::string::npos;
    if (console && line.find(page.filename().string()) != std::string::npos) lines.push_back(line);
  }
  return lines;
}

class ReportChromium : public ::testing::Test {
 protected:
  void SetUp() override {
    chromium_ = find_chromium();
    work_ = fs::temp_directory_path() / ("memento_report_chromium_" + std::to_string(::getpid()));
    fs::create_directories(work_);
  }
  void TearDown() override {
    std::error_code error;
    fs::remove_all(work_, error);
  }

  // Renders `fixture`, loads it in Chromium, checks every chart, keeps a screenshot.
  void check_page(const std::string& fixture, const std::string& screenshot_name,
                  const std::vector<std::string>& expected_ids) {
    ASSERT_FALSE(chromium_.empty())
        << "headless Chromium is needed for the report test and was not found on the PATH: run `make deps` "
           "(it installs Debian's chromium) or set MEMENTO_CHROMIUM to a Chromium binary";
    const json document = load_fixture(fixture);
    const auto charts = memento::report_charts(document);
    std::vector<std::string> ids;
    for (const auto& chart : charts) ids.push_back(chart.id);
    ASSERT_EQ(ids, expected_ids);

    const fs::path page = build_dir() / ("report_" + fs::path(fixture).stem().string() + ".html");
    memento::write_html_report(document, page.string());

    const BrowserRun dom_run = run_chromium(chromium_, page, work_, "--dump-dom");
    ASSERT_EQ(dom_run.exit_code, 0) << "chromium failed on " << page << ":\n" << dom_run.log;
    const std::string& dom = dom_run.out;
    EXPECT_EQ(body_attribute(dom, "data-chart-count"), std::to_string(charts.size()));
    EXPECT_EQ(body_attribute(dom, "data-charts-rendered"), std::to_string(charts.size()))
        << "not every vegaEmbed promise resolved; errors: " << body_attribute(dom, "data-errors");
    EXPECT_EQ(body_attribute(dom, "data-errors"), "[]");
    EXPECT_EQ(body_attribute(dom, "data-warnings"), "[]");
    for (size_t c = 0; c < ids.size(); ++c) {
      const size_t begin = dom.find("id=\"" + ids[c] + "\"");
      ASSERT_NE(begin, std::string::npos) << ids[c];
      const size_t end = c + 1 < ids.size() ? dom.find("id=\"" + ids[c + 1] + "\"", begin) : dom.size();
      const std::string chart_dom = dom.substr(begin, end - begin);
      EXPECT_NE(chart_dom.find("<svg"), std::string::npos) << ids[c] << " has no SVG";
      EXPECT_NE(chart_dom.find("class=\"mark-"), std::string::npos) << ids[c] << " drew no marks";
    }
    EXPECT_EQ(console_lines(dom_run.log, page), std::vector<std::string>{})
        << "the page wrote to the console";

    const fs::path screenshot = build_dir() / screenshot_name;
    fs::remove(screenshot);
    const BrowserRun shot_run =
        run_chromium(chromium_, page, work_, "--screenshot=" + quote(fs::absolute(screenshot).string()));
    ASSERT_EQ(shot_run.exit_code, 0) << shot_run.log;
    ASSERT_TRUE(fs::exists(screenshot)) << "no screenshot at " << screenshot << ":\n" << shot_run.log;
    EXPECT_GT(fs::file_size(screenshot), 20u * 1024) << "a page of charts compresses to more than 20 KiB";
    EXPECT_EQ(console_lines(shot_run.log, page), std::vector<std::string>{});
  }

  std::string chromium_;
  fs::path work_;
};

TEST_F(ReportChromium, TimelinesReportRendersEveryChart) {
  check_page("timelines_small.json", "report_screenshot.png",
             {"chart-timeline-0", "chart-timeline-1", "chart-peak-breakdown", "chart-stage-time",
              "chart-stage-bytes", "chart-frontier-measured"});
}

TEST_F(ReportChromium, BenchReportRendersEveryChart) {
  check_page("bench_small.json", "report_screenshot_bench.png",
             {"chart-peak-breakdown", "chart-stage-time", "chart-stage-bytes", "chart-peak-vs-batch",
              "chart-frontier-predicted", "chart-frontier-measured"});
}

TEST_F(ReportChromium, ProfileReportRendersEveryChart) {
  check_page("profile_report_small.json", "report_screenshot_profile.png",
             {"chart-timeline-0", "chart-timeline-1", "chart-peak-breakdown", "chart-stage-time",
              "chart-stage-bytes", "chart-frontier-measured", "chart-frontier-predicted"});
}

TEST_F(ReportChromium, GacTrainingReportRendersEveryChart) {
  check_page("train_gac_small.json", "report_screenshot_gac.png",
             {"chart-train-loss", "chart-gac-decisions", "chart-gac-proxies"});
}

// The checks can fail: a chart whose spec Vega-Lite rejects and a script error must show
// up in the page's attributes and in Chromium's console log.
TEST_F(ReportChromium, BrokenChartIsDetected) {
  ASSERT_FALSE(chromium_.empty()) << "headless Chromium was not found: run `make deps`";
  std::string html = memento::render_html_report(load_fixture("timelines_small.json"));
  const std::string bar = "\"mark\":\"bar\"";
  const size_t at = html.find(bar, html.find("id=\"memento-charts\""));
  ASSERT_NE(at, std::string::npos);
  html.replace(at, bar.size(), "\"mark\":\"no-such-mark\"");
  html.replace(html.rfind("</body>"), 7, "<script>null.property;</script></body>");
  const fs::path page = work_ / "broken_report.html";
  std::ofstream(page, std::ios::binary) << html;

  const BrowserRun run = run_chromium(chromium_, page, work_, "--dump-dom");
  ASSERT_EQ(run.exit_code, 0) << run.log;
  EXPECT_EQ(body_attribute(run.out, "data-chart-count"), "6");
  EXPECT_EQ(body_attribute(run.out, "data-charts-rendered"), "5");
  const std::string errors = body_attribute(run.out, "data-errors");
  EXPECT_NE(errors.find("chart-peak-breakdown"), std::string::npos) << errors;
  EXPECT_NE(errors.find("null"), std::string::npos) << errors;
  EXPECT_FALSE(console_lines(run.log, page).empty()) << run.log;
}

}  // namespace
