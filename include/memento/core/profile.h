#pragma once
/// \file
/// `ChainProfile`: the measured (or derived) costs of one training step of a chain of
/// stages. It is the only thing planners see of a model.
///
/// Activation numbering: stage `i` (0-based, `0 <= i < L`) reads activation `a_i` and
/// writes `a_{i+1}`. `a_0` is the model input (part of `fixed_bytes`), `a_L` the model
/// output that the loss reads. `stages[i].input_bytes` is the size of `a_i` and
/// `stages[i].output_bytes` the size of `a_{i+1}`; consecutive stages must agree.
///
/// Example:
/// \code
///   memento::ChainProfile profile = memento::read_profile("examples/profiles/gpt2-small.json");
///   double forward_s = profile.total_forward_s();
///   memento::write_profile(profile, "copy.json");
/// \endcode

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "memento/core/codec.h"

namespace memento {

/// Costs of one stage of the chain.
struct StageProfile {
  std::string name;                ///< e.g. "block3"
  std::string kind;                ///< embed, attention, attention_core, mlp, conv, norm, head, ...
  double forward_s = 0;            ///< seconds for one forward of the stage
  double backward_s = 0;           ///< seconds for its backward
  int64_t input_bytes = 0;         ///< size of the stage input a_i
  int64_t output_bytes = 0;        ///< size of the stage output a_{i+1}
  int64_t saved_bytes = 0;         ///< all autograd keeps when run with grad: the output's new bytes included
  int64_t forward_temp_bytes = 0;  ///< transient bytes on top during the forward with grad
  int64_t backward_temp_bytes = 0;  ///< transient bytes on top during the backward
  double flops = 0;                 ///< forward floating point operations (0 when unknown)
  /// Transient bytes on top of the output during a forward without grad (ForwardNoGrad,
  /// ForwardCheckpoint). Unset means "same as forward_temp_bytes". They differ when the
  /// with-grad forward saves what the no-grad one frees at once (a dropout mask).
  std::optional<int64_t> forward_no_grad_temp_bytes;

  /// Bytes of the stage's graph that its backward frees before it allocates the input
  /// gradient d_i (an output or a saved tensor the backward no longer needs), 0 when none.
  int64_t backward_released_bytes = 0;

  /// Bytes of the outputs that the stage's own backward does not keep: dropping the
  /// outputs while the graph stays alive frees them (a Linear's output; not a ReLU's, whose
  /// backward reads it). Used for the last stage only: once the loss has read the model
  /// output, the Executor keeps graph L-1 without it, as plain autograd frees the logits.
  /// 0 when unknown, which is what it was before the field existed.
  int64_t output_droppable_bytes = 0;

  /// Output storages that are inputs passed through unchanged (the residual stream a
  /// sub-block stage carries in its tuple, token ids): storage a_i and a_{i+1} share,
  /// which the stage does not allocate. Grouped by the activation that first held them
  /// (`from`, 0 <= from <= i; 0 is the model input, part of the fixed bytes), so that
  /// simulate() counts a storage once however many stored activations hold it.
  /// `saved_bytes` does not count them (a_i, pinned while the graph lives, holds them).
  /// Empty when unknown or none.
  struct Passthrough {
    int from = 0;
    int64_t bytes = 0;
  };
  std::vector<Passthrough> output_passthrough = {};

  /// The costs of ForwardLossy(i, codec) and of its Backward, per measured codec
  /// (`memento profile --codecs`). A lossy graph holds its packed tensors only; its output
  /// is stored exact beside it (schedule.h).
  struct LossyCost {
    Codec codec = Codec::None;
    int64_t saved_bytes = 0;          ///< what the graph holds once packed, its output's storage excluded
    int64_t forward_temp_bytes = 0;   ///< transient bytes on top of the output and saved_bytes in the forward
    int64_t backward_temp_bytes = 0;  ///< transient bytes on top of d_i in the backward (the unpacked copies)
    double pack_s = 0;                ///< seconds the forward spends packing
    double unpack_s = 0;              ///< seconds the backward spends unpacking
  };
  std::vector<LossyCost> lossy = {};

  /// The measured costs of `codec`, nullptr when the profile has none for it.
  const LossyCost* lossy_cost(Codec codec) const {
    for (const LossyCost& cost : lossy) {
      if (cost.codec == codec) return &cost;
    }
    return nullptr;
  }

