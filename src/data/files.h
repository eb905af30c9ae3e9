#pragma once
// Reading a whole data file: a missing file, a directory or a read error is a DataError
// that names the file, never a stream exception.

#include <sys/stat.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "memento/core/error.h"

namespace memento::detail {

// `what` describes the file for messages ("text file", "MNIST images file").
inline std::vector<uint8_t> read_whole_file(const std::string& path, const std::string& what) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) {
    throw DataError("cannot open " + what + " " + path + ": " + std::strerror(errno) + "; check the path");
  }
  if (S_ISDIR(info.st_mode)) throw DataError(what + " " + path + " is a directory; give the file itself");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError("cannot open " + what + " " + path + "; check that it is readable");
  std::vector<uint8_t> bytes;
  try {
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  } catch (const std::exception&) {
    throw DataError(what + " " + path + ": read error at byte offset " + std::to_string(bytes.size()));
  }
  if (in.bad())
    throw DataError(what + " " + path + ": read error at byte offset " + std::to_string(bytes.size()));
  return bytes;
}

}  // namespace memento::detail
