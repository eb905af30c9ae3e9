#include "memento/distributed/process_group.h"

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <thread>

// c10d declares its Gloo group only for builds that say they have it; LibTorch ships it
// in libtorch_cpu on every platform memento builds for (Debian's 1.13 and PyTorch 2.x).
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "memento/core/error.h"
#include "torch/stage_errors.h"

namespace memento {

namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kHeartbeatPeriod = std::chrono::milliseconds(250);
constexpr auto kLostRankWindow = std::chrono::milliseconds(1500);

std::chrono::milliseconds milliseconds(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000.0));
}

std::string what_of(const std::exception& error) {
  if (const auto* c10_error = dynamic_cast<const c10::Error*>(&error))
    return detail::one_line(c10_error->what_without_backtrace());
  return detail::one_line(error.what());
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

int read_environment_int(const char* name, int fallback) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return fallback;
  char* end = nullptr;
  const long parsed = std::strtol(value, &end, 10);
  if (*end != '\0' || parsed < INT32_MIN || parsed > INT32_MAX) {
    throw InvalidArgument(std::string("environment variable ") + name + " must be an integer, got " +
                          quoted(value));
  }
  return static_cast<int>(parsed);
}

bool is_loopback(const std::string& address) {
  return address == "localhost" || address.rfind("127.", 0) == 0 || address == "::1";
}

std::string address_of(const DistributedOptions& options) {
  return options.master_addr + ":" + std::to_string(options.master_port);
}

std::vector<uint8_t> bytes_of(const std::string& text) {
  return std::vector<uint8_t>(text.begin(), text.end());
}

std::string text_of(const std::vector<uint8_t>& bytes) {
  return std::string(bytes.begin(), bytes.end());
}

}  // namespace

void DistributedOptions::validate() const {
  if (world_size < 1)
    throw InvalidArgument("world_size must be at least 1, got " + std::to_string(world_size));
  if (rank < 0 || rank >= world_size) {
    throw InvalidArgument("rank must be in [0, " + std::to_string(world_size) + ") for world_size " +
                          std::to_string(world_size) + ", got " + std::to_string(rank));
  }
  if (master_port < 1 || master_port > 65535)
    throw InvalidArgument("master_port must be in [1, 65535], got " + std::to_string(master_port));
  if (master_addr.empty()) throw InvalidArgument("master_addr is empty: name the host of rank 0");
  if (!(timeout_s > 0)) throw InvalidArgument("timeout_s must be positive, got " + std::to_string(timeout_s));
}

DistributedOptions DistributedOptions::from_environment(DistributedOptions defaults) {
  defaults.rank = read_environment_int("RANK", defaults.rank);
  defaults.world_size = read_environment_int("WORLD_SIZE", defaults.world_size);
  defaults.master_port = read_environment_int("MASTER_PORT", defaults.master_port);
  if (const char* address = std::getenv("MASTER_ADDR"); address != nullptr && *address != '\0')
    defaults.master_addr = address;
  return defaults;
}

struct ProcessGroup::Impl {
  c10::intrusive_ptr<c10d::TCPStore> store;
  std::mutex store_mutex;  // the store client is one socket: one request at a time
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
  // Every rank counts up its heartbeat key from its own thread and store connection; a
  // rank whose count stopped is the one that was lost when a collective fails.
  c10::intrusive_ptr<c10d::TCPStore> heartbeat_store;
  std::thread heartbeat;
  std::atomic<bool> stopping{false};

  ~Impl() {
    stopping = true;
    if (heartbeat.joinable()) heartbeat.join();
  }
};

struct PendingReduction::Impl {
  c10::intrusive_ptr<c10d::Work> work;
  const ProcessGroup* group = nullptr;
  double* collective_s = nullptr;
};

PendingReduction::PendingReduction() = default;
PendingReduction::~PendingReduction() = default;
PendingReduction::PendingReduction(PendingReduction&&) noexcept = default;
PendingReduction& PendingReduction::operator=(PendingReduction&&) noexcept = default;

bool PendingReduction::valid() const {
  return impl_ && impl_->work;
}

