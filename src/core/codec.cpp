#include "memento/core/codec.h"

#include "memento/core/error.h"

namespace memento {

namespace {

struct CodecName {
  Codec codec;
  const char* name;
  int bits;
};

constexpr CodecName kCodecNames[] = {
    {Codec::None, "none", 32}, {Codec::BF16, "bf16", 16}, {Codec::FP16, "fp16", 16},
    {Codec::Int8, "int8", 8},  {Codec::Int4, "int4", 4},
};

const CodecName& entry(Codec codec) {
  for (const CodecName& named : kCodecNames) {
    if (named.codec == codec) return named;
  }
  throw InvalidArgument("unknown codec " + std::to_string(static_cast<int>(codec)));
}

std::string valid_names() {
  std::string names;
  for (const CodecName& named : kCodecNames) names += std::string(names.empty() ? "" : ", ") + named.name;
  return names;
}

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

}  // namespace

const char* codec_name(Codec codec) {
  return entry(codec).name;
}

int codec_bits(Codec codec) {
  return entry(codec).bits;
}

Codec codec_from_name(const std::string& name) {
  for (const CodecName& named : kCodecNames) {
    if (name == named.name) return named.codec;
  }
  throw InvalidArgument("unknown codec " + quoted(name) + "; valid codecs are " + valid_names());
}

std::vector<Codec> lossy_codecs() {
  return {Codec::BF16, Codec::FP16, Codec::Int8, Codec::Int4};
}

std::vector<Codec> parse_codec_list(const std::string& text) {
  if (text == "none") return {};
  if (text == "all") return lossy_codecs();
  std::vector<Codec> codecs;
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    const std::string name =
        text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (name.empty()) {
      throw InvalidArgument("codec list " + quoted(text) +
                            " has an empty entry; write names separated by commas, e.g. bf16,int8");
    }
    const Codec codec = codec_from_name(name);
    if (codec == Codec::None) {
      throw InvalidArgument("codec list " + quoted(text) +
                            " names \"none\" among others; \"none\" (exact only) stands alone");
    }
    for (Codec known : codecs) {
      if (known == codec) throw InvalidArgument("codec list " + quoted(text) + " names " + name + " twice");
    }
    codecs.push_back(codec);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return codecs;
}

std::string codec_list_name(const std::vector<Codec>& codecs) {
  if (codecs.empty()) return "none";
  std::string text;
  for (Codec codec : codecs) text += std::string(text.empty() ? "" : ",") + codec_name(codec);
  return text;
}

std::string codecs_label(const std::vector<Codec>& allowed, const std::vector<Codec>& used) {
  if (!used.empty()) return " (lossy: " + codec_list_name(used) + ")";
  if (!allowed.empty()) return " (codecs " + codec_list_name(allowed) + " allowed)";
  return "";
}

int64_t codec_packed_bytes(Codec codec, int64_t numel, int64_t element_bytes) {
  switch (codec) {
    case Codec::None:
      return numel * element_bytes;
    case Codec::BF16:
    case Codec::FP16:
      return element_bytes <= 2 ? numel * element_bytes : numel * 2;
    case Codec::Int8:
    case Codec::Int4: {
      const int64_t groups = ceil_div(numel, kCodecGroupValues);
      const int64_t code_bytes = groups * kCodecGroupValues * codec_bits(codec) / 8;
      return code_bytes + groups * 2 * 4;  // float32 minimum and scale per group
    }
  }
  return numel * element_bytes;
}

int64_t bitmask_packed_bytes(int64_t numel) {
  return ceil_div(numel, 8);
}

}  // namespace memento
