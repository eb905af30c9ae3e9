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

#include <zlib.h>

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

// As read_whole_file; a path ending in .gz is decompressed (Debian ships the MNIST-format
// datasets gzipped).
inline std::vector<uint8_t> read_maybe_gzipped_file(const std::string& path, const std::string& what) {
  if (path.size() < 3 || path.compare(path.size() - 3, 3, ".gz") != 0) return read_whole_file(path, what);
  const std::vector<uint8_t> compressed = read_whole_file(path, what);
  z_stream stream{};
  // 16 + MAX_WBITS: a gzip header, not a bare zlib stream.
  if (inflateInit2(&stream, 16 + MAX_WBITS) != Z_OK)
    throw DataError("cannot start gzip decompression of " + path);
  std::vector<uint8_t> bytes;
  std::vector<uint8_t> chunk(1 << 20);
  stream.next_in = const_cast<Bytef*>(compressed.data());
  stream.avail_in = static_cast<uInt>(compressed.size());
  int status = Z_OK;
  while (status != Z_STREAM_END) {
    stream.next_out = chunk.data();
    stream.avail_out = static_cast<uInt>(chunk.size());
    status = inflate(&stream, Z_NO_FLUSH);
    if (status != Z_OK && status != Z_STREAM_END) {
      const std::string offset = std::to_string(stream.total_in);
      inflateEnd(&stream);
      throw DataError(what + " " + path + " is not a valid gzip file (error at compressed byte offset " +
                      offset + "); pass the file as downloaded, or gunzip it");
    }
    bytes.insert(bytes.end(), chunk.data(), chunk.data() + (chunk.size() - stream.avail_out));
    if (status != Z_STREAM_END && stream.avail_in == 0 && stream.avail_out != 0) {
      inflateEnd(&stream);
      throw DataError(what + " " + path + " is a truncated gzip file (" + std::to_string(compressed.size()) +
                      " bytes); download it again");
    }
  }
  inflateEnd(&stream);
  return bytes;
}

}  // namespace memento::detail
