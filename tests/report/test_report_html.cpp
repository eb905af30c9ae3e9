// The HTML report page: which charts each document yields, the data they embed, the
// escaping of embedded JSON and library code, downsampling, and input errors.
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "memento/core/error.h"
#include "memento/report/html.h"

namespace {

using nlohmann::json;
namespace fs = std::filesystem;

json load_fixture(const std::string& name) {
  std::ifstream in(fs::path(MEMENTO_SOURCE_DIR) / "tests/report/fixtures" / name);
  if (!in) throw std::runtime_error("missing fixture " + name);
  return json::parse(in);
}

std::vector<std::string> chart_ids(const std::vector<memento::ReportChart>& charts) {
  std::vector<std::string> ids;
  for (const auto& chart : charts) ids.push_back(chart.id);
  return ids;
}

// The chart list the page embeds, parsed back from its <script type="application/json">.
json embedded_charts(const std::string& page) {
  const std::string open = "<script type=\"application/json\" id=\"memento-charts\">";
  const size_t begin = page.find(open);
  if (begin == std::string::npos) throw std::runtime_error("page has no memento-charts element");
  const size_t end = page.find("</script>", begin);
  return json::parse(page.substr(begin + open.size(), end - begin - open.size()));
}

const json* find_chart(const json& charts, const std::string& id) {
  for (const json& chart : charts) {
    if (chart.at("id") == id) return &chart;
  }
  return nullptr;
}

// Every inline data row of a spec and its layers.
void collect_values(const json& spec, std::vector<json>& rows) {
  if (spec.contains("data") && spec["data"].contains("values")) {
    for (const json& row : spec["data"]["values"]) rows.push_back(row);
  }
  if (spec.contains("layer")) {
    for (const json& layer : spec["layer"]) collect_values(layer, rows);
  }
}

size_t count_of(const std::string& text, const std::string& needle) {
  size_t count = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++count;
  return count;
}

// A timeline with `steps` alloc/free pairs of activations and one tall spike in the middle.
json synthetic_timeline(int steps, int64_t spike_bytes) {
  json events = json::array();
  int64_t live = 1000;
  double t_s = 0;
  for (int i = 0; i < steps; ++i) {
    const int64_t bytes = i == steps / 2 ? spike_bytes : 100;
    t_s += 1e-4;
    live += bytes;
    events.push_back({{"t_s", t_s},
                      {"kind", "alloc"},
                      {"bytes", bytes},
                      {"category", "activations"},
                      {"phase", "forward 0"},
                      {"live_bytes", live}});
    t_s += 1e-4;
    live -= bytes;
    events.push_back({{"t_s", t_s},
                      {"kind", "free"},
                      {"bytes", bytes},
                      {"category", "activations"},
                      {"phase", "forward 0"},
                      {"live_bytes", live}});
  }
  return {{"format", "memento.timeline/1"},
          {"model", "synthetic"},
          {"planner", "store-all"},
          {"budget_bytes", nullptr},
          {"measured_peak_bytes", 1000 + spike_bytes},
          {"step_s", t_s},
          {"categories", {"parameters", "activations"}},
          {"start_by_category", {{"parameters", 1000}}},
          {"events", events}};
}

TEST(ReportHtml, TimelinesFileYieldsEveryTimelineAndStageChart) {
  const json document = load_fixture("timelines_small.json");
  const auto ids = chart_ids(memento::report_charts(document));
  const std::vector<std::string> expected = {"chart-timeline-0",     "chart-timeline-1",
                                             "chart-peak-breakdown", "chart-stage-time",
                                             "chart-stage-bytes",    "chart-frontier-measured"};
  EXPECT_EQ(ids, expected);
}

TEST(ReportHtml, BenchFileYieldsBreakdownStagesBatchAndBothFrontiers) {
  const json document = load_fixture("bench_small.json");
  const auto ids = chart_ids(memento::report_charts(document));
  const std::vector<std::string> expected = {"chart-peak-breakdown",     "chart-stage-time",
                                             "chart-stage-bytes",        "chart-peak-vs-batch",
                                             "chart-frontier-predicted", "chart-frontier-measured"};
  EXPECT_EQ(ids, expected);
}

TEST(ReportHtml, ProfileReportUsesProfileStagesAndFrontier) {
  const json document = load_fixture("profile_report_small.json");
  const auto charts = memento::report_charts(document);
  const std::vector<std::string> id_list = chart_ids(charts);
  const std::set<std::string> ids(id_list.begin(), id_list.end());
  for (const char* id : {"chart-timeline-0", "chart-timeline-1", "chart-peak-breakdown", "chart-stage-time",
                         "chart-stage-bytes", "chart-frontier-predicted"}) {
    EXPECT_EQ(ids.count(id), 1u) << id;
  }
  EXPECT_EQ(ids.size(), charts.size()) << "chart ids must be unique";
  // Stage charts come from the profile (stage names), not from the timelines.
  for (const auto& chart : charts) {
    if (chart.id != "chart-stage-time") continue;
    std::vector<json> rows;
    collect_values(chart.spec, rows);
    ASSERT_FALSE(rows.empty());
    EXPECT_EQ(rows.front().at("stage_label"), "0 embed");
  }
}

TEST(ReportHtml, PageEmbedsSpecsDataAndLibrariesWithoutNetwork) {
  const json document = load_fixture("bench_small.json");
  const std::string page = memento::render_html_report(document);
  const auto charts = memento::report_charts(document);
  EXPECT_NE(page.find("data-chart-count=\"" + std::to_string(charts.size()) + "\""), std::string::npos);
  for (const auto& chart : charts) {
    EXPECT_NE(page.find("<div class=\"chart\" id=\"" + chart.id + "\"></div>"), std::string::npos)
        << chart.id;
  }
  const json embedded = embedded_charts(page);
  ASSERT_EQ(embedded.size(), charts.size());
  for (size_t c = 0; c < charts.size(); ++c) EXPECT_EQ(embedded[c].at("spec"), charts[c].spec);
  // Each library is inlined once, whole, and nothing is loaded from elsewhere.
  for (const std::string& library : memento::bundled_chart_libraries()) {
    EXPECT_NE(page.find("<!-- " + library), std::string::npos) << library;
  }
  EXPECT_NE(page.find("vegaEmbed"), std::string::npos);
  EXPECT_EQ(page.find("<script src"), std::string::npos);
  EXPECT_EQ(page.find("<link"), std::string::npos);
  EXPECT_EQ(page.find("sourceMappingURL"), std::string::npos);
  EXPECT_GT(page.size(), 700u * 1024) << "the three minified libraries weigh about 820 KiB";
  // One <script> per library, the error capture, the chart data and the render script.
  EXPECT_EQ(count_of(page, "<script"), 6u);
  EXPECT_EQ(count_of(page, "</script>"), 6u);
}

TEST(ReportHtml, BundledLibrariesAreVegaVegaLiteAndVegaEmbed) {
  const auto libraries = memento::bundled_chart_libraries();
  ASSERT_EQ(libraries.size(), 3u);
  EXPECT_EQ(libraries[0].rfind("vega ", 0), 0u);
  EXPECT_EQ(libraries[1].rfind("vega-lite ", 0), 0u);
  EXPECT_EQ(libraries[2].rfind("vega-embed ", 0), 0u);
}

TEST(ReportHtml, ScriptEndTagsInStringsAreEscaped) {
  json document = load_fixture("timelines_small.json");
  document["timelines"][1]["planner"] = "</script><script>alert(1)</script><!--";
  const std::string page = memento::render_html_report(document);
  EXPECT_EQ(page.find("</script><script>alert(1)"), std::string::npos);
  EXPECT_EQ(page.find("<script>alert(1)"), std::string::npos);
  // The name survives the round trip through the page's JSON.
  const json embedded = embedded_charts(page);
  const json* breakdown = find_chart(embedded, "chart-peak-breakdown");
  ASSERT_NE(breakdown, nullptr);
  std::vector<json> rows;
  collect_values(breakdown->at("spec"), rows);
  bool found = false;
  for (const json& row : rows)
    found = found || row.value("run", "").rfind("</script><script>alert(1)", 0) == 0;
  EXPECT_TRUE(found);
  // The summary table shows it as text.
  EXPECT_NE(page.find("&lt;/script&gt;&lt;script&gt;alert(1)"), std::string::npos);
}

TEST(ReportHtml, TimelineRowsStackToTheMeasuredPeak) {
  const json document = load_fixture("timelines_small.json");
  const json& store_all = document["timelines"][0];
  const auto charts = memento::report_charts(document);
  ASSERT_EQ(charts[0].id, "chart-timeline-0");
  const json& rows = charts[0].spec["layer"][0]["data"]["values"];
  double highest_mib = 0;
  for (const json& row : rows) {
    double total_mib = 0;
    for (const json& category : store_all["categories"])
      total_mib += row.at(category.get<std::string>()).get<double>();
    highest_mib = std::max(highest_mib, total_mib);
  }
  const double peak_mib = store_all["measured_peak_bytes"].get<double>() / (1024.0 * 1024.0);
  EXPECT_NEAR(highest_mib, peak_mib, 1e-3);
  // The y scale is shared: both timelines use the same domain, above both peaks and the budget.
  const json domain0 = charts[0].spec["layer"][0]["encoding"]["y"]["scale"]["domain"];
  const json domain1 = charts[1].spec["layer"][0]["encoding"]["y"]["scale"]["domain"];
  EXPECT_EQ(domain0, domain1);
  EXPECT_GT(domain0[1].get<double>(),
            document["timelines"][1]["budget_bytes"].get<double>() / (1024.0 * 1024.0));
  // The plan's chart carries a budget rule; store-all (no budget) does not.
  EXPECT_EQ(charts[0].spec["layer"].size(), 2u);
  EXPECT_EQ(charts[1].spec["layer"].size(), 3u);
}

TEST(ReportHtml, DownsamplingKeepsThePeakAndTheLimit) {
  const int64_t spike_bytes = 5 << 20;
  const json document = synthetic_timeline(20000, spike_bytes);
  const auto charts = memento::report_charts(document, memento::HtmlReportOptions().max_timeline_points(500));
  const json& rows = charts.at(0).spec["layer"][0]["data"]["values"];
  EXPECT_LE(rows.size(), 500u);
  EXPECT_GE(rows.size(), 400u);
  double highest_mib = 0;
  double previous_t_s = -1;
  for (const json& row : rows) {
    highest_mib =
        std::max(highest_mib, row.at("activations").get<double>() + row.at("parameters").get<double>());
    EXPECT_GE(row.at("t_s").get<double>(), previous_t_s) << "rows must stay in time order";
    previous_t_s = row.at("t_s").get<double>();
  }
  EXPECT_NEAR(highest_mib, (1000.0 + spike_bytes) / (1024.0 * 1024.0), 1e-3);

  // Short timelines keep every event (plus start and end).
  const json small = synthetic_timeline(10, 4096);
  const auto small_charts = memento::report_charts(small);
  EXPECT_EQ(small_charts.at(0).spec["layer"][0]["data"]["values"].size(), 20u + 2u);
}

TEST(ReportHtml, PeakBreakdownUsesTheWritersByCategory) {
  const json document = load_fixture("timelines_small.json");
  const auto charts = memento::report_charts(document);
  const json* breakdown = nullptr;
  for (const auto& chart : charts) {
    if (chart.id == "chart-peak-breakdown") breakdown = &chart.spec;
  }
  ASSERT_NE(breakdown, nullptr);
  std::vector<json> rows;
  collect_values(*breakdown, rows);
  const json& plan = document["timelines"][1];
  double plan_total_mib = 0;
  double budget_mib = -1;
  for (const json& row : rows) {
    if (row.at("run") != "optimal (budget 2.15 MiB)") continue;
    if (row.contains("category")) {
      plan_total_mib += row.at("MiB").get<double>();
    } else {
      budget_mib = row.at("MiB").get<double>();
    }
  }
  EXPECT_NEAR(plan_total_mib, plan["peak"]["bytes"].get<double>() / (1024.0 * 1024.0), 1e-3);
  EXPECT_NEAR(budget_mib, plan["budget_bytes"].get<double>() / (1024.0 * 1024.0), 1e-3);
}

TEST(ReportHtml, BenchFrontiersAndBatchChartHoldTheRowsThatRan) {
  const json document = load_fixture("bench_small.json");
  const json embedded = embedded_charts(memento::render_html_report(document));
  std::vector<json> measured;
  collect_values(find_chart(embedded, "chart-frontier-measured")->at("spec"), measured);
  // store-all plus the ok and over_budget rows; infeasible and error rows have no measurement.
  EXPECT_EQ(measured.size(), 1u + 5u);
  std::vector<json> predicted;
  collect_values(find_chart(embedded, "chart-frontier-predicted")->at("spec"), predicted);
  EXPECT_EQ(predicted.size(), 4u);
  std::vector<json> batch;
  collect_values(find_chart(embedded, "chart-peak-vs-batch")->at("spec"), batch);
  // 5 + 6 points, measured and predicted each, plus two cap rules.
  EXPECT_EQ(batch.size(), 2u * (5u + 6u) + 2u);
}

TEST(ReportHtml, PlanSweepOutputYieldsThePredictedFrontier) {
  const json sweep = {{"profile_file", "p.json"},
                      {"store_all_peak_bytes", 300},
                      {"store_all_time_s", 0.25},
                      {"budgets_bytes", {100, 200}},
                      {"planners",
                       {{{"planner", "optimal"},
                         {"error", nullptr},
                         {"points",
                          {{{"budget_bytes", 100}, {"feasible", false}},
                           {{"budget_bytes", 200}, {"feasible", true}, {"predicted_time_s", 0.5}}}}}}}};
  const auto charts = memento::report_charts(sweep);
  ASSERT_EQ(chart_ids(charts), std::vector<std::string>{"chart-frontier-predicted"});
  std::vector<json> rows;
  collect_values(charts[0].spec, rows);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].at("time_s"), 0.5);
}

