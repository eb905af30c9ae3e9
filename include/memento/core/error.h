#pragma once
/// \file
/// Exception types used across memento. Every error says what was wrong and what to
/// change; the CLI prints `what()` on one line and exits with code 2.
///
/// Example:
/// \code
///   try { auto profile = memento::read_profile("gpt.json"); }
///   catch (const memento::Error& e) { std::cerr << e.what() << "\n"; }
/// \endcode

#include <stdexcept>
#include <string>

namespace memento {

/// A user's text for an error message: in double quotes, control characters escaped
/// (`\n`, `\x01`), cut after `max_chars` characters of the quoted form with "..." after:
/// a message stays one short line whatever the user wrote.
///
/// \code
///   memento::quoted("50\n")  // "\"50\\n\""
/// \endcode
inline std::string quoted(const std::string& text, size_t max_chars = 40) {
  static const char* const kHex = "0123456789abcdef";
  std::string out = "\"";
  for (unsigned char c : text) {
    if (out.size() > max_chars) return out + "...\"";
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      out += std::string("\\x") + kHex[c >> 4] + kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

/// Base class of every memento error.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

/// A user-supplied value (option, budget string, model name, ...) is invalid.
class InvalidArgument : public Error {
 public:
  using Error::Error;
};

/// A profile file or object is malformed: the message names the file, stage and field.
class ProfileError : public Error {
 public:
  using Error::Error;
};

/// A schedule is invalid for its profile: the message names the op index and op.
class ScheduleError : public Error {
 public:
  using Error::Error;
};

/// A data file (corpus, CIFAR-10, MNIST, checkpoint) is malformed: names file and offset.
class DataError : public Error {
 public:
  using Error::Error;
};

/// A file could not be read or written (missing directory, no permission, disk full):
/// names the file and the system's reason.
class IoError : public Error {
 public:
  using Error::Error;
};

/// The runtime observed something that contradicts the plan (shape change on
/// recompute, missing tensor): names the stage.
class RuntimeError : public Error {
 public:
  using Error::Error;
};

}  // namespace memento
