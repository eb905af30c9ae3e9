#include "memento/torch/memory.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <unordered_map>
#include <utility>

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <torch/cuda.h>

#if defined(MEMENTO_WITH_CUDA)
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include "memento/core/error.h"

namespace memento {

namespace {

// Priority of our CPU allocator: above LibTorch's default (0) so the wrapper wins, but
// an allocator installed on purpose with the maximum priority is left alone (and reported).
constexpr uint8_t kCountingAllocatorPriority = 200;

constexpr int kNoCategory = -1;

// -1 when the thread has no scope of its own; it then falls back to the ambient category.
thread_local int t_category = kNoCategory;
std::atomic<int> g_ambient_category{kNoCategory};

thread_local std::shared_ptr<const std::string> t_phase;
// Read and written with std::atomic_load/store: the free-function shared_ptr atomics are
// the C++17 way (std::atomic<std::shared_ptr> is C++20).
std::shared_ptr<const std::string> g_ambient_phase;

int category_index_now() {
  if (t_category != kNoCategory) return t_category;
  const int ambient = g_ambient_category.load(std::memory_order_relaxed);
  return ambient != kNoCategory ? ambient : static_cast<int>(MemoryCategory::Other);
}

std::shared_ptr<const std::string> phase_now() {
  if (t_phase) return t_phase;
  return std::atomic_load(&g_ambient_phase);
}

// What the counting allocator remembers about a live allocation: how to free it through
// the wrapped allocator, and what to charge back.
struct Allocation {
  void* context = nullptr;
  c10::DeleterFnPtr deleter = nullptr;
  int64_t bytes = 0;
  int category = 0;
};

// The accounting state. Leaked on purpose: tensors may be freed during static
// destruction, after any static object here would be gone.
struct TrackerState {
  mutable std::mutex mutex;
  std::unordered_map<void*, Allocation> allocations;
  int64_t live_bytes = 0;
  int64_t peak_bytes = 0;
  CategoryBytes live_by_category{};
  CategoryBytes peak_by_category{};
  int64_t allocation_count = 0;
  int64_t event_count = 0;

  std::mutex listeners_mutex;
  std::vector<std::shared_ptr<MemoryEventListener>> listeners;
  std::atomic<bool> has_listeners{false};
};

TrackerState& state() {
  static TrackerState* tracker_state = new TrackerState();
  return *tracker_state;
}

void notify(MemoryEvent::Kind kind, int64_t sequence, void* address, int64_t bytes, int category,
            int64_t live_bytes) {
  TrackerState& s = state();
  std::vector<std::shared_ptr<MemoryEventListener>> listeners;
  {
    std::lock_guard<std::mutex> lock(s.listeners_mutex);
    listeners = s.listeners;
  }
  if (listeners.empty()) return;
  MemoryEvent event;
  event.kind = kind;
  event.sequence = sequence;
  event.address = reinterpret_cast<uintptr_t>(address);
  event.bytes = bytes;
  event.category = static_cast<MemoryCategory>(category);
  if (auto phase = phase_now()) event.phase = *phase;
  event.live_bytes = live_bytes;
  for (const auto& listener : listeners) listener->on_memory_event(event);
}

// The deleter of every DataPtr the counting allocator hands out. Its context is the
// data pointer itself, so the raw_allocate/raw_deallocate interface keeps working.
void counted_delete(void* data) {
  TrackerState& s = state();
  Allocation allocation;
  int64_t sequence = 0;
  int64_t live_bytes = 0;
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    auto found = s.allocations.find(data);
    if (found == s.allocations.end()) return;  // unreachable: every context we hand out is registered
    allocation = found->second;
    s.allocations.erase(found);
    s.live_bytes -= allocation.bytes;
    s.live_by_category[allocation.category] -= allocation.bytes;
    sequence = s.event_count++;
    live_bytes = s.live_bytes;
  }
  if (allocation.deleter != nullptr) allocation.deleter(allocation.context);
  if (s.has_listeners.load(std::memory_order_relaxed)) {
    notify(MemoryEvent::Kind::Free, sequence, data, allocation.bytes, allocation.category, live_bytes);
  }
}

// Wraps the CPU allocator that was installed before it. No `override` keywords: the
// Allocator interface changed between LibTorch 1.13 (const allocate) and 2.x (non-const
// allocate, pure virtual copy_data); declaring both forms compiles against either, and
// mixing override with non-overriding members would trip clang's consistency warning.
class CountingAllocator final : public c10::Allocator {
 public:
  explicit CountingAllocator(c10::Allocator* base) : base_(base) {}

