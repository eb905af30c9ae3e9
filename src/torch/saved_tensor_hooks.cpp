#include "memento/torch/saved_tensor_hooks.h"

#include <chrono>
#include <map>
#include <mutex>
#include <tuple>
#include <utility>

#include <torch/csrc/autograd/engine.h>
#include <torch/csrc/autograd/saved_variable_hooks.h>
#include <torch/csrc/autograd/variable.h>

#include "memento/core/error.h"
#include "memento/torch/codecs.h"

namespace memento {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

using HookStack = std::vector<std::shared_ptr<const SavedTensorHookPair>>;

HookStack& hook_stack() {
  thread_local HookStack stack;
  return stack;
}

// One saved tensor's hooks. Autograd skips its version check for hooked tensors, so the
// check is made here, with autograd's wording.
class CallableHooks final : public torch::autograd::SavedVariableHooks {
 public:
  explicit CallableHooks(std::shared_ptr<const SavedTensorHookPair> hooks) : hooks_(std::move(hooks)) {}

  void call_pack_hook(const at::Tensor& tensor) override {
    version_ = torch::autograd::impl::version_counter(tensor);
    saved_version_ = version_.current_version();
    torch::NoGradGuard no_grad;
    packed_ = hooks_->pack(tensor);
  }

  at::Tensor call_unpack_hook() override {
    const uint32_t now = version_.current_version();
    TORCH_CHECK(now == saved_version_,
                "one of the variables needed for gradient computation has been modified by an inplace "
                "operation: it is at version ",
                now, "; expected version ", saved_version_,
                " instead (it was saved through memento::SavedTensorHooks)");
    torch::NoGradGuard no_grad;
    return hooks_->unpack(packed_);
  }

 private:
  std::shared_ptr<const SavedTensorHookPair> hooks_;
  std::any packed_;
  c10::VariableVersion version_;
  uint32_t saved_version_ = 0;
};

// LibTorch's engine, except that SavedVariables made under a guard get its hooks.
struct HookedEngine final : torch::autograd::Engine {
  std::unique_ptr<torch::autograd::SavedVariableHooks> get_default_saved_variable_hooks() override {
    const HookStack& stack = hook_stack();
    if (stack.empty()) return nullptr;
    return std::make_unique<CallableHooks>(stack.back());
  }
};

torch::autograd::Engine& hooked_engine() {
  // Never destroyed: autograd may run from static destructors of other objects, and the
  // engine's worker threads must not outlive it.
  static HookedEngine* engine = new HookedEngine();
  return *engine;
}

// save_as()'s shared state: packed tensors by what they were packed from, so that a tensor
// saved by two ops (a softmax output read by its backward and by the next matmul) is packed
// once. Entries are weak: a packed tensor lives as long as some saved variable holds it.
class SaveAsState {
 public:
  SaveAsState(Codec codec, SaveAsOptions options) : codec_(codec), options_(std::move(options)) {
    for (const torch::Tensor& tensor : options_.keep) {
      if (tensor.defined() && tensor.has_storage()) keep_.push_back(tensor.storage().getWeakStorageImpl());
    }
    if (options_.stochastic_rounding) pack_options_.stochastic_rounding = true;
  }

  std::shared_ptr<const PackedTensor> pack(const torch::Tensor& tensor) {
    const auto start = Clock::now();
    std::lock_guard<std::mutex> lock(mutex_);
    if (!should_pack(tensor)) {
      record_kept();
      auto kept = std::make_shared<PackedTensor>();
      kept->data = tensor.detach();
      return kept;
    }
    const Key key = key_of(tensor);
    auto found = cache_.find(key);
    if (found != cache_.end()) {
      std::shared_ptr<const PackedTensor> cached = found->second.packed.lock();
      if (cached && found->second.version == tensor._version() && !found->second.storage.expired())
        return cached;
    }
    if (options_.stochastic_rounding && !pack_options_.generator)
      pack_options_.generator = generator_for(tensor);
    auto packed = std::make_shared<PackedTensor>(pack_tensor(tensor, codec_, pack_options_));
    cache_.insert_or_assign(key, Entry{tensor.storage().getWeakStorageImpl(), tensor._version(), packed});
    purge_if_large();
    if (options_.stats) {
      options_.stats->tensors_packed += 1;
      options_.stats->original_bytes += tensor.numel() * static_cast<int64_t>(tensor.element_size());
      options_.stats->packed_bytes += packed->bytes();
      options_.stats->pack_s += seconds_since(start);
    }
    return packed;
  }

  torch::Tensor unpack(const PackedTensor& packed) {
    const auto start = Clock::now();
    torch::Tensor tensor = unpack_tensor(packed);
    if (options_.stats && packed.form != PackedTensor::Form::Kept) {
      std::lock_guard<std::mutex> lock(mutex_);
      options_.stats->unpack_s += seconds_since(start);
    }
    return tensor;
  }

