#include "cli_util.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <limits>
#include <sstream>

#include <nlohmann/json.hpp>

#include "memento/core/budget.h"
#include "memento/core/error.h"
#include "memento/core/output_file.h"
#include "memento/core/planner.h"

namespace memento::cli {

void exit_with(int code) {
  throw CLI::RuntimeError(code);
}

CLI::Option* add_format_option(CLI::App* command, std::string& format_text) {
  return command->add_option("--format", format_text, "report format: text or json")->capture_default_str();
}

void check_output(const std::string& path, const std::string& option) {
  try {
    check_output_path(path);
  } catch (const IoError& e) {
    throw InvalidArgument(option + ": " + e.what());
  }
}

void write_output(const std::string& path, const std::string& contents, const std::string& option) {
  try {
    write_file_atomically(path, contents);
  } catch (const IoError& e) {
    throw InvalidArgument(option + ": " + e.what());
  }
}

void refuse_unused(const CLI::App& command, const std::string& option, bool used, const std::string& why) {
  if (!used && command.count(option) > 0) throw InvalidArgument(option + " " + why);
}

Format parse_format(const std::string& format_text) {
  if (format_text == "text") return Format::Text;
  if (format_text == "json") return Format::Json;
  throw InvalidArgument("unknown --format \"" + format_text + "\"; choose text or json");
}

ChainProfile load_profile(const std::string& path, const std::string& option) {
  if (path.empty())
    throw InvalidArgument("missing " + option + " FILE: give a profile JSON (see docs/formats.md)");
  return read_profile(path);
}

int64_t read_budget(const std::string& text, const ChainProfile& profile, const std::string& option) {
  int64_t budget_bytes = 0;
  try {
    budget_bytes = parse_budget(text, profile);
  } catch (const InvalidArgument& e) {
    // The core does not know which option the text came from; the user needs to.
    throw InvalidArgument(option + ": " + e.what());
  }
  if (budget_bytes <= 0) {
    throw InvalidArgument(option + " \"" + text +
                          "\" is zero bytes; give a positive size or share (e.g. 40%)");
  }
  return budget_bytes;
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) {
    const auto first = item.find_first_not_of(" \t");
    if (first == std::string::npos) continue;
    const auto last = item.find_last_not_of(" \t");
    items.push_back(item.substr(first, last - first + 1));
  }
  return items;
}

std::vector<int64_t> read_budget_list(const std::string& text, const ChainProfile& profile,
                                      const std::string& option) {
  const std::vector<std::string> items = split_list(text);
  if (items.empty())
    throw InvalidArgument(option + " is empty; give a comma-separated list such as 20%,40%,2GiB");
  std::vector<int64_t> budgets;
  for (const std::string& item : items) budgets.push_back(read_budget(item, profile, option));
  return budgets;
}

std::vector<std::string> read_planner_list(const std::string& text, const std::string& option) {
  const std::vector<std::string> known = planner_names();
  if (text == "all") return known;
  const std::vector<std::string> items = split_list(text);
  std::string valid;
  for (const std::string& name : known) valid += (valid.empty() ? "" : ", ") + name;
  if (items.empty())
    throw InvalidArgument(option + " is empty; give all or a comma-separated list of " + valid);
  for (const std::string& item : items) {
    if (std::find(known.begin(), known.end(), item) == known.end()) {
      throw InvalidArgument(option + ": unknown planner \"" + item + "\"; choose all or some of " + valid);
    }
  }
  return items;
}

std::vector<Codec> read_codecs(const std::string& text, const std::string& option) {
  try {
    return parse_codec_list(text);
  } catch (const InvalidArgument& e) {
    throw InvalidArgument(option + " " + text + ": " + e.what());
  }
}

