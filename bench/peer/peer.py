"""The PyTorch side of the peer benchmark: one model, one batch, trained with no
checkpointing and with ``checkpoint_sequential`` at several segment counts, measured the
way memento measures (docs/measurement.md):

- memory: memento's own MemoryTracker, loaded from ``libmemento_peer_alloc.so`` with
  ctypes, counts every CPU allocation of this process exactly (python3-torch and
  libtorch-dev share one libc10.so). A step's peak is ``peak - start`` of the tracker
  around forward + loss + backward, plus the fixed bytes counted as memento's profiler
  counts them (parameters and buffers, one gradient per trainable parameter, optimizer
  state, inputs and targets);
- time: wall time of forward + loss + backward, median of the timed steps after warm-up.
  The methods take their steps in turn (step k of every method, then step k+1), so a
  change of machine load during the run touches every method alike.

Gradients stay allocated between steps (zeroed in place, untimed), as in memento's
Executor, so neither side counts their allocation in the step.

PyTorch 1.13's ``checkpoint_sequential`` only has the reentrant checkpoint, which needs an
input that requires grad: with GPT's integer tokens the checkpointed segments would get
no gradients at all. The method ``checkpoint_sequential`` here is therefore 1.13's
function line for line with ``use_reentrant=False`` (what PyTorch 2.x's
``checkpoint_sequential(..., use_reentrant=False)`` does). ``--reentrant`` adds 1.13's own
function for float inputs (ResNet), with the images requiring grad as it demands.

Example::

    OMP_NUM_THREADS=1 /usr/bin/python3 bench/peer/peer.py --alloc build/lib/libmemento_peer_alloc.so \\
        --model resnet50 --batch 4 --segments 0,2,4,all --steps 3 --out resnet.json
"""

import argparse
import ctypes
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.utils.checkpoint

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models  # noqa: E402


class Tracker:
    """memento's MemoryTracker in this process."""

    def __init__(self, path):
        self.lib = ctypes.CDLL(path)
        for name in ("install", "live_bytes", "peak_bytes", "reset_peak", "allocation_count"):
            getattr(self.lib, "memento_peer_" + name).restype = ctypes.c_int64
        self.lib.memento_peer_last_error.restype = ctypes.c_char_p
        self._call("install")

    def _call(self, name):
        value = getattr(self.lib, "memento_peer_" + name)()
        if value < 0:
            raise RuntimeError(f"memento_peer_{name}: {self.lib.memento_peer_last_error().decode()}")
        return value

    def live_bytes(self):
        return self._call("live_bytes")

    def peak_bytes(self):
        return self._call("peak_bytes")

    def reset_peak(self):
        self._call("reset_peak")


def self_check(tracker):
    """A torch.empty(1024) float tensor must count exactly 4096 bytes, as in memento."""
    before = tracker.live_bytes()
    tracker.reset_peak()
    tensor = torch.empty(1024)
    allocated = tracker.live_bytes() - before
    del tensor
    freed = tracker.live_bytes() - before
    if allocated != 4096 or freed != 0:
        raise RuntimeError(
            f"allocator accounting check failed: torch.empty(1024) counted {allocated} bytes "
            f"(expected 4096) and left {freed} after its free (expected 0); the loaded library "
            "and this torch must share one libc10.so (Debian's python3-torch and libtorch-dev)")
    return allocated


def storage_bytes(tensors):
    """Bytes of the distinct storages behind `tensors` (memento::tensor_bytes)."""
    seen, total = set(), 0
    for tensor in tensors:
        if tensor is None:
            continue
        # untyped_storage() is the 2.x name; 1.13 has only storage().
        storage = tensor.untyped_storage() if hasattr(tensor, "untyped_storage") else tensor.storage()
        key = storage.data_ptr()
        if key in seen:
            continue
        seen.add(key)
        total += storage.nbytes()
    return total


def fixed_bytes(model, batch, optimizer_factor):
    """The profile's fixed bytes, counted as memento's profile_chain counts them."""
    parameters = list(model.parameters())
    gradients = sum(p.numel() * p.element_size() for p in parameters if p.requires_grad)
    trainable = gradients
    breakdown = {
        "parameters_bytes": storage_bytes(parameters + list(model.buffers())),
        "gradients_bytes": gradients,
        "optimizer_bytes": optimizer_factor * trainable,
        "inputs_bytes": storage_bytes([batch.inputs, batch.targets]),
    }
    return sum(breakdown.values()), breakdown


def checkpoint_sequential_nonreentrant(functions, segments, input, preserve_rng_state=True):
    """torch 1.13's checkpoint_sequential, line for line, with use_reentrant=False."""

    def run_function(start, end, functions):
        def forward(input):
            for j in range(start, end + 1):
                input = functions[j](input)
            return input

        return forward

    if isinstance(functions, torch.nn.Sequential):
        functions = list(functions.children())
    segment_size = len(functions) // segments
    end = -1
    for start in range(0, segment_size * (segments - 1), segment_size):
        end = start + segment_size - 1
        input = torch.utils.checkpoint.checkpoint(
            run_function(start, end, functions), input, use_reentrant=False, preserve_rng_state=preserve_rng_state)
    return run_function(end + 1, len(functions) - 1, functions)(input)


class Method:
    def __init__(self, name, segments, reentrant):
        self.name, self.segments, self.reentrant = name, segments, reentrant
        self.times, self.activation_peaks = [], []
        self.gradient_norms = None

    def label(self):
        if self.segments == 0:
            return "none"
        return f"checkpoint_sequential({self.segments}){' reentrant' if self.reentrant else ''}"

    def forward(self, model, inputs):
        if self.segments == 0:
            return model(inputs)
        if self.reentrant:
            return torch.utils.checkpoint.checkpoint_sequential(model, self.segments, inputs)
        return checkpoint_sequential_nonreentrant(model, self.segments, inputs)


