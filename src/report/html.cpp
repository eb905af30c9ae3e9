// The report page: a title, a summary table, the charts, the bundled chart libraries and
// a small script that renders the charts and records errors for the headless test.
#include "memento/report/html.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include "memento/core/error.h"
#include "memento/core/output_file.h"
#include "report/assets.h"
#include "report/report_input.h"

namespace memento {
namespace {

using nlohmann::json;
using report_detail::DocumentKind;
using report_detail::has_value;
using report_detail::human_bytes;
using report_detail::human_percent;
using report_detail::human_seconds;
using report_detail::row_planner_label;

std::string escape_html(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// JSON inside <script type="application/json">: '<' only occurs inside JSON strings, where
// \u003c means the same character, so no "</script>" or "<!--" can end the element early.
std::string script_safe_json(const json& value) {
  const std::string text = value.dump(-1, ' ', false, json::error_handler_t::replace);
  std::string out;
  out.reserve(text.size() + 64);
  for (const char c : text) {
    if (c == '<') {
      out += "\\u003c";
    } else {
      out += c;
    }
  }
  return out;
}

// Library code inside <script>: only "</script" (any case) ends the element early. The
// bundles contain none today (a unit test checks), but a later version could, in a string
// or a regular expression, where "<\/" means the same.
std::string script_safe_code(std::string code) {
  for (size_t at = code.find("</"); at != std::string::npos; at = code.find("</", at + 2)) {
    std::string tag = code.substr(at + 2, 6);
    std::transform(tag.begin(), tag.end(), tag.begin(), [](unsigned char c) { return std::tolower(c); });
    if (tag == "script") code.replace(at, 2, "<\\/");
  }
  // Source maps are not shipped; the comment would only make devtools fetch a missing file.
  const size_t map_comment = code.rfind("//# sourceMappingURL=");
  if (map_comment != std::string::npos) code.erase(map_comment, code.find('\n', map_comment) - map_comment);
  return code;
}

class HtmlTable {
 public:
  explicit HtmlTable(std::vector<std::string> headers) : headers_(std::move(headers)) {}
  void add_row(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }
  bool empty() const { return rows_.empty(); }
  std::string str(const std::string& id) const {
    std::ostringstream out;
    out << "<table id=\"" << id << "\"><thead><tr>";
    for (const std::string& header : headers_) out << "<th>" << escape_html(header) << "</th>";
    out << "</tr></thead><tbody>\n";
    for (const auto& row : rows_) {
      out << "<tr>";
      for (const std::string& cell : row) out << "<td>" << escape_html(cell) << "</td>";
      out << "</tr>\n";
    }
    out << "</tbody></table>\n";
    return out.str();
  }

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

std::string text_of(const json& object, const std::string& key) {
  if (!has_value(object, key)) return "—";
  const json& value = object.at(key);
  return value.is_string() ? value.get<std::string>() : value.dump();
}

std::string bytes_of(const json& object, const std::string& key) {
  if (!has_value(object, key) || !object.at(key).is_number()) return "—";
  return human_bytes(object.at(key).get<int64_t>());
}

std::string seconds_of(const json& object, const std::string& key) {
  if (!has_value(object, key) || !object.at(key).is_number()) return "—";
  return human_seconds(object.at(key).get<double>());
}

std::string fields_list(const std::vector<std::pair<std::string, std::string>>& fields) {
  std::ostringstream out;
  out << "<dl class=\"fields\">";
  for (const auto& [name, value] : fields) {
    out << "<dt>" << escape_html(name) << "</dt><dd>" << escape_html(value) << "</dd>";
  }
  out << "</dl>\n";
  return out.str();
}

std::string timelines_summary(const json& document, DocumentKind kind) {
  std::vector<const json*> timelines;
  std::vector<std::string> paths;
  report_detail::collect_timelines(document, kind, timelines, paths);
  if (timelines.empty()) return "";
  const std::vector<std::string> labels = report_detail::timeline_labels(timelines, paths);
  HtmlTable table(
      {"run", "planner", "budget", "predicted peak", "measured peak", "peak during", "step time", "events"});
  for (size_t k = 0; k < timelines.size(); ++k) {
    const json& timeline = *timelines[k];
    std::string peak_phase = "—";
    if (has_value(timeline, "peak") && timeline.at("peak").is_object())
      peak_phase = text_of(timeline.at("peak"), "phase");
    const size_t events = has_value(timeline, "events") ? timeline.at("events").size() : 0;
    table.add_row({labels[k], text_of(timeline, "planner"), bytes_of(timeline, "budget_bytes"),
                   bytes_of(timeline, "predicted_peak_bytes"), bytes_of(timeline, "measured_peak_bytes"),
                   peak_phase, seconds_of(timeline, "step_s"), std::to_string(events)});
  }
  return table.str("summary-timelines");
}

std::string bench_summary(const json& document) {
  std::ostringstream out;
  const json& store_all = document.at("store_all");
  std::string shape = text_of(document, "batch");
  if (has_value(document, "seq_len")) shape += " × " + text_of(document, "seq_len") + " tokens";
  out << fields_list({{"model", text_of(document, "model")},
                      {"batch", shape},
                      {"steps", text_of(document, "steps") + " timed after " +
                                    text_of(document, "warmup_steps") + " warm-up"},
                      {"threads", text_of(document, "threads")},
                      {"machine", text_of(document, "machine")},
                      {"store-all peak", bytes_of(store_all, "measured_peak_bytes")},
                      {"store-all step", seconds_of(store_all, "step_s")}});
  HtmlTable table({"planner", "budget", "status", "predicted peak", "measured peak", "predicted step", "step",
                   "overhead", "recompute", "grad cosine", "message"});
  for (const json& listed : document.at("rows")) {
    // Rows that did not run (infeasible, error) carry zeros: show them as blanks.
    const std::string status = text_of(listed, "status");
    json row = listed;
    if (status == "infeasible" || status == "error") {
      for (const char* key : {"predicted_peak_bytes", "measured_peak_bytes", "predicted_step_s", "step_s",
                              "overhead", "recompute_ratio", "grad_cosine"}) {
        row.erase(key);
      }
    }
    const std::string budget = text_of(row, "budget") +
                               (has_value(row, "budget_bytes") ? " = " + bytes_of(row, "budget_bytes") : "");
    const std::string overhead = has_value(row, "overhead") && row.at("overhead").is_number()
                                     ? human_percent(row.at("overhead").get<double>())
                                     : "—";
    const std::string recompute = has_value(row, "recompute_ratio") && row.at("recompute_ratio").is_number()
                                      ? human_percent(row.at("recompute_ratio").get<double>())
                                      : "—";
    std::string cosine = "—";
    if (has_value(row, "grad_cosine") && row.at("grad_cosine").is_number()) {
      char text[32];
      std::snprintf(text, sizeof text, "%.6f", row.at("grad_cosine").get<double>());
      cosine = text;
    }
    table.add_row({row_planner_label(row, "rows"), budget, text_of(row, "status"),
                   bytes_of(row, "predicted_peak_bytes"), bytes_of(row, "measured_peak_bytes"),
                   seconds_of(row, "predicted_step_s"), seconds_of(row, "step_s"), overhead, recompute,
                   cosine, has_value(row, "message") ? text_of(row, "message") : ""});
  }
  out << table.str("summary-rows");
  if (has_value(document, "max_batch")) {
    HtmlTable batches({"planner", "memory cap", "largest batch that fits", "batches tried"});
    for (const json& search : document.at("max_batch")) {
      batches.add_row({row_planner_label(search, "max_batch"), bytes_of(search, "memory_cap_bytes"),
                       text_of(search, "max_batch"),
                       std::to_string(has_value(search, "points") ? search.at("points").size() : 0)});
    }
    out << batches.str("summary-max-batch");
  }
  return out.str();
}

std::string profile_fields(const json& profile) {
  int64_t stages = 0;
  double forward_s = 0;
  double backward_s = 0;
  if (has_value(profile, "stages")) {
    for (const json& stage : profile.at("stages")) {
      ++stages;
      if (has_value(stage, "forward_s") && stage.at("forward_s").is_number())
        forward_s += stage.at("forward_s").get<double>();
      if (has_value(stage, "backward_s") && stage.at("backward_s").is_number())
        backward_s += stage.at("backward_s").get<double>();
    }
  }
  return fields_list({{"model", text_of(profile, "model")},
                      {"stages", std::to_string(stages)},
                      {"fixed bytes", bytes_of(profile, "fixed_bytes")},
                      {"forward (sum of stages)", human_seconds(forward_s)},
                      {"backward (sum of stages)", human_seconds(backward_s)}});
}

// Per planner: the lowest feasible budget of a frontier and the predicted time there.
std::string frontier_summary(const json& points_by_planner) {
  HtmlTable table({"planner", "lowest feasible budget", "predicted time there", "points"});
  for (const auto& [planner, points] : points_by_planner.items()) {
    int64_t lowest = -1;
    double time_s = 0;
    for (const json& point : points) {
      if (!has_value(point, "feasible") || !point.at("feasible").is_boolean() ||
          !point.at("feasible").get<bool>())
        continue;
      if (!has_value(point, "budget_bytes") || !point.at("budget_bytes").is_number()) continue;
      const int64_t budget = point.at("budget_bytes").get<int64_t>();
      if (lowest < 0 || budget < lowest) {
        lowest = budget;
        time_s = has_value(point, "predicted_time_s") && point.at("predicted_time_s").is_number()
                     ? point.at("predicted_time_s").get<double>()
                     : 0;
      }
    }
    table.add_row({planner, lowest < 0 ? "none feasible" : human_bytes(lowest),
                   lowest < 0 ? "—" : human_seconds(time_s), std::to_string(points.size())});
  }
  return table.empty() ? "" : table.str("summary-frontier");
}

std::string summary_html(const json& document, DocumentKind kind) {
  std::ostringstream out;
  switch (kind) {
    case DocumentKind::Timeline:
    case DocumentKind::Timelines:
      out << timelines_summary(document, kind);
      break;
    case DocumentKind::Bench:
      out << bench_summary(document);
      break;
    case DocumentKind::ProfileReport: {
      if (has_value(document, "profile")) out << profile_fields(document.at("profile"));
      out << timelines_summary(document, kind);
      if (has_value(document, "frontier")) {
        json by_planner = json::object();
        for (const json& point : document.at("frontier"))
          by_planner[text_of(point, "planner")].push_back(point);
        out << frontier_summary(by_planner);
      }
      break;
    }
    case DocumentKind::Train: {
      std::vector<std::pair<std::string, std::string>> fields = {
          {"model", text_of(document, "model")},
          {"data", text_of(document, "data")},
          {"planner", text_of(document, "planner") + (has_value(document, "lossy") &&
                                                              document.at("lossy").is_boolean() &&
                                                              document.at("lossy").get<bool>()
                                                          ? " (lossy: " + text_of(document, "codecs") + ")"
                                                          : "")},
          {"steps", text_of(document, "steps")},
          {"budget", bytes_of(document, "budget_bytes")},
          {"measured peak", bytes_of(document, "peak_bytes")},
          {"final validation loss", text_of(document, "final_val_loss")}};
      if (has_value(document, "gac") && has_value(document.at("gac"), "mode"))
        fields.push_back({"gac mode", text_of(document.at("gac"), "mode")});
      out << fields_list(fields);
      break;
    }
    case DocumentKind::PlanSweep: {
      json by_planner = json::object();
      for (const json& planner : document.at("planners")) {
        by_planner[text_of(planner, "planner")] =
            has_value(planner, "points") ? planner.at("points") : json::array();
      }
      out << fields_list({{"profile", text_of(document, "profile_file")},
                          {"store-all peak", bytes_of(document, "store_all_peak_bytes")},
                          {"store-all time", seconds_of(document, "store_all_time_s")}});
      out << frontier_summary(by_planner);
      break;
    }
  }
  return out.str();
}

std::string document_model(const json& document, DocumentKind kind) {
  if (has_value(document, "model") && document.at("model").is_string())
    return document.at("model").get<std::string>();
  if (has_value(document, "profile") && document.at("profile").is_object()) {
    const json& profile = document.at("profile");
    if (has_value(profile, "model") && profile.at("model").is_string())
      return profile.at("model").get<std::string>();
  }
  std::vector<const json*> timelines;
  std::vector<std::string> paths;
  report_detail::collect_timelines(document, kind, timelines, paths);
  for (const json* timeline : timelines) {
    if (has_value(*timeline, "model") && timeline->at("model").is_string())
      return timeline->at("model").get<std::string>();
  }
  return "";
}

const char* kind_name(DocumentKind kind) {
  switch (kind) {
    case DocumentKind::Timeline:
      return "memory timeline";
    case DocumentKind::Timelines:
      return "memory timelines";
    case DocumentKind::Bench:
      return "benchmark";
    case DocumentKind::ProfileReport:
      return "profile report";
    case DocumentKind::PlanSweep:
      return "plan sweep";
    case DocumentKind::Train:
      return "training run";
  }
  return "";
}

struct ChartGroup {
  const char* prefix;
  const char* heading;
  const char* caption;
};

const ChartGroup kGroups[] = {
    {"chart-timeline-", "Memory over one step",
     "Live bytes by category through forward, loss, backward and optimizer step. Every run shares one y "
     "scale; the "
     "dashed red line is the budget and the black point the measured peak."},
    {"chart-peak-breakdown", "Peak breakdown", "What the bytes at each run's peak are."},
    {"chart-stage-", "Per stage", "Time and bytes of every stage of the chain."},
    {"chart-peak-vs-batch", "Peak memory against batch size",
     "Solid lines: measured peaks, dashed: predicted; the red rule is the memory cap of the search."},
    {"chart-frontier-", "Time against memory", "Each planner's trade of step time for memory."},
    {"chart-train-", "Training", "Validation loss at every evaluation."},
    {"chart-gac-", "Gradient-aware checkpointing",
     "Each stage's decision at every measured step, and its gradient proxy (a share of the step's largest) "
     "against its threshold."},
};

size_t group_of(const std::string& id) {
  for (size_t g = 0; g < std::size(kGroups); ++g) {
    if (id.rfind(kGroups[g].prefix, 0) == 0) return g;
  }
  return std::size(kGroups);
}

// Records errors from the first script on, before the libraries load; the render script
// copies them to <body> attributes where `chromium --dump-dom` shows them.
const char* const kErrorCaptureScript = R"JS(
window.mementoReport = {errors: [], warnings: [], publish: function () {
  if (!document.body) return;
  document.body.setAttribute('data-errors', JSON.stringify(window.mementoReport.errors));
  document.body.setAttribute('data-warnings', JSON.stringify(window.mementoReport.warnings));
}};
(function () {
  var report = window.mementoReport;
  function text(value) {
    if (value && value.stack) return String(value.stack).split('\n')[0];
    if (value && value.message) return String(value.message);
    return String(value);
  }
  window.addEventListener('error', function (event) {
    report.errors.push('error: ' + (event.message || text(event.error)));
    report.publish();
  });
  window.addEventListener('unhandledrejection', function (event) {
    report.errors.push('unhandled rejection: ' + text(event.reason));
    report.publish();
  });
  var consoleError = console.error, consoleWarn = console.warn;
  console.error = function () {
    report.errors.push('console.error: ' + Array.prototype.map.call(arguments, text).join(' '));
    report.publish();
    return consoleError.apply(console, arguments);
  };
  console.warn = function () {
    report.warnings.push('console.warn: ' + Array.prototype.map.call(arguments, text).join(' '));
    report.publish();
    return consoleWarn.apply(console, arguments);
  };
})();
)JS";

const char* const kRenderScript = R"JS(
(function () {
  var report = window.mementoReport;
  report.publish();
  var charts = JSON.parse(document.getElementById('memento-charts').textContent);
  var rendered = 0;
  var embeds = charts.map(function (chart) {
    return vegaEmbed('#' + chart.id, chart.spec, {renderer: 'svg', actions: false})
      .then(function (result) {
        if (!document.querySelector('#' + chart.id + ' svg')) throw new Error(chart.id + ' drew no SVG');
        rendered += 1;
        return result;
      })
      .catch(function (error) {
        report.errors.push(chart.id + ': ' + (error && error.message ? error.message : String(error)));
        report.publish();
      });
  });
  Promise.all(embeds).then(function () {
    document.body.dataset.chartsRendered = String(rendered);
    report.publish();
  });
})();
)JS";

const char* const kStyle = R"CSS(
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto; max-width: 1120px;
       padding: 16px 24px 48px; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
h3 { font-size: 1.0em; margin: 1.2em 0 0.4em; }
.subtitle, .caption, footer { color: #555; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; }
th { background: #f4f4f4; }
td { font-variant-numeric: tabular-nums; }
dl.fields { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; }
dl.fields dt { font-weight: 600; }
dl.fields dd { margin: 0; }
.chart { min-height: 60px; }
footer { margin-top: 3em; font-size: 0.85em; }
)CSS";

}  // namespace

std::vector<std::string> bundled_chart_libraries() {
  std::vector<std::string> libraries;
  for (size_t a = 0; a < report_detail::kEmbeddedAssetCount; ++a) {
    const auto& asset = report_detail::kEmbeddedAssets[a];
    libraries.push_back(std::string(asset.package) + " " + asset.version);
  }
  return libraries;
}

std::vector<ReportChart> report_charts(const json& document, const HtmlReportOptions& options) {
  if (options.max_timeline_points() < 16) {
    throw InvalidArgument("HtmlReportOptions::max_timeline_points must be at least 16, got " +
                          std::to_string(options.max_timeline_points()));
  }
  const DocumentKind kind = report_detail::detect_document(document);
  std::vector<ReportChart> charts = report_detail::build_charts(document, kind, options);
  std::stable_sort(charts.begin(), charts.end(), [](const ReportChart& a, const ReportChart& b) {
    return group_of(a.id) < group_of(b.id);
  });
  return charts;
}

std::string render_html_report(const json& document, const HtmlReportOptions& options) {
  const std::vector<ReportChart> charts = report_charts(document, options);
  const DocumentKind kind = report_detail::detect_document(document);
  const std::string model = document_model(document, kind);
  const std::string title =
      !options.title().empty() ? options.title() : "memento report" + (model.empty() ? "" : ": " + model);

  std::ostringstream page;
  page << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
       << "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
       << "<title>" << escape_html(title) << "</title>\n<style>" << kStyle << "</style>\n"
       << "<script>" << kErrorCaptureScript << "</script>\n";
  for (size_t a = 0; a < report_detail::kEmbeddedAssetCount; ++a) {
    const auto& asset = report_detail::kEmbeddedAssets[a];
    page << "<!-- " << asset.package << " " << asset.version << " (" << asset.file << ") -->\n<script>"
         << script_safe_code(report_detail::asset_text(asset)) << "</script>\n";
  }
  page << "</head>\n<body data-chart-count=\"" << charts.size()
       << "\" data-charts-rendered=\"0\" data-errors=\"[]\" data-warnings=\"[]\">\n"
       << "<header><h1>" << escape_html(title) << "</h1>\n<p class=\"subtitle\">" << kind_name(kind) << " · "
       << charts.size() << " charts</p></header>\n"
       << "<noscript><p>The charts need JavaScript; the summary below does not.</p></noscript>\n"
       << "<section id=\"summary\"><h2>Summary</h2>\n"
       << summary_html(document, kind) << "</section>\n";

  size_t open_group = std::size(kGroups) + 1;
  for (const ReportChart& chart : charts) {
    const size_t group = group_of(chart.id);
    if (group != open_group) {
      if (open_group <= std::size(kGroups)) page << "</section>\n";
      open_group = group;
      if (group < std::size(kGroups)) {
        page << "<section><h2>" << kGroups[group].heading << "</h2>\n<p class=\"caption\">"
             << kGroups[group].caption << "</p>\n";
      } else {
        page << "<section><h2>Other charts</h2>\n";
      }
    }
    page << "<h3>" << escape_html(chart.heading) << "</h3>\n<div class=\"chart\" id=\""
         << escape_html(chart.id) << "\"></div>\n";
  }
  if (open_group <= std::size(kGroups)) page << "</section>\n";

  json chart_list = json::array();
  for (const ReportChart& chart : charts) chart_list.push_back({{"id", chart.id}, {"spec", chart.spec}});
  std::string libraries;
  for (const std::string& library : bundled_chart_libraries())
    libraries += (libraries.empty() ? "" : ", ") + library;
  page << "<footer>Written by memento 0.1.0. Charts drawn with " << escape_html(libraries)
       << ", bundled into this page: it needs no network.</footer>\n"
       << "<script type=\"application/json\" id=\"memento-charts\">" << script_safe_json(chart_list)
       << "</script>\n"
       << "<script>" << kRenderScript << "</script>\n</body>\n</html>\n";
  return page.str();
}

void write_html_report(const json& document, const std::string& path, const HtmlReportOptions& options) {
  if (path.empty()) throw InvalidArgument("the report path is empty; pass a file name such as report.html");
  const std::string page = render_html_report(document, options);
  write_file_atomically(path, page);
}

}  // namespace memento
