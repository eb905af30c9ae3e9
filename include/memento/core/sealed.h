#pragma once
/// \file
/// Sealed files: a payload behind a short text header that names its format and version,
/// its length and a 64-bit FNV-1a checksum, so that a reader refuses a file that changed
/// after it was written (a flipped byte, a truncation, another program's file) before it
/// parses a byte of the payload. Training checkpoints are sealed.
///
/// Layout (the header is ASCII; the payload follows the blank line):
/// \code
///   memento-sealed
///   format memento.checkpoint
///   version 2
///   bytes 1284411
///   fnv1a64 9f1c0e5b2a7d4c31
///
///   <payload>
/// \endcode
///
/// Example:
/// \code
///   std::string file = memento::seal("memento.checkpoint", 2, payload);
///   memento::Unsealed content = memento::unseal(file, "run.pt");  // DataError naming run.pt when damaged
/// \endcode

#include <cstdint>
#include <string>

namespace memento {

/// 64-bit FNV-1a of `bytes`: any change of one byte changes it.
uint64_t fnv1a64(const std::string& bytes);

/// The sealed form of `payload`.
std::string seal(const std::string& format, int version, const std::string& payload);

/// True when `bytes` starts like a sealed file (whatever its state).
bool is_sealed(const std::string& bytes);

struct Unsealed {
  std::string format;
  int version = 0;
  std::string payload;
};

/// Checks and opens a sealed file read into `bytes`. Throws DataError naming `source`
/// when the header is malformed, the length differs (truncated or extended) or the
/// checksum does not match (damaged).
Unsealed unseal(const std::string& bytes, const std::string& source);

}  // namespace memento