void check_planner_uses_codecs(const std::vector<Codec>& codecs, const std::string& planner) {
  if (!codecs.empty() && !make_planner(planner)->supports_codecs()) {
    throw InvalidArgument("--codecs " + codec_list_name(codecs) + ": planner " + planner +
                          " does not use codecs; choose --planner " + codec_planner_names_text() +
                          ", or drop --codecs");
  }
}

void check_some_planner_uses_codecs(const std::vector<Codec>& codecs,
                                    const std::vector<std::string>& planners) {
  if (!codecs.empty() && codec_planners_among(planners).empty()) {
    throw InvalidArgument("--codecs " + codec_list_name(codecs) +
                          ": none of --planners uses codecs; add one of " + codec_planner_names_text() +
                          ", or drop --codecs");
  }
}

void check_codecs(const std::vector<Codec>& codecs, const std::string& planner, const ChainProfile& profile,
                  const std::string& profile_source) {
  check_planner_uses_codecs(codecs, planner);
  for (Codec codec : codecs) {
    if (!profile.has_codec(codec)) {
      throw InvalidArgument("--codecs " + codec_list_name(codecs) + ": " + profile_source +
                            " has no costs for " + codec_name(codec) +
                            "; measure them with memento profile --codecs " + codec_list_name(codecs) +
                            " --out FILE");
    }
  }
}

std::string lossy_label(const Schedule& schedule) {
  return codecs_label({}, codecs_used(schedule));
}

CLI::Option* add_codecs_option(CLI::App* command, std::string& codecs_text, const std::string& what) {
  return command->add_option("--codecs", codecs_text,
                             "lossy storage: codecs a stage's saved tensors may be packed with, none (exact, "
                             "default), all, or a list of bf16, fp16, int8, int4; " +
                                 what);
}

void add_gac_options(CLI::App* command, GacArguments& args) {
  auto add = [&](const std::string& name, auto& value, const std::string& help) {
    args.options.push_back(command->add_option(name, value, help)->capture_default_str());
  };
  add("--gac-mode", args.mode,
      "gac: exact (recompute low-impact stages), lossy (pack them, needs --codecs) or freeze (stop training "
      "a "
      "prefix whose gradients stay below --gac-theta-min)");
  add("--gac-proxy", args.proxy,
      "gac: gradient proxy of each stage's output gradient: mag (mean |grad|), frobenius or trace; or of its "
      "parameter gradients: param-mag or param-frobenius; or sensitivity (GACT: the parameter gradient's "
      "change "
      "when the stage alone is packed with the harshest codec, measured by repeating the step)");
  add("--gac-threshold", args.threshold,
      "gac: ema (per stage, against its own EMA), norm-median (EMA of squared norms against alpha x median) "
      "or kind (the median per layer kind)");
  add("--gac-alpha", args.alpha,
      "gac: ema weight in (0, 1] (default 0.8) or median multiplier in [0.5, 2] (default 1); negative: the "
      "threshold's default");
  add("--gac-beta", args.beta, "gac: EMA weight of the squared norms, in [0.9, 0.99]");
  add("--gac-temporal-beta", args.temporal_beta,
      "gac: thresholds scale by 1 + beta x (relative validation improvement) / T; 0 disables");
  add("--gac-temperature", args.temperature, "gac: T of the temporal adaptation, > 0");
  add("--gac-theta-min", args.theta_min,
      "gac: floor of every threshold, a share of the largest proxy in (0, 1)");
  add("--gac-every", args.every, "gac: measure proxies and re-decide every N steps");
  add("--gac-freeze-after", args.freeze_after,
      "gac freeze: observations below --gac-theta-min before freezing");
  add("--gac-spare", args.spare,
      "gac: what memory under the budget is used for: store (keep the most important recomputed or packed "
      "stages that still fit) or none (leave it free)");
}