void PendingReduction::wait() {
  if (!valid()) throw InvalidArgument("PendingReduction::wait on a reduction that was never launched");
  const auto start = Clock::now();
  try {
    impl_->work->wait();
  } catch (const std::exception& error) {
    impl_->group->fail("all-reduce", error);
  }
  *impl_->collective_s += std::chrono::duration<double>(Clock::now() - start).count();
  impl_->work.reset();
}

ProcessGroup::ProcessGroup(const DistributedOptions& options)
    : options_(options), impl_(std::make_unique<Impl>()) {
  options_.validate();
  const auto timeout = milliseconds(options_.timeout_s);
  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<uint16_t>(options_.master_port);
  store_options.isServer = options_.rank == 0;
  store_options.numWorkers = options_.world_size;
  store_options.waitWorkers = true;
  store_options.timeout = timeout;
  try {
    impl_->store = c10::make_intrusive<c10d::TCPStore>(options_.master_addr, store_options);
  } catch (const std::exception& error) {
    const std::string reason = what_of(error);
    if (options_.rank == 0 && (contains(reason, "in use") || contains(reason, "EADDRINUSE"))) {
      throw InvalidArgument("port " + std::to_string(options_.master_port) + " on " + options_.master_addr +
                            " is in use: choose another master_port (" + reason + ")");
    }
    if (options_.rank == 0) {
      throw InvalidArgument("rank 0 could not open the rendezvous at " + address_of(options_) + " for all " +
                            std::to_string(options_.world_size) + " ranks within " +
                            std::to_string(options_.timeout_s) + " s: " + reason +
                            " (did every rank start, with the same world_size and master_port?)");
    }
    throw InvalidArgument("rank " + std::to_string(options_.rank) + " cannot reach the master at " +
                          address_of(options_) + " within " + std::to_string(options_.timeout_s) +
                          " s: " + reason + " (check master_addr and master_port, and that rank 0 runs)");
  }
  try {
    auto gloo_options = c10d::ProcessGroupGloo::Options::create(timeout);
    if (const char* interface = std::getenv("GLOO_SOCKET_IFNAME");
        interface != nullptr && *interface != '\0') {
      gloo_options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(interface));
    } else if (is_loopback(options_.master_addr)) {
      gloo_options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    } else {
      gloo_options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    // One thread per rank: the collectives overlap with backward on the training thread.
    gloo_options->threads = 1;
    impl_->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, options_.rank,
                                                              options_.world_size, gloo_options);
    c10d::TCPStoreOptions client_options = store_options;
    client_options.isServer = false;
    client_options.numWorkers = c10::nullopt;
    client_options.waitWorkers = false;
    impl_->heartbeat_store = c10::make_intrusive<c10d::TCPStore>(options_.master_addr, client_options);
  } catch (const std::exception& error) {
    throw RuntimeError("rank " + std::to_string(options_.rank) + " could not form the process group of " +
                       std::to_string(options_.world_size) + " ranks: " + what_of(error));
  }
  const std::string key = "memento/heartbeat/" + std::to_string(options_.rank);
  impl_->heartbeat = std::thread([impl = impl_.get(), key] {
    while (!impl->stopping) {
      try {
        impl->heartbeat_store->add(key, 1);
      } catch (const std::exception&) {
        return;  // the store is gone (rank 0 ended): the next collective reports it
      }
      std::this_thread::sleep_for(kHeartbeatPeriod);
    }
  });
}

ProcessGroup::~ProcessGroup() = default;

