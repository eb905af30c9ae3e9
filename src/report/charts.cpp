// Vega-Lite specifications for the report's charts, built from the input documents.
// Every chart plots bytes in MiB and times in seconds or milliseconds, with its data
// inline so that the page is self-contained.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "memento/core/error.h"
#include "memento/core/profile.h"
#include "report/report_input.h"

namespace memento::report_detail {
namespace {

const std::vector<std::string> kDefaultCategories = {
    "parameters", "gradients", "optimizer_state", "activations", "temporaries", "inputs", "other"};
// Bench rows only know the fixed bytes by category; the rest of a measured peak is
// activations and temporaries together.
const char* const kActivationsAndTemporaries = "activations + temporaries";

// Fixed colours per category, so that a category looks the same in every chart.
std::string category_color(const std::string& category) {
  static const std::map<std::string, std::string> colors = {
      {"parameters", "#4c78a8"},      {"gradients", "#f58518"},
      {"optimizer_state", "#e45756"}, {"activations", "#72b7b2"},
      {"temporaries", "#54a24b"},     {"inputs", "#eeca3b"},
      {"other", "#b279a2"},           {kActivationsAndTemporaries, "#9d755d"}};
  static const std::vector<std::string> spare = {"#ff9da6", "#bab0ac", "#79706e", "#d67195", "#439894"};
  const auto found = colors.find(category);
  if (found != colors.end()) return found->second;
  return spare[std::hash<std::string>{}(category) % spare.size()];
}

json category_scale(const std::vector<std::string>& categories) {
  json range = json::array();
  for (const std::string& category : categories) range.push_back(category_color(category));
  return {{"domain", categories}, {"range", range}};
}

json base_spec(const std::string& description) {
  return {{"$schema", "https://vega.github.io/schema/vega-lite/v6.json"},
          {"description", description},
          {"width", 900},
          {"config", {{"font", "sans-serif"}, {"axis", {{"labelFontSize", 11}, {"titleFontSize", 12}}}}}};
}

// Dividing by the inverse (an exact integer) keeps printed values short: 0.0004, not 0.00039999999999999996.
double rounded(double value, double step) {
  const double inverse = std::round(1.0 / step);
  return std::round(value * inverse) / inverse;
}

// ---- memory timelines -------------------------------------------------------------

struct TimelineSeries {
  std::string label;
  std::vector<std::string> categories;
  json rows = json::array();  // {t_s, phase, <category>: MiB, ...}
  double peak_mib = 0;
  double peak_t_s = 0;
  std::string peak_phase;
  std::optional<double> budget_mib;
  json peak_by_category = json::object();  // category -> bytes at the peak
};

// Replays the events into live bytes per category and keeps at most `max_points` states:
// the start, then the highest state of each bucket of consecutive events (so that the
// step's peak is always drawn), then the end.
TimelineSeries timeline_series(const json& timeline, const std::string& path, const std::string& label,
                               int64_t max_points) {
  TimelineSeries series;
  series.label = label;
  if (has_value(timeline, "categories")) {
    const std::string categories_path = join_path(path, "categories");
    const json& categories = read_array(timeline.at("categories"), categories_path);
    for (size_t c = 0; c < categories.size(); ++c) {
      series.categories.push_back(read_string(categories[c], index_path(categories_path, c)));
    }
  } else {
    series.categories = kDefaultCategories;
  }
  std::map<std::string, size_t> category_index;
  for (size_t c = 0; c < series.categories.size(); ++c) category_index[series.categories[c]] = c;
  auto index_of = [&](const std::string& category) {
    const auto found = category_index.find(category);
    if (found != category_index.end()) return found->second;
    series.categories.push_back(category);
    category_index[category] = series.categories.size() - 1;
    return series.categories.size() - 1;
  };

  std::vector<int64_t> live(series.categories.size(), 0);
  if (has_value(timeline, "start_by_category")) {
    const std::string start_path = join_path(path, "start_by_category");
    const json& start = read_object(timeline.at("start_by_category"), start_path);
    for (auto item = start.begin(); item != start.end(); ++item) {
      const size_t c = index_of(item.key());
      live.resize(series.categories.size(), 0);
      live[c] = read_bytes(item.value(), join_path(start_path, item.key()));
    }
  }

  const std::string events_path = join_path(path, "events");
  const json& events = read_array(require_field(timeline, "events", path), events_path);
  struct State {
    double t_s;
    std::string phase;
    std::vector<int64_t> live;
    int64_t total;
  };
  auto total_of = [](const std::vector<int64_t>& bytes) {
    int64_t total = 0;
    for (int64_t b : bytes) total += b;
    return total;
  };
  std::vector<State> kept;
  kept.push_back({0.0, "start", live, total_of(live)});
  const size_t event_count = events.size();
  const size_t budget_points = static_cast<size_t>(std::max<int64_t>(max_points, 16)) - 2;
  const size_t bucket_events = std::max<size_t>(1, (event_count + budget_points - 1) / budget_points);
  State best{0, "", {}, -1};
  for (size_t e = 0; e < event_count; ++e) {
    const std::string event_path = index_path(events_path, e);
    const json& event = read_object(events[e], event_path);
    const std::string kind = string_field(event, "kind", event_path);
    const int64_t bytes = bytes_field(event, "bytes", event_path);
    const size_t c = index_of(string_field(event, "category", event_path));
    live.resize(series.categories.size(), 0);
    if (kind == "alloc") {
      live[c] += bytes;
    } else if (kind == "free") {
      live[c] -= bytes;
    } else {
      throw InvalidArgument("report input: " + join_path(event_path, "kind") +
                            " must be \"alloc\" or \"free\", got \"" + kind + "\"");
    }
    const int64_t total = total_of(live);
    if (total > best.total) {
      best.t_s = seconds_field(event, "t_s", event_path);
      best.phase =
          has_value(event, "phase") ? read_string(event.at("phase"), join_path(event_path, "phase")) : "";
      best.live = live;
      best.total = total;
    }
    if ((e + 1) % bucket_events == 0 || e + 1 == event_count) {
      kept.push_back(best);
      best.total = -1;
    }
  }
  if (event_count > 0) {
    const json& last = events[event_count - 1];
    State end{seconds_field(last, "t_s", index_path(events_path, event_count - 1)), "end", live,
              total_of(live)};
    if (has_value(timeline, "step_s")) end.t_s = std::max(end.t_s, seconds_field(timeline, "step_s", path));
    kept.push_back(end);
  }

  int64_t peak_total = -1;
  for (const State& state : kept) {
    json row = {{"t_s", rounded(state.t_s, 1e-7)}, {"phase", state.phase}};
    for (size_t c = 0; c < series.categories.size(); ++c) {
      row[series.categories[c]] = c < state.live.size() ? to_mib(state.live[c]) : 0.0;
    }
    series.rows.push_back(row);
    if (state.total > peak_total) {
      peak_total = state.total;
      series.peak_t_s = state.t_s;
      series.peak_phase = state.phase;
      series.peak_by_category = json::object();
      for (size_t c = 0; c < series.categories.size(); ++c) {
        series.peak_by_category[series.categories[c]] = c < state.live.size() ? state.live[c] : 0;
      }
    }
  }
  series.peak_mib = to_mib(peak_total);
  // The writer's own peak breakdown wins over the replayed one (it saw every byte).
  if (has_value(timeline, "peak")) {
    const std::string peak_path = join_path(path, "peak");
    const json& peak = read_object(timeline.at("peak"), peak_path);
    if (has_value(peak, "by_category")) {
      const std::string by_path = join_path(peak_path, "by_category");
      const json& by_category = read_object(peak.at("by_category"), by_path);
      series.peak_by_category = json::object();
      for (auto item = by_category.begin(); item != by_category.end(); ++item) {
        index_of(item.key());
        series.peak_by_category[item.key()] = read_bytes(item.value(), join_path(by_path, item.key()));
      }
    }
  }
  if (has_value(timeline, "budget_bytes"))
    series.budget_mib = to_mib(bytes_field(timeline, "budget_bytes", path));
  return series;
}

std::string peak_label(const TimelineSeries& series) {
  char text[64];
  std::snprintf(text, sizeof text, "peak %.1f MiB", series.peak_mib);
  return series.peak_phase.empty() ? text : std::string(text) + " (" + series.peak_phase + ")";
}

json timeline_spec(const TimelineSeries& series, const std::vector<std::string>& categories,
                   double y_max_mib) {
  json spec = base_spec("Live bytes by category over one training step: " + series.label);
  spec["height"] = 260;
  json fold_fields = json::array();
  for (const std::string& category : categories) fold_fields.push_back(category);
  // Rows lack categories that another timeline introduced: give them zero bytes.
  json rows = series.rows;
  for (json& row : rows) {
    for (const std::string& category : categories) {
      if (!row.contains(category)) row[category] = 0.0;
    }
  }
  json area = {
      {"data", {{"values", rows}}},
      {"transform",
       {{{"fold", fold_fields}, {"as", {"category", "MiB"}}},
        {{"calculate", "indexof(" + json(categories).dump() + ", datum.category)"},
         {"as", "category_order"}}}},
      {"mark", {{"type", "area"}, {"interpolate", "step-after"}}},
      {"encoding",
       {{"x", {{"field", "t_s"}, {"type", "quantitative"}, {"title", "time since the step started (s)"}}},
        {"y",
         {{"field", "MiB"},
          {"type", "quantitative"},
          {"stack", "zero"},
          {"title", "live memory (MiB)"},
          {"scale", {{"domain", {0, y_max_mib}}}}}},
        {"color",
         {{"field", "category"},
          {"type", "nominal"},
          {"title", "category"},
          {"scale", category_scale(categories)}}},
        {"order", {{"field", "category_order"}, {"type", "quantitative"}}},
        {"tooltip",
         {{{"field", "t_s"}, {"type", "quantitative"}, {"title", "time (s)"}, {"format", ".6f"}},
          {{"field", "phase"}, {"type", "nominal"}},
          {{"field", "category"}, {"type", "nominal"}},
          {{"field", "MiB"}, {"type", "quantitative"}, {"format", ".2f"}}}}}}};
  json peak_mark = {
      {"data",
       {{"values",
         {{{"t_s", rounded(series.peak_t_s, 1e-7)},
           {"MiB", series.peak_mib},
           {"label", peak_label(series)}}}}}},
      {"layer",
       {{{"mark", {{"type", "point"}, {"filled", true}, {"color", "black"}, {"size", 50}}}},
        {{"mark", {{"type", "text"}, {"align", "left"}, {"dx", 6}, {"dy", -8}, {"fontSize", 11}}},
         {"encoding", {{"text", {{"field", "label"}, {"type", "nominal"}}}}}}}},
      {"encoding",
       {{"x", {{"field", "t_s"}, {"type", "quantitative"}}},
        {"y", {{"field", "MiB"}, {"type", "quantitative"}}}}}};
  json layers = {area, peak_mark};
  if (series.budget_mib) {
    layers.push_back(
        {{"data", {{"values", {{{"MiB", *series.budget_mib}, {"label", "budget"}}}}}},
         {"layer",
          {{{"mark", {{"type", "rule"}, {"color", "#d62728"}, {"strokeDash", {6, 4}}, {"strokeWidth", 1.5}}}},
           {{"mark",
             {{"type", "text"}, {"align", "right"}, {"dy", -6}, {"color", "#d62728"}, {"x", "width"}}},
            {"encoding", {{"text", {{"field", "label"}, {"type", "nominal"}}}}}}}},
         {"encoding", {{"y", {{"field", "MiB"}, {"type", "quantitative"}}}}}});
  }
  spec["layer"] = layers;
  return spec;
}

json peak_breakdown_spec(const json& rows, const std::vector<std::string>& categories,
                         const json& budget_rows, const std::string& description) {
  json spec = base_spec(description);
  spec["height"] = {{"step", 26}};
  json order_of = categories;
  json bars = {
      {"data", {{"values", rows}}},
      {"transform",
       {{{"calculate", "indexof(" + order_of.dump() + ", datum.category)"}, {"as", "category_order"}}}},
      {"mark", "bar"},
      {"encoding",
       {{"y", {{"field", "run"}, {"type", "nominal"}, {"title", nullptr}, {"sort", nullptr}}},
        {"x",
         {{"field", "MiB"},
          {"type", "quantitative"},
          {"stack", "zero"},
          {"title", "bytes at the peak (MiB)"}}},
        {"color",
         {{"field", "category"},
          {"type", "nominal"},
          {"title", "category"},
          {"scale", category_scale(categories)}}},
        {"order", {{"field", "category_order"}, {"type", "quantitative"}}},
        {"tooltip",
         {{{"field", "run"}, {"type", "nominal"}},
          {{"field", "category"}, {"type", "nominal"}},
          {{"field", "MiB"}, {"type", "quantitative"}, {"format", ".2f"}}}}}}};
  json layers = {bars};
  if (!budget_rows.empty()) {
    layers.push_back(
        {{"data", {{"values", budget_rows}}},
         {"mark", {{"type", "tick"}, {"color", "#d62728"}, {"thickness", 2}}},
         {"encoding",
          {{"y", {{"field", "run"}, {"type", "nominal"}, {"sort", nullptr}}},
           {"x", {{"field", "MiB"}, {"type", "quantitative"}}},
           {"tooltip",
            {{{"field", "run"}, {"type", "nominal"}},
             {{"field", "MiB"}, {"type", "quantitative"}, {"title", "budget (MiB)"}, {"format", ".2f"}}}}}}});
  }
  spec["layer"] = layers;
  return spec;
}

// Grouped bars per stage: x = stage (in chain order), offset and colour by `series_field`.
json stage_bars_spec(const json& rows, const std::string& value_field, const std::string& value_title,
                     const std::string& series_field, const std::string& stack_field,
                     const std::string& description) {
  json spec = base_spec(description);
  spec["height"] = 220;
  spec["data"] = {{"values", rows}};
  spec["mark"] = {{"type", "bar"}};
  json encoding = {
      {"x",
       {{"field", "stage_label"}, {"type", "nominal"}, {"title", "stage"}, {"sort", {{"field", "stage"}}}}},
      {"xOffset", {{"field", series_field}, {"type", "nominal"}}},
      {"y", {{"field", value_field}, {"type", "quantitative"}, {"title", value_title}}},
      {"color", {{"field", stack_field.empty() ? series_field : stack_field}, {"type", "nominal"}}},
      {"tooltip",
       {{{"field", "stage_label"}, {"type", "nominal"}, {"title", "stage"}},
        {{"field", series_field}, {"type", "nominal"}},
        {{"field", value_field}, {"type", "quantitative"}, {"format", ".3f"}}}}};
  if (!stack_field.empty()) encoding["tooltip"].push_back({{"field", stack_field}, {"type", "nominal"}});
  spec["encoding"] = encoding;
  return spec;
}

std::vector<ReportChart> profile_stage_charts(const ChainProfile& profile) {
  json time_rows = json::array();
  json byte_rows = json::array();
  for (int i = 0; i < profile.length(); ++i) {
    const StageProfile& stage = profile.stages[i];
    const std::string label = std::to_string(i) + " " + stage.name;
    time_rows.push_back({{"stage", i},
                         {"stage_label", label},
                         {"pass", "forward"},
                         {"ms", rounded(stage.forward_s * 1e3, 1e-6)}});
    time_rows.push_back({{"stage", i},
                         {"stage_label", label},
                         {"pass", "backward"},
                         {"ms", rounded(stage.backward_s * 1e3, 1e-6)}});
    const std::pair<const char*, int64_t> sizes[] = {{"saved by autograd", stage.saved_bytes},
                                                     {"output", stage.output_bytes},
                                                     {"forward temporaries", stage.forward_temp_bytes},
                                                     {"backward temporaries", stage.backward_temp_bytes}};
    for (const auto& [what, bytes] : sizes) {
      byte_rows.push_back({{"stage", i}, {"stage_label", label}, {"bytes of", what}, {"MiB", to_mib(bytes)}});
    }
  }
  json time_spec = stage_bars_spec(time_rows, "ms", "milliseconds", "pass", "",
                                   "Forward and backward seconds of every stage, as profiled");
  time_spec["encoding"]["color"]["scale"] = {{"domain", {"forward", "backward"}},
                                             {"range", {"#4c78a8", "#f58518"}}};
  time_spec["encoding"]["xOffset"]["sort"] = {"forward", "backward"};
  return {{"chart-stage-time", "Time per stage (profile)", time_spec},
          {"chart-stage-bytes", "Bytes per stage (profile)",
           stage_bars_spec(byte_rows, "MiB", "MiB", "bytes of", "",
                           "Saved, output and temporary bytes of every stage, as profiled")}};
}

// Per-stage measured time (from the phases) and bytes (from the lifetimes) of timelines.
std::vector<ReportChart> timeline_stage_charts(const std::vector<const json*>& timelines,
                                               const std::vector<std::string>& paths,
                                               const std::vector<std::string>& labels) {
  std::map<std::tuple<std::string, int64_t, std::string>, double> seconds;  // (run, stage, kind)
  std::map<std::pair<int64_t, std::string>, int64_t> bytes;                 // (stage, kind) -> largest
  for (size_t k = 0; k < timelines.size(); ++k) {
    const json& timeline = *timelines[k];
    if (has_value(timeline, "phases")) {
      const std::string phases_path = join_path(paths[k], "phases");
      const json& phases = read_array(timeline.at("phases"), phases_path);
      for (size_t p = 0; p < phases.size(); ++p) {
        const std::string phase_path = index_path(phases_path, p);
        const json& phase = read_object(phases[p], phase_path);
        const std::string kind = string_field(phase, "kind", phase_path);
        if (kind != "forward" && kind != "recompute" && kind != "backward") continue;
        if (!has_value(phase, "stage")) continue;
        // A negative stage marks an op outside the chain, like a null one.
        const auto stage =
            static_cast<int64_t>(read_number(phase.at("stage"), join_path(phase_path, "stage")));
        if (stage < 0) continue;
        const double duration_s =
            seconds_field(phase, "end_s", phase_path) - seconds_field(phase, "start_s", phase_path);
        seconds[{labels[k], stage, kind}] += std::max(0.0, duration_s);
      }
    }
    if (has_value(timeline, "lifetimes")) {
      const std::string lifetimes_path = join_path(paths[k], "lifetimes");
      const json& lifetimes = read_array(timeline.at("lifetimes"), lifetimes_path);
      for (size_t l = 0; l < lifetimes.size(); ++l) {
        const std::string lifetime_path = index_path(lifetimes_path, l);
        const json& lifetime = read_object(lifetimes[l], lifetime_path);
        if (!has_value(lifetime, "stage")) continue;
        const auto stage =
            static_cast<int64_t>(read_number(lifetime.at("stage"), join_path(lifetime_path, "stage")));
        if (stage < 0) continue;
        const std::string kind =
            string_field(lifetime, "kind", lifetime_path) == "saved" ? "saved by autograd" : "stage output";
        int64_t& largest = bytes[{stage, kind}];
        largest = std::max(largest, bytes_field(lifetime, "bytes", lifetime_path));
      }
    }
  }
  std::vector<ReportChart> charts;
  if (!seconds.empty()) {
    json rows = json::array();
    for (const auto& [key, total_s] : seconds) {
      const auto& [run, stage, kind] = key;
      rows.push_back({{"stage", stage},
                      {"stage_label", "stage " + std::to_string(stage)},
                      {"run", run},
                      {"pass", kind},
                      {"ms", rounded(total_s * 1e3, 1e-6)}});
    }
    json spec = stage_bars_spec(rows, "ms", "milliseconds (measured)", "run", "pass",
                                "Measured forward, recompute and backward time of every stage, per run");
    spec["encoding"]["color"]["scale"] = {{"domain", {"forward", "recompute", "backward"}},
                                          {"range", {"#4c78a8", "#e45756", "#f58518"}}};
    spec["encoding"]["color"]["title"] = "pass";
    charts.push_back({"chart-stage-time", "Time per stage (measured)", spec});
  }
  if (!bytes.empty()) {
    json rows = json::array();
    for (const auto& [key, size] : bytes) {
      rows.push_back({{"stage", key.first},
                      {"stage_label", "stage " + std::to_string(key.first)},
                      {"bytes of", key.second},
                      {"MiB", to_mib(size)}});
    }
    charts.push_back(
        {"chart-stage-bytes", "Bytes per stage (measured)",
         stage_bars_spec(rows, "MiB", "MiB (measured)", "bytes of", "",
                         "Measured bytes of each stage's output and of what autograd saves for it")});
  }
  return charts;
}

// Lines of `y_field` against `x_field` per planner (points on top).
json frontier_spec(const json& rows, const std::string& x_field, const std::string& x_title,
                   const std::string& y_field, const std::string& y_title, bool lines,
                   const std::string& description) {
  json spec = base_spec(description);
  spec["height"] = 300;
  spec["data"] = {{"values", rows}};
  json tooltip = json::array();
  for (const char* field : {"planner", "label", "status"}) {
    tooltip.push_back({{"field", field}, {"type", "nominal"}});
  }
  tooltip.push_back({{"field", x_field}, {"type", "quantitative"}, {"format", ".2f"}});
  tooltip.push_back({{"field", y_field}, {"type", "quantitative"}, {"format", ".4f"}});
  json encoding = {
      {"x", {{"field", x_field}, {"type", "quantitative"}, {"title", x_title}, {"scale", {{"zero", false}}}}},
      {"y", {{"field", y_field}, {"type", "quantitative"}, {"title", y_title}, {"scale", {{"zero", false}}}}},
      {"color", {{"field", "planner"}, {"type", "nominal"}, {"title", "planner"}}}};
  json point = {
      {"mark", {{"type", "point"}, {"filled", true}, {"size", 60}}},
      {"encoding",
       {{"shape", {{"field", "status"}, {"type", "nominal"}, {"title", "status"}}}, {"tooltip", tooltip}}}};
  json layers = json::array();
  if (lines) {
    layers.push_back({{"mark", {{"type", "line"}, {"strokeWidth", 1.5}}},
                      {"encoding", {{"order", {{"field", x_field}, {"type", "quantitative"}}}}}});
  }
  layers.push_back(point);
  spec["encoding"] = encoding;
  spec["layer"] = layers;
  return spec;
}

// ---- documents --------------------------------------------------------------------

void add_timeline_charts(const std::vector<const json*>& timelines, const std::vector<std::string>& paths,
                         const HtmlReportOptions& options, std::vector<ReportChart>& charts) {
  if (timelines.empty()) return;
  const std::vector<std::string> labels = timeline_labels(timelines, paths);
  std::vector<TimelineSeries> series;
  std::vector<std::string> categories;
  double y_max_mib = 0;
  for (size_t k = 0; k < timelines.size(); ++k) {
    series.push_back(timeline_series(*timelines[k], paths[k], labels[k], options.max_timeline_points()));
    for (const std::string& category : series.back().categories) {
      if (std::find(categories.begin(), categories.end(), category) == categories.end())
        categories.push_back(category);
    }
    y_max_mib = std::max({y_max_mib, series.back().peak_mib, series.back().budget_mib.value_or(0.0)});
  }
  // One y scale for every timeline, so that store-all and the plans compare at a glance.
  y_max_mib = std::max(1e-3, y_max_mib * 1.08);
  for (size_t k = 0; k < series.size(); ++k) {
    charts.push_back({"chart-timeline-" + std::to_string(k), "Memory over one step: " + series[k].label,
                      timeline_spec(series[k], categories, y_max_mib)});
  }

  json rows = json::array();
  json budget_rows = json::array();
  for (const TimelineSeries& one : series) {
    for (const std::string& category : categories) {
      const int64_t bytes = one.peak_by_category.value(category, int64_t{0});
      rows.push_back({{"run", one.label}, {"category", category}, {"MiB", to_mib(bytes)}});
    }
    if (one.budget_mib) budget_rows.push_back({{"run", one.label}, {"MiB", *one.budget_mib}});
  }
  charts.push_back({"chart-peak-breakdown", "Peak breakdown by category",
                    peak_breakdown_spec(rows, categories, budget_rows,
                                        "Bytes by category at each run's peak; red ticks mark the budget")});

  for (ReportChart& chart : timeline_stage_charts(timelines, paths, labels))
    charts.push_back(std::move(chart));

  json frontier_rows = json::array();
  for (size_t k = 0; k < timelines.size(); ++k) {
    const json& timeline = *timelines[k];
    if (!has_value(timeline, "measured_peak_bytes") || !has_value(timeline, "step_s")) continue;
    frontier_rows.push_back({{"planner", string_field(timeline, "planner", paths[k])},
                             {"label", labels[k]},
                             {"status", "measured"},
                             {"peak_MiB", to_mib(bytes_field(timeline, "measured_peak_bytes", paths[k]))},
                             {"step_s", seconds_field(timeline, "step_s", paths[k])}});
  }
  if (!frontier_rows.empty()) {
    charts.push_back({"chart-frontier-measured", "Measured step time against measured peak",
                      frontier_spec(frontier_rows, "peak_MiB", "measured peak (MiB)", "step_s",
                                    "step time (s)", false, "Measured step time and peak of every run")});
  }
}

ChainProfile nested_profile(const json& document, const std::string& what) {
  try {
    return profile_from_json(read_object(document.at("profile"), "profile"), what + " field profile");
  } catch (const ProfileError& error) {
    throw InvalidArgument(std::string("report input: ") + error.what());
  }
}

void add_bench_charts(const json& document, std::vector<ReportChart>& charts) {
  std::optional<ChainProfile> profile;
  if (has_value(document, "profile")) profile = nested_profile(document, "bench file");
  const json& store_all = read_object(require_field(document, "store_all", ""), "store_all");
  const int64_t store_all_peak = bytes_field(store_all, "measured_peak_bytes", "store_all");
  const double store_all_step_s = seconds_field(store_all, "step_s", "store_all");
  const json& rows = read_array(require_field(document, "rows", ""), "rows");

  struct Row {
    std::string planner, budget, status, label;
    std::optional<int64_t> budget_bytes, measured_peak_bytes, predicted_peak_bytes;
    std::optional<double> step_s, predicted_step_s;
  };
  std::vector<Row> parsed;
  for (size_t r = 0; r < rows.size(); ++r) {
    const std::string path = index_path("rows", r);
    const json& row = read_object(rows[r], path);
    Row one;
    one.planner = row_planner_label(row, path);
    one.status = string_field(row, "status", path);
    one.budget = has_value(row, "budget") ? read_string(row.at("budget"), join_path(path, "budget")) : "";
    auto bytes_if = [&](const char* key) -> std::optional<int64_t> {
      if (!has_value(row, key)) return std::nullopt;
      return read_bytes(row.at(key), join_path(path, key));
    };
    auto seconds_if = [&](const char* key) -> std::optional<double> {
      if (!has_value(row, key)) return std::nullopt;
      return read_seconds(row.at(key), join_path(path, key));
    };
    one.budget_bytes = bytes_if("budget_bytes");
    one.measured_peak_bytes = bytes_if("measured_peak_bytes");
    one.predicted_peak_bytes = bytes_if("predicted_peak_bytes");
    one.step_s = seconds_if("step_s");
    one.predicted_step_s = seconds_if("predicted_step_s");
    one.label = one.planner + (one.budget.empty() ? "" : " @ " + one.budget);
    parsed.push_back(one);
  }
  auto ran = [&](const Row& row) {
    return (row.status == "ok" || row.status == "over_budget") && row.measured_peak_bytes &&
           *row.measured_peak_bytes > 0 && row.step_s;
  };

  // Peak breakdown: the fixed bytes by category (from the profile) under each measured peak.
  if (profile) {
    const FixedBytes& fixed = profile->fixed_breakdown;
    const int64_t fixed_total = fixed.total() > 0 ? fixed.total() : profile->fixed_bytes;
    const std::vector<std::pair<std::string, int64_t>> fixed_parts =
        fixed.total() > 0
            ? std::vector<std::pair<std::string, int64_t>>{{"parameters", fixed.parameters_bytes},
                                                           {"gradients", fixed.gradients_bytes},
                                                           {"optimizer_state", fixed.optimizer_bytes},
                                                           {"inputs", fixed.inputs_bytes}}
            : std::vector<std::pair<std::string, int64_t>>{{"other", profile->fixed_bytes}};
    std::vector<std::string> categories;
    for (const auto& part : fixed_parts) categories.push_back(part.first);
    categories.push_back(kActivationsAndTemporaries);
    json breakdown = json::array();
    json budgets = json::array();
    auto add_run = [&](const std::string& label, int64_t peak_bytes) {
      for (const auto& [category, bytes] : fixed_parts) {
        breakdown.push_back({{"run", label}, {"category", category}, {"MiB", to_mib(bytes)}});
      }
      breakdown.push_back({{"run", label},
                           {"category", kActivationsAndTemporaries},
                           {"MiB", to_mib(std::max<int64_t>(0, peak_bytes - fixed_total))}});
    };
    if (store_all_peak > 0) add_run("store-all", store_all_peak);
    for (const Row& row : parsed) {
      if (!ran(row)) continue;
      add_run(row.label, *row.measured_peak_bytes);
      if (row.budget_bytes) budgets.push_back({{"run", row.label}, {"MiB", to_mib(*row.budget_bytes)}});
    }
    if (!breakdown.empty()) {
      charts.push_back(
          {"chart-peak-breakdown", "Measured peak breakdown",
           peak_breakdown_spec(breakdown, categories, budgets,
                               "Fixed bytes by category and the rest of each measured peak; red ticks "
                               "mark the budget")});
    }
    for (ReportChart& chart : profile_stage_charts(*profile)) charts.push_back(std::move(chart));
  }

  if (has_value(document, "max_batch")) {
    const json& searches = read_array(document.at("max_batch"), "max_batch");
    json points = json::array();
    json caps = json::array();
    for (size_t s = 0; s < searches.size(); ++s) {
      const std::string path = index_path("max_batch", s);
      const json& search = read_object(searches[s], path);
      const std::string planner = row_planner_label(search, path);
      std::string label = planner;
      if (has_value(search, "max_batch")) {
        label += " (max batch " +
                 std::to_string(read_bytes(search.at("max_batch"), join_path(path, "max_batch"))) + ")";
      }
      if (has_value(search, "memory_cap_bytes")) {
        caps.push_back(
            {{"MiB", to_mib(bytes_field(search, "memory_cap_bytes", path))}, {"label", "memory cap"}});
      }
      const std::string points_path = join_path(path, "points");
      const json& search_points = read_array(require_field(search, "points", path), points_path);
      for (size_t p = 0; p < search_points.size(); ++p) {
        const std::string point_path = index_path(points_path, p);
        const json& point = read_object(search_points[p], point_path);
        const int64_t batch = bytes_field(point, "batch", point_path);
        const bool fits =
            has_value(point, "fits") && point.at("fits").is_boolean() && point.at("fits").get<bool>();
        for (const char* measure : {"measured", "predicted"}) {
          const std::string key = std::string(measure) + "_peak_bytes";
          if (!has_value(point, key)) continue;
          points.push_back({{"planner", label},
                            {"batch", batch},
                            {"measure", measure},
                            {"fits", fits ? "fits" : "does not fit"},
                            {"MiB", to_mib(read_bytes(point.at(key), join_path(point_path, key)))}});
        }
      }
    }
    if (!points.empty()) {
      json spec = base_spec("Peak memory against batch size for store-all and each planner");
      spec["height"] = 300;
      json lines = {{"data", {{"values", points}}},
                    {"encoding",
                     {{"x", {{"field", "batch"}, {"type", "quantitative"}, {"title", "batch size"}}},
                      {"y", {{"field", "MiB"}, {"type", "quantitative"}, {"title", "peak memory (MiB)"}}},
                      {"color", {{"field", "planner"}, {"type", "nominal"}, {"title", "planner"}}},
                      {"strokeDash", {{"field", "measure"}, {"type", "nominal"}, {"title", "peak"}}}}},
                    {"layer",
                     {{{"mark", {{"type", "line"}, {"strokeWidth", 1.5}}}},
                      {{"mark", {{"type", "point"}, {"filled", true}, {"size", 45}}},
                       {"encoding",
                        {{"shape", {{"field", "fits"}, {"type", "nominal"}, {"title", "under the cap"}}},
                         {"tooltip",
                          {{{"field", "planner"}, {"type", "nominal"}},
                           {{"field", "batch"}, {"type", "quantitative"}},
                           {{"field", "measure"}, {"type", "nominal"}},
                           {{"field", "MiB"}, {"type", "quantitative"}, {"format", ".2f"}},
                           {{"field", "fits"}, {"type", "nominal"}}}}}}}}}};
      json layers = {lines};
      if (!caps.empty()) {
        layers.push_back({{"data", {{"values", caps}}},
                          {"mark", {{"type", "rule"}, {"color", "#d62728"}, {"strokeDash", {6, 4}}}},
                          {"encoding", {{"y", {{"field", "MiB"}, {"type", "quantitative"}}}}}});
      }
      spec["layer"] = layers;
      charts.push_back({"chart-peak-vs-batch", "Peak memory against batch size", spec});
    }
  }

  json predicted = json::array();
  json measured = json::array();
  if (store_all_peak > 0) {
    measured.push_back({{"planner", "store-all"},
                        {"label", "store-all"},
                        {"status", "ok"},
                        {"peak_MiB", to_mib(store_all_peak)},
                        {"step_s", store_all_step_s}});
  }
  for (const Row& row : parsed) {
    if (row.status == "ok" && row.budget_bytes && row.predicted_step_s) {
      predicted.push_back({{"planner", row.planner},
                           {"label", row.label},
                           {"status", row.status},
                           {"budget_MiB", to_mib(*row.budget_bytes)},
                           {"time_s", *row.predicted_step_s}});
    }
    if (ran(row)) {
      measured.push_back({{"planner", row.planner},
                          {"label", row.label},
                          {"status", row.status},
                          {"peak_MiB", to_mib(*row.measured_peak_bytes)},
                          {"step_s", *row.step_s}});
    }
  }
  if (!predicted.empty()) {
    charts.push_back(
        {"chart-frontier-predicted", "Predicted step time against budget",
         frontier_spec(predicted, "budget_MiB", "budget (MiB)", "time_s", "predicted step time (s)", true,
                       "Predicted step time of each planner against the budget it planned for")});
  }
  if (!measured.empty()) {
    charts.push_back(
        {"chart-frontier-measured", "Measured step time against measured peak",
         frontier_spec(measured, "peak_MiB", "measured peak (MiB)", "step_s", "measured step time (s)", true,
                       "Measured step time against measured peak memory, per planner")});
  }
}

// Predicted frontier rows from {planner, budget_bytes, feasible, predicted_time_s} points.
void add_predicted_point(json& rows, const std::string& planner, const json& point, const std::string& path) {
  const json& feasible = require_field(point, "feasible", path);
  if (!feasible.is_boolean()) {
    throw InvalidArgument("report input: " + join_path(path, "feasible") + " must be true or false");
  }
  if (!feasible.get<bool>()) return;
  const int64_t budget_bytes = bytes_field(point, "budget_bytes", path);
  json row = {{"planner", planner},
              {"label", planner + " @ " + human_bytes(budget_bytes)},
              {"status", "feasible"},
              {"budget_MiB", to_mib(budget_bytes)},
              {"time_s", seconds_field(point, "predicted_time_s", path)}};
  rows.push_back(row);
}

void add_profile_report_charts(const json& document, const HtmlReportOptions& options,
                               std::vector<ReportChart>& charts) {
  std::vector<const json*> timelines;
  std::vector<std::string> paths;
  collect_timelines(document, DocumentKind::ProfileReport, timelines, paths);
  add_timeline_charts(timelines, paths, options, charts);
  if (has_value(document, "profile")) {
    // The profile's stage charts replace the measured ones from the timelines: they
    // carry the stage names and the temporaries.
    charts.erase(
        std::remove_if(charts.begin(), charts.end(),
                       [](const ReportChart& chart) { return chart.id.rfind("chart-stage-", 0) == 0; }),
        charts.end());
    for (ReportChart& chart : profile_stage_charts(nested_profile(document, "profile report"))) {
      charts.push_back(std::move(chart));
    }
  }
  if (has_value(document, "frontier")) {
    const json& frontier = read_array(document.at("frontier"), "frontier");
    json rows = json::array();
    for (size_t p = 0; p < frontier.size(); ++p) {
      const std::string path = index_path("frontier", p);
      const json& point = read_object(frontier[p], path);
      add_predicted_point(rows, string_field(point, "planner", path), point, path);
    }
    if (!rows.empty()) {
      charts.push_back(
          {"chart-frontier-predicted", "Predicted step time against budget",
           frontier_spec(rows, "budget_MiB", "budget (MiB)", "time_s", "predicted step time (s)", true,
                         "Predicted step time of every planner against the budget, feasible points")});
    }
  }
}

void add_plan_sweep_charts(const json& document, std::vector<ReportChart>& charts) {
  const json& planners = read_array(require_field(document, "planners", ""), "planners");
  json rows = json::array();
  for (size_t p = 0; p < planners.size(); ++p) {
    const std::string path = index_path("planners", p);
    const json& planner = read_object(planners[p], path);
    const std::string name = string_field(planner, "planner", path);
    if (!has_value(planner, "points")) continue;
    const std::string points_path = join_path(path, "points");
    const json& points = read_array(planner.at("points"), points_path);
    for (size_t i = 0; i < points.size(); ++i) {
      add_predicted_point(rows, name, read_object(points[i], index_path(points_path, i)),
                          index_path(points_path, i));
    }
  }
  if (!rows.empty()) {
    charts.push_back(
        {"chart-frontier-predicted", "Predicted step time against budget",
         frontier_spec(rows, "budget_MiB", "budget (MiB)", "time_s", "predicted step time (s)", true,
                       "Predicted step time of every planner against the budget, feasible points")});
  }
}

}  // namespace

// A training run: the validation loss over the evaluations, and for a gac run each stage's
// decision over the steps (a grid) and its proxy against its threshold.
void add_train_charts(const json& document, std::vector<ReportChart>& charts) {
  const json& evaluations = read_array(require_field(document, "evaluations", ""), "evaluations");
  json losses = json::array();
  for (size_t i = 0; i < evaluations.size(); ++i) {
    const std::string path = index_path("evaluations", i);
    const json& evaluation = read_object(evaluations[i], path);
    losses.push_back(
        {{"step", read_number(require_field(evaluation, "step", path), join_path(path, "step"))},
         {"loss", read_number(require_field(evaluation, "loss", path), join_path(path, "loss"))}});
  }
  json loss_spec = base_spec("Validation loss over training");
  loss_spec["height"] = 220;
  loss_spec["data"] = {{"values", losses}};
  loss_spec["mark"] = {{"type", "line"}, {"point", true}};
  loss_spec["encoding"] = {{"x", {{"field", "step"}, {"type", "quantitative"}, {"title", "step"}}},
                           {"y",
                            {{"field", "loss"},
                             {"type", "quantitative"},
                             {"title", "validation loss"},
                             {"scale", {{"zero", false}}}}}};
  charts.push_back({"chart-train-loss", "Validation loss", loss_spec});
  if (!has_value(document, "gac")) return;
  const json& history =
      read_array(require_field(read_object(document.at("gac"), "gac"), "history", "gac"), "gac.history");
  json records = json::array();
  for (size_t i = 0; i < history.size(); ++i) {
    const std::string path = index_path("gac.history", i);
    const json& record = read_object(history[i], path);
    json row = {{"step", read_number(require_field(record, "step", path), join_path(path, "step"))},
                {"stage", read_number(require_field(record, "stage", path), join_path(path, "stage"))},
                {"decision", string_field(record, "decision", path)}};
    if (has_value(record, "codec"))
      row["decision"] = row["decision"].get<std::string>() + " " + string_field(record, "codec", path);
    for (const char* key : {"proxy", "threshold"}) {
      if (has_value(record, key)) row[key] = read_number(record.at(key), join_path(path, key));
    }
    records.push_back(row);
  }
  if (records.empty()) return;
  json grid = base_spec("GAC decision of every stage at every measured step");
  grid["height"] = 220;
  grid["data"] = {{"values", records}};
  grid["mark"] = {{"type", "rect"}};
  grid["encoding"] = {
      {"x", {{"field", "step"}, {"type", "ordinal"}, {"title", "step"}}},
      {"y", {{"field", "stage"}, {"type", "ordinal"}, {"title", "stage"}}},
      {"color",
       {{"field", "decision"},
        {"type", "nominal"},
        {"title", "decision"},
        {"scale",
         {{"domain",
           {"store", "compress bf16", "compress fp16", "compress int8", "compress int4", "recompute",
            "freeze"}},
          {"range", {"#2ca02c", "#9ecae1", "#6baed6", "#3182bd", "#08519c", "#ff7f0e", "#7f7f7f"}}}}}},
      {"tooltip",
       {{{"field", "step"}, {"type", "quantitative"}},
        {{"field", "stage"}, {"type", "quantitative"}},
        {{"field", "decision"}, {"type", "nominal"}},
        {{"field", "proxy"}, {"type", "quantitative"}, {"format", ".4g"}},
        {{"field", "threshold"}, {"type", "quantitative"}, {"format", ".4g"}}}}};
  charts.push_back({"chart-gac-decisions", "GAC decisions per stage", grid});
  json lines = base_spec("GAC proxy (solid) and threshold (dashed) of every stage over training");
  lines["height"] = 260;
  lines["data"] = {{"values", records}};
  const json x = {{"field", "step"}, {"type", "quantitative"}, {"title", "step"}};
  const json color = {{"field", "stage"}, {"type", "nominal"}, {"title", "stage"}};
  lines["layer"] = {
      {{"mark", {{"type", "line"}, {"strokeWidth", 1.5}}},
       {"encoding",
        {{"x", x},
         {"color", color},
         {"y",
          {{"field", "proxy"},
           {"type", "quantitative"},
           {"title", "proxy and threshold (share of the largest)"},
           {"scale", {{"type", "symlog"}, {"constant", 0.001}}}}}}}},
      {{"mark", {{"type", "line"}, {"strokeWidth", 1}, {"strokeDash", {4, 3}}}},
       {"encoding",
        {{"x", x}, {"color", color}, {"y", {{"field", "threshold"}, {"type", "quantitative"}}}}}}};
  charts.push_back({"chart-gac-proxies", "GAC proxies and thresholds", lines});
}

std::vector<ReportChart> build_charts(const json& document, DocumentKind kind,
                                      const HtmlReportOptions& options) {
  std::vector<ReportChart> charts;
  switch (kind) {
    case DocumentKind::Timeline:
    case DocumentKind::Timelines: {
      std::vector<const json*> timelines;
      std::vector<std::string> paths;
      collect_timelines(document, kind, timelines, paths);
      add_timeline_charts(timelines, paths, options, charts);
      break;
    }
    case DocumentKind::Bench:
      add_bench_charts(document, charts);
      break;
    case DocumentKind::ProfileReport:
      add_profile_report_charts(document, options, charts);
      break;
    case DocumentKind::PlanSweep:
      add_plan_sweep_charts(document, charts);
      break;
    case DocumentKind::Train:
      add_train_charts(document, charts);
      break;
  }
  return charts;
}

}  // namespace memento::report_detail
