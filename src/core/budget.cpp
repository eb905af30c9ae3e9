#include "memento/core/budget.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "memento/core/error.h"
#include "memento/core/simulate.h"

namespace memento {

namespace {

std::string trim(const std::string& text) {
  size_t begin = 0, end = text.size();
  while (begin < end && std::isspace(static_cast<unsigned char>(text[begin]))) ++begin;
  while (end > begin && std::isspace(static_cast<unsigned char>(text[end - 1]))) --end;
  return text.substr(begin, end - begin);
}

std::string lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

// Parses the leading decimal number of `text`; returns the number of characters used.
size_t parse_number(const std::string& text, double& value) {
  size_t index = 0;
  bool digits = false;
  while (index < text.size() && std::isdigit(static_cast<unsigned char>(text[index]))) ++index, digits = true;
  if (index < text.size() && text[index] == '.') {
    ++index;
    while (index < text.size() && std::isdigit(static_cast<unsigned char>(text[index])))
      ++index, digits = true;
  }
  if (!digits) return 0;
  value = std::strtod(text.substr(0, index).c_str(), nullptr);
  return index;
}

const char* kAcceptedForms =
    "write a size with its unit such as 1048576B, 300MiB, 1.5GiB, 2GB, or a share of the store-all peak such "
    "as "
    "40%";

std::string no_unit_message(const std::string& raw, const std::string& digits, bool share_too) {
  const std::string number = digits.size() <= 20 ? digits : "N";  // the forms, not the long number again
  return "size " + quoted(raw) + " has no unit; write " + number + "B for bytes, or " + number + "KiB, " +
         number + "MiB, " + number + "GiB" + (share_too ? ", or " + number + "% of the store-all peak" : "");
}

}  // namespace

int64_t parse_bytes(const std::string& raw) {
  const std::string text = trim(raw);
  double value = 0;
  const size_t used = parse_number(text, value);
  if (used == 0) throw InvalidArgument("invalid size " + quoted(raw) + ": " + kAcceptedForms);
  const std::string unit = lower(trim(text.substr(used)));
  // A bare number is bytes to one reader and MiB to another: only 0 needs no unit.
  if (unit.empty() && value != 0) throw InvalidArgument(no_unit_message(raw, text.substr(0, used), false));
  double scale = 0;
  if (unit.empty() || unit == "b")
    scale = 1;
  else if (unit == "kb")
    scale = 1e3;
  else if (unit == "mb")
    scale = 1e6;
  else if (unit == "gb")
    scale = 1e9;
  else if (unit == "tb")
    scale = 1e12;
  else if (unit == "kib" || unit == "k")
    scale = 1024.0;
  else if (unit == "mib" || unit == "m")
    scale = 1024.0 * 1024;
  else if (unit == "gib" || unit == "g")
    scale = 1024.0 * 1024 * 1024;
  else if (unit == "tib" || unit == "t")
    scale = 1024.0 * 1024 * 1024 * 1024;
  else
    throw InvalidArgument("invalid size " + quoted(raw) + ": unknown unit " + quoted(unit) + "; " +
                          kAcceptedForms);
  const double bytes = std::round(value * scale);
  if (!std::isfinite(bytes) || bytes > 9.0e18) throw InvalidArgument("size " + quoted(raw) + " is too large");
  return static_cast<int64_t>(bytes);
}

bool is_relative_budget(const std::string& text) {
  const std::string trimmed = trim(text);
  return !trimmed.empty() && trimmed.back() == '%';
}

int64_t store_all_peak_bytes(const ChainProfile& profile) {
  return simulate(profile, store_all_schedule(profile.length())).peak_bytes;
}

int64_t parse_budget(const std::string& raw, const ChainProfile& profile) {
  if (!is_relative_budget(raw)) {
    // A budget may also be a share: a bare number gets that form offered too.
    const std::string text = trim(raw);
    double value = 0;
    const size_t used = parse_number(text, value);
    if (used > 0 && used == text.size() && value != 0) {
      throw InvalidArgument(no_unit_message(raw, text, true));
    }
    return parse_bytes(raw);
  }
  const std::string text = trim(raw);
  double percent = 0;
  const size_t used = parse_number(text, percent);
  if (used == 0 || used + 1 != text.size())
    throw InvalidArgument("invalid budget " + quoted(raw) + ": " + kAcceptedForms);
  if (percent <= 0 || percent > 1000) {
    throw InvalidArgument("budget " + quoted(raw) +
                          " must be a share above 0% and at most 1000% of the store-all peak");
  }
  return static_cast<int64_t>(
      std::llround(static_cast<double>(store_all_peak_bytes(profile)) * percent / 100.0));
}

std::string format_bytes(int64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (std::fabs(value) >= 1024.0 && unit < 5) value /= 1024.0, ++unit;
  char buffer[64];
  if (unit == 0)
    std::snprintf(buffer, sizeof buffer, "%lld B", static_cast<long long>(bytes));
  else
    std::snprintf(buffer, sizeof buffer, "%.2f %s", value, units[unit]);
  return buffer;
}

}  // namespace memento
