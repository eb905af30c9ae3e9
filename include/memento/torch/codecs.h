#pragma once
/// \file
/// The codec kernels: pack a tensor into a smaller one and unpack it again (lossy, except
/// for bit-packed boolean masks). Sizes follow core's exact formulas (memento/core/codec.h).
///
/// Example:
/// \code
///   torch::Tensor x = torch::randn({1024, 768});
///   memento::PackedTensor packed = memento::pack_tensor(x, memento::Codec::Int8);
///   torch::Tensor y = memento::unpack_tensor(packed);   // same shape and dtype, |y - x| <= scale / 2
///   int64_t bytes = packed.bytes();                      // 786432 + 24576
/// \endcode

#include <cstdint>
#include <optional>
#include <vector>

#include <torch/torch.h>

#include "memento/core/codec.h"

namespace memento {

/// A tensor packed by pack_tensor().
struct PackedTensor {
  enum class Form {
    Kept,     ///< kept as it is (nothing to gain, or not a float or boolean tensor)
    Narrow,   ///< bf16 or fp16 values
    Grouped,  ///< int8/int4 codes with a float32 minimum and scale per group
    Bitmask,  ///< a boolean tensor, one bit per value
  };
  Form form = Form::Kept;
  Codec codec = Codec::None;
  torch::Tensor data;     ///< the kept tensor, the narrow values, the codes or the bits
  torch::Tensor minimum;  ///< Grouped: per group
  torch::Tensor scale;    ///< Grouped: per group
  std::vector<int64_t> sizes;
  c10::ScalarType dtype = c10::ScalarType::Float;
  int64_t numel = 0;

  /// Bytes the packed form allocates (0 for a kept tensor: it allocates nothing new).
  int64_t bytes() const;
};

/// Options of pack_tensor().
struct PackOptions {
  /// int8/int4: round up with probability equal to the fraction (unbiased) instead of to
  /// the nearest code. Draws from `generator`, never from the default generator, so that
  /// dropout replays are untouched.
  bool stochastic_rounding = false;
  c10::optional<at::Generator> generator;
};

/// Whether `codec` would shrink `tensor`: a floating tensor wider than the codec, or any
/// boolean tensor (bit-packed), with fewer packed bytes than the tensor has.
bool codec_shrinks(const torch::Tensor& tensor, Codec codec);

/// Packs `tensor` (not modified) with `codec`; a tensor the codec does not shrink is kept
/// (detached, sharing its storage). Codec::None keeps every tensor.
PackedTensor pack_tensor(const torch::Tensor& tensor, Codec codec, const PackOptions& options = {});
/// The tensor again: same sizes and dtype, contiguous, on the packed data's device.
torch::Tensor unpack_tensor(const PackedTensor& packed);

}  // namespace memento