  c10::DataPtr allocate(size_t bytes) const { return counted_allocate(bytes); }
  c10::DataPtr allocate(size_t bytes) { return counted_allocate(bytes); }
  c10::DeleterFnPtr raw_deleter() const { return &counted_delete; }
  void copy_data(void* destination, const void* source, std::size_t bytes) const {
    std::memcpy(destination, source, bytes);
  }

 private:
  c10::DataPtr counted_allocate(size_t bytes) const {
    c10::DataPtr inner = base_->allocate(bytes);
    void* data = inner.get();
    // Empty allocations carry no memory (and a null pointer cannot key the table).
    if (data == nullptr) return inner;
    const c10::Device device = inner.device();
    Allocation allocation;
    allocation.deleter = inner.get_deleter();
    allocation.context = inner.release_context();
    allocation.bytes = static_cast<int64_t>(bytes);
    allocation.category = category_index_now();

    TrackerState& s = state();
    int64_t sequence = 0;
    int64_t live_bytes = 0;
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      s.allocations.emplace(data, allocation);
      s.live_bytes += allocation.bytes;
      s.live_by_category[allocation.category] += allocation.bytes;
      ++s.allocation_count;
      if (s.live_bytes > s.peak_bytes) {
        s.peak_bytes = s.live_bytes;
        s.peak_by_category = s.live_by_category;
      }
      sequence = s.event_count++;
      live_bytes = s.live_bytes;
    }
    if (s.has_listeners.load(std::memory_order_relaxed)) {
      notify(MemoryEvent::Kind::Allocate, sequence, data, allocation.bytes, allocation.category, live_bytes);
    }
    return c10::DataPtr(data, data, &counted_delete, device);
  }

  c10::Allocator* base_;
};

}  // namespace

const char* memory_category_name(MemoryCategory category) {
  switch (category) {
    case MemoryCategory::Parameters:
      return "parameters";
    case MemoryCategory::Gradients:
      return "gradients";
    case MemoryCategory::OptimizerState:
      return "optimizer_state";
    case MemoryCategory::Activations:
      return "activations";
    case MemoryCategory::Temporaries:
      return "temporaries";
    case MemoryCategory::Inputs:
      return "inputs";
    case MemoryCategory::Other:
      return "other";
  }
  return "other";
}

void MemoryEventRecorder::on_memory_event(const MemoryEvent& event) {
  std::lock_guard<std::mutex> lock(mutex_);
  events_.push_back(event);
}

std::vector<MemoryEvent> MemoryEventRecorder::events() const {
  std::vector<MemoryEvent> copy;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    copy = events_;
  }
  std::sort(copy.begin(), copy.end(),
            [](const MemoryEvent& a, const MemoryEvent& b) { return a.sequence < b.sequence; });
  return copy;
}

void MemoryEventRecorder::clear() {
  std::lock_guard<std::mutex> lock(mutex_);
  events_.clear();
}

MemoryTracker& MemoryTracker::instance() {
  static MemoryTracker* tracker = new MemoryTracker();
  return *tracker;
}

MemoryTracker::MemoryTracker() {
  state();
  c10::Allocator* previous = c10::GetCPUAllocator();
  // Leaked: LibTorch keeps a raw pointer for the life of the process.
  auto* counting = new CountingAllocator(previous);
  c10::SetCPUAllocator(counting, kCountingAllocatorPriority);
  if (c10::GetCPUAllocator() != counting) {
    throw RuntimeError(
        "MemoryTracker could not install its counting CPU allocator: another allocator was set with a "
        "higher priority (c10::SetCPUAllocator); remove that allocator to measure memory with memento");
  }
}

int64_t MemoryTracker::live_bytes() const {
  std::lock_guard<std::mutex> lock(state().mutex);
  return state().live_bytes;
}

int64_t MemoryTracker::peak_bytes() const {
  std::lock_guard<std::mutex> lock(state().mutex);
  return state().peak_bytes;
}

CategoryBytes MemoryTracker::live_by_category() const {
  std::lock_guard<std::mutex> lock(state().mutex);
  return state().live_by_category;
}

CategoryBytes MemoryTracker::peak_by_category() const {
  std::lock_guard<std::mutex> lock(state().mutex);
  return state().peak_by_category;
}

