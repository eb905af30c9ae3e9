#!/usr/bin/env python3
"""Writes the example profiles of examples/profiles/ from published layer formulas.

Every formula and assumption is documented in docs/formats.md ("Example profiles");
this script is their executable form. Run it from anywhere:

    python3 examples/profiles/generate.py            # rewrites the *.json next to it
    python3 examples/profiles/generate.py --check    # fails if a committed file differs

Nothing here is measured: sizes come from layer shapes, times from FLOPs (or bytes)
at a stated device throughput. The profiles are for planning at realistic scale
(`memento plan --profile examples/profiles/gpt2-small.json --budget 40%`), not for
reproducing a particular GPU's timings.
"""

import argparse
import json
import math
import os
import sys

# ---- device and precision assumptions (docs/formats.md, "Assumptions") -------------
DEVICE = "A100-SXM4-80GB"
PEAK_FLOPS = 312e12  # dense bf16/fp16 tensor-core peak, FLOP/s
PEAK_BYTES_PER_S = 2.039e12  # HBM2e bandwidth, B/s
EFFICIENCY = 0.5  # achieved share of both peaks
FLOPS_PER_S = EFFICIENCY * PEAK_FLOPS
BYTES_PER_S = EFFICIENCY * PEAK_BYTES_PER_S
BACKWARD_OVER_FORWARD = 2.0  # backward = 2 x forward (Kaplan et al. 2020, Narayanan et al. 2021)
ACT = 2  # bytes per activation element: 16-bit mixed precision
MASK = 1  # bytes per dropout-mask element (Korthikanti et al. 2022)
INDEX = 8  # bytes per int64 element (token ids, labels, max-pool indices)
IMAGE = 4  # bytes per input-image element (fp32 as loaded; cast to 16-bit inside the stem)
# Mixed-precision Adam: 16-bit weight + 16-bit gradient + fp32 master weight, first and
# second moment (Rajbhandari et al. 2020, ZeRO: 2 + 2 + 12 bytes per parameter).
WEIGHT_BYTES, GRADIENT_BYTES, OPTIMIZER_BYTES = 2, 2, 12


def stage_time_s(flops, bytes_moved):
    """Roofline: a stage takes as long as its compute or its memory traffic, whichever is longer."""
    return max(flops / FLOPS_PER_S, bytes_moved / BYTES_PER_S)


def make_stage(name, kind, flops, bytes_moved, input_bytes, output_bytes, saved_bytes, forward_temp_bytes,
               backward_temp_bytes):
    forward_s = stage_time_s(flops, bytes_moved)
    return {
        "name": name,
        "kind": kind,
        "forward_s": forward_s,
        "backward_s": BACKWARD_OVER_FORWARD * forward_s,
        "input_bytes": int(input_bytes),
        "output_bytes": int(output_bytes),
        "saved_bytes": int(saved_bytes),
        "forward_temp_bytes": int(forward_temp_bytes),
        "backward_temp_bytes": int(backward_temp_bytes),
        "flops": float(flops),
    }


def make_profile(model, stages, parameter_count, inputs_bytes):
    breakdown = {
        "parameters_bytes": WEIGHT_BYTES * parameter_count,
        "gradients_bytes": GRADIENT_BYTES * parameter_count,
        "optimizer_bytes": OPTIMIZER_BYTES * parameter_count,
        "inputs_bytes": int(inputs_bytes),
    }
    return {"model": model, "fixed_bytes": sum(breakdown.values()), "fixed_breakdown": breakdown, "stages": stages}


# ---- transformers (Korthikanti et al. 2022, Section 4.1) ------------------------------


def transformer_block_activations(s, b, h, a):
    """Bytes autograd keeps for one layer, 16-bit, with dropout; returns the breakdown.

    Attention 11sbh + 5as^2b: QKV input 2sbh, Q and K 4sbh, softmax output 2as^2b, its
    dropout mask as^2b, dropped-out probabilities 2as^2b, V 2sbh, output-projection
    input 2sbh, dropout mask sbh. MLP 19sbh: first linear input 2sbh, GeLU input 8sbh,
    second linear input 8sbh, dropout mask sbh. Two LayerNorm inputs 4sbh.
    Total sbh(34 + 5as/h).
    """
    sbh = s * b * h
    attention = 11 * sbh + 5 * a * s * s * b
    mlp = 19 * sbh
    norms = 4 * sbh
    return {"attention": attention, "mlp": mlp, "norms": norms, "total": attention + mlp + norms}


def transformer_block_flops(s, b, h):
    """Forward FLOPs of one layer: 24bsh^2 + 4bs^2h (Narayanan et al. 2021, eq. 3 / 3 passes)."""
    return 24 * b * s * h * h + 4 * b * s * s * h