def zero_gradients(model):
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p.grad.zero_()


def gradient_norms(model):
    return [p.grad.double().norm().item() if p.grad is not None else 0.0 for p in model.parameters()]


def run_step(model, batch, method, tracker):
    inputs = batch.inputs
    if method.reentrant:
        inputs = inputs.detach().requires_grad_(True)
    zero_gradients(model)
    tracker.reset_peak()
    start_bytes = tracker.live_bytes()
    begin = time.perf_counter()
    loss = models.loss_function(method.forward(model, inputs), batch.targets)
    loss.backward()
    step_s = time.perf_counter() - begin
    value = loss.item()
    del loss
    return step_s, tracker.peak_bytes() - start_bytes, value


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alloc", required=True, help="path of libmemento_peer_alloc.so (built with memento)")
    parser.add_argument("--model", required=True, choices=models.model_names())
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--seq-len", type=int, default=0, help="gpt: tokens per sequence (default: the context)")
    parser.add_argument("--image-size", type=int, default=0, help="resnet: pixels per side (default 224)")
    parser.add_argument("--segments", default="0,2,4",
                        help="comma-separated checkpoint_sequential segment counts; 0 = no checkpointing; "
                             "'sqrt' = round(sqrt(stages)), 'all' = one segment per stage")
    parser.add_argument("--reentrant", action="store_true",
                        help="also run torch 1.13's own (reentrant) checkpoint_sequential (float inputs only)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per method (median reported)")
    parser.add_argument("--warmup-steps", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--optimizer-factor", type=int, default=2,
                        help="optimizer state in parameter-sized copies for the fixed bytes (adamw: 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the JSON here (default: stdout)")
    args = parser.parse_args()
    if args.steps < 1 or args.warmup_steps < 0 or args.batch < 1:
        parser.error("--steps and --batch must be at least 1, --warmup-steps at least 0")

    torch.set_num_threads(args.threads)
    tracker = Tracker(args.alloc)  # before any tensor we want counted
    check_bytes = self_check(tracker)

    model, batch = models.build(args.model, args.batch, args.seq_len, args.image_size, args.seed)
    model.train()
    stages = len(model)
    methods = []
    for token in args.segments.split(","):
        token = token.strip()
        segments = {"sqrt": round(math.sqrt(stages)), "all": stages}.get(token)
        segments = int(token) if segments is None else segments
        if segments < 0 or segments > stages:
            parser.error(f"--segments {token}: use 0 (none) up to {stages} (the stage count)")
        if segments == 1:
            parser.error("--segments 1 checkpoints nothing (the last segment always runs with grad); use 0")
        if all(m.segments != segments for m in methods):
            methods.append(Method("checkpoint_sequential" if segments else "none", segments, False))
    if args.reentrant:
        if batch.inputs.is_floating_point():
            methods += [Method("checkpoint_sequential_reentrant", m.segments, True) for m in methods if m.segments]
        else:
            print("peer: --reentrant skipped: torch 1.13's reentrant checkpoint needs an input that requires grad "
                  f"and {args.model} takes integer tokens", file=sys.stderr)

    # Warm-up steps double as a gradient check: every method starts its first step from the
    # same RNG seed, so dropout masks agree and the gradients must match no checkpointing.
    for method in methods:
        for step in range(args.warmup_steps):
            torch.manual_seed(args.seed + 1000 + step)
            run_step(model, batch, method, tracker)
            if step == 0:
                method.gradient_norms = gradient_norms(model)
    for step in range(args.steps):
        for method in methods:
            step_s, activation_bytes, loss = run_step(model, batch, method, tracker)
            method.times.append(step_s)
            method.activation_peaks.append(activation_bytes)
            print(f"peer: {args.model} {method.label():32s} step {step + 1}/{args.steps}: "
                  f"{step_s:.3f} s, peak +{activation_bytes / 2**20:.1f} MiB, loss {loss:.4f}", file=sys.stderr)

    fixed, breakdown = fixed_bytes(model, batch, args.optimizer_factor)
    reference = methods[0].gradient_norms if methods[0].segments == 0 else None
    rows = []
    for method in methods:
        row = {
            "method": method.name,
            "label": method.label(),
            "segments": method.segments,
            "reentrant": method.reentrant,
            "step_s": statistics.median(method.times),
            "step_s_all": method.times,
            "activation_peak_bytes": max(method.activation_peaks),
            "measured_peak_bytes": fixed + max(method.activation_peaks),
        }
        if reference is not None and method.gradient_norms is not None:
            worst = 0.0
            for a, b in zip(reference, method.gradient_norms):
                worst = max(worst, abs(a - b) / max(abs(a), 1e-30))
            row["grad_norm_max_rel_diff"] = worst
        rows.append(row)
    document = {
        "format": "memento.peer/1",
        "side": "pytorch",
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "model": args.model,
        "batch": args.batch,
        "seq_len": batch.inputs.size(1) if not batch.inputs.is_floating_point() else 0,
        "image_size": batch.inputs.size(-1) if batch.inputs.is_floating_point() else 0,
        "stages": stages,
        "parameter_count": models.parameter_count(model),
        "steps": args.steps,
        "warmup_steps": args.warmup_steps,
        "allocator_check_bytes": check_bytes,
        "fixed_bytes": fixed,
        "fixed_breakdown": breakdown,
        "rows": rows,
    }
    text = json.dumps(document, indent=2)
    if args.out:
        with open(args.out, "w") as out:
            out.write(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
