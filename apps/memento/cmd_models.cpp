// `memento models`: the model zoo with parameter counts and default input shapes. The
// counts are analytic (nothing is allocated), so listing gpt2-medium costs nothing.
#include <iostream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "commands.h"
#include "memento/models/zoo.h"

namespace memento::cli {
namespace {

// 124439808 -> "124.4M": three significant figures are what a listing needs; the JSON
// carries the exact count.
std::string format_count(int64_t count) {
  const double value = static_cast<double>(count);
  if (value >= 1e9) return fmt::format("{:.2f}G", value / 1e9);
  if (value >= 1e6) return fmt::format("{:.1f}M", value / 1e6);
  if (value >= 1e3) return fmt::format("{:.1f}K", value / 1e3);
  return std::to_string(count);
}

}  // namespace

void add_models_command(CLI::App& app) {
  auto format_text = std::make_shared<std::string>("text");
  CLI::App* command =
      app.add_subcommand("models", "List the model zoo: name, family, parameters, default input");
  add_format_option(command, *format_text);
  command->callback([format_text] {
    const Format format = parse_format(*format_text);
    const std::vector<ModelInfo> infos = model_infos();
    if (format == Format::Json) {
      nlohmann::json models = nlohmann::json::array();
      for (const ModelInfo& info : infos) {
        models.push_back({{"name", info.name},
                          {"family", info.family},
                          {"parameter_count", info.parameter_count},
                          {"input_shape", info.input_shape},
                          {"description", info.description}});
      }
      print_json({{"models", models}});
      return;
    }
    TextTable table({"name", "family", "parameters", "default input", "description"});
    table.align("llrll");
    for (const ModelInfo& info : infos) {
      table.add_row(
          {info.name, info.family, format_count(info.parameter_count), info.input_shape, info.description});
    }
    std::cout << table.str();
  });
}

}  // namespace memento::cli