void MemoryTracker::reset_peak() {
  TrackerState& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.peak_bytes = s.live_bytes;
  s.peak_by_category = s.live_by_category;
}

int64_t MemoryTracker::allocation_count() const {
  std::lock_guard<std::mutex> lock(state().mutex);
  return state().allocation_count;
}

void MemoryTracker::add_listener(std::shared_ptr<MemoryEventListener> listener) {
  if (!listener) throw InvalidArgument("MemoryTracker::add_listener: the listener is null");
  TrackerState& s = state();
  std::lock_guard<std::mutex> lock(s.listeners_mutex);
  if (std::find(s.listeners.begin(), s.listeners.end(), listener) == s.listeners.end()) {
    s.listeners.push_back(std::move(listener));
  }
  s.has_listeners.store(true);
}

void MemoryTracker::remove_listener(const std::shared_ptr<MemoryEventListener>& listener) {
  TrackerState& s = state();
  std::lock_guard<std::mutex> lock(s.listeners_mutex);
  s.listeners.erase(std::remove(s.listeners.begin(), s.listeners.end(), listener), s.listeners.end());
  s.has_listeners.store(!s.listeners.empty());
}

bool MemoryTracker::cuda_available() {
#if defined(MEMENTO_WITH_CUDA)
  return torch::cuda::is_available();
#else
  return false;
#endif
}

namespace {

void require_cuda(const char* what, int device) {
  if (!MemoryTracker::cuda_available()) {
    throw RuntimeError(std::string("MemoryTracker::") + what +
                       ": no CUDA device (this build of memento or LibTorch has no CUDA, or no GPU is "
                       "visible); measure on CPU or build against a CUDA LibTorch");
  }
  const int device_count = static_cast<int>(torch::cuda::device_count());
  if (device < 0 || device >= device_count) {
    throw InvalidArgument(std::string("MemoryTracker::") + what + ": CUDA device " + std::to_string(device) +
                          " does not exist (" + std::to_string(device_count) + " visible)");
  }
}

}  // namespace

CudaMemoryStats MemoryTracker::cuda_stats(int device) const {
  require_cuda("cuda_stats", device);
  CudaMemoryStats stats;
#if defined(MEMENTO_WITH_CUDA)
  namespace cca = c10::cuda::CUDACachingAllocator;
  const auto device_stats = cca::getDeviceStats(device);
  const auto aggregate = static_cast<size_t>(cca::StatType::AGGREGATE);
  stats.allocated_bytes = device_stats.allocated_bytes[aggregate].current;
  stats.peak_allocated_bytes = device_stats.allocated_bytes[aggregate].peak;
  stats.reserved_bytes = device_stats.reserved_bytes[aggregate].current;
  stats.peak_reserved_bytes = device_stats.reserved_bytes[aggregate].peak;
#endif
  return stats;
}

void MemoryTracker::reset_cuda_peak(int device) {
  require_cuda("reset_cuda_peak", device);
#if defined(MEMENTO_WITH_CUDA)
  c10::cuda::CUDACachingAllocator::resetPeakStats(device);
#endif
}

MemoryScope::MemoryScope(MemoryCategory category)
    : previous_(t_category), previous_ambient_(g_ambient_category.load(std::memory_order_relaxed)) {
  const int index = static_cast<int>(category);
  if (index < 0 || index >= kMemoryCategoryCount) {
    throw InvalidArgument("MemoryScope: category " + std::to_string(index) + " is not a MemoryCategory");
  }
  t_category = index;
  g_ambient_category.store(index, std::memory_order_relaxed);
}

MemoryScope::~MemoryScope() {
  t_category = previous_;
  g_ambient_category.store(previous_ambient_, std::memory_order_relaxed);
}

MemoryCategory current_memory_category() {
  return static_cast<MemoryCategory>(category_index_now());
}

MemoryPhase::MemoryPhase(std::string phase)
    : previous_(t_phase), previous_ambient_(std::atomic_load(&g_ambient_phase)) {
  auto tag = std::make_shared<const std::string>(std::move(phase));
  t_phase = tag;
  std::atomic_store(&g_ambient_phase, std::move(tag));
}

MemoryPhase::~MemoryPhase() {
  t_phase = previous_;
  std::atomic_store(&g_ambient_phase, previous_ambient_);
}

std::string current_memory_phase() {
  auto phase = phase_now();
  return phase ? *phase : std::string();
}

}  // namespace memento
