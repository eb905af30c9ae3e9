#pragma once
/// \file
/// `MemoryTracker`: exact, allocator-level accounting of live and peak bytes. On CPU a
/// counting allocator is installed once in front of LibTorch's CPU allocator; on CUDA
/// builds the caching allocator's statistics are read (`cuda_stats`). Every allocation
/// is charged to the category of the innermost `MemoryScope` alive on that thread, and
/// its free is charged back to the same category.
///
/// What is counted: the bytes LibTorch *requests* from the CPU allocator for tensor
/// storages (`torch::empty({1024}, torch::kFloat32)` is exactly 4096 bytes; views share
/// their base's storage and cost nothing). Not counted: tensors created before the
/// tracker was installed, `torch::from_blob` memory, and scratch memory that BLAS or
/// oneDNN allocate on their own.
///
/// Threads. LibTorch's intra-op worker threads allocate too, but they never enter a
/// `MemoryScope` themselves; a thread without its own scope is charged to the *ambient*
/// category: that of the most recently entered, still open scope of any thread.
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
#include <memory>
#include <mutex>
#include <string>
#include <vector>

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

/// Bytes per category, indexed by `static_cast<int>(MemoryCategory)`.
using CategoryBytes = std::array<int64_t, kMemoryCategoryCount>;

/// One allocation or free seen by the tracker (only built when a listener is attached).
struct MemoryEvent {
  enum class Kind { Allocate, Free };
  Kind kind = Kind::Allocate;
  int64_t sequence = 0;   ///< global order of tracked events (0, 1, 2, ... since start)
  uintptr_t address = 0;  ///< data address: matches a Free to its Allocate
  int64_t bytes = 0;      ///< bytes allocated or freed (always >= 0)
  MemoryCategory category = MemoryCategory::Other;  ///< a Free carries its allocation's category
  std::string phase;                                ///< `MemoryPhase` tag active on the thread ("" when none)
  int64_t live_bytes = 0;                           ///< tracker live bytes right after the event
};

/// Receives allocation events, e.g. to build memory timelines. Called on the allocating
/// (or freeing) thread, possibly from several threads at once, outside the tracker's
/// lock; `event.sequence` gives the global order. Must not throw.
///
/// Example:
/// \code
///   struct Counter : memento::MemoryEventListener {
///     std::atomic<int64_t> events{0};
///     void on_memory_event(const memento::MemoryEvent&) override { ++events; }
///   };
/// \endcode
class MemoryEventListener {
 public:
  virtual ~MemoryEventListener() = default;
  virtual void on_memory_event(const MemoryEvent& event) = 0;
};

/// A listener that keeps every event in memory (thread-safe).
///
/// Example:
/// \code
///   auto recorder = std::make_shared<memento::MemoryEventRecorder>();
///   memento::MemoryTracker::instance().add_listener(recorder);
///   { memento::MemoryPhase phase("forward of stage 3"); auto t = torch::empty({16}); }
///   memento::MemoryTracker::instance().remove_listener(recorder);
///   std::vector<memento::MemoryEvent> events = recorder->events();  // Allocate, Free
/// \endcode
class MemoryEventRecorder : public MemoryEventListener {
 public:
  void on_memory_event(const MemoryEvent& event) override;
  /// The recorded events sorted by `sequence`.
  std::vector<MemoryEvent> events() const;
  void clear();

 private:
  mutable std::mutex mutex_;
  std::vector<MemoryEvent> events_;
};

/// Statistics of the CUDA caching allocator for one device (see MemoryTracker::cuda_stats).
struct CudaMemoryStats {
  int64_t allocated_bytes = 0;       ///< bytes in tensors now
  int64_t peak_allocated_bytes = 0;  ///< largest allocated_bytes since the last peak reset
  int64_t reserved_bytes = 0;        ///< bytes held by the caching allocator (cudaMalloc'd)
  int64_t peak_reserved_bytes = 0;
};

/// Process-wide CPU allocation accounting (thread-safe).
class MemoryTracker {
 public:
  /// The tracker; the first call installs the counting CPU allocator. Install it before
  /// creating the tensors you want counted (tensors allocated earlier are freed through
  /// their own deleter and are never counted). Throws RuntimeError when LibTorch keeps
  /// another CPU allocator of higher priority.
  static MemoryTracker& instance();

  int64_t live_bytes() const;
  int64_t peak_bytes() const;
  /// Live bytes per category now.
  CategoryBytes live_by_category() const;
  /// Live bytes per category at the moment of the last peak.
  CategoryBytes peak_by_category() const;
  /// Sets the peak to the current live bytes (and the peak breakdown to the live one).
  void reset_peak();
  /// Number of (non-empty) allocations since start (for tests and timelines).
  int64_t allocation_count() const;

  /// Starts sending every allocation and free to `listener` (kept alive until removed).
  void add_listener(std::shared_ptr<MemoryEventListener> listener);
  /// Stops sending events to `listener`; no effect when it is not attached.
  void remove_listener(const std::shared_ptr<MemoryEventListener>& listener);

  /// True when this build can read CUDA allocator statistics and a CUDA device exists.
  static bool cuda_available();
  /// The CUDA caching allocator's statistics of `device`. Throws RuntimeError when
  /// `cuda_available()` is false (CPU-only build or no GPU).
  CudaMemoryStats cuda_stats(int device = 0) const;
  /// Resets the CUDA peaks of `device` to the current values (same errors as cuda_stats).
  void reset_cuda_peak(int device = 0);

  MemoryTracker(const MemoryTracker&) = delete;
  MemoryTracker& operator=(const MemoryTracker&) = delete;

 private:
  MemoryTracker();
};

/// RAII tag: allocations on this thread inside the scope are charged to `category`.
/// Scopes nest; the innermost wins.
class MemoryScope {
 public:
  explicit MemoryScope(MemoryCategory category);
  ~MemoryScope();
  MemoryScope(const MemoryScope&) = delete;
  MemoryScope& operator=(const MemoryScope&) = delete;

 private:
  int previous_;          // the thread's previous category (-1: none)
  int previous_ambient_;  // the ambient category before this scope (-1: none)
};

/// The category an allocation on this thread would be charged to now.
MemoryCategory current_memory_category();

/// RAII phase tag ("forward of stage 3") attached to the events a `MemoryEventListener`
/// receives from this thread (and from threads without their own phase).
///
/// Example:
/// \code
///   memento::MemoryPhase phase("backward of stage 2");
/// \endcode
class MemoryPhase {
 public:
  explicit MemoryPhase(std::string phase);
  ~MemoryPhase();
  MemoryPhase(const MemoryPhase&) = delete;
  MemoryPhase& operator=(const MemoryPhase&) = delete;

 private:
  std::shared_ptr<const std::string> previous_;
  std::shared_ptr<const std::string> previous_ambient_;
};

/// The phase tag events on this thread carry now ("" when none).
std::string current_memory_phase();

}  // namespace memento
