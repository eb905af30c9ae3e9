#pragma once
// Plain loops for the int8/int4 group codecs on contiguous float32 values, which the
// compiler vectorizes. They compute what codecs.cpp's tensor-op form computes (per group of
// 256 values: the minimum, scale = max(range / levels, FLT_MIN), codes = (value - minimum)
// * (1 / scale) rounded half to even and clamped) in one pass over memory instead of eight.
#include <cstdint>

namespace memento::kernels {

// Groups [group_begin, group_end) of `values` (numel of them; the last group padded with
// the last value): writes each group's minimum and scale, and its codes (one byte per
// value for bits == 8, two values per byte, low nibble first, for bits == 4).
void quantize_groups(const float* values, int64_t numel, int bits, int64_t group_begin, int64_t group_end,
                     uint8_t* codes, float* minimum, float* scale);

// The inverse for groups [group_begin, group_end): value = code * scale + minimum, the
// padding of the last group dropped.
void dequantize_groups(const uint8_t* codes, const float* minimum, const float* scale, int64_t numel,
                       int bits, int64_t group_begin, int64_t group_end, float* values);

}  // namespace memento::kernels
