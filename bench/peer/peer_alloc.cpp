// The MemoryTracker behind a C interface, so that a Python process running Debian's
// python3-torch (the same libc10.so as libtorch-dev) counts its CPU allocations with the
// very allocator memento measures with. bench/peer/peer.py loads it through ctypes.
//
// Exceptions must not cross the C boundary: each entry point catches them, returns -1 and
// keeps the message for memento_peer_last_error().
#include <cstdint>
#include <exception>
#include <string>

#include "memento/torch/memory.h"

namespace {

std::string& last_error() {
  static std::string message;
  return message;
}

template <typename Function>
int64_t guarded(Function function) {
  try {
    return function();
  } catch (const std::exception& error) {
    last_error() = error.what();
    return -1;
  }
}

}  // namespace

extern "C" {

// Installs the counting allocator (idempotent). 0 on success, -1 on error.
int64_t memento_peer_install() {
  return guarded([] {
    memento::MemoryTracker::instance();
    return int64_t{0};
  });
}

int64_t memento_peer_live_bytes() {
  return guarded([] { return memento::MemoryTracker::instance().live_bytes(); });
}

int64_t memento_peer_peak_bytes() {
  return guarded([] { return memento::MemoryTracker::instance().peak_bytes(); });
}

// Sets the peak to the live bytes now, as the Executor does when a step starts.
int64_t memento_peer_reset_peak() {
  return guarded([] {
    memento::MemoryTracker::instance().reset_peak();
    return int64_t{0};
  });
}

int64_t memento_peer_allocation_count() {
  return guarded([] { return memento::MemoryTracker::instance().allocation_count(); });
}

const char* memento_peer_last_error() {
  return last_error().c_str();
}

}  // extern "C"
