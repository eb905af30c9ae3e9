#include "memento/core/sealed.h"

#include <cstdio>
#include <cstdlib>

#include "memento/core/error.h"

namespace memento {

namespace {

constexpr char kMagic[] = "memento-sealed\n";
constexpr size_t kMaxHeaderBytes = 512;

std::string hex16(uint64_t value) {
  char buffer[17];
  std::snprintf(buffer, sizeof buffer, "%016llx", static_cast<unsigned long long>(value));
  return buffer;
}

// Reads "<key> <value>\n" at `offset`; the value is at most 100 printable characters.
bool read_field(const std::string& bytes, size_t& offset, const std::string& key, std::string& value) {
  if (bytes.compare(offset, key.size() + 1, key + " ") != 0) return false;
  const size_t begin = offset + key.size() + 1;
  const size_t end = bytes.find('\n', begin);
  if (end == std::string::npos || end - begin > 100 || end == begin) return false;
  for (size_t k = begin; k < end; ++k) {
    if (bytes[k] < 0x21 || bytes[k] > 0x7e) return false;
  }
  value = bytes.substr(begin, end - begin);
  offset = end + 1;
  return true;
}

bool parse_unsigned(const std::string& text, uint64_t& value, int base) {
  if (text.empty() || text.size() > 20) return false;
  char* end = nullptr;
  value = std::strtoull(text.c_str(), &end, base);
  return end == text.c_str() + text.size() && text[0] != '-' && text[0] != '+';
}

}  // namespace

uint64_t fnv1a64(const std::string& bytes) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (unsigned char byte : bytes) {
    hash ^= byte;
    hash *= 0x100000001b3ull;
  }
  return hash;
}

std::string seal(const std::string& format, int version, const std::string& payload) {
  return std::string(kMagic) + "format " + format + "\nversion " + std::to_string(version) + "\nbytes " +
         std::to_string(payload.size()) + "\nfnv1a64 " + hex16(fnv1a64(payload)) + "\n\n" + payload;
}

bool is_sealed(const std::string& bytes) {
  return bytes.compare(0, sizeof kMagic - 1, kMagic) == 0;
}

Unsealed unseal(const std::string& bytes, const std::string& source) {
  if (!is_sealed(bytes))
    throw DataError(source + " is not a sealed memento file (its first line is not memento-sealed)");
  size_t offset = sizeof kMagic - 1;
  std::string format, version, length, checksum;
  const bool header_ok =
      read_field(bytes, offset, "format", format) && read_field(bytes, offset, "version", version) &&
      read_field(bytes, offset, "bytes", length) && read_field(bytes, offset, "fnv1a64", checksum) &&
      offset < kMaxHeaderBytes && offset < bytes.size() && bytes[offset] == '\n';
  uint64_t version_number = 0, payload_bytes = 0, expected = 0;
  // Only the canonical form seal() writes is accepted: one text per header.
  if (!header_ok || !parse_unsigned(version, version_number, 10) || version_number > 1000000 ||
      std::to_string(version_number) != version || !parse_unsigned(length, payload_bytes, 10) ||
      std::to_string(payload_bytes) != length || checksum.size() != 16 ||
      !parse_unsigned(checksum, expected, 16) || hex16(expected) != checksum) {
    throw DataError(source + " is damaged: its header is malformed");
  }
  ++offset;
  const uint64_t present = bytes.size() - offset;
  if (present != payload_bytes) {
    throw DataError(source + " is damaged: it holds " + std::to_string(present) +
                    " bytes of payload, its header says " + std::to_string(payload_bytes) +
                    (present < payload_bytes ? " (truncated)" : " (extended)"));
  }
  Unsealed result;
  result.payload = bytes.substr(offset);
  if (fnv1a64(result.payload) != expected) {
    throw DataError(source +
                    " is damaged: its checksum does not match its contents (the file changed after it was "
                    "written); use another copy");
  }
  result.format = format;
  result.version = static_cast<int>(version_number);
  return result;
}

}  // namespace memento
