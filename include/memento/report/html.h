#pragma once
/// \file
/// Self-contained HTML reports with charts. One page holds a title, a summary table and
/// Vega-Lite charts for whatever the input document has data for:
///
/// | chart id                  | from                                                     |
/// |---------------------------|----------------------------------------------------------|
/// | `chart-timeline-<k>`      | live bytes by category over one step, per timeline       |
/// | `chart-peak-breakdown`    | bytes by category at the peak (timelines; bench rows)    |
/// | `chart-stage-time`        | per-stage forward/backward (and recompute) seconds       |
/// | `chart-stage-bytes`       | per-stage saved / output / temporary bytes               |
/// | `chart-peak-vs-batch`     | measured and predicted peak against batch (max_batch)    |
/// | `chart-frontier-predicted`| predicted step time against budget, per planner          |
/// | `chart-frontier-measured` | measured step time against measured peak, per planner    |
///
/// Accepted documents (formats in docs/formats.md and docs/reports.md):
/// `memento.timeline/1`, `memento.timelines/1`, `memento.bench/1`,
/// `memento.profile_report/1`, and the output of `memento plan --sweep --format json`.
///
/// The page embeds its data and the chart libraries (Vega, Vega-Lite, vega-embed, bundled
/// into the binary at build time), so it opens offline from a file. When all charts have
/// rendered the page sets `data-charts-rendered` on `<body>` to their number (compare with
/// `data-chart-count`); script errors, rejected promises and console errors are collected
/// in `data-errors` and Vega warnings in `data-warnings` (JSON arrays of strings).
///
/// Example:
/// \code
///   nlohmann::json bench = nlohmann::json::parse(std::ifstream("bench.json"));
///   memento::write_html_report(bench, "report.html");
///   std::string page = memento::render_html_report(bench, memento::HtmlReportOptions().title("GPT-2 run"));
/// \endcode

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace memento {

/// Options of an HTML report; every setting has a default.
class HtmlReportOptions {
 public:
  HtmlReportOptions() = default;

  /// Page title and heading; empty (the default) derives one from the document's model.
  HtmlReportOptions& title(std::string value) {
    title_ = std::move(value);
    return *this;
  }
  /// Most points drawn per memory timeline (default 2000, at least 16). Longer timelines
  /// are downsampled keeping the highest point of each time bucket, so peaks survive.
  HtmlReportOptions& max_timeline_points(int64_t value) {
    max_timeline_points_ = value;
    return *this;
  }

  const std::string& title() const { return title_; }
  int64_t max_timeline_points() const { return max_timeline_points_; }

 private:
  std::string title_;
  int64_t max_timeline_points_ = 2000;
};

/// One chart of a report: its element id, a heading and the Vega-Lite specification
/// (data inline).
struct ReportChart {
  std::string id;       ///< e.g. "chart-timeline-0"
  std::string heading;  ///< e.g. "Memory timeline: optimal (budget 80.3 MiB)"
  nlohmann::json spec;  ///< Vega-Lite v6 specification with inline data
};

/// The charts `document` yields, in page order. Throws InvalidArgument naming the
/// field (e.g. `timelines[1].events[12].bytes`) when the document is malformed or of an
/// unknown format.
std::vector<ReportChart> report_charts(const nlohmann::json& document,
                                       const HtmlReportOptions& options = HtmlReportOptions());

/// The whole HTML page for `document` (see the file comment for the accepted formats).
/// Throws InvalidArgument naming the field when the document is malformed.
std::string render_html_report(const nlohmann::json& document,
                               const HtmlReportOptions& options = HtmlReportOptions());

/// Renders `document` and writes the page to `path` (through a temporary file and a
/// rename). Throws InvalidArgument for a malformed document and memento::Error naming
/// `path` when it cannot be written.
void write_html_report(const nlohmann::json& document, const std::string& path,
                       const HtmlReportOptions& options = HtmlReportOptions());

/// Versions of the bundled chart libraries, e.g. {"vega 6.4.0", "vega-lite 6.5.0", ...}.
std::vector<std::string> bundled_chart_libraries();

}  // namespace memento
