#include "group_quantize.h"

#include <algorithm>
#include <cfloat>

#include "memento/core/codec.h"

namespace memento::kernels {

namespace {

constexpr int64_t kGroup = kCodecGroupValues;
constexpr int kLanes = 8;  // independent accumulators, so the min/max reduction vectorizes

// Adding and subtracting 1.5 * 2^23 rounds a float in [0, 2^22) to the nearest integer,
// ties to even (the default rounding mode), as torch's round() does; it vectorizes where
// nearbyint() would be a call per value without SSE4.1. (Without -ffast-math, which this
// project never uses, the compiler may not fold it to x.)
inline float round_half_even(float x) {
  constexpr float kMagic = 12582912.0f;
  return (x + kMagic) - kMagic;
}

// One full group of kGroup values at `v`.
void group_range(const float* v, float& lo, float& hi) {
  float los[kLanes], his[kLanes];
  for (int l = 0; l < kLanes; ++l) los[l] = his[l] = v[l];
  for (int64_t i = 0; i < kGroup; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const float x = v[i + l];
      los[l] = x < los[l] ? x : los[l];
      his[l] = x > his[l] ? x : his[l];
    }
  }
  lo = los[0];
  hi = his[0];
  for (int l = 1; l < kLanes; ++l) {
    lo = los[l] < lo ? los[l] : lo;
    hi = his[l] > hi ? his[l] : hi;
  }
}

void quantize_full_group(const float* v, float lo, float s, float levels, uint8_t* out) {
  // A product, not a quotient: a division per value made the pass compute-bound.
  const float inverse = 1.0f / s;
  uint8_t q[kGroup];
  for (int64_t i = 0; i < kGroup; ++i) {
    float c = round_half_even((v[i] - lo) * inverse);
    c = c < 0.0f ? 0.0f : c;
    c = c > levels ? levels : c;
    q[i] = static_cast<uint8_t>(static_cast<int>(c));
  }
  if (levels > 15.0f) {
    std::copy(q, q + kGroup, out);
  } else {
    for (int64_t i = 0; i < kGroup / 2; ++i) out[i] = static_cast<uint8_t>(q[2 * i] | (q[2 * i + 1] << 4));
  }
}

}  // namespace

void quantize_groups(const float* values, int64_t numel, int bits, int64_t group_begin, int64_t group_end,
                     uint8_t* codes, float* minimum, float* scale) {
  const float levels = static_cast<float>((1 << bits) - 1);
  const int64_t code_bytes = kGroup * bits / 8;
  for (int64_t g = group_begin; g < group_end; ++g) {
    const int64_t start = g * kGroup;
    const float* v = values + start;
    float padded[kGroup];
    if (start + kGroup > numel) {
      // The last, partial group: padded with its last value, which leaves its range as it is.
      const int64_t present = numel - start;
      std::copy(v, v + present, padded);
      std::fill(padded + present, padded + kGroup, v[present - 1]);
      v = padded;
    }
    float lo = 0, hi = 0;
    group_range(v, lo, hi);
    const float s = std::max((hi - lo) / levels, FLT_MIN);
    minimum[g] = lo;
    scale[g] = s;
    quantize_full_group(v, lo, s, levels, codes + g * code_bytes);
  }
}

void dequantize_groups(const uint8_t* codes, const float* minimum, const float* scale, int64_t numel,
                       int bits, int64_t group_begin, int64_t group_end, float* values) {
  const int64_t code_bytes = kGroup * bits / 8;
  for (int64_t g = group_begin; g < group_end; ++g) {
    const int64_t start = g * kGroup;
    const int64_t present = std::min(kGroup, numel - start);
    const uint8_t* c = codes + g * code_bytes;
    const float lo = minimum[g], s = scale[g];
    float v[kGroup];
    if (bits == 8) {
      for (int64_t i = 0; i < kGroup; ++i) v[i] = static_cast<float>(c[i]) * s + lo;
    } else {
      for (int64_t i = 0; i < kGroup / 2; ++i) {
        v[2 * i] = static_cast<float>(c[i] & 15) * s + lo;
        v[2 * i + 1] = static_cast<float>(c[i] >> 4) * s + lo;
      }
    }
    std::copy(v, v + present, values + start);
  }
}

}  // namespace memento::kernels