void ProcessGroup::fail(const std::string& operation, const std::exception& error) const {
  const std::string reason = what_of(error);
  std::vector<int64_t> first(static_cast<size_t>(options_.world_size));
  std::vector<int> lost;
  try {
    std::lock_guard<std::mutex> lock(impl_->store_mutex);
    for (int r = 0; r < options_.world_size; ++r)
      first[static_cast<size_t>(r)] = impl_->store->add("memento/heartbeat/" + std::to_string(r), 0);
    std::this_thread::sleep_for(kLostRankWindow);
    for (int r = 0; r < options_.world_size; ++r) {
      if (impl_->store->add("memento/heartbeat/" + std::to_string(r), 0) == first[static_cast<size_t>(r)])
        lost.push_back(r);
    }
  } catch (const std::exception&) {
    lost = {0};  // the store lives in rank 0's process
  }
  const std::string who = "rank " + std::to_string(options_.rank) + ": " + operation + " failed";
  if (lost.empty()) {
    throw RuntimeError(who + " while every rank is alive: " + reason +
                       " (a rank is stuck or much slower; timeout " + std::to_string(options_.timeout_s) +
                       " s)");
  }
  std::string names;
  for (int r : lost) names += (names.empty() ? "" : ", ") + std::to_string(r);
  throw RuntimeError(who + ": lost rank " + names + (lost.size() > 1 ? " (they stopped)" : " (it stopped)") +
                     (lost.front() == 0 ? ", the master holding the rendezvous store" : "") + "; " + reason);
}

PendingReduction ProcessGroup::all_reduce_sum_async(torch::Tensor& tensor) {
  if (!tensor.is_contiguous())
    throw InvalidArgument("all_reduce_sum needs a contiguous tensor; call .contiguous() first");
  PendingReduction pending;
  pending.impl_ = std::make_unique<PendingReduction::Impl>();
  pending.impl_->group = this;
  pending.impl_->collective_s = &collective_s_;
  std::vector<at::Tensor> tensors{tensor};
  try {
    pending.impl_->work = impl_->gloo->allreduce(tensors);
  } catch (const std::exception& error) {
    fail("all-reduce", error);
  }
  return pending;
}

void ProcessGroup::all_reduce_sum(torch::Tensor& tensor) {
  all_reduce_sum_async(tensor).wait();
}

std::vector<double> ProcessGroup::all_reduce_mean(const std::vector<double>& values) {
  if (values.empty()) return {};
  torch::Tensor sums = torch::tensor(values, torch::kFloat64);
  all_reduce_sum(sums);
  sums.div_(static_cast<double>(options_.world_size));
  const double* data = sums.data_ptr<double>();
  return std::vector<double>(data, data + values.size());
}

std::string ProcessGroup::broadcast(const std::string& text) {
  const std::string key = "memento/broadcast/" + std::to_string(sequence_++);
  const auto start = Clock::now();
  try {
    std::lock_guard<std::mutex> lock(impl_->store_mutex);
    if (options_.rank == 0) {
      impl_->store->set(key, bytes_of(text));
      collective_s_ += std::chrono::duration<double>(Clock::now() - start).count();
      return text;
    }
    const std::string value = text_of(impl_->store->get(key));
    collective_s_ += std::chrono::duration<double>(Clock::now() - start).count();
    return value;
  } catch (const std::exception& error) {
    fail("broadcast", error);
  }
}

void ProcessGroup::require_same(const std::string& what, const std::string& fingerprint) {
  const std::string prefix = "memento/same/" + std::to_string(sequence_++) + "/";
  std::vector<std::string> values(static_cast<size_t>(options_.world_size));
  try {
    std::lock_guard<std::mutex> lock(impl_->store_mutex);
    impl_->store->set(prefix + std::to_string(options_.rank), bytes_of(fingerprint));
    for (int r = 0; r < options_.world_size; ++r)
      values[static_cast<size_t>(r)] = text_of(impl_->store->get(prefix + std::to_string(r)));
  } catch (const std::exception& error) {
    fail("checking the " + what, error);
  }
  for (int r = 1; r < options_.world_size; ++r) {
    if (values[static_cast<size_t>(r)] == values[0]) continue;
    std::string message = "rank " + std::to_string(r) + "'s " + what + " differs from rank 0's";
    constexpr size_t kShown = 120;
    if (values[0].size() <= kShown && values[static_cast<size_t>(r)].size() <= kShown)
      message +=
          ": " + quoted(values[static_cast<size_t>(r)], kShown) + " against " + quoted(values[0], kShown);
    throw InvalidArgument(message + "; start every rank with the same options");
  }
}

void ProcessGroup::barrier() {
  const auto start = Clock::now();
  try {
    impl_->gloo->barrier()->wait();
  } catch (const std::exception& error) {
    fail("barrier", error);
  }
  collective_s_ += std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace memento
