#pragma once
/// \file
/// `MemoryTracker`: exact, allocator-level accounting of live and peak bytes. On CPU a
/// counting allocator is installed once in front of LibTorch's default CPU allocator;
/// on CUDA builds the caching allocator's statistics are read. Every allocation is
/// charged to the category of the innermost `MemoryScope` alive on that thread.
///
/// Example:
/// \code
///   auto& tracker = memento::MemoryTracker::instance();   // installs the allocator
///   tracker.reset_peak();
///   {
///     memento::MemoryScope scope(memento::MemoryCategory::Activations);
///     auto t = torch::empty({1024}, torch::kFloat32);        // 4096 bytes, exactly
///   }
///   int64_t peak_bytes = tracker.peak_bytes();
/// \endcode

#include <array>
#include <cstdint>
#include <string>

namespace memento {

enum class MemoryCategory : int {
  Parameters = 0,
  Gradients,
  OptimizerState,
  Activations,
  Temporaries,
  Inputs,
  Other,
};
constexpr int kMemoryCategoryCount = 7;

/// "parameters", "gradients", "optimizer_state", "activations", "temporaries", "inputs", "other".
const char* memory_category_name(MemoryCategory category);

/// Bytes per category.
using CategoryBytes = std::array<int64_t, kMemoryCategoryCount>;

/// Process-wide CPU allocation accounting (thread-safe).
class MemoryTracker {
 public:
  /// The tracker; the first call installs the counting CPU allocator. Install it before
  /// creating the tensors you want counted (tensors allocated earlier are freed through
  /// their own deleter and are never counted).
  static MemoryTracker& instance();

  int64_t live_bytes() const;
  int64_t peak_bytes() const;
  /// Live bytes per category now.
  CategoryBytes live_by_category() const;
  /// Live bytes per category at the moment of the last peak.
  CategoryBytes peak_by_category() const;
  /// Sets the peak to the current live bytes.
  void reset_peak();
  /// Number of allocations since start (for tests and timelines).
  int64_t allocation_count() const;

 private:
  MemoryTracker();
};

/// RAII tag: allocations on this thread inside the scope are charged to `category`.
class MemoryScope {
 public:
  explicit MemoryScope(MemoryCategory category);
  ~MemoryScope();
  MemoryScope(const MemoryScope&) = delete;
  MemoryScope& operator=(const MemoryScope&) = delete;

 private:
  MemoryCategory previous_;
};

}  // namespace memento
