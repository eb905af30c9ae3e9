#pragma once
/// \file
/// Byte sizes and budgets as users write them: `1.5GiB`, `300MiB`, `2GB`, `1048576B`,
/// or `40%` (a share of the store-all peak of a profile). A number needs its unit: `50`
/// alone is refused (bytes to one reader, MiB to another); only `0` may go without.
///
/// Example:
/// \code
///   int64_t b1 = memento::parse_bytes("1.5GiB");          // 1610612736
///   memento::parse_bytes("50");                           // throws: "50B for bytes, or 50KiB, ..."
///   int64_t b2 = memento::parse_budget("40%", profile);   // 0.4 x store-all peak
///   std::string s = memento::format_bytes(b1);            // "1.50 GiB"
/// \endcode

#include <cstdint>
#include <string>

#include "memento/core/profile.h"

namespace memento {

/// Parses an absolute size: a non-negative number with a unit B, KB, MB, GB, TB (powers
/// of 1000), KiB, MiB, GiB, TiB (powers of 1024; K, M, G, T too), case-insensitive.
/// Throws InvalidArgument saying what forms are accepted; for a number without a unit
/// (other than 0) it names the forms the user probably meant.
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
