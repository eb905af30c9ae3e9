#include "memento/torch/codecs.h"

#include <algorithm>
#include <limits>
#include <thread>
#include <vector>

#include "group_quantize.h"
#include "memento/core/error.h"

namespace memento {

namespace {

int64_t tensor_bytes(const torch::Tensor& tensor) {
  return tensor.defined() ? tensor.numel() * static_cast<int64_t>(tensor.element_size()) : 0;
}

// An expanded view (stride 0) holds fewer bytes than its values; packing it would
// materialize every value (a 4 KB bias broadcast to 1 MB).
bool materializes(const torch::Tensor& tensor) {
  return tensor.has_storage() && static_cast<int64_t>(tensor.storage().nbytes()) <
                                     tensor.numel() * static_cast<int64_t>(tensor.element_size());
}

int64_t packed_size(const torch::Tensor& tensor, Codec codec) {
  if (tensor.scalar_type() == at::kBool) return bitmask_packed_bytes(tensor.numel());
  return codec_packed_bytes(codec, tensor.numel(), static_cast<int64_t>(tensor.element_size()));
}

int levels_of(Codec codec) {
  return (1 << codec_bits(codec)) - 1;
}

torch::Tensor bit_weights(const torch::Device& device) {
  return torch::tensor({1, 2, 4, 8, 16, 32, 64, 128}, torch::TensorOptions().dtype(at::kByte).device(device));
}

// Pads a flat tensor to `padded` values with its last value (a zero could widen the last
// group's range and cost it precision).
torch::Tensor padded_flat(const torch::Tensor& flat, int64_t padded) {
  const int64_t missing = padded - flat.numel();
  if (missing == 0) return flat;
  return torch::cat({flat, flat.slice(0, flat.numel() - 1).expand({missing})});
}

// Groups per thread at least: 1 MiB of values pays for starting a thread (~50 us).
constexpr int64_t kGroupsPerThread = 1024;

// Runs body(begin, end) over [0, groups) split across torch's intra-op thread count.
// at::parallel_for would run serially: its OpenMP form is inlined into this file, which is
// not built with OpenMP (that would add libgomp to every consumer's link).
template <class Body>
void for_group_ranges(int64_t groups, const Body& body) {
  const int64_t threads = std::min<int64_t>(at::get_num_threads(), groups / kGroupsPerThread);
  if (threads <= 1) return body(0, groups);
  const int64_t chunk = (groups + threads - 1) / threads;
  std::vector<std::thread> workers;
  for (int64_t t = 1; t < threads; ++t)
    workers.emplace_back(body, t * chunk, std::min(groups, (t + 1) * chunk));
  body(0, chunk);
  for (std::thread& worker : workers) worker.join();
}

bool fast_path(const torch::Tensor& tensor) {
  return tensor.device().is_cpu() && tensor.scalar_type() == at::kFloat;
}

// The CPU float32 form of pack_grouped (round to nearest), in one pass (group_quantize.h).
void pack_grouped_cpu(PackedTensor& packed, const torch::Tensor& tensor) {
  const int64_t groups = (packed.numel + kCodecGroupValues - 1) / kCodecGroupValues;
  const int bits = codec_bits(packed.codec);
  const torch::Tensor values = tensor.detach().contiguous();
  packed.data = torch::empty({groups, kCodecGroupValues * bits / 8}, values.options().dtype(at::kByte));
  packed.minimum = torch::empty({groups}, values.options());
  packed.scale = torch::empty({groups}, values.options());
  const float* in = values.data_ptr<float>();
  uint8_t* codes = packed.data.data_ptr<uint8_t>();
  float* minimum = packed.minimum.data_ptr<float>();
  float* scale = packed.scale.data_ptr<float>();
  const int64_t numel = packed.numel;
  for_group_ranges(groups, [&](int64_t begin, int64_t end) {
    kernels::quantize_groups(in, numel, bits, begin, end, codes, minimum, scale);
  });
}

torch::Tensor unpack_grouped_cpu(const PackedTensor& packed) {
  const int64_t groups = packed.minimum.numel();
  const int bits = codec_bits(packed.codec);
  torch::Tensor values = torch::empty({packed.numel}, packed.minimum.options());
  const torch::Tensor data = packed.data.contiguous();
  const uint8_t* codes = data.data_ptr<uint8_t>();
  const float* minimum = packed.minimum.data_ptr<float>();
  const float* scale = packed.scale.data_ptr<float>();
  float* out = values.data_ptr<float>();
  const int64_t numel = packed.numel;
  for_group_ranges(groups, [&](int64_t begin, int64_t end) {
    kernels::dequantize_groups(codes, minimum, scale, numel, bits, begin, end, out);
  });
  return values.view(packed.sizes);
}

void pack_grouped(PackedTensor& packed, const torch::Tensor& tensor, const PackOptions& options) {
  if (!options.stochastic_rounding && fast_path(tensor)) return pack_grouped_cpu(packed, tensor);
  const int64_t groups = (packed.numel + kCodecGroupValues - 1) / kCodecGroupValues;
  const torch::Tensor values =
      padded_flat(tensor.detach().reshape({-1}).to(at::kFloat), groups * kCodecGroupValues)
          .view({groups, -1});
  const torch::Tensor minimum = std::get<0>(values.min(1, /*keepdim=*/true));
  const torch::Tensor maximum = std::get<0>(values.max(1, /*keepdim=*/true));
  const double levels = levels_of(packed.codec);
  // A constant group has range 0: any positive scale decodes it exactly to its minimum.
  const torch::Tensor scale = ((maximum - minimum) / levels).clamp_min(std::numeric_limits<float>::min());
  torch::Tensor codes = (values - minimum) * scale.reciprocal();  // as group_quantize.cpp
  if (options.stochastic_rounding) {
    codes.add_(at::rand(codes.sizes(), options.generator, codes.options())).floor_();
  } else {
    codes.round_();
  }
  codes = codes.clamp_(0, levels).to(at::kByte);
  if (packed.codec == Codec::Int4) {
    const torch::Tensor pairs = codes.view({groups, -1, 2});
    codes = pairs.select(2, 0).bitwise_or(pairs.select(2, 1).bitwise_left_shift(4));
  }
  packed.data = codes.contiguous();
  packed.minimum = minimum.view({groups});
  packed.scale = scale.view({groups});
}

torch::Tensor unpack_grouped(const PackedTensor& packed) {
  if (packed.dtype == at::kFloat && packed.data.device().is_cpu()) return unpack_grouped_cpu(packed);
  torch::Tensor codes = packed.data;
  if (packed.codec == Codec::Int4) {
    codes = torch::stack({codes.bitwise_and(15), codes.bitwise_right_shift(4)}, 2).view({codes.size(0), -1});
  }
  const torch::Tensor values =
      codes.to(at::kFloat).mul_(packed.scale.unsqueeze(1)).add_(packed.minimum.unsqueeze(1));
  return values.view({-1}).slice(0, 0, packed.numel).view(packed.sizes).to(packed.dtype);
}

void pack_bitmask(PackedTensor& packed, const torch::Tensor& tensor) {
  const int64_t padded = bitmask_packed_bytes(packed.numel) * 8;
  torch::Tensor bits = tensor.detach().reshape({-1}).to(at::kByte);
  if (padded > packed.numel) bits = torch::cat({bits, bits.new_zeros({padded - packed.numel})});
  packed.data = bits.view({-1, 8}).mul_(bit_weights(tensor.device())).sum(1, /*keepdim=*/false, at::kByte);
}

torch::Tensor unpack_bitmask(const PackedTensor& packed) {
  const torch::Tensor bits = packed.data.unsqueeze(1).bitwise_and(bit_weights(packed.data.device())).ne(0);
  return bits.view({-1}).slice(0, 0, packed.numel).view(packed.sizes);
}

}  // namespace

int64_t PackedTensor::bytes() const {
  if (form == Form::Kept) return 0;
  return tensor_bytes(data) + tensor_bytes(minimum) + tensor_bytes(scale);
}

bool codec_shrinks(const torch::Tensor& tensor, Codec codec) {
  if (!tensor.defined() || codec == Codec::None || tensor.numel() == 0 || materializes(tensor)) return false;
  const bool boolean = tensor.scalar_type() == at::kBool;
  if (!boolean && !tensor.is_floating_point()) return false;
  return packed_size(tensor, codec) < tensor_bytes(tensor);
}

PackedTensor pack_tensor(const torch::Tensor& tensor, Codec codec, const PackOptions& options) {
  PackedTensor packed;
  packed.codec = codec;
  if (!tensor.defined()) return packed;
  packed.sizes = tensor.sizes().vec();
  packed.dtype = tensor.scalar_type();
  packed.numel = tensor.numel();
  if (!codec_shrinks(tensor, codec)) {
    packed.data = tensor.detach();
    return packed;
  }
  torch::NoGradGuard no_grad;
  if (tensor.scalar_type() == at::kBool) {
    packed.form = PackedTensor::Form::Bitmask;
    pack_bitmask(packed, tensor);
  } else if (codec == Codec::BF16) {
    packed.form = PackedTensor::Form::Narrow;
    packed.data = tensor.detach().contiguous().to(at::kBFloat16);
  } else if (codec == Codec::FP16) {
    // fp16 overflows to infinity above 65504: saturate instead.
    packed.form = PackedTensor::Form::Narrow;
    packed.data = tensor.detach().contiguous().clamp(-65504.0, 65504.0).to(at::kHalf);
  } else {
    packed.form = PackedTensor::Form::Grouped;
    pack_grouped(packed, tensor, options);
  }
  return packed;
}

torch::Tensor unpack_tensor(const PackedTensor& packed) {
  torch::NoGradGuard no_grad;
  switch (packed.form) {
    case PackedTensor::Form::Kept:
      return packed.data;
    case PackedTensor::Form::Narrow:
      return packed.data.to(packed.dtype).view(packed.sizes);
    case PackedTensor::Form::Grouped:
      return unpack_grouped(packed);
    case PackedTensor::Form::Bitmask:
      return unpack_bitmask(packed);
  }
  throw InvalidArgument("unpack_tensor: unknown packed form");
}

}  // namespace memento
