#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <thread>
#include <vector>

#include <c10/core/CPUAllocator.h>
#include <torch/torch.h>

#include "memento/core/error.h"
#include "memento/torch/memory.h"

namespace memento {
namespace {

int64_t category_bytes(const CategoryBytes& bytes, MemoryCategory category) {
  return bytes[static_cast<int>(category)];
}

TEST(MemoryTracker, EmptyFloatTensorIsExactlyItsBytes) {
  auto& tracker = MemoryTracker::instance();
  const int64_t before = tracker.live_bytes();
  const int64_t count_before = tracker.allocation_count();
  {
    torch::Tensor t = torch::empty({1024}, torch::kFloat32);
    EXPECT_EQ(tracker.live_bytes() - before, 4096);
    EXPECT_EQ(tracker.allocation_count() - count_before, 1);
  }
  EXPECT_EQ(tracker.live_bytes(), before);
}

TEST(MemoryTracker, OddSizesAreNotRoundedOrPadded) {
  auto& tracker = MemoryTracker::instance();
  const int64_t before = tracker.live_bytes();
  torch::Tensor a = torch::empty({3}, torch::kFloat32);
  EXPECT_EQ(tracker.live_bytes() - before, 12);
  torch::Tensor b = torch::empty({5}, torch::kFloat64);
  EXPECT_EQ(tracker.live_bytes() - before, 12 + 40);
  torch::Tensor c = torch::empty({1}, torch::kUInt8);
  EXPECT_EQ(tracker.live_bytes() - before, 12 + 40 + 1);
  torch::Tensor d = torch::ones({7, 3}, torch::kInt16);
  EXPECT_EQ(tracker.live_bytes() - before, 12 + 40 + 1 + 42);
  a.reset();
  b.reset();
  c.reset();
  d.reset();
  EXPECT_EQ(tracker.live_bytes(), before);
}

TEST(MemoryTracker, EmptyTensorsAllocateNothing) {
  auto& tracker = MemoryTracker::instance();
  const int64_t before = tracker.live_bytes();
  const int64_t count_before = tracker.allocation_count();
  torch::Tensor t = torch::empty({0, 16}, torch::kFloat32);
  EXPECT_EQ(tracker.live_bytes(), before);
  EXPECT_EQ(tracker.allocation_count(), count_before);
}

TEST(MemoryTracker, ViewsShareTheirBaseStorage) {
  auto& tracker = MemoryTracker::instance();
  const int64_t before = tracker.live_bytes();
  torch::Tensor base = torch::zeros({32, 32}, torch::kFloat32);
  ASSERT_EQ(tracker.live_bytes() - before, 4096);
  torch::Tensor view = base.view({1024});
  torch::Tensor slice = base.slice(/*dim=*/0, 4, 8);
  torch::Tensor transposed = base.t();
  EXPECT_EQ(tracker.live_bytes() - before, 4096);
  base.reset();
  transposed.reset();
  slice.reset();
  EXPECT_EQ(tracker.live_bytes() - before, 4096) << "the view still owns the storage";
  view.reset();
  EXPECT_EQ(tracker.live_bytes(), before);
}

TEST(MemoryTracker, ResizeGrowsThroughTheTracker) {
  auto& tracker = MemoryTracker::instance();
  const int64_t before = tracker.live_bytes();
  torch::Tensor t = torch::empty({16}, torch::kFloat32);
  t.resize_({1024});
  EXPECT_EQ(tracker.live_bytes() - before, 4096);
  t.reset();
  EXPECT_EQ(tracker.live_bytes(), before);
}

TEST(MemoryTracker, PeakAndResetPeak) {
  auto& tracker = MemoryTracker::instance();
  tracker.reset_peak();
  const int64_t before = tracker.live_bytes();
  EXPECT_EQ(tracker.peak_bytes(), before);
  torch::Tensor a = torch::empty({1024}, torch::kFloat32);
  torch::Tensor b = torch::empty({2048}, torch::kFloat32);
  a.reset();
  torch::Tensor c = torch::empty({512}, torch::kFloat32);
  EXPECT_EQ(tracker.peak_bytes() - before, 4096 + 8192);
  EXPECT_EQ(tracker.live_bytes() - before, 8192 + 2048);
  tracker.reset_peak();
  EXPECT_EQ(tracker.peak_bytes(), tracker.live_bytes());
  b.reset();
  c.reset();
  EXPECT_EQ(tracker.peak_bytes() - before, 8192 + 2048);
}

TEST(MemoryTracker, ScopesChargeCategoriesAndFreesChargeBack) {
  auto& tracker = MemoryTracker::instance();
  const CategoryBytes before = tracker.live_by_category();
  torch::Tensor activation;
  torch::Tensor temporary;
  {
    MemoryScope outer(MemoryCategory::Activations);
    EXPECT_EQ(current_memory_category(), MemoryCategory::Activations);
    activation = torch::empty({1024}, torch::kFloat32);
    {
      MemoryScope inner(MemoryCategory::Temporaries);
      EXPECT_EQ(current_memory_category(), MemoryCategory::Temporaries);
      temporary = torch::empty({256}, torch::kFloat32);
    }
    EXPECT_EQ(current_memory_category(), MemoryCategory::Activations);
  }
  CategoryBytes live = tracker.live_by_category();
  EXPECT_EQ(
      category_bytes(live, MemoryCategory::Activations) - category_bytes(before, MemoryCategory::Activations),
      4096);
  EXPECT_EQ(
      category_bytes(live, MemoryCategory::Temporaries) - category_bytes(before, MemoryCategory::Temporaries),
      1024);
  {
    // Freed inside another category's scope: still charged back to where it was allocated.
    MemoryScope other(MemoryCategory::Parameters);
    activation.reset();
  }
  temporary.reset();
  EXPECT_EQ(tracker.live_by_category(), before);
}

TEST(MemoryTracker, PeakByCategoryIsTheBreakdownAtThePeak) {
  auto& tracker = MemoryTracker::instance();
  tracker.reset_peak();
  const CategoryBytes base = tracker.live_by_category();
  torch::Tensor parameters;
  {
    MemoryScope scope(MemoryCategory::Parameters);
    parameters = torch::empty({100}, torch::kFloat32);
  }
  {
    MemoryScope scope(MemoryCategory::Activations);
    torch::Tensor big = torch::empty({1000}, torch::kFloat32);
  }
  {
    MemoryScope scope(MemoryCategory::Gradients);
    torch::Tensor small = torch::empty({10}, torch::kFloat32);
  }
  const CategoryBytes at_peak = tracker.peak_by_category();
  EXPECT_EQ(
      category_bytes(at_peak, MemoryCategory::Parameters) - category_bytes(base, MemoryCategory::Parameters),
      400);
  EXPECT_EQ(category_bytes(at_peak, MemoryCategory::Activations) -
                category_bytes(base, MemoryCategory::Activations),
            4000);
  EXPECT_EQ(
      category_bytes(at_peak, MemoryCategory::Gradients) - category_bytes(base, MemoryCategory::Gradients),
      0);
  int64_t total = 0;
  for (int64_t bytes : at_peak) total += bytes;
  EXPECT_EQ(total, tracker.peak_bytes());
}

TEST(MemoryTracker, CategoryNamesAreStable) {
  EXPECT_STREQ(memory_category_name(MemoryCategory::Parameters), "parameters");
  EXPECT_STREQ(memory_category_name(MemoryCategory::OptimizerState), "optimizer_state");
  EXPECT_STREQ(memory_category_name(MemoryCategory::Other), "other");
  EXPECT_THROW(MemoryScope(static_cast<MemoryCategory>(kMemoryCategoryCount)), InvalidArgument);
}

TEST(MemoryTracker, ThreadsWithoutScopeUseTheAmbientCategory) {
  auto& tracker = MemoryTracker::instance();
  const CategoryBytes before = tracker.live_by_category();
  torch::Tensor from_worker;
  {
    MemoryScope scope(MemoryCategory::Inputs);
    std::thread worker([&] { from_worker = torch::empty({64}, torch::kFloat32); });
    worker.join();
  }
  EXPECT_EQ(category_bytes(tracker.live_by_category(), MemoryCategory::Inputs) -
                category_bytes(before, MemoryCategory::Inputs),
            256);
  from_worker.reset();
  EXPECT_EQ(tracker.live_by_category(), before);
}

TEST(MemoryTracker, ConcurrentAllocationsAreExact) {
  auto& tracker = MemoryTracker::instance();
  const int64_t before = tracker.live_bytes();
  const int64_t count_before = tracker.allocation_count();
  const CategoryBytes categories_before = tracker.live_by_category();
  constexpr int kThreads = 4;
  constexpr int kRounds = 500;
  std::vector<std::thread> threads;
  std::vector<torch::Tensor> kept(kThreads);
  for (int index = 0; index < kThreads; ++index) {
    threads.emplace_back([index, &kept] {
      MemoryScope scope(index % 2 == 0 ? MemoryCategory::Activations : MemoryCategory::Gradients);
      for (int round = 0; round < kRounds; ++round) {
        torch::Tensor t = torch::empty({round % 17 + 1}, torch::kFloat32);
      }
      kept[index] = torch::empty({index + 1}, torch::kFloat64);
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(tracker.allocation_count() - count_before, kThreads * (kRounds + 1));
  EXPECT_EQ(tracker.live_bytes() - before, 8 * (1 + 2 + 3 + 4));
  const CategoryBytes live = tracker.live_by_category();
  EXPECT_EQ(category_bytes(live, MemoryCategory::Activations) -
                category_bytes(categories_before, MemoryCategory::Activations),
            8 * (1 + 3));
  EXPECT_EQ(category_bytes(live, MemoryCategory::Gradients) -
                category_bytes(categories_before, MemoryCategory::Gradients),
            8 * (2 + 4));
  kept.clear();
  EXPECT_EQ(tracker.live_bytes(), before);
}

TEST(MemoryTracker, IntraOpParallelWorkReturnsToBaseline) {
  auto& tracker = MemoryTracker::instance();
  const int64_t before = tracker.live_bytes();
  {
    MemoryScope scope(MemoryCategory::Temporaries);
    torch::Tensor a = torch::randn({256, 512});
    torch::Tensor b = torch::randn({512, 128});
    torch::Tensor c = torch::matmul(a, b).relu().sum(/*dim=*/0);
    EXPECT_EQ(tracker.live_bytes() - before, 256 * 512 * 4 + 512 * 128 * 4 + 128 * 4);
  }
  EXPECT_EQ(tracker.live_bytes(), before);
}

TEST(MemoryTracker, RawAllocateInterfaceIsCounted) {
  auto& tracker = MemoryTracker::instance();
  const int64_t before = tracker.live_bytes();
  c10::Allocator* allocator = c10::GetCPUAllocator();
  void* data = allocator->raw_allocate(100);
  ASSERT_NE(data, nullptr);
  EXPECT_EQ(tracker.live_bytes() - before, 100);
  allocator->raw_deallocate(data);
  EXPECT_EQ(tracker.live_bytes(), before);
}

TEST(MemoryTracker, AutogradReleasesEverythingButGradients) {
  auto& tracker = MemoryTracker::instance();
  torch::manual_seed(0);
  torch::nn::Linear linear(16, 8);
  const int64_t before = tracker.live_bytes();
  {
    torch::Tensor x = torch::randn({4, 16});
    torch::Tensor loss = linear->forward(x).relu().sum();
    loss.backward();
  }
  // weight 8x16 and bias 8 gradients, float32.
  EXPECT_EQ(tracker.live_bytes() - before, (8 * 16 + 8) * 4);
  for (auto& parameter : linear->parameters()) parameter.mutable_grad().reset();
  EXPECT_EQ(tracker.live_bytes(), before);
}

TEST(MemoryTracker, ListenerRecordsEventsWithPhaseAndCategory) {
  auto& tracker = MemoryTracker::instance();
  auto recorder = std::make_shared<MemoryEventRecorder>();
  tracker.add_listener(recorder);
  uintptr_t address = 0;
  {
    MemoryPhase phase("forward of stage 3");
    EXPECT_EQ(current_memory_phase(), "forward of stage 3");
    MemoryScope scope(MemoryCategory::Activations);
    torch::Tensor t = torch::empty({1024}, torch::kFloat32);
    address = reinterpret_cast<uintptr_t>(t.data_ptr());
    {
      MemoryPhase inner("backward of stage 3");
      t.reset();
    }
  }
  EXPECT_EQ(current_memory_phase(), "");
  tracker.remove_listener(recorder);
  { torch::Tensor after = torch::empty({8}); }

  const std::vector<MemoryEvent> events = recorder->events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kind, MemoryEvent::Kind::Allocate);
  EXPECT_EQ(events[0].bytes, 4096);
  EXPECT_EQ(events[0].category, MemoryCategory::Activations);
  EXPECT_EQ(events[0].phase, "forward of stage 3");
  EXPECT_EQ(events[0].address, address);
  EXPECT_EQ(events[1].kind, MemoryEvent::Kind::Free);
  EXPECT_EQ(events[1].bytes, 4096);
  EXPECT_EQ(events[1].category, MemoryCategory::Activations);
  EXPECT_EQ(events[1].phase, "backward of stage 3");
  EXPECT_EQ(events[1].address, address);
  EXPECT_LT(events[0].sequence, events[1].sequence);
  EXPECT_EQ(events[0].live_bytes - events[1].live_bytes, 4096);
  recorder->clear();
  EXPECT_TRUE(recorder->events().empty());
  EXPECT_THROW(tracker.add_listener(nullptr), InvalidArgument);
}

TEST(MemoryTracker, CudaStatsThrowWithoutCuda) {
  if (MemoryTracker::cuda_available()) GTEST_SKIP() << "a CUDA device is present";
  EXPECT_THROW(MemoryTracker::instance().cuda_stats(0), RuntimeError);
  EXPECT_THROW(MemoryTracker::instance().reset_cuda_peak(0), RuntimeError);
}

TEST(MemoryTracker, CachingAllocatorStats_CUDA) {
  if (!MemoryTracker::cuda_available()) GTEST_SKIP() << "no CUDA device";
  auto& tracker = MemoryTracker::instance();
  tracker.reset_cuda_peak(0);
  const CudaMemoryStats before = tracker.cuda_stats(0);
  {
    torch::Tensor t =
        torch::empty({1 << 20}, torch::TensorOptions().dtype(torch::kFloat32).device(torch::kCUDA));
    const CudaMemoryStats during = tracker.cuda_stats(0);
    EXPECT_EQ(during.allocated_bytes - before.allocated_bytes, 4 << 20);
    EXPECT_GE(during.reserved_bytes, during.allocated_bytes);
  }
  const CudaMemoryStats after = tracker.cuda_stats(0);
  EXPECT_EQ(after.allocated_bytes, before.allocated_bytes);
  EXPECT_GE(after.peak_allocated_bytes - before.allocated_bytes, 4 << 20);
}

// Runs in a fresh child process (threadsafe death-test style re-executes this binary), so
// the tracker is not installed yet when the first tensor is made.
TEST(MemoryTrackerDeathTest, TensorsFromBeforeInstallationAreFreedByTheirOwnDeleter) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        torch::Tensor early = torch::ones({4096}, torch::kFloat32);
        auto& tracker = MemoryTracker::instance();
        const int64_t installed = tracker.live_bytes();
        torch::Tensor late = early * 2;  // counted: made after installation
        const bool late_counted = tracker.live_bytes() - installed == 4096 * 4;
        early.reset();  // freed through the original allocator, never charged
        const bool early_uncharged = tracker.live_bytes() - installed == 4096 * 4;
        const bool values_ok = late.sum().item<float>() == 8192.0f;
        late.reset();
        const bool back = tracker.live_bytes() == installed;
        std::exit(late_counted && early_uncharged && values_ok && back ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace memento
