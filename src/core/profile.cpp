#include "memento/core/profile.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "memento/core/error.h"
#include "memento/core/json_input.h"
#include "memento/core/output_file.h"

namespace memento {

using nlohmann::json;

int64_t ChainProfile::activation_bytes(int i) const {
  if (i < 0 || i > length()) {
    throw InvalidArgument("activation index " + std::to_string(i) + " is outside 0.." +
                          std::to_string(length()));
  }
  return i == length() ? stages.back().output_bytes : stages[i].input_bytes;
}

double ChainProfile::total_forward_s() const {
  double total = 0;
  for (const auto& stage : stages) total += stage.forward_s;
  return total;
}

double ChainProfile::total_backward_s() const {
  double total = 0;
  for (const auto& stage : stages) total += stage.backward_s;
  return total;
}

bool ChainProfile::has_codec(Codec codec) const {
  if (codec == Codec::None) return true;
  for (const StageProfile& stage : stages) {
    if (stage.lossy_cost(codec) == nullptr) return false;
  }
  return !stages.empty();
}

int64_t ChainProfile::last_graph_after_loss_bytes() const {
  const StageProfile& last = stages.back();
  return last.saved_bytes - last.output_droppable_bytes;
}

namespace {

// Caps keep every sum of a profile's bytes (at most kMaxStages x 3 x 2^44) inside int64.
constexpr int64_t kMaxFieldBytes = int64_t{1} << 44;
constexpr int kMaxStages = 100000;

std::string stage_label(const std::string& source, int index, const std::string& name) {
  std::string label = source + ": stage " + std::to_string(index);
  if (!name.empty()) label += " (" + quoted(name) + ")";
  return label;
}

void check_time(double value, const std::string& where, const char* field) {
  if (!std::isfinite(value) || value < 0) {
    throw ProfileError(where + ": field \"" + field + "\" must be a finite number >= 0 seconds, got " +
                       std::to_string(value));
  }
}

void check_bytes(int64_t value, const std::string& where, const char* field) {
  if (value < 0 || value > kMaxFieldBytes) {
    throw ProfileError(where + ": field \"" + field + "\" must be between 0 and 2^44 (16 TiB) bytes, got " +
                       std::to_string(value));
  }
}

// Reads a required or optional numeric field with a message that names where it is.
double read_number(const json& object, const char* field, bool required, const std::string& where) {
  auto it = object.find(field);
  if (it == object.end() || it->is_null()) {
    if (required) throw ProfileError(where + ": missing field \"" + field + "\"");
    return 0;
  }
  if (!it->is_number()) {
    throw ProfileError(where + ": field \"" + field + "\" must be a number, got " + quote_json(*it));
  }
  return it->get<double>();
}

int64_t read_bytes(const json& object, const char* field, bool required, const std::string& where) {
  double value = read_number(object, field, required, where);
  if (!std::isfinite(value) || value < 0 || value > static_cast<double>(kMaxFieldBytes)) {
    throw ProfileError(where + ": field \"" + field +
                       "\" must be a byte count between 0 and 2^44 (16 TiB), got " + std::to_string(value));
  }
  if (value != std::floor(value)) {
    throw ProfileError(where + ": field \"" + field + "\" must be a whole number of bytes, got " +
                       std::to_string(value));
  }
  return static_cast<int64_t>(value);
}

// "output_passthrough": [{"from": k, "bytes": b}, ...], optional.
std::vector<StageProfile::Passthrough> read_passthrough(const json& object, const std::string& where) {
  std::vector<StageProfile::Passthrough> parts;
  auto it = object.find("output_passthrough");
  if (it == object.end() || it->is_null()) return parts;
  if (!it->is_array()) {
    throw ProfileError(where +
                       ": field \"output_passthrough\" must be a list of {\"from\", \"bytes\"} objects");
  }
  for (size_t k = 0; k < it->size(); ++k) {
    const json& item = (*it)[k];
    const std::string at = where + ", output_passthrough[" + std::to_string(k) + "]";
    if (!item.is_object()) throw ProfileError(at + ": must be an object {\"from\": k, \"bytes\": b}");
    const double from = read_number(item, "from", true, at);
    if (from != std::floor(from) || from < 0 || from > 1e9) {
      throw ProfileError(at + ": field \"from\" must be an activation index (a whole number >= 0)");
    }
    parts.push_back({static_cast<int>(from), read_bytes(item, "bytes", true, at)});
  }
  return parts;
}

std::string read_string(const json& object, const char* field, bool required, const std::string& where);

// "lossy": [{"codec": "int8", "saved_bytes": ..., ...}, ...], optional.
std::vector<StageProfile::LossyCost> read_lossy(const json& object, const std::string& where) {
  std::vector<StageProfile::LossyCost> costs;
  auto it = object.find("lossy");
  if (it == object.end() || it->is_null()) return costs;
  if (!it->is_array())
    throw ProfileError(where + ": field \"lossy\" must be a list of {\"codec\", ...} objects");
  for (size_t k = 0; k < it->size(); ++k) {
    const json& item = (*it)[k];
    const std::string at = where + ", lossy[" + std::to_string(k) + "]";
    if (!item.is_object())
      throw ProfileError(at + ": must be an object {\"codec\": name, \"saved_bytes\": b, ...}");
    StageProfile::LossyCost cost;
    try {
      cost.codec = codec_from_name(read_string(item, "codec", true, at));
    } catch (const InvalidArgument& error) {
      throw ProfileError(at + ": " + error.what());
    }
    cost.saved_bytes = read_bytes(item, "saved_bytes", true, at);
    cost.forward_temp_bytes = read_bytes(item, "forward_temp_bytes", false, at);
    cost.backward_temp_bytes = read_bytes(item, "backward_temp_bytes", false, at);
    cost.pack_s = read_number(item, "pack_s", false, at);
    cost.unpack_s = read_number(item, "unpack_s", false, at);
    costs.push_back(cost);
  }
  return costs;
}

void check_lossy(const StageProfile& stage, const std::string& where) {
  for (size_t k = 0; k < stage.lossy.size(); ++k) {
    const StageProfile::LossyCost& cost = stage.lossy[k];
    const std::string at = where + ", lossy[" + std::to_string(k) + "]";
    if (cost.codec == Codec::None)
      throw ProfileError(at + ": codec \"none\" is the exact forward; list lossy codecs only");
    for (size_t j = 0; j < k; ++j) {
      if (stage.lossy[j].codec == cost.codec) {
        throw ProfileError(at + ": codec " + codec_name(cost.codec) + " is listed twice");
      }
    }
    check_bytes(cost.saved_bytes, at, "saved_bytes");
    check_bytes(cost.forward_temp_bytes, at, "forward_temp_bytes");
    check_bytes(cost.backward_temp_bytes, at, "backward_temp_bytes");
    check_time(cost.pack_s, at, "pack_s");
    check_time(cost.unpack_s, at, "unpack_s");
  }
}

std::string read_string(const json& object, const char* field, bool required, const std::string& where) {
  auto it = object.find(field);
  if (it == object.end() || it->is_null()) {
    if (required) throw ProfileError(where + ": missing field \"" + field + "\"");
    return "";
  }
  if (!it->is_string()) {
    throw ProfileError(where + ": field \"" + field + "\" must be a string, got " + quote_json(*it));
  }
  return it->get<std::string>();
}

void check_passthrough(const StageProfile& stage, int index, const std::string& where) {
  int64_t total = 0;
  for (size_t k = 0; k < stage.output_passthrough.size(); ++k) {
    const StageProfile::Passthrough& part = stage.output_passthrough[k];
    const std::string field = "output_passthrough[" + std::to_string(k) + "]";
    if (part.from < 0 || part.from > index) {
      throw ProfileError(where + ": field \"" + field + ".from\" is " + std::to_string(part.from) +
                         "; a passed-through input was first held by an activation a_0 .. a_" +
                         std::to_string(index));
    }
    check_bytes(part.bytes, where, (field + ".bytes").c_str());
    total += part.bytes;
  }
  if (total > std::min(stage.output_bytes, stage.input_bytes)) {
    throw ProfileError(
        where + ": field \"output_passthrough\" adds up to " + std::to_string(total) +
        " bytes, more than \"output_bytes\" or \"input_bytes\"; only inputs pass through to outputs");
  }
}

}  // namespace

void validate_profile(const ChainProfile& profile, const std::string& source) {
  if (profile.stages.empty()) {
    throw ProfileError(source + ": field \"stages\" is empty; a profile needs at least one stage");
  }
  if (profile.length() > kMaxStages) {
    throw ProfileError(source + ": " + std::to_string(profile.length()) + " stages is more than the " +
                       std::to_string(kMaxStages) + " supported; use a coarser split");
  }
  check_bytes(profile.fixed_bytes, source, "fixed_bytes");
  check_bytes(profile.loss_temp_bytes, source, "loss_temp_bytes");
  for (int i = 0; i < profile.length(); ++i) {
    const StageProfile& stage = profile.stages[i];
    const std::string where = stage_label(source, i, stage.name);
    check_time(stage.forward_s, where, "forward_s");
    check_time(stage.backward_s, where, "backward_s");
    check_bytes(stage.input_bytes, where, "input_bytes");
    check_bytes(stage.output_bytes, where, "output_bytes");
    check_bytes(stage.saved_bytes, where, "saved_bytes");
    check_bytes(stage.forward_temp_bytes, where, "forward_temp_bytes");
    check_bytes(stage.backward_temp_bytes, where, "backward_temp_bytes");
    if (stage.forward_no_grad_temp_bytes) {
      check_bytes(*stage.forward_no_grad_temp_bytes, where, "forward_no_grad_temp_bytes");
    }
    check_bytes(stage.backward_released_bytes, where, "backward_released_bytes");
    if (stage.backward_released_bytes > stage.saved_bytes + stage.output_bytes) {
      throw ProfileError(
          where + ": field \"backward_released_bytes\" (" + std::to_string(stage.backward_released_bytes) +
          ") exceeds what the backward can free, saved_bytes + output_bytes (its graph and d_{i+1})");
    }
    check_bytes(stage.output_droppable_bytes, where, "output_droppable_bytes");
    if (stage.output_droppable_bytes > stage.output_bytes) {
      throw ProfileError(where + ": field \"output_droppable_bytes\" (" +
                         std::to_string(stage.output_droppable_bytes) + ") exceeds \"output_bytes\" (" +
                         std::to_string(stage.output_bytes) +
                         "); only the outputs themselves can be dropped");
    }
    if (!std::isfinite(stage.flops) || stage.flops < 0) {
      throw ProfileError(where + ": field \"flops\" must be a finite number >= 0");
    }
    check_passthrough(stage, i, where);
    check_lossy(stage, where);
    if (stage.saved_bytes < stage.output_new_bytes()) {
      const int64_t passed = stage.output_passthrough_bytes();
      throw ProfileError(where + ": field \"saved_bytes\" (" + std::to_string(stage.saved_bytes) +
                         ") is below \"output_bytes\" (" + std::to_string(stage.output_bytes) + ")" +
                         (passed > 0 ? " less the " + std::to_string(passed) + " bytes passed through" : "") +
                         "; saved_bytes counts everything autograd keeps, the output's new bytes included");
    }
    if (i > 0 && profile.stages[i - 1].output_bytes != stage.input_bytes) {
      throw ProfileError(where + ": field \"input_bytes\" (" + std::to_string(stage.input_bytes) +
                         ") differs from the previous stage's \"output_bytes\" (" +
                         std::to_string(profile.stages[i - 1].output_bytes) +
                         "); a stage's input is the previous stage's output");
    }
  }
}

json profile_to_json(const ChainProfile& profile) {
  json stages = json::array();
  for (const auto& stage : profile.stages) {
    stages.push_back({{"name", stage.name},
                      {"kind", stage.kind},
                      {"forward_s", stage.forward_s},
                      {"backward_s", stage.backward_s},
                      {"input_bytes", stage.input_bytes},
                      {"output_bytes", stage.output_bytes},
                      {"saved_bytes", stage.saved_bytes},
                      {"forward_temp_bytes", stage.forward_temp_bytes},
                      {"backward_temp_bytes", stage.backward_temp_bytes},
                      {"flops", stage.flops}});
    if (stage.forward_no_grad_temp_bytes) {
      stages.back()["forward_no_grad_temp_bytes"] = *stage.forward_no_grad_temp_bytes;
    }
    if (stage.backward_released_bytes > 0)
      stages.back()["backward_released_bytes"] = stage.backward_released_bytes;
    if (stage.output_droppable_bytes > 0)
      stages.back()["output_droppable_bytes"] = stage.output_droppable_bytes;
    if (!stage.output_passthrough.empty()) {
      json parts = json::array();
      for (const StageProfile::Passthrough& part : stage.output_passthrough)
        parts.push_back({{"from", part.from}, {"bytes", part.bytes}});
      stages.back()["output_passthrough"] = std::move(parts);
    }
    if (!stage.lossy.empty()) {
      json costs = json::array();
      for (const StageProfile::LossyCost& cost : stage.lossy) {
        costs.push_back({{"codec", codec_name(cost.codec)},
                         {"saved_bytes", cost.saved_bytes},
                         {"forward_temp_bytes", cost.forward_temp_bytes},
                         {"backward_temp_bytes", cost.backward_temp_bytes},
                         {"pack_s", cost.pack_s},
                         {"unpack_s", cost.unpack_s}});
      }
      stages.back()["lossy"] = std::move(costs);
    }
  }
  json out = {{"format", kProfileFormat},
              {"model", profile.model},
              {"fixed_bytes", profile.fixed_bytes},
              {"stages", stages}};
  if (profile.loss_temp_bytes > 0) out["loss_temp_bytes"] = profile.loss_temp_bytes;
  const FixedBytes& fixed = profile.fixed_breakdown;
  if (fixed.total() > 0) {
    out["fixed_breakdown"] = {{"parameters_bytes", fixed.parameters_bytes},
                              {"gradients_bytes", fixed.gradients_bytes},
                              {"optimizer_bytes", fixed.optimizer_bytes},
                              {"inputs_bytes", fixed.inputs_bytes}};
    if (fixed.communication_bytes > 0)
      out["fixed_breakdown"]["communication_bytes"] = fixed.communication_bytes;
  }
  return out;
}

ChainProfile profile_from_json(const json& document, const std::string& source) {
  if (!document.is_object()) {
    throw ProfileError(source +
                       ": a profile must be a JSON object with \"stages\" and \"fixed_bytes\", got " +
                       std::string(document.type_name()));
  }
  const std::string format = read_string(document, "format", false, source);
  if (!format.empty() && format != kProfileFormat && format != "memento.profile/1") {
    throw ProfileError(source + ": field \"format\" is " + quoted(format) + "; this memento reads " +
                       kProfileFormat +
                       " and memento.profile/1 (regenerate the profile with memento profile)");
  }
  ChainProfile profile;
  profile.model = read_string(document, "model", false, source);
  profile.fixed_bytes = read_bytes(document, "fixed_bytes", true, source);
  profile.loss_temp_bytes = read_bytes(document, "loss_temp_bytes", false, source);
  auto breakdown = document.find("fixed_breakdown");
  if (breakdown != document.end() && !breakdown->is_null()) {
    const std::string where = source + ": fixed_breakdown";
    if (!breakdown->is_object()) throw ProfileError(where + " must be an object");
    profile.fixed_breakdown.parameters_bytes = read_bytes(*breakdown, "parameters_bytes", false, where);
    profile.fixed_breakdown.gradients_bytes = read_bytes(*breakdown, "gradients_bytes", false, where);
    profile.fixed_breakdown.optimizer_bytes = read_bytes(*breakdown, "optimizer_bytes", false, where);
    profile.fixed_breakdown.inputs_bytes = read_bytes(*breakdown, "inputs_bytes", false, where);
    profile.fixed_breakdown.communication_bytes = read_bytes(*breakdown, "communication_bytes", false, where);
  }
  auto stages = document.find("stages");
  if (stages == document.end()) throw ProfileError(source + ": missing field \"stages\"");
  if (!stages->is_array())
    throw ProfileError(source + ": field \"stages\" must be an array of stage objects");
  int index = 0;
  for (const json& item : *stages) {
    const std::string where = stage_label(source, index, "");
    if (!item.is_object())
      throw ProfileError(where + ": must be an object, got " + std::string(item.type_name()));
    StageProfile stage;
    stage.name = read_string(item, "name", true, where);
    const std::string named = stage_label(source, index, stage.name);
    stage.kind = read_string(item, "kind", true, named);
    stage.forward_s = read_number(item, "forward_s", true, named);
    stage.backward_s = read_number(item, "backward_s", true, named);
    check_time(stage.forward_s, named, "forward_s");
    check_time(stage.backward_s, named, "backward_s");
    stage.input_bytes = read_bytes(item, "input_bytes", true, named);
    stage.output_bytes = read_bytes(item, "output_bytes", true, named);
    stage.saved_bytes = read_bytes(item, "saved_bytes", true, named);
    stage.forward_temp_bytes = read_bytes(item, "forward_temp_bytes", false, named);
    stage.backward_temp_bytes = read_bytes(item, "backward_temp_bytes", false, named);
    stage.flops = read_number(item, "flops", false, named);
    stage.backward_released_bytes = read_bytes(item, "backward_released_bytes", false, named);
    stage.output_droppable_bytes = read_bytes(item, "output_droppable_bytes", false, named);
    stage.output_passthrough = read_passthrough(item, named);
    stage.lossy = read_lossy(item, named);
    if (item.contains("forward_no_grad_temp_bytes")) {
      stage.forward_no_grad_temp_bytes = read_bytes(item, "forward_no_grad_temp_bytes", true, named);
    }
    profile.stages.push_back(std::move(stage));
    ++index;
  }
  validate_profile(profile, source);
  return profile;
}

ChainProfile parse_profile(const std::string& text, const std::string& source) {
  json document;
  try {
    document = parse_json_input(text, source);
  } catch (const InvalidArgument& e) {
    throw ProfileError(e.what());
  }
  return profile_from_json(document, source);
}

ChainProfile read_profile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ProfileError(path + ": cannot open the profile file; check the path");
  std::stringstream buffer;
  buffer << in.rdbuf();
  return parse_profile(buffer.str(), path);
}

void write_profile(const ChainProfile& profile, const std::string& path) {
  validate_profile(profile, path);
  write_file_atomically(path, profile_to_json(profile).dump(2) + "\n");
}

}  // namespace memento
