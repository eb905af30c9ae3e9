#pragma once
// In-place writes seen while a stage (or a checkpointed function) runs, on the current
// thread: every operator argument its schema marks as written (`Tensor(a!)`: `mul_`,
// `relu_`, `dropout_`, `out=` variants, `copy_`, ...) and the running statistics a batch or
// instance norm updates in training (its kernel writes them although the 1.13 schema does
// not say so). Seen at the operator's start, through an `at::RecordFunction` callback,
// before the kernel writes.
//
// Two uses:
// - copy-on-write of tensors that must outlive the run unchanged (a stored checkpoint a
//   stage modifies in place): the first write into one of their storages copies that
//   storage aside, and `pristine()` gives the tensors back on the copy;
// - finding module state a function updates in place (BatchNorm running statistics, any
//   buffer): `written_tensors()` are the written tensors still alive after the run.
//
// Writes through raw pointers (`data_ptr()`) are not operators and cannot be seen; they do
// not move the version counter either. A written tensor whose version moved although no
// operator was seen writing it is reported by `unseen_writes()`.

#include <cstdint>
#include <memory>
#include <vector>

#include <torch/torch.h>

namespace memento::detail {

// The identity of a tensor's storage (shared by its views and detached aliases); null for
// undefined tensors and tensors without storage.
inline const void* storage_key(const torch::Tensor& tensor) {
  return tensor.defined() && tensor.has_storage() ? tensor.storage().unsafeGetStorageImpl() : nullptr;
}

class WriteWatch {
 public:
  // Guards the storages of `guarded` (undefined tensors and tensors without storage are
  // ignored); with `record_writes`, also remembers every tensor written in place.
  explicit WriteWatch(const std::vector<torch::Tensor>& guarded, bool record_writes = false);
  ~WriteWatch();
  WriteWatch(const WriteWatch&) = delete;
  WriteWatch& operator=(const WriteWatch&) = delete;

  // True when a write into a guarded storage was seen (and the storage copied aside).
  bool copied() const { return !copies_.empty(); }

  // `tensors` where every tensor on a copied storage is replaced by a tensor of the same
  // sizes, strides, offset and dtype on the copy (aliases stay aliases); others as they are.
  // The replacements have no autograd history.
  std::vector<torch::Tensor> pristine(const std::vector<torch::Tensor>& tensors) const;

  // Writes the copied bytes back into the original storages (through their own tensors,
  // so no version counter moves): the run leaves its guarded inputs as it found them.
  void restore() const;

  // Indices into the constructor's `guarded` of tensors whose version counter moved
  // while no write into their storage was seen.
  std::vector<size_t> unseen_writes() const;

  // The tensors written in place (record_writes) that are still alive, each once.
  std::vector<torch::Tensor> written_tensors() const;

  // Called by the operator callback for each tensor an operator is about to write.
  void on_write(const torch::Tensor& tensor);

 private:
  struct Guarded {
    torch::Tensor tensor;
    int64_t version = -1;  // -1: not tracked (inference tensor)
  };
  struct Copy {
    const void* storage;     // the original storage (key)
    torch::Tensor original;  // uint8 tensor on the original storage
    torch::Tensor bytes;     // uint8 tensor on the copy
  };

  std::vector<Guarded> guarded_;
  std::vector<Copy> copies_;
  bool record_writes_;
  std::vector<c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl>> written_;
  std::vector<const void*> written_keys_;
};

// Writes back, when destroyed, the values `tensors` hold when it is constructed: a
// recomputation must not update module state (BatchNorm running statistics, buffers) a
// second time. Written through variable_data() (same storage, its own version counter): a
// live graph that saved a buffer (BatchNorm's backward does) must not see it as modified
// in place, and after the write-back it indeed holds the values that graph saw.
class StateRestoreGuard {
 public:
  explicit StateRestoreGuard(const std::vector<torch::Tensor>& tensors);
  ~StateRestoreGuard();
  StateRestoreGuard(const StateRestoreGuard&) = delete;
  StateRestoreGuard& operator=(const StateRestoreGuard&) = delete;

 private:
  std::vector<std::pair<torch::Tensor, torch::Tensor>> saved_;
};

}  // namespace memento::detail