  /// Sum of output_passthrough's bytes.
  int64_t output_passthrough_bytes() const {
    int64_t bytes = 0;
    for (const Passthrough& part : output_passthrough) bytes += part.bytes;
    return bytes;
  }
  /// What the stage allocates for its output: `output_bytes - output_passthrough_bytes()`.
  int64_t output_new_bytes() const { return output_bytes - output_passthrough_bytes(); }
  /// What autograd saved besides the output (never negative).
  int64_t saved_beyond_output_bytes() const {
    const int64_t beyond = saved_bytes - output_bytes;
    return beyond > 0 ? beyond : 0;
  }

  /// The no-grad forward's transient bytes, `forward_temp_bytes` when not measured.
  int64_t no_grad_temp_bytes() const { return forward_no_grad_temp_bytes.value_or(forward_temp_bytes); }
  /// What Backward(i) adds on top of the bytes alive before it, at its peak: the input
  /// gradient d_i (absent for stage 0), its temporaries, less what it releases first;
  /// never negative (the state before the op is part of its peak).
  int64_t backward_peak_extra_bytes(bool has_input_gradient) const {
    const int64_t extra =
        (has_input_gradient ? input_bytes : 0) + backward_temp_bytes - backward_released_bytes;
    return extra > 0 ? extra : 0;
  }
};

/// Breakdown of the bytes that stay allocated for the whole step. Optional detail;
/// `ChainProfile::fixed_bytes` is what planners use.
struct FixedBytes {
  int64_t parameters_bytes = 0;
  int64_t gradients_bytes = 0;
  int64_t optimizer_bytes = 0;
  int64_t inputs_bytes = 0;
  int64_t communication_bytes = 0;  ///< data-parallel gradient buckets (0 on one process)
  int64_t total() const {
    return parameters_bytes + gradients_bytes + optimizer_bytes + inputs_bytes + communication_bytes;
  }
};

/// The profile of one training step: per-stage costs and the step's fixed bytes.
struct ChainProfile {
  std::string model;  ///< free-form description (model name, batch, ...)
  std::vector<StageProfile> stages;
  int64_t fixed_bytes = 0;     ///< parameters, gradients, optimizer state, inputs
  FixedBytes fixed_breakdown;  ///< optional; all zeros when unknown
  /// Transient bytes of the Loss op on top of the bytes alive before it and d_L (the
  /// loss's own forward and backward, e.g. log-softmax and its gradient). 0 when unknown.
  int64_t loss_temp_bytes = 0;

  int length() const { return static_cast<int>(stages.size()); }
  /// Size of activation a_i, 0 <= i <= L (a_0 is the input, a_L the output).
  int64_t activation_bytes(int i) const;
  double total_forward_s() const;
  double total_backward_s() const;
  /// Whether every stage has measured costs for `codec`.
  bool has_codec(Codec codec) const;
  /// Bytes the last stage's graph holds once the Loss has run (its output dropped):
  /// `saved_bytes - output_droppable_bytes` of stage L-1.
  int64_t last_graph_after_loss_bytes() const;
};

/// Checks every invariant (non-negative numbers, finite times, saved >= the output's new bytes,
/// consecutive sizes agree, at least one stage). Throws ProfileError naming `source`
/// (a file name or "profile"), the stage and the field.
void validate_profile(const ChainProfile& profile, const std::string& source = "profile");

/// The profile JSON's format name and version: "memento.profile/2" (a stage may carry
/// "lossy" costs). Files without a "format" field are version 1 and still read.
constexpr const char* kProfileFormat = "memento.profile/2";

/// JSON conversion. `profile_from_json` validates and throws ProfileError naming
/// `source`, the stage index and name, and the field.
nlohmann::json profile_to_json(const ChainProfile& profile);
ChainProfile profile_from_json(const nlohmann::json& json, const std::string& source = "profile");

/// Parses JSON text (throws ProfileError with the parser's position on bad syntax).
ChainProfile parse_profile(const std::string& text, const std::string& source = "profile");
/// Reads and validates a profile file.
ChainProfile read_profile(const std::string& path);
/// Writes a profile as pretty JSON (through a temporary file and a rename).
void write_profile(const ChainProfile& profile, const std::string& path);

}  // namespace memento
