#pragma once
/// \file
/// Saved-tensor hooks for LibTorch: what `torch.autograd.graph.saved_tensors_hooks` is in
/// Python, which LibTorch's C++ API lacks. While a `SavedTensorHooks` guard is alive on a
/// thread, every tensor autograd saves for backward on that thread goes through its pack
/// callable, and the backward gets it back through unpack. Ready policies: `save_as(codec)`
/// (compress saved activations: bf16, fp16, int8, int4, bit-packed masks) and
/// `save_on_cpu()` (keep saved CUDA tensors in host memory).
///
/// How: memento installs a subclass of `torch::autograd::Engine` as the default engine
/// (`torch::autograd::set_default_engine_stub`), once, at the first guard or at
/// install_saved_tensor_hooks(). It differs from LibTorch's engine only in handing its
/// `SavedVariableHooks` to every `SavedVariable` made while a guard is active. Call
/// install_saved_tensor_hooks() at start-up when other threads may run autograd while the
/// first guard is made. An in-place write into a saved tensor after it was packed is still
/// refused at backward, with autograd's own message.
///
/// Example:
/// \code
///   torch::nn::Linear linear(512, 512);
///   torch::Tensor x = torch::randn({64, 512});
///   torch::Tensor y;
///   {
///     memento::SavedTensorHooks guard(memento::save_as(memento::Codec::BF16));
///     y = torch::gelu(linear(x));   // gelu's input is kept in bf16 until backward
///   }
///   y.sum().backward();             // unpacked here, outside the guard
///
///   memento::SavedTensorHooks logging(
///       [](const torch::Tensor& t) -> std::any { return t.detach(); },
///       [](const std::any& kept) { return std::any_cast<torch::Tensor>(kept); });
/// \endcode

#include <any>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include <torch/torch.h>

#include "memento/core/codec.h"

namespace memento {

/// Turns a tensor autograd saves into what is kept until backward. Runs without grad mode.
/// Keep `tensor.detach()`, never `tensor` itself: a saved output would keep its own graph
/// node alive.
using SavedTensorPack = std::function<std::any(const torch::Tensor& tensor)>;
/// Gives the tensor back from what pack kept, at backward (possibly on another thread).
using SavedTensorUnpack = std::function<torch::Tensor(const std::any& packed)>;

/// A pack and an unpack callable that belong together.
struct SavedTensorHookPair {
  SavedTensorPack pack;
  SavedTensorUnpack unpack;
};

/// RAII guard: while alive, tensors saved for backward on this thread go through its hooks.
/// Guards nest; the innermost one applies. Destroy them in reverse order of creation.
class SavedTensorHooks {
 public:
  SavedTensorHooks(SavedTensorPack pack, SavedTensorUnpack unpack);
  explicit SavedTensorHooks(SavedTensorHookPair hooks);
  ~SavedTensorHooks();
  SavedTensorHooks(const SavedTensorHooks&) = delete;
  SavedTensorHooks& operator=(const SavedTensorHooks&) = delete;

  /// Whether a guard is active on this thread.
  static bool active();

 private:
  const void* entry_ = nullptr;
};

/// Installs memento's engine now (the first guard does it otherwise). Idempotent.
void install_saved_tensor_hooks();

/// What save_as() did, for the tensors it saw while its hooks were active.
struct SaveAsStats {
  int64_t tensors_packed = 0;  ///< distinct tensors packed (a tensor saved twice is packed once)
  int64_t tensors_kept = 0;    ///< saved tensors kept as they are (parameters, integers, too small)
  int64_t original_bytes = 0;  ///< bytes of the packed tensors before packing
  int64_t packed_bytes = 0;    ///< bytes the packed forms allocate
  double pack_s = 0;           ///< seconds spent packing
  double unpack_s = 0;         ///< seconds spent unpacking
};

/// Options of save_as().
struct SaveAsOptions {
  /// Tensors whose storage is never packed: what stays alive anyway (parameters, buffers,
  /// the batch). Leaves that require grad, and views of them, are never packed either.
  std::vector<torch::Tensor> keep = {};
  /// int8/int4: unbiased stochastic rounding (from a private generator seeded with `seed`).
  bool stochastic_rounding = false;
  uint64_t seed = 0;
  /// Filled in as tensors are packed and unpacked (may be null).
  std::shared_ptr<SaveAsStats> stats = nullptr;
};

/// Hooks that pack every saved floating-point tensor with `codec` and bit-pack boolean
/// masks (exact); integer tensors, `keep`'s storages, leaves requiring grad and tensors the
/// codec would not shrink are kept as they are. A tensor saved by several ops is packed once.
/// `Codec::None` keeps everything (gradients stay bitwise equal).
SavedTensorHookPair save_as(Codec codec, SaveAsOptions options = {});

/// Hooks that keep saved CUDA tensors in (pinned) host memory and copy them back at
/// backward; CPU tensors are kept as they are.
SavedTensorHookPair save_on_cpu();

}  // namespace memento