def transformer_block(index, s, b, h, a):
    parts = transformer_block_activations(s, b, h, a)
    stream = ACT * s * b * h  # the residual stream a_i / a_{i+1}
    # Korthikanti's per-layer count contains the layer's input (the first LayerNorm's
    # input, 2sbh) but not its output. saved_bytes excludes the input (it is a_i, counted
    # once as the previous stage's output) and includes the output, of the same size, so
    # saved_bytes is exactly the paper's per-layer total.
    saved = parts["total"]
    scores = ACT * a * s * s * b  # one [b, a, s, s] 16-bit tensor
    # Forward: the raw attention scores before softmax are transient.
    forward_temp = scores
    # Backward: two of the largest intermediate tensor (a gradient into and out of the
    # op): the attention scores or the 4h-wide MLP activation.
    backward_temp = 2 * max(scores, ACT * s * b * 4 * h)
    flops = transformer_block_flops(s, b, h)
    return make_stage(f"block{index}", "block", flops, parts["total"] + 2 * stream, stream, stream, saved,
                      forward_temp, backward_temp)


def gpt_profile(model, layers, h, a, s, b, vocab):
    sbh = s * b * h
    stages = []
    # Embedding: token + position lookup, dropout. Keeps the dropout mask and its output;
    # the token ids are a_0 (inputs). Memory-bound: writes the 16-bit output.
    embed_out = ACT * sbh
    stages.append(make_stage("embed", "embed", 0, 2 * embed_out, INDEX * s * b, embed_out, embed_out + MASK * sbh, 0,
                             2 * embed_out))
    for i in range(layers):
        stages.append(transformer_block(i, s, b, h, a))
    # Head: final LayerNorm and the (tied) projection to the vocabulary; its output a_L is
    # the 16-bit logits the loss reads. Keeps the LayerNorm output (the projection's input)
    # and the logits.
    logits = ACT * s * b * vocab
    head_flops = 2 * s * b * h * vocab
    stages.append(make_stage("head", "head", head_flops, logits + 2 * ACT * sbh, ACT * sbh, logits, ACT * sbh + logits,
                             0, 2 * logits))
    params = gpt_parameter_count(layers, h, s, vocab)
    inputs = 2 * INDEX * s * b  # token ids + next-token labels
    return make_profile(model, stages, params, inputs), params


def gpt_parameter_count(layers, h, s, vocab):
    per_layer = 12 * h * h + 13 * h  # QKV, projection, two MLP matrices, their biases, two LayerNorms
    return vocab * h + s * h + layers * per_layer + 2 * h  # + final LayerNorm; head tied to the embedding


def bert_profile(model, layers, h, a, s, b, vocab):
    sbh = s * b * h
    stages = []
    # Embedding: token + position + segment lookup, LayerNorm, dropout. Keeps the
    # LayerNorm input, the dropout mask and the output.
    embed_out = ACT * sbh
    stages.append(make_stage("embed", "embed", 0, 3 * embed_out, INDEX * s * b, embed_out,
                             ACT * sbh + MASK * sbh + embed_out, 0, 2 * embed_out))
    for i in range(layers):
        stages.append(transformer_block(i, s, b, h, a))
    # Masked-LM head over every position (Hugging Face BertForMaskedLM): dense h x h,
    # GeLU, LayerNorm, tied decoder to the vocabulary. The dense layer's input is a_i; the
    # stage keeps the GeLU input, the LayerNorm input, the decoder input and the logits.
    logits = ACT * s * b * vocab
    head_flops = 2 * s * b * h * h + 2 * s * b * h * vocab
    stages.append(make_stage("head", "head", head_flops, logits + 4 * ACT * sbh, ACT * sbh, logits,
                             3 * ACT * sbh + logits, 0, 2 * logits))
    per_layer = 12 * h * h + 13 * h
    params = vocab * h + s * h + 2 * h + 2 * h + layers * per_layer + (h * h + h) + 2 * h + vocab
    inputs = 3 * INDEX * s * b  # token ids, segment ids, MLM labels
    return make_profile(model, stages, params, inputs), params


# ---- ResNet-50 (He et al. 2016; torchvision v1.5: stride on the 3x3 conv) --------------


def conv_flops(c_in, c_out, kernel, out_h, out_w, batch):
    return 2 * c_in * c_out * kernel * kernel * out_h * out_w * batch