GacOptions read_gac_options(const GacArguments& args, const std::string& planner,
                            const std::vector<Codec>& codecs) {
  if (planner != "gac") {
    for (const CLI::Option* option : args.options) {
      if (option->count() > 0) {
        throw InvalidArgument(option->get_name() +
                              " applies to --planner gac only; drop it or pass --planner gac");
      }
    }
  }
  auto named = [](const std::string& option, auto parse) {
    try {
      return parse();
    } catch (const InvalidArgument& e) {
      throw InvalidArgument(option + ": " + e.what());
    }
  };
  GacOptions options;
  options.mode = named("--gac-mode", [&] { return gac_mode_from_name(args.mode); });
  options.proxy = named("--gac-proxy", [&] { return gac_proxy_from_name(args.proxy); });
  options.threshold = named("--gac-threshold", [&] { return gac_threshold_from_name(args.threshold); });
  options.alpha = args.alpha;
  options.beta = args.beta;
  options.temporal_beta = args.temporal_beta;
  options.temperature = args.temperature;
  options.theta_min = args.theta_min;
  // GacOptions::validate() checks the ranges; only what does not fit its int is refused here.
  auto counter = [](int64_t value, const std::string& option) {
    constexpr int64_t kLargest = std::numeric_limits<int>::max();
    if (value > kLargest) {
      throw InvalidArgument(option + " must be at most " + std::to_string(kLargest) + ", got " +
                            std::to_string(value));
    }
    return static_cast<int>(std::max<int64_t>(value, std::numeric_limits<int>::min()));
  };
  options.every_steps = counter(args.every, "--gac-every");
  options.freeze_after = counter(args.freeze_after, "--gac-freeze-after");
  if (args.spare != "store" && args.spare != "none") {
    throw InvalidArgument("--gac-spare must be store or none, got \"" + args.spare + "\"");
  }
  options.fill_spare_memory = args.spare == "store";
  options.validate([](const std::string& field) {
    std::string name = field == "every_steps" ? "every" : field;
    std::replace(name.begin(), name.end(), '_', '-');
    return "--gac-" + name;
  });
  if (planner == "gac") {
    const bool lossy = !codecs.empty();
    if (options.mode == GacMode::Lossy && !lossy) {
      throw InvalidArgument(
          "--gac-mode lossy packs low-impact stages and needs --codecs (e.g. bf16,int8,int4)");
    }
    if (options.mode != GacMode::Lossy && lossy) {
      throw InvalidArgument(std::string("--gac-mode ") + gac_mode_name(options.mode) +
                            " stores nothing packed; drop --codecs or pass --gac-mode lossy");
    }
  }
  return options;
}

int64_t require_at_least(int64_t value, int64_t minimum, const std::string& option) {
  if (value < minimum) {
    throw InvalidArgument(option + " must be at least " + std::to_string(minimum) + ", got " +
                          std::to_string(value));
  }
  return value;
}

namespace {

std::string printf_string(const char* format, double value, const char* unit) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, format, value, unit);
  return buffer;
}

// Three significant digits keep columns of durations comparable at a glance.
std::string three_digits(double value, const char* unit) {
  const double magnitude = std::fabs(value);
  if (magnitude >= 100) return printf_string("%.0f %s", value, unit);
  if (magnitude >= 10) return printf_string("%.1f %s", value, unit);
  return printf_string("%.2f %s", value, unit);
}

