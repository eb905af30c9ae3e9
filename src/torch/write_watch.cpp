#include "write_watch.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <unordered_map>

#include <ATen/core/function_schema.h>
#include <ATen/record_function.h>

namespace memento::detail {

namespace {

// Which arguments of an operator it writes: from its schema, once per operator.
struct WrittenArguments {
  std::vector<size_t> written;               // arguments marked Tensor(a!) (also lists)
  std::vector<size_t> statistics;            // running_mean / running_var
  std::optional<size_t> statistics_enabled;  // the bool that makes the norm update them
};

WrittenArguments written_arguments(const c10::FunctionSchema& schema) {
  WrittenArguments result;
  const auto& arguments = schema.arguments();
  for (size_t k = 0; k < arguments.size(); ++k) {
    const c10::Argument& argument = arguments[k];
    if (argument.alias_info() != nullptr && argument.alias_info()->isWrite()) {
      result.written.push_back(k);
    } else if (argument.name() == "running_mean" || argument.name() == "running_var") {
      result.statistics.push_back(k);
    } else if (argument.name() == "training" || argument.name() == "use_input_stats") {
      result.statistics_enabled = k;
    }
  }
  if (!result.statistics_enabled) result.statistics.clear();
  return result;
}

struct ThreadState {
  std::vector<WriteWatch*> watches;
  at::CallbackHandle handle = 0;
  bool busy = false;  // inside the callback: the copies it makes are not watched
  // Keyed by the operator's name pointer, which lives in the registered schema as long as
  // the operator does; records without a schema are never cached.
  std::unordered_map<const char*, WrittenArguments> cache;
};

ThreadState& thread_state() {
  thread_local ThreadState state;
  return state;
}

void collect(const c10::IValue& value, std::vector<torch::Tensor>& tensors) {
  if (value.isTensor()) {
    tensors.push_back(value.toTensor());
  } else if (value.isTensorList()) {
    for (const torch::Tensor& tensor : value.toTensorVector()) tensors.push_back(tensor);
  } else if (value.isList()) {
    for (const c10::IValue& element : value.toListRef()) {
      if (element.isTensor()) tensors.push_back(element.toTensor());
    }
  }
}

const WrittenArguments* lookup(const at::RecordFunction& fn, ThreadState& state) {
  const char* name = fn.name();
  auto found = state.cache.find(name);
  if (found != state.cache.end()) return &found->second;
  const c10::optional<c10::FunctionSchema> schema = fn.operator_schema();
  if (!schema) return nullptr;
  return &state.cache.emplace(name, written_arguments(*schema)).first->second;
}

std::unique_ptr<at::ObserverContext> on_operator_start(const at::RecordFunction& fn) {
  ThreadState& state = thread_state();
  if (state.busy || state.watches.empty()) return nullptr;
  const WrittenArguments* arguments = lookup(fn, state);
  if (arguments == nullptr || (arguments->written.empty() && arguments->statistics.empty())) return nullptr;
  const c10::ArrayRef<const c10::IValue> inputs = fn.inputs();
  std::vector<torch::Tensor> written;
  for (size_t k : arguments->written) {
    if (k < inputs.size()) collect(inputs[k], written);
  }
  if (arguments->statistics_enabled && *arguments->statistics_enabled < inputs.size()) {
    const c10::IValue& enabled = inputs[*arguments->statistics_enabled];
    if (enabled.isBool() && enabled.toBool()) {
      for (size_t k : arguments->statistics) {
        if (k < inputs.size()) collect(inputs[k], written);
      }
    }
  }
  if (written.empty()) return nullptr;
  state.busy = true;
  struct Release {
    bool& busy;
    ~Release() { busy = false; }
  } release{state.busy};
  for (WriteWatch* watch : state.watches) {
    for (const torch::Tensor& tensor : written) watch->on_write(tensor);
  }
  return nullptr;
}

int64_t version_of(const torch::Tensor& tensor) {
  if (!tensor.defined() || tensor.is_inference()) return -1;
  return static_cast<int64_t>(tensor._version());
}

}  // namespace

WriteWatch::WriteWatch(const std::vector<torch::Tensor>& guarded, bool record_writes)
    : record_writes_(record_writes) {
  for (const torch::Tensor& tensor : guarded) {
    if (storage_key(tensor) == nullptr) continue;
    guarded_.push_back({tensor, version_of(tensor)});
  }
  ThreadState& state = thread_state();
  if (state.watches.empty()) {
    state.handle = at::addThreadLocalCallback(
        at::RecordFunctionCallback(&on_operator_start).needsInputs(true).scopes({at::RecordScope::FUNCTION}));
  }
  state.watches.push_back(this);
}

WriteWatch::~WriteWatch() {
  ThreadState& state = thread_state();
  state.watches.erase(std::remove(state.watches.begin(), state.watches.end(), this), state.watches.end());
  if (state.watches.empty() && state.handle != 0) {
    at::removeCallback(state.handle);
    state.handle = 0;
  }
}

void WriteWatch::on_write(const torch::Tensor& tensor) {
  const void* key = storage_key(tensor);
  if (key == nullptr) return;
  if (record_writes_ &&
      std::find(written_keys_.begin(), written_keys_.end(),
                static_cast<const void*>(tensor.unsafeGetTensorImpl())) == written_keys_.end()) {
    written_keys_.push_back(tensor.unsafeGetTensorImpl());
    written_.emplace_back(tensor.getIntrusivePtr());
  }
  const bool is_guarded = std::any_of(guarded_.begin(), guarded_.end(), [key](const Guarded& entry) {
    return storage_key(entry.tensor) == key;
  });
  if (!is_guarded) return;
  for (const Copy& copy : copies_) {
    if (copy.storage == key) return;  // copied at its first write
  }
  const c10::Storage& storage = tensor.storage();
  torch::NoGradGuard no_grad;
  const int64_t bytes = static_cast<int64_t>(storage.nbytes());
  torch::Tensor view =
      torch::empty({0}, torch::TensorOptions().dtype(torch::kUInt8).device(storage.device()));
  view.set_(storage, /*storage_offset=*/0, {bytes}, {1});
  torch::Tensor bytes_copy = view.clone();
  copies_.push_back({key, std::move(view), std::move(bytes_copy)});
}

std::vector<torch::Tensor> WriteWatch::pristine(const std::vector<torch::Tensor>& tensors) const {
  std::vector<torch::Tensor> result;
  result.reserve(tensors.size());
  torch::NoGradGuard no_grad;
  for (const torch::Tensor& tensor : tensors) {
    const void* key = storage_key(tensor);
    const Copy* copy = nullptr;
    for (const Copy& candidate : copies_) {
      if (key != nullptr && candidate.storage == key) copy = &candidate;
    }
    if (copy == nullptr) {
      result.push_back(tensor);
      continue;
    }
    torch::Tensor rebound = torch::empty({0}, tensor.options().requires_grad(false));
    rebound.set_(copy->bytes.storage(), tensor.storage_offset(), tensor.sizes(), tensor.strides());
    result.push_back(std::move(rebound));
  }
  // Aliases stay aliases: one replacement for every slot that held the same tensor.
  for (size_t k = 0; k < tensors.size(); ++k) {
    for (size_t j = 0; j < k; ++j) {
      if (tensors[j].defined() && tensors[j].unsafeGetTensorImpl() == tensors[k].unsafeGetTensorImpl()) {
        result[k] = result[j];
        break;
      }
    }
  }
  return result;
}

void WriteWatch::restore() const {
  torch::NoGradGuard no_grad;
  for (const Copy& copy : copies_) copy.original.copy_(copy.bytes);
}

std::vector<size_t> WriteWatch::unseen_writes() const {
  std::vector<size_t> indices;
  for (size_t k = 0; k < guarded_.size(); ++k) {
    const Guarded& entry = guarded_[k];
    if (entry.version < 0 || version_of(entry.tensor) == entry.version) continue;
    const void* key = storage_key(entry.tensor);
    const bool seen =
        std::any_of(copies_.begin(), copies_.end(), [key](const Copy& copy) { return copy.storage == key; });
    if (!seen) indices.push_back(k);
  }
  return indices;
}

std::vector<torch::Tensor> WriteWatch::written_tensors() const {
  std::vector<torch::Tensor> alive;
  for (const auto& weak : written_) {
    auto strong = weak.lock();
    if (strong) alive.emplace_back(std::move(strong));
  }
  return alive;
}

StateRestoreGuard::StateRestoreGuard(const std::vector<torch::Tensor>& tensors) {
  torch::NoGradGuard no_grad;
  for (const torch::Tensor& tensor : tensors) {
    if (tensor.defined()) saved_.emplace_back(tensor, tensor.clone());
  }
}

StateRestoreGuard::~StateRestoreGuard() {
  torch::NoGradGuard no_grad;
  for (auto& entry : saved_) entry.first.variable_data().copy_(entry.second);
}

}  // namespace memento::detail
