// `memento report`: turns a timeline, timelines, bench or profile-report JSON file (or a
// `memento plan --sweep --format json` output) into one self-contained HTML page with charts.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "commands.h"
#include "memento/core/budget.h"
#include "memento/core/error.h"
#include "memento/core/json_input.h"
#include "memento/report/html.h"

namespace memento::cli {
namespace {

struct ReportArguments {
  std::string input_path;
  std::string out_path;
  std::string title;
  int64_t max_points = 2000;
};

nlohmann::json read_document(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw InvalidArgument("cannot read " + path +
                          ": no such file or not readable; pass a JSON file written by "
                          "memento profile --timeline, memento bench --format json or memento plan --sweep");
  std::ostringstream text;
  text << in.rdbuf();
  return parse_json_input(text.str(), path);
}

}  // namespace

void add_report_command(CLI::App& app) {
  auto arguments = std::make_shared<ReportArguments>();
  CLI::App* command = app.add_subcommand(
      "report",
      "Write a self-contained HTML page with charts from a timeline, bench or profile-report JSON file");
  command
      ->add_option(
          "input", arguments->input_path,
          "JSON from `memento profile --timeline`, `memento bench --format json`, a profile report, or "
          "`memento plan --sweep --format json`")
      ->required();
  command->add_option("-o,--out", arguments->out_path, "where to write the HTML page")->required();
  command->add_option("--title", arguments->title, "page title (default: from the model)");
  command->add_option(
      "--max-points", arguments->max_points,
      "most points drawn per memory timeline; longer ones keep each bucket's highest point (default "
      "2000)");
  command->callback([arguments] {
    require_at_least(arguments->max_points, 16, "--max-points");
    check_output(arguments->out_path, "--out");
    const nlohmann::json document = read_document(arguments->input_path);
    const HtmlReportOptions options =
        HtmlReportOptions().title(arguments->title).max_timeline_points(arguments->max_points);
    const size_t chart_count = report_charts(document, options).size();
    write_output(arguments->out_path, render_html_report(document, options), "--out");
    std::cout << "wrote " << arguments->out_path << ": " << chart_count << " charts, "
              << format_bytes(static_cast<int64_t>(std::filesystem::file_size(arguments->out_path)))
              << ", self-contained (open it in a browser; no network needed)\n";
  });
}

}  // namespace memento::cli