size_t display_width(const std::string& text) {
  // UTF-8 continuation bytes (10xxxxxx) do not start a new code point.
  return static_cast<size_t>(std::count_if(
      text.begin(), text.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

}  // namespace

std::string format_seconds(double seconds) {
  if (!std::isfinite(seconds)) return "n/a";
  const double magnitude = std::fabs(seconds);
  if (magnitude == 0) return "0 s";
  if (magnitude < 1e-6) return three_digits(seconds * 1e9, "ns");
  if (magnitude < 1e-3) return three_digits(seconds * 1e6, "us");
  if (magnitude < 1) return three_digits(seconds * 1e3, "ms");
  if (magnitude < 120) return printf_string("%.3f %s", seconds, "s");
  if (magnitude < 7200) return three_digits(seconds / 60, "min");
  return three_digits(seconds / 3600, "h");
}

std::string format_percent(double fraction, int decimals) {
  if (!std::isfinite(fraction)) return "n/a";
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.*f%%", decimals, fraction * 100);
  return buffer;
}

std::string format_change(double fraction, int decimals) {
  if (!std::isfinite(fraction)) return "n/a";
  char buffer[64];
  // Rounding can print "-0.0%" for a tiny negative change; a change that rounds to zero is "+0.0%".
  const double scale = std::pow(10.0, decimals);
  double percent = std::round(fraction * 100 * scale) / scale;
  if (percent == 0) percent = 0;
  std::snprintf(buffer, sizeof buffer, "%+.*f%%", decimals, percent);
  return buffer;
}

std::string format_bytes_exact(int64_t bytes) {
  return format_bytes(bytes) + " (" + std::to_string(bytes) + " B)";
}

TextTable::TextTable(std::vector<std::string> headers)
    : headers_(std::move(headers)), alignments_(headers_.size(), Align::Left) {}

TextTable& TextTable::align(const std::string& spec) {
  for (size_t column = 0; column < spec.size() && column < alignments_.size(); ++column) {
    if (spec[column] == 'l')
      alignments_[column] = Align::Left;
    else if (spec[column] == 'r')
      alignments_[column] = Align::Right;
    else
      throw InvalidArgument("table alignment \"" + spec + "\" may only contain 'l' and 'r'");
  }
  return *this;
}

TextTable& TextTable::align(size_t column, Align alignment) {
  if (column >= alignments_.size()) {
    throw InvalidArgument("table column " + std::to_string(column) + " does not exist; the table has " +
                          std::to_string(alignments_.size()) + " columns");
  }
  alignments_[column] = alignment;
  return *this;
}

TextTable& TextTable::add_row(std::vector<std::string> cells) {
  if (cells.size() != headers_.size()) {
    throw InvalidArgument("table row has " + std::to_string(cells.size()) + " cells but the table has " +
                          std::to_string(headers_.size()) + " columns");
  }
  rows_.push_back(std::move(cells));
  return *this;
}

std::string TextTable::str(const std::string& indent) const {
  std::vector<size_t> widths(headers_.size());
  for (size_t column = 0; column < headers_.size(); ++column) {
    widths[column] = display_width(headers_[column]);
    for (const auto& row : rows_) widths[column] = std::max(widths[column], display_width(row[column]));
  }
  std::string out;
  auto append_line = [&](const std::vector<std::string>& cells) {
    std::string line = indent;
    for (size_t column = 0; column < cells.size(); ++column) {
      if (column > 0) line += "  ";
      const std::string padding(widths[column] - display_width(cells[column]), ' ');
      line += alignments_[column] == Align::Right ? padding + cells[column] : cells[column] + padding;
    }
    line.erase(line.find_last_not_of(' ') + 1);
    out += line + "\n";
  };
  append_line(headers_);
  std::vector<std::string> rule;
  for (size_t width : widths) rule.emplace_back(width, '-');
  append_line(rule);
  for (const auto& row : rows_) append_line(row);
  return out;
}

std::string format_fields(const std::vector<std::pair<std::string, std::string>>& fields,
                          const std::string& indent) {
  size_t key_width = 0;
  for (const auto& field : fields) key_width = std::max(key_width, display_width(field.first));
  std::string out;
  for (const auto& [key, value] : fields) {
    out += indent + key + std::string(key_width - display_width(key) + 2, ' ') + value + "\n";
  }
  return out;
}

void print_json(const nlohmann::json& document, std::ostream& out) {
  out << document.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  out.flush();
}

void print_json(const nlohmann::json& document) {
  print_json(document, std::cout);
}

void print_warning(const std::string& message) {
  std::cerr << "memento: warning: " << message << "\n";
}

}  // namespace memento::cli