def resnet50_profile(model, b, image=224, classes=1000):
    stages = []
    params = 0
    # Stem: conv 7x7/2 -> BN -> ReLU (in place) -> max-pool 3x3/2. Keeps the BN input, the
    # ReLU output (also the pool input), the pool's int64 indices and the output.
    c1 = 64
    side = image // 2  # 112
    pooled = side // 2  # 56
    conv_out = c1 * side * side * b
    pool_out = c1 * pooled * pooled * b
    flops = conv_flops(3, c1, 7, side, side, b)
    saved = ACT * conv_out * 2 + INDEX * pool_out + ACT * pool_out
    input_bytes = IMAGE * 3 * image * image * b
    stages.append(make_stage("stem", "conv", flops, input_bytes + 3 * ACT * conv_out + ACT * pool_out, input_bytes,
                             ACT * pool_out, saved, 0, 2 * ACT * conv_out))
    params += 3 * c1 * 49 + 2 * c1
    c_in, h = c1, pooled
    for stage_index, (blocks, mid) in enumerate([(3, 64), (4, 128), (6, 256), (3, 512)]):
        for block in range(blocks):
            stride = 2 if (block == 0 and stage_index > 0) else 1
            out = 4 * mid
            h_out = h // stride
            hw_in, hw_out = h * h * b, h_out * h_out * b
            downsample = block == 0
            flops = (conv_flops(c_in, mid, 1, h, h, b) + conv_flops(mid, mid, 3, h_out, h_out, b) +
                     conv_flops(mid, out, 1, h_out, h_out, b))
            # conv1 output (BN1 input) and ReLU1 output; conv2 output (BN2 input) and ReLU2
            # output; conv3 output (BN3 input); the block output (final ReLU keeps it); the
            # downsample conv output (its BN input). Inputs of convs are the ReLU outputs.
            saved = ACT * (2 * mid * hw_in + 2 * mid * hw_out + out * hw_out + out * hw_out)
            if downsample:
                flops += conv_flops(c_in, out, 1, h_out, h_out, b)
                saved += ACT * out * hw_out
                params += c_in * out + 2 * out
            params += c_in * mid + mid * mid * 9 + mid * out + 2 * (mid + mid + out)
            name = f"layer{stage_index + 1}.{block}"
            largest = ACT * max(mid * hw_in, out * hw_out)
            # Forward: the downsample branch's BN output lives only until the residual add.
            forward_temp = ACT * out * hw_out if downsample else 0
            stages.append(make_stage(name, "conv", flops, saved + ACT * c_in * hw_in, ACT * c_in * hw_in,
                                     ACT * out * hw_out, saved, forward_temp, 2 * largest))
            c_in, h = out, h_out
    # Head: global average pool -> fc -> logits (a_L). Keeps the fc input and the logits.
    pooled_bytes = ACT * c_in * b
    logits = ACT * classes * b
    flops = c_in * h * h * b + 2 * c_in * classes * b
    stages.append(make_stage("head", "head", flops, ACT * c_in * h * h * b + pooled_bytes + logits,
                             ACT * c_in * h * h * b, logits, pooled_bytes + logits, 0, 2 * max(pooled_bytes, logits)))
    params += c_in * classes + classes
    inputs = IMAGE * 3 * image * image * b + INDEX * b  # images (a_0) and labels
    return make_profile(model, stages, params, inputs), params


# ---- the set of example profiles ----------------------------------------------------


def describe(name, params, detail):
    count = f"{params / 1e9:.1f}B" if params >= 1e9 else f"{params / 1e6:.0f}M"
    return f"{name}: {detail}, {count} parameters (derived from published formulas: docs/formats.md)"


def all_profiles():
    profiles = {}

    def gpt(file, label, layers, h, a, s, b, vocab=50257):
        profile, params = gpt_profile("", layers, h, a, s, b, vocab)
        profile["model"] = describe(label, params, f"{layers} layers, hidden {h}, {a} heads, seq {s}, micro-batch {b}")
        profiles[file] = profile

    gpt("gpt2-small", "gpt2-small", 12, 768, 12, 1024, 8)
    gpt("gpt2-medium", "gpt2-medium", 24, 1024, 16, 1024, 4)
    gpt("gpt2-large", "gpt2-large", 36, 1280, 20, 1024, 2)
    gpt("gpt3-175b", "gpt3-175b layer stack", 96, 12288, 96, 2048, 1)

    profile, params = bert_profile("", 24, 1024, 16, 512, 16, 30522)
    profile["model"] = describe("bert-large", params, "24 layers, hidden 1024, 16 heads, seq 512, micro-batch 16")
    profiles["bert-large"] = profile

    profile, params = resnet50_profile("", 128)
    profile["model"] = describe("resnet50", params, "224x224 images, batch 128")
    profiles["resnet50"] = profile
    return profiles


def render(profile):
    return json.dumps(profile, indent=2) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a committed profile differs from its formula")
    parser.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)), help="output directory")
    args = parser.parse_args()
    stale = []
    for name, profile in all_profiles().items():
        path = os.path.join(args.out, name + ".json")
        text = render(profile)
        if args.check:
            try:
                with open(path, encoding="utf-8") as f:
                    if f.read() != text:
                        stale.append(path)
            except FileNotFoundError:
                stale.append(path)
            continue
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"wrote {path}: {len(profile['stages'])} stages, fixed {profile['fixed_bytes'] / 2**30:.2f} GiB")
    if stale:
        print("out of date (run examples/profiles/generate.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
