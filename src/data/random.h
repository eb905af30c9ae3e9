#pragma once
// Draws with a fixed algorithm: std::mt19937_64's output sequence is specified by the
// standard, but the distributions (uniform_int_distribution, shuffle) are not, so data sets
// built from them would differ between libstdc++ and libc++.

#include <cstdint>
#include <random>
#include <vector>

namespace memento::data_detail {

// splitmix64: decorrelates nearby seeds (seed, seed + 1, ...) before they reach the engine.
inline uint64_t mix_seed(uint64_t value) {
  value += 0x9E3779B97F4A7C15ULL;
  value = (value ^ (value >> 30)) * 0xBF58476D1CE4E5B9ULL;
  value = (value ^ (value >> 27)) * 0x94D049BB133111EBULL;
  return value ^ (value >> 31);
}

// Uniform in [0, bound) by rejection (no modulo bias); bound >= 1.
inline uint64_t below(std::mt19937_64& rng, uint64_t bound) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
  uint64_t draw = rng();
  while (draw >= limit) draw = rng();
  return draw % bound;
}

inline int64_t between(std::mt19937_64& rng, int64_t low, int64_t high) {
  return low + static_cast<int64_t>(below(rng, static_cast<uint64_t>(high - low + 1)));
}

// Uniform in [0, 1).
inline double unit(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}

// Fisher-Yates.
template <typename T>
void shuffle(std::vector<T>& values, std::mt19937_64& rng) {
  for (size_t i = values.size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(below(rng, i));
    std::swap(values[i - 1], values[j]);
  }
}

}  // namespace memento::data_detail
