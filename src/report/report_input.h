#pragma once
// Reading report input documents (timeline, timelines, bench, profile report, plan sweep)
// field by field, so that every error names the JSON path of the bad field. Internal to
// the report library.

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "memento/report/html.h"

namespace memento::report_detail {

using nlohmann::json;

/// The kinds of document a report accepts.
enum class DocumentKind { Timeline, Timelines, Bench, ProfileReport, PlanSweep, Train };

/// Detects the kind from the "format" field (or, for `memento plan --sweep` output, from
/// its fields). Throws InvalidArgument listing the accepted formats otherwise.
DocumentKind detect_document(const json& document);

/// `path` + "." + key, or key alone at the top level.
std::string join_path(const std::string& path, const std::string& key);
/// `path` + "[index]".
std::string index_path(const std::string& path, size_t index);

/// True when `object` has `key` with a non-null value.
bool has_value(const json& object, const std::string& key);

/// The value at `key`; throws InvalidArgument naming `path.key` when it is absent.
const json& require_field(const json& object, const std::string& key, const std::string& path);

/// Typed reads of a value found at `path`; each throws InvalidArgument naming `path`
/// and the type it got.
int64_t read_bytes(const json& value, const std::string& path);   // integer >= 0
double read_number(const json& value, const std::string& path);   // finite
double read_seconds(const json& value, const std::string& path);  // finite, >= 0
std::string read_string(const json& value, const std::string& path);
const json& read_array(const json& value, const std::string& path);
const json& read_object(const json& value, const std::string& path);

/// Field shorthands: require_field + the typed read.
int64_t bytes_field(const json& object, const std::string& key, const std::string& path);
double seconds_field(const json& object, const std::string& key, const std::string& path);
std::string string_field(const json& object, const std::string& key, const std::string& path);
// A bench row's planner as results name it: "optimal (lossy: int8)" when the row's
// `codecs_used` is not "none" (codec.h's codecs_label; files without the fields are exact).
std::string row_planner_label(const json& row, const std::string& path);

/// Human forms for tables and headings: "1.50 GiB", "12.3 ms", "12.3%".
std::string human_bytes(int64_t bytes);
std::string human_seconds(double seconds);
std::string human_percent(double fraction);

/// Bytes to MiB rounded to 1e-4 (about 100 bytes), the unit every chart plots.
double to_mib(int64_t bytes);

/// The charts of each document kind, in page order (charts.cpp).
std::vector<ReportChart> build_charts(const json& document, DocumentKind kind,
                                      const HtmlReportOptions& options);

/// Label of a timeline in legends and tables: "optimal (budget 80.3 MiB)"; duplicates
/// get " #2", " #3", ... appended so that every label is unique.
std::vector<std::string> timeline_labels(const std::vector<const json*>& timelines,
                                         const std::vector<std::string>& paths);

/// The timelines of a timeline, timelines or profile report document with their paths.
void collect_timelines(const json& document, DocumentKind kind, std::vector<const json*>& timelines,
                       std::vector<std::string>& paths);

}  // namespace memento::report_detail
