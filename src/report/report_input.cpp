#include "report/report_input.h"

#include <cmath>
#include <cstdio>
#include <map>

#include "memento/core/budget.h"
#include "memento/core/codec.h"
#include "memento/core/error.h"

#include "memento/core/json_input.h"

namespace memento::report_detail {
namespace {

const char* const kAcceptedFormats =
    "memento.timeline/1 (memento profile --timeline), memento.timelines/1, memento.bench/1 (memento bench "
    "--format json), memento.profile_report/1, memento.train/1 (memento train --format json), or the output "
    "of memento plan --sweep --format json";

std::string type_of(const json& value) {
  if (value.is_number_integer()) return "integer " + quote_json(value);
  if (value.is_number()) return "number " + quote_json(value);
  if (value.is_string()) {
    std::string text = value.get<std::string>();
    if (text.size() > 40) text = text.substr(0, 40) + "...";
    return "string \"" + text + "\"";
  }
  return value.type_name();
}

[[noreturn]] void bad_field(const std::string& path, const std::string& expected, const json& value) {
  throw InvalidArgument("report input: " + path + " must be " + expected + ", got " + type_of(value) +
                        "; fix or regenerate the input file");
}

}  // namespace

DocumentKind detect_document(const json& document) {
  if (!document.is_object()) {
    throw InvalidArgument(std::string("report input must be a JSON object with a \"format\" field: ") +
                          kAcceptedFormats);
  }
  const auto format = document.find("format");
  if (format == document.end()) {
    if (document.contains("planners") && document.contains("budgets_bytes")) {
      // A sweep's reference figures are what its percentages mean: they must be there.
      bytes_field(document, "store_all_peak_bytes", "");
      seconds_field(document, "store_all_time_s", "");
      read_array(require_field(document, "planners", ""), "planners");
      return DocumentKind::PlanSweep;
    }
    throw InvalidArgument(std::string("report input has no \"format\" field; expected ") + kAcceptedFormats);
  }
  if (!format->is_string()) bad_field("format", "a string", *format);
  const std::string name = format->get<std::string>();
  if (name == "memento.timeline/1") return DocumentKind::Timeline;
  if (name == "memento.timelines/1") return DocumentKind::Timelines;
  if (name == "memento.bench/1") return DocumentKind::Bench;
  if (name == "memento.profile_report/1") return DocumentKind::ProfileReport;
  if (name == "memento.train/1") return DocumentKind::Train;
  throw InvalidArgument("report input has format \"" + name + "\"; expected " + kAcceptedFormats);
}

std::string join_path(const std::string& path, const std::string& key) {
  return path.empty() ? key : path + "." + key;
}

std::string index_path(const std::string& path, size_t index) {
  return path + "[" + std::to_string(index) + "]";
}

bool has_value(const json& object, const std::string& key) {
  const auto found = object.find(key);
  return found != object.end() && !found->is_null();
}

const json& require_field(const json& object, const std::string& key, const std::string& path) {
  if (!object.is_object()) bad_field(path.empty() ? "the document" : path, "an object", object);
  const auto found = object.find(key);
  if (found == object.end()) {
    throw InvalidArgument("report input: " + join_path(path, key) +
                          " is missing; fix or regenerate the input file");
  }
  return *found;
}

int64_t read_bytes(const json& value, const std::string& path) {
  if (value.is_number_unsigned()) {
    if (value.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) bad_field(path, "a byte count", value);
    return static_cast<int64_t>(value.get<uint64_t>());
  }
  if (value.is_number_integer()) {
    const int64_t bytes = value.get<int64_t>();
    if (bytes < 0) bad_field(path, "a byte count >= 0", value);
    return bytes;
  }
  // Writers that go through doubles print 1.2e+07 for a whole number of bytes.
  if (value.is_number_float()) {
    const double bytes = value.get<double>();
    if (std::isfinite(bytes) && bytes >= 0 && bytes < 9.2e18 && std::floor(bytes) == bytes) {
      return static_cast<int64_t>(bytes);
    }
  }
  bad_field(path, "a whole number of bytes >= 0", value);
}

double read_number(const json& value, const std::string& path) {
  if (!value.is_number() || !std::isfinite(value.get<double>())) bad_field(path, "a finite number", value);
  return value.get<double>();
}

double read_seconds(const json& value, const std::string& path) {
  const double seconds = read_number(value, path);
  if (seconds < 0) bad_field(path, "seconds >= 0", value);
  return seconds;
}

std::string read_string(const json& value, const std::string& path) {
  if (!value.is_string()) bad_field(path, "a string", value);
  return value.get<std::string>();
}

const json& read_array(const json& value, const std::string& path) {
  if (!value.is_array()) bad_field(path, "an array", value);
  return value;
}

const json& read_object(const json& value, const std::string& path) {
  if (!value.is_object()) bad_field(path, "an object", value);
  return value;
}

int64_t bytes_field(const json& object, const std::string& key, const std::string& path) {
  return read_bytes(require_field(object, key, path), join_path(path, key));
}

double seconds_field(const json& object, const std::string& key, const std::string& path) {
  return read_seconds(require_field(object, key, path), join_path(path, key));
}

std::string string_field(const json& object, const std::string& key, const std::string& path) {
  return read_string(require_field(object, key, path), join_path(path, key));
}

std::string row_planner_label(const json& row, const std::string& path) {
  const std::string planner = string_field(row, "planner", path);
  auto codecs_of = [&](const char* key) {
    if (!has_value(row, key)) return std::vector<Codec>{};
    try {
      return parse_codec_list(read_string(row.at(key), join_path(path, key)));
    } catch (const InvalidArgument& e) {
      throw InvalidArgument("report input: " + join_path(path, key) + ": " + e.what());
    }
  };
  return planner + codecs_label(codecs_of("codecs"), codecs_of("codecs_used"));
}

std::string human_bytes(int64_t bytes) {
  return format_bytes(bytes);
}

std::string human_seconds(double seconds) {
  char text[64];
  const double magnitude = std::fabs(seconds);
  if (magnitude >= 1) {
    std::snprintf(text, sizeof text, "%.3f s", seconds);
  } else if (magnitude >= 1e-3) {
    std::snprintf(text, sizeof text, "%.2f ms", seconds * 1e3);
  } else {
    std::snprintf(text, sizeof text, "%.1f us", seconds * 1e6);
  }
  return text;
}

std::string human_percent(double fraction) {
  char text[64];
  std::snprintf(text, sizeof text, "%.1f%%", fraction * 100);
  return text;
}

double to_mib(int64_t bytes) {
  return std::round(static_cast<double>(bytes) / (1024.0 * 1024.0) * 1e4) / 1e4;
}

std::vector<std::string> timeline_labels(const std::vector<const json*>& timelines,
                                         const std::vector<std::string>& paths) {
  std::vector<std::string> labels;
  std::map<std::string, int> seen;
  for (size_t k = 0; k < timelines.size(); ++k) {
    const json& timeline = *timelines[k];
    std::string label = string_field(timeline, "planner", paths[k]);
    if (has_value(timeline, "budget_bytes")) {
      label += " (budget " + human_bytes(bytes_field(timeline, "budget_bytes", paths[k])) + ")";
    }
    const int count = ++seen[label];
    if (count > 1) label += " #" + std::to_string(count);
    labels.push_back(label);
  }
  return labels;
}

void collect_timelines(const json& document, DocumentKind kind, std::vector<const json*>& timelines,
                       std::vector<std::string>& paths) {
  auto add_list = [&](const json& list, const std::string& list_path) {
    read_array(list, list_path);
    for (size_t k = 0; k < list.size(); ++k) {
      timelines.push_back(&read_object(list[k], index_path(list_path, k)));
      paths.push_back(index_path(list_path, k));
    }
  };
  if (kind == DocumentKind::Timeline) {
    timelines.push_back(&document);
    paths.push_back("");
  } else if (kind == DocumentKind::Timelines) {
    add_list(require_field(document, "timelines", ""), "timelines");
  } else if (kind == DocumentKind::ProfileReport && has_value(document, "timelines")) {
    // The contract nests a whole timelines/1 file; a bare array of timelines is accepted too.
    const json& nested = document.at("timelines");
    if (nested.is_array()) {
      add_list(nested, "timelines");
    } else {
      add_list(require_field(read_object(nested, "timelines"), "timelines", "timelines"),
               "timelines.timelines");
    }
  }
}

}  // namespace memento::report_detail
