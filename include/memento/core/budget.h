#pragma once
/// \file
/// Byte sizes and budgets as users write them: `1.5GiB`, `300MiB`, `2GB`, `1048576`,
/// or `40%` (a share of the store-all peak of a profile).
///
/// Example:
/// \code
///   int64_t b1 = memento::parse_bytes("1.5GiB");          // 1610612736
///   int64_t b2 = memento::parse_budget("40%", profile);   // 0.4 x store-all peak
///   std::string s = memento::format_bytes(b1);            // "1.50 GiB"
/// \endcode

#include <cstdint>
#include <string>

#include "memento/core/profile.h"

namespace memento {

/// Parses an absolute size: a non-negative number with an optional unit B, KB, MB, GB,
/// TB (powers of 1000), KiB, MiB, GiB, TiB (powers of 1024), case-insensitive.
/// Throws InvalidArgument saying what forms are accepted.
int64_t parse_bytes(const std::string& text);

/// True when `text` is a percentage (ends in '%').
bool is_relative_budget(const std::string& text);

/// Parses a budget: an absolute size, or `P%` of the store-all peak of `profile`.
/// Throws InvalidArgument for a malformed value or a percentage outside (0, 1000].
int64_t parse_budget(const std::string& text, const ChainProfile& profile);

/// Peak bytes of the store-all schedule of `profile` (what `100%` means).
int64_t store_all_peak_bytes(const ChainProfile& profile);

/// Human form with binary units: "512 B", "1.50 KiB", "300.00 MiB", "1.20 GiB".
std::string format_bytes(int64_t bytes);

}  // namespace memento
