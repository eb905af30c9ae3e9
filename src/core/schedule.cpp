#include "memento/core/schedule.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "memento/core/error.h"

namespace memento {

namespace {

struct KindNames {
  OpKind kind;
  const char* json_name;
  const char* short_name;
};

constexpr KindNames kKindNames[] = {
    {OpKind::ForwardNoGrad, "forward_no_grad", "Fn"},
    {OpKind::ForwardCheckpoint, "forward_checkpoint", "Fc"},
    {OpKind::ForwardWithGraph, "forward_with_graph", "Fg"},
    {OpKind::ForwardLossy, "forward_lossy", "Fq"},
    {OpKind::ForwardFrozen, "forward_frozen", "Ff"},
    {OpKind::Loss, "loss", "L"},
    {OpKind::Backward, "backward", "B"},
    {OpKind::Free, "free", "X"},
};

const KindNames& names_of(OpKind kind) {
  for (const auto& names : kKindNames) {
    if (names.kind == kind) return names;
  }
  throw InvalidArgument("unknown op kind " + std::to_string(static_cast<int>(kind)));
}

}  // namespace

const char* op_kind_name(OpKind kind) {
  return names_of(kind).json_name;
}

OpKind op_kind_from_name(const std::string& name) {
  std::string valid;
  for (const auto& names : kKindNames) {
    if (name == names.json_name) return names.kind;
    valid += std::string(valid.empty() ? "" : ", ") + names.json_name;
  }
  throw InvalidArgument("unknown op \"" + name + "\"; valid ops are " + valid);
}

std::string to_string(const Op& op) {
  const KindNames& names = names_of(op.kind);
  if (op.kind == OpKind::Loss) return names.short_name;
  std::string text = names.short_name + std::to_string(op.stage);
  if (op.kind == OpKind::ForwardLossy) text += std::string(":") + codec_name(op.codec);
  return text;
}

bool is_lossy(const Schedule& schedule) {
  for (const Op& op : schedule) {
    if (op.kind == OpKind::ForwardLossy) return true;
  }
  return false;
}

std::vector<Codec> codecs_used(const Schedule& schedule) {
  std::vector<Codec> used;
  for (const Op& op : schedule) {
    if (op.kind == OpKind::ForwardLossy && std::find(used.begin(), used.end(), op.codec) == used.end())
      used.push_back(op.codec);
  }
  return used;
}

std::string to_string(const Schedule& schedule) {
  std::string text;
  for (const Op& op : schedule) {
    if (!text.empty()) text += ' ';
    text += to_string(op);
  }
  return text;
}

nlohmann::json schedule_to_json(const Schedule& schedule) {
  nlohmann::json ops = nlohmann::json::array();
  for (const Op& op : schedule) {
    nlohmann::json item = {{"op", op_kind_name(op.kind)}};
    if (op.kind != OpKind::Loss) item["stage"] = op.stage;
    if (op.kind == OpKind::ForwardLossy) item["codec"] = codec_name(op.codec);
    ops.push_back(std::move(item));
  }
  return ops;
}

Schedule schedule_from_json(const nlohmann::json& json) {
  if (!json.is_array())
    throw InvalidArgument("a schedule must be a JSON array of {\"op\", \"stage\"} objects");
  Schedule schedule;
  for (size_t index = 0; index < json.size(); ++index) {
    const auto& item = json[index];
    const std::string where = "schedule op " + std::to_string(index);
    if (!item.is_object() || !item.contains("op") || !item["op"].is_string()) {
      throw InvalidArgument(where + ": must be an object with a string field \"op\"");
    }
    Op op;
    op.kind = op_kind_from_name(item["op"].get<std::string>());
    if (op.kind != OpKind::Loss) {
      if (!item.contains("stage") || !item["stage"].is_number_integer()) {
        throw InvalidArgument(where + ": op \"" + item["op"].get<std::string>() +
                              "\" needs an integer field \"stage\"");
      }
      op.stage = item["stage"].get<int>();
    }
    if (op.kind == OpKind::ForwardLossy) {
      if (!item.contains("codec") || !item["codec"].is_string()) {
        throw InvalidArgument(
            where + ": op \"forward_lossy\" needs a string field \"codec\" (bf16, fp16, int8, int4)");
      }
      try {
        op.codec = codec_from_name(item["codec"].get<std::string>());
      } catch (const InvalidArgument& error) {
        throw InvalidArgument(where + ": " + error.what());
      }
      if (op.codec == Codec::None) {
        throw InvalidArgument(
            where + ": op \"forward_lossy\" needs a lossy codec, not \"none\" (use forward_with_graph)");
      }
    } else if (item.contains("codec")) {
      throw InvalidArgument(where + ": only forward_lossy ops take a \"codec\"");
    }
    schedule.push_back(op);
  }
  return schedule;
}

Schedule store_all_schedule(int length) {
  Schedule schedule;
  for (int i = 0; i < length; ++i) schedule.push_back(Op::forward_with_graph(i));
  schedule.push_back(Op::loss());
  for (int i = length - 1; i >= 0; --i) schedule.push_back(Op::backward(i));
  return schedule;
}

Schedule lossy_store_all_schedule(int length, Codec codec) {
  Schedule schedule;
  for (int i = 0; i < length; ++i) schedule.push_back(Op::forward_lossy(i, codec));
  schedule.push_back(Op::loss());
  schedule.push_back(Op::free(length));
  for (int i = length - 1; i >= 0; --i) schedule.push_back(Op::backward(i));
  return schedule;
}

}  // namespace memento
