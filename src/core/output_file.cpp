#include "memento/core/output_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "memento/core/error.h"

namespace memento {

namespace {

std::string directory_of(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string name_of(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string reason(int error) {
  return std::strerror(error);
}

// Closes on scope exit and removes the temporary unless the rename consumed it.
class Temporary {
 public:
  explicit Temporary(std::string path) : path_(std::move(path)) {}
  ~Temporary() {
    if (fd_ >= 0) ::close(fd_);
    if (!renamed_) ::unlink(path_.c_str());
  }
  Temporary(const Temporary&) = delete;
  Temporary& operator=(const Temporary&) = delete;

  int open() {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    return fd_;
  }
  int close() {
    const int result = ::close(fd_);
    fd_ = -1;
    return result;
  }
  int fd() const { return fd_; }
  void mark_renamed() { renamed_ = true; }

 private:
  std::string path_;
  int fd_ = -1;
  bool renamed_ = false;
};

void write_all(int fd, const std::string& contents, const std::string& path) {
  size_t written = 0;
  while (written < contents.size()) {
    const ssize_t count = ::write(fd, contents.data() + written, contents.size() - written);
    if (count < 0 && errno == EINTR) continue;
    if (count <= 0) {
      const int error = count < 0 ? errno : ENOSPC;
      throw IoError("cannot write " + path + ": " + reason(error) + " after " + std::to_string(written) +
                    " of " + std::to_string(contents.size()) +
                    " bytes; the previous file, if any, is unchanged");
    }
    written += static_cast<size_t>(count);
  }
}

}  // namespace

std::string temporary_path_for(const std::string& path) {
  const std::string directory = directory_of(path);
  const std::string prefix = path.find('/') == std::string::npos ? "" : directory + "/";
  return prefix + "." + name_of(path) + ".memento-tmp";
}

void check_output_path(const std::string& path) {
  if (path.empty()) throw IoError("the output path is empty; give a file name");
  if (name_of(path).empty() || path.back() == '/') {
    throw IoError("cannot write " + path + ": it names a directory; give a file name inside it");
  }
  struct stat info {};
  if (::stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode)) {
    throw IoError("cannot write " + path + ": it is a directory; give a file name inside it");
  }
  const std::string directory = directory_of(path);
  if (::stat(directory.c_str(), &info) != 0) {
    throw IoError("cannot write " + path + ": its directory " + directory + " does not exist (" +
                  reason(errno) + "); create it first");
  }
  if (!S_ISDIR(info.st_mode))
    throw IoError("cannot write " + path + ": " + directory + " is not a directory");
  const std::string temporary = temporary_path_for(path);
  ::unlink(temporary.c_str());  // a stale temporary of this target, from a killed run
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    throw IoError("cannot write " + path + ": " + reason(errno) + " in " + directory +
                  "; choose a writable directory");
  }
  ::close(fd);
  ::unlink(temporary.c_str());
}

void write_file_atomically(const std::string& path, const std::string& contents) {
  if (path.empty()) throw IoError("the output path is empty; give a file name");
  Temporary temporary(temporary_path_for(path));
  if (temporary.open() < 0) {
    throw IoError("cannot write " + path + ": cannot create " + temporary_path_for(path) + " (" +
                  reason(errno) + "); check that the directory exists and is writable");
  }
  write_all(temporary.fd(), contents, path);
  // The data must be on disk before the rename makes it the file; otherwise a crash could
  // leave a complete-looking name over incomplete contents.
  if (::fsync(temporary.fd()) != 0 || temporary.close() != 0) {
    throw IoError("cannot write " + path + ": flushing it to disk failed (" + reason(errno) +
                  "); the previous file, if any, is unchanged");
  }
  if (::rename(temporary_path_for(path).c_str(), path.c_str()) != 0) {
    throw IoError("cannot write " + path + ": replacing it failed (" + reason(errno) + ")");
  }
  temporary.mark_renamed();
  // The rename itself is durable once the directory is synced.
  const int directory = ::open(directory_of(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (directory >= 0) {
    ::fsync(directory);
    ::close(directory);
  }
}

}  // namespace memento
