#pragma once
/// \file
/// The plan IR: a `Schedule` is a list of ops over stage indices that one training
/// step executes in order. `simulate()` (simulate.h) and the runtime `Executor`
/// interpret it with exactly the same semantics, written down here.
///
/// State. For activation a_i (0 <= i <= L, see profile.h) the schedule may hold a
/// *stored* copy; for stage i a *graph* (everything autograd saves, which contains the
/// output a_{i+1}); for each a_i a *gradient* d_i. a_0 (the input) is always available
/// and never freed. a_i is *available* when i == 0, or it is stored, or graph i-1 is
/// alive (the output inside it).
///
/// Ops (what each requires, what it leaves):
/// - `ForwardNoGrad(i)`: needs a_i available and a_{i+1} not available. Runs stage i
///   without autograd and stores a_{i+1}. Then drops the stored copy of its input a_i
///   (not a_0, and not bytes a live graph still holds).
/// - `ForwardCheckpoint(i)`: like ForwardNoGrad(i) but keeps a_i stored: a checkpoint.
/// - `ForwardWithGraph(i)`: needs a_i available and graph i not alive. Runs stage i
///   with autograd and keeps its graph (saved_bytes, output included). A stored copy of
///   a_{i+1} is replaced by the new output (one copy of its bytes remains). The input
///   a_i is pinned: it may not be freed until Backward(i).
/// - `ForwardLossy(i, codec)`: needs a_i available and graph i not alive. Runs stage i
///   with autograd and packs every tensor autograd saves with `codec` (codec.h): graph i
///   then holds only the packed bytes (StageProfile::lossy), not its output. The exact
///   output a_{i+1} is stored (replacing a stored copy), for the next stage to read; it is
///   freed with Free(i+1) once nothing reads it. The stored copy of the input a_i is dropped
///   (not a_0): the graph keeps its own packed copy, so a_i is not pinned.
/// - `ForwardFrozen(i)`: a frozen stage (gradient-aware checkpointing, core/gac.h): needs
///   a_i available, a_{i+1} not available, and i == 0 or stage i-1 frozen (only a prefix
///   of the chain is frozen). Runs stage i without autograd and stores a_{i+1}, dropping
///   the stored copy of a_i (not a_0). A frozen stage has no Backward: its parameters get
///   no gradient, and the Backward of the first stage after the prefix produces no d_i.
/// - `Loss`: needs a_L available and d_L absent. Computes the loss and d_L
///   (output_bytes of the last stage).
/// - `Backward(i)`: needs graph i, d_{i+1} and a_i (not for a lossy graph, which has
///   its own copy). Unpacks a lossy graph's tensors first. Produces d_i (nothing for i == 0,
///   whose input gradient is not kept, or when stage i-1 is frozen), then frees graph i,
///   d_{i+1} and the stored a_i.
/// - `Free(i)`: drops the stored copy of a_i (1 <= i <= L); graph i must not be alive
///   unless it is lossy.
///
/// A complete schedule ends with Backward(0) (Backward(f) after a frozen prefix of f
/// stages) and nothing but a_0 alive.
///
/// Example (store-all on a 2-stage chain):
/// \code
///   memento::Schedule s = {memento::Op::forward_with_graph(0), memento::Op::forward_with_graph(1),
///                          memento::Op::loss(), memento::Op::backward(1), memento::Op::backward(0)};
///   std::string text = memento::to_string(s);  // "Fg0 Fg1 L B1 B0"
/// \endcode

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "memento/core/codec.h"

namespace memento {

enum class OpKind {
  ForwardNoGrad,
  ForwardCheckpoint,
  ForwardWithGraph,
  ForwardLossy,
  ForwardFrozen,
  Loss,
  Backward,
  Free,
};

/// One op of a schedule. `stage` is -1 for Loss; `codec` is set for ForwardLossy only.
struct Op {
  OpKind kind = OpKind::Loss;
  int stage = -1;
  Codec codec = Codec::None;

  static Op forward_no_grad(int stage) { return {OpKind::ForwardNoGrad, stage}; }
  static Op forward_checkpoint(int stage) { return {OpKind::ForwardCheckpoint, stage}; }
  static Op forward_with_graph(int stage) { return {OpKind::ForwardWithGraph, stage}; }
  static Op forward_lossy(int stage, Codec codec) { return {OpKind::ForwardLossy, stage, codec}; }
  static Op forward_frozen(int stage) { return {OpKind::ForwardFrozen, stage}; }
  static Op loss() { return {OpKind::Loss, -1}; }
  static Op backward(int stage) { return {OpKind::Backward, stage}; }
  static Op free(int stage) { return {OpKind::Free, stage}; }

  bool is_forward() const {
    return kind == OpKind::ForwardNoGrad || kind == OpKind::ForwardCheckpoint ||
           kind == OpKind::ForwardWithGraph || kind == OpKind::ForwardLossy || kind == OpKind::ForwardFrozen;
  }
  /// A forward that builds graph i (with autograd): ForwardWithGraph or ForwardLossy.
  bool builds_graph() const { return kind == OpKind::ForwardWithGraph || kind == OpKind::ForwardLossy; }
  bool operator==(const Op& other) const {
    return kind == other.kind && stage == other.stage && codec == other.codec;
  }
  bool operator!=(const Op& other) const { return !(*this == other); }
};

using Schedule = std::vector<Op>;

/// JSON name of an op kind: forward_no_grad, forward_checkpoint, forward_with_graph,
/// forward_lossy, forward_frozen, loss, backward, free.
const char* op_kind_name(OpKind kind);
/// Parses a JSON op kind name; throws InvalidArgument listing the valid names.
OpKind op_kind_from_name(const std::string& name);

/// Short text form: Fn3, Fc3, Fg3, Fq3:int8 (lossy), Ff3 (frozen), L, B3, X3 (free).
std::string to_string(const Op& op);
/// Space-separated short forms of every op.
std::string to_string(const Schedule& schedule);
/// Whether any op of the schedule is lossy (ForwardLossy): its gradients are approximate.
bool is_lossy(const Schedule& schedule);
/// The codecs the schedule's lossy forwards use, each once, in order of first use (empty
/// for an exact schedule).
std::vector<Codec> codecs_used(const Schedule& schedule);

/// `[{"op": "forward_with_graph", "stage": 0}, {"op": "forward_lossy", "stage": 1, "codec":
/// "int8"}, ..., {"op": "loss"}]`.
nlohmann::json schedule_to_json(const Schedule& schedule);
/// Inverse of schedule_to_json; throws InvalidArgument naming the op index.
Schedule schedule_from_json(const nlohmann::json& json);

/// Canonical schedules every planner builds on.
/// Store-all: Fg0..Fg(L-1), L, B(L-1)..B0.
Schedule store_all_schedule(int length);
/// Lossy store-all (every saved tensor packed, nothing recomputed; what GACT and ActNN do):
/// Fq0..Fq(L-1) with `codec`, L, X(L), B(L-1)..B0.
Schedule lossy_store_all_schedule(int length, Codec codec);

}  // namespace memento