TEST(ReportHtml, MalformedDocumentsNameTheField) {
  auto message_of = [](const json& document) -> std::string {
    try {
      memento::render_html_report(document);
    } catch (const memento::InvalidArgument& error) {
      return error.what();
    }
    return "no error";
  };
  EXPECT_NE(message_of(json::array()).find("JSON object"), std::string::npos);
  EXPECT_NE(message_of({{"format", "memento.nothing/9"}}).find("memento.bench/1"), std::string::npos);
  json document = load_fixture("timelines_small.json");
  document["timelines"][1]["events"][12]["bytes"] = "many";
  EXPECT_NE(message_of(document).find("timelines[1].events[12].bytes"), std::string::npos)
      << message_of(document);
  document = load_fixture("timelines_small.json");
  document["timelines"][0]["events"][3]["kind"] = "grow";
  EXPECT_NE(message_of(document).find("timelines[0].events[3].kind"), std::string::npos);
  document = load_fixture("bench_small.json");
  document["rows"][2].erase("planner");
  EXPECT_NE(message_of(document).find("rows[2].planner is missing"), std::string::npos)
      << message_of(document);
  document = load_fixture("bench_small.json");
  document["profile"]["stages"][1]["saved_bytes"] = -5;
  EXPECT_NE(message_of(document).find("profile"), std::string::npos);
  EXPECT_THROW(memento::report_charts(load_fixture("bench_small.json"),
                                      memento::HtmlReportOptions().max_timeline_points(3)),
               memento::InvalidArgument);
}

TEST(ReportHtml, WriteReplacesTheFileAndNamesBadPaths) {
  const fs::path dir = fs::temp_directory_path() / ("memento_report_html_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path path = dir / "report.html";
  const json document = load_fixture("timelines_small.json");
  memento::write_html_report(document, path.string(), memento::HtmlReportOptions().title("My <run>"));
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(text.str(),
            memento::render_html_report(document, memento::HtmlReportOptions().title("My <run>")));
  EXPECT_NE(text.str().find("<title>My &lt;run&gt;</title>"), std::string::npos);
  EXPECT_FALSE(fs::exists(path.string() + ".tmp"));
  try {
    memento::write_html_report(document, (dir / "no/such/dir/r.html").string());
    ADD_FAILURE() << "writing into a missing directory must throw";
  } catch (const memento::Error& error) {
    EXPECT_NE(std::string(error.what()).find("no/such/dir/r.html"), std::string::npos);
  }
  fs::remove_all(dir);
}

}  // namespace