 private:
  using Key = std::tuple<const void*, int64_t, std::vector<int64_t>, std::vector<int64_t>, int>;
  struct Entry {
    c10::weak_intrusive_ptr<c10::StorageImpl> storage;
    int64_t version = 0;
    std::weak_ptr<const PackedTensor> packed;
  };

  static Key key_of(const torch::Tensor& tensor) {
    return {tensor.storage().unsafeGetStorageImpl(), tensor.storage_offset(), tensor.sizes().vec(),
            tensor.strides().vec(), static_cast<int>(tensor.scalar_type())};
  }

  // Parameters arrive as views with history (weight.t()): their storage gives them away.
  bool should_pack(const torch::Tensor& tensor) const {
    if (!codec_shrinks(tensor, codec_) || !tensor.has_storage()) return false;
    if (tensor.is_leaf() && tensor.requires_grad()) return false;
    if (tensor.is_view()) {
      const at::TensorBase& base = tensor._base();
      if (base.defined() && base.is_leaf() && base.requires_grad()) return false;
    }
    const c10::StorageImpl* storage = tensor.storage().unsafeGetStorageImpl();
    for (const auto& kept : keep_) {
      if (kept._unsafe_get_target() == storage && !kept.expired()) return false;
    }
    return true;
  }

  void record_kept() {
    if (options_.stats) options_.stats->tensors_kept += 1;
  }

  at::Generator generator_for(const torch::Tensor& tensor) const {
    if (tensor.is_cpu()) return at::make_generator<at::CPUGeneratorImpl>(options_.seed);
    at::Generator generator = at::globalContext().defaultGenerator(tensor.device()).clone();
    generator.set_current_seed(options_.seed);
    return generator;
  }

  void purge_if_large() {
    if (cache_.size() < 2 * purged_size_ + 64) return;
    for (auto it = cache_.begin(); it != cache_.end();) {
      it = it->second.packed.expired() ? cache_.erase(it) : std::next(it);
    }
    purged_size_ = cache_.size();
  }

  Codec codec_;
  SaveAsOptions options_;
  PackOptions pack_options_;
  std::vector<c10::weak_intrusive_ptr<c10::StorageImpl>> keep_;
  std::map<Key, Entry> cache_;
  size_t purged_size_ = 0;
  std::mutex mutex_;
};

}  // namespace

void install_saved_tensor_hooks() {
  static std::once_flag installed;
  std::call_once(installed, [] { torch::autograd::set_default_engine_stub(&hooked_engine); });
}

SavedTensorHooks::SavedTensorHooks(SavedTensorPack pack, SavedTensorUnpack unpack)
    : SavedTensorHooks(SavedTensorHookPair{std::move(pack), std::move(unpack)}) {}

SavedTensorHooks::SavedTensorHooks(SavedTensorHookPair hooks) {
  if (!hooks.pack || !hooks.unpack) {
    throw InvalidArgument("SavedTensorHooks needs both a pack and an unpack callable");
  }
  install_saved_tensor_hooks();
  auto entry = std::make_shared<const SavedTensorHookPair>(std::move(hooks));
  entry_ = entry.get();
  hook_stack().push_back(std::move(entry));
}

SavedTensorHooks::~SavedTensorHooks() {
  HookStack& stack = hook_stack();
  // Out-of-order destruction would leave another guard's hooks active: remove ours only.
  for (auto it = stack.rbegin(); it != stack.rend(); ++it) {
    if (it->get() == entry_) {
      stack.erase(std::next(it).base());
      break;
    }
  }
}

bool SavedTensorHooks::active() {
  return !hook_stack().empty();
}

SavedTensorHookPair save_as(Codec codec, SaveAsOptions options) {
  auto state = std::make_shared<SaveAsState>(codec, std::move(options));
  SavedTensorHookPair hooks;
  hooks.pack = [state](const torch::Tensor& tensor) -> std::any { return state->pack(tensor); };
  hooks.unpack = [state](const std::any& packed) {
    return state->unpack(*std::any_cast<const std::shared_ptr<const PackedTensor>&>(packed));
  };
  return hooks;
}

SavedTensorHookPair save_on_cpu() {
  struct OnHost {
    torch::Tensor tensor;
    c10::Device device = c10::Device(c10::kCPU);
  };
  SavedTensorHookPair hooks;
  hooks.pack = [](const torch::Tensor& tensor) -> std::any {
    if (!tensor.defined() || tensor.is_cpu()) return OnHost{tensor.defined() ? tensor.detach() : tensor};
    torch::Tensor host = torch::empty(tensor.sizes(), tensor.options().device(c10::kCPU).pinned_memory(true));
    host.copy_(tensor.detach());
    return OnHost{host, tensor.device()};
  };
  hooks.unpack = [](const std::any& packed) {
    const OnHost& kept = std::any_cast<const OnHost&>(packed);
    if (!kept.tensor.defined() || kept.device.is_cpu()) return kept.tensor;
    return kept.tensor.to(kept.device, /*non_blocking=*/true);
  };
  return hooks;
}

}  // namespace memento
