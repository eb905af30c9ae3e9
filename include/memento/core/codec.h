#pragma once
/// \file
/// Codecs for lossy activation storage, as core sees them: names and exact size formulas.
/// The kernels that pack and unpack tensors live in the runtime (memento/torch/codecs.h);
/// planners only need to know what a codec is called, whether it loses precision and how
/// many bytes a packed tensor takes.
///
/// - `none`: exact (the tensor is kept as it is).
/// - `bf16`, `fp16`: the values rounded to a 16-bit float (fp16 saturates at +-65504).
/// - `int8`, `int4`: per group of `kCodecGroupValues` consecutive values, an unsigned
///   integer code of 8 or 4 bits and a float32 minimum and scale per group (ActNN/GACT's
///   scheme); optionally with stochastic rounding, which makes the rounding unbiased.
/// Under every lossy codec a boolean tensor (a dropout or ReLU mask) is bit-packed, which
/// is exact, and integer tensors are kept as they are.
///
/// Example:
/// \code
///   memento::Codec codec = memento::codec_from_name("int8");
///   int64_t bytes = memento::codec_packed_bytes(codec, 1 << 20, 4);  // 1 MiB + 32 KiB of scales
///   std::vector<memento::Codec> allowed = memento::parse_codec_list("bf16,int8");
/// \endcode

#include <cstdint>
#include <string>
#include <vector>

namespace memento {

enum class Codec {
  None,
  BF16,
  FP16,
  Int8,
  Int4,
};

/// Values per quantization group of int8 and int4 (each group has its own scale and minimum).
constexpr int64_t kCodecGroupValues = 256;

/// "none", "bf16", "fp16", "int8", "int4".
const char* codec_name(Codec codec);
/// Parses a codec name; throws InvalidArgument listing the valid names.
Codec codec_from_name(const std::string& name);
/// Every codec but `none`, in order of decreasing precision.
std::vector<Codec> lossy_codecs();
/// A comma-separated list of codec names ("bf16,int8"), or "none" (exact: an empty list),
/// or "all" (every lossy codec). Throws InvalidArgument naming a bad or repeated entry.
std::vector<Codec> parse_codec_list(const std::string& text);
/// The inverse of parse_codec_list: "none" for an empty list.
std::string codec_list_name(const std::vector<Codec>& codecs);

/// How a result names its storage: " (lossy: int8)" when `used` is not empty, " (codecs
/// bf16,int8 allowed)" when codecs were allowed but none used (an exact schedule, or none
/// found), "" when none were allowed. Every result shown carries it beside the planner.
std::string codecs_label(const std::vector<Codec>& allowed, const std::vector<Codec>& used);

/// Whether a codec loses precision (every codec but `none`).
inline bool is_lossy(Codec codec) {
  return codec != Codec::None;
}
/// Bits per value of a codec's code (32 for `none` on a float32 tensor means "as stored").
int codec_bits(Codec codec);

/// Exact bytes of a floating-point tensor of `numel` values of `element_bytes` each once
/// packed with `codec`. A tensor already as narrow as the codec (a bf16 tensor under bf16)
/// is kept as it is. int8/int4: codes for whole groups (the last one padded) plus a float32
/// minimum and scale per group.
int64_t codec_packed_bytes(Codec codec, int64_t numel, int64_t element_bytes);
/// Exact bytes of a boolean tensor of `numel` values bit-packed (one bit each, in bytes).
int64_t bitmask_packed_bytes(int64_t numel);

}  // namespace memento
