"""gpt2-small and resnet50 in Python, stage for stage the chains of memento's model zoo.

Each model is an ``nn.Sequential`` whose children are exactly the stages of the memento
chain at block granularity (src/models/transformer.cpp, convnet.cpp, zoo.cpp), so that
``checkpoint_sequential(model, segments, x)`` cuts the same chain that memento's
``uniform`` planner cuts:

- gpt (gpt2-small): ``embed``, ``block0`` .. ``block{L-1}``, ``head`` (final LayerNorm and
  the LM head tied to the token embedding), pre-LN, causal attention written out
  (matmul, scale, masked_fill, softmax, dropout, matmul) as memento writes it, GELU MLP,
  dropout 0.1 in the same four places.
- resnet (resnet50): ``stem`` (conv7x7/2 + BN + ReLU + maxpool), one stage per bottleneck
  block (v1.5: the stride in the 3x3 convolution), ``head`` (global mean + linear).

The same kernels run on both sides: Debian's python3-torch and libtorch-dev are one build
of PyTorch 1.13. Initial values differ from memento's seeded init (they do not change the
work of a step); parameter counts are equal (``python3 bench/peer/models.py`` checks them
against ``memento models --format json`` when given the binary).

Example::

    model, batch = build("gpt2-small", batch_size=2, seq_len=128)
    loss = loss_function(model(batch.inputs), batch.targets)
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# ------------------------------------------------------------------------------ configs
# The zoo's defaults (src/models/zoo.cpp); only the sizes the peer benchmark uses.
GPT_CONFIGS = {
    "gpt-nano": dict(layers=3, hidden=48, heads=3, vocab=256, context=64),
    "gpt-mini": dict(layers=6, hidden=192, heads=6, vocab=256, context=128),
    "gpt2-small": dict(layers=12, hidden=768, heads=12, vocab=50257, context=1024),
    "gpt2-medium": dict(layers=24, hidden=1024, heads=16, vocab=50257, context=1024),
}
RESNET_CONFIGS = {
    "resnet18": dict(blocks=[2, 2, 2, 2], bottleneck=False),
    "resnet50": dict(blocks=[3, 4, 6, 3], bottleneck=True),
}
GPT_DROPOUT = 0.1
GPT_NORM_EPS = 1e-5
RESNET_WIDTH = 64
RESNET_CLASSES = 1000


def model_names():
    return list(GPT_CONFIGS) + list(RESNET_CONFIGS)


# ------------------------------------------------------------------------------ gpt
class AttentionCore(nn.Module):
    def __init__(self, heads, dropout):
        super().__init__()
        self.heads = heads
        self.dropout = nn.Dropout(dropout)

    def forward(self, q, k, v):
        head_size = q.size(-1)
        scores = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(head_size))
        length = q.size(-2)
        future = torch.ones(length, length, dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(future, float("-inf"))
        probabilities = self.dropout(torch.softmax(scores, -1))
        attended = torch.matmul(probabilities, v)
        return attended.transpose(1, 2).contiguous().view(q.size(0), q.size(2), self.heads * head_size)


class Block(nn.Module):
    """Pre-LN block: h += attn(ln1(h)); h += mlp(ln2(h))."""

    def __init__(self, hidden, heads, dropout):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(hidden, eps=GPT_NORM_EPS)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.core = AttentionCore(heads, dropout)
        self.output = nn.Linear(hidden, hidden)
        self.output_dropout = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(hidden, eps=GPT_NORM_EPS)
        self.fc = nn.Linear(hidden, 4 * hidden)
        self.projection = nn.Linear(4 * hidden, hidden)
        self.mlp_dropout = nn.Dropout(dropout)

    def forward(self, hidden):
        batch, length = hidden.size(0), hidden.size(1)
        parts = self.qkv(self.norm1(hidden)).chunk(3, -1)
        q, k, v = (p.view(batch, length, self.heads, p.size(-1) // self.heads).transpose(1, 2) for p in parts)
        hidden = hidden + self.output_dropout(self.output(self.core(q, k, v)))
        return hidden + self.mlp_dropout(self.projection(F.gelu(self.fc(self.norm2(hidden)))))


class GptEmbed(nn.Module):
    def __init__(self, vocab, context, hidden, dropout):
        super().__init__()
        self.context = context
        self.tokens = nn.Embedding(vocab, hidden)
        self.positions = nn.Embedding(context, hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, token_ids):
        if token_ids.dim() != 2 or token_ids.size(1) > self.context:
            raise ValueError(f"expected tokens [batch, seq_len <= {self.context}], got {list(token_ids.shape)}")
        positions = torch.arange(token_ids.size(1), dtype=torch.long, device=token_ids.device)
        return self.dropout(self.tokens(token_ids) + self.positions(positions))


class GptHead(nn.Module):
    """Final norm and the LM head. The token embedding is read, not registered (tied
    weights), so the parameter is listed once, under the embed stage, as in memento."""

    def __init__(self, hidden, embed):
        super().__init__()
        self.final_norm = nn.LayerNorm(hidden, eps=GPT_NORM_EPS)
        self._embed = [embed]  # a list hides the module from registration

    def forward(self, hidden):
        return F.linear(self.final_norm(hidden), self._embed[0].tokens.weight)


def init_gpt(model, layers):
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, 0.0, 0.02)
    for module in model.modules():
        if isinstance(module, Block):
            nn.init.normal_(module.output.weight, 0.0, 0.02 / math.sqrt(2.0 * layers))
            nn.init.normal_(module.projection.weight, 0.0, 0.02 / math.sqrt(2.0 * layers))


def build_gpt(name, dropout=GPT_DROPOUT):
    c = GPT_CONFIGS[name]
    embed = GptEmbed(c["vocab"], c["context"], c["hidden"], dropout)
    stages = [("embed", embed)]
    stages += [(f"block{i}", Block(c["hidden"], c["heads"], dropout)) for i in range(c["layers"])]
    stages.append(("head", GptHead(c["hidden"], embed)))
    model = nn.Sequential()
    for stage_name, module in stages:
        model.add_module(stage_name, module)
    init_gpt(model, c["layers"])
    return model


def gpt_parameter_count(name):
    """memento's analytic count (count_transformer_parameters)."""
    c = GPT_CONFIGS[name]
    hidden, mlp = c["hidden"], 4 * c["hidden"]
    block = 4 * hidden + hidden * 3 * hidden + 3 * hidden + hidden * hidden + hidden + hidden * mlp + mlp + mlp * hidden + hidden
    return c["vocab"] * hidden + c["context"] * hidden + c["layers"] * block + 2 * hidden


# ------------------------------------------------------------------------------ resnet
class ConvBn(nn.Sequential):
    def __init__(self, in_channels, out_channels, kernel, stride):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(out_channels),
        )


class ResidualBlock(nn.Module):
    def __init__(self, in_channels, width, stride, bottleneck):
        super().__init__()
        out_channels = 4 * width if bottleneck else width
        if bottleneck:
            units = [ConvBn(in_channels, width, 1, 1), ConvBn(width, width, 3, stride), ConvBn(width, out_channels, 1, 1)]
        else:
            units = [ConvBn(in_channels, width, 3, stride), ConvBn(width, out_channels, 3, 1)]
        self.units = nn.ModuleList(units)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = ConvBn(in_channels, out_channels, 1, stride)

    def forward(self, x):
        y = x
        for unit in self.units[:-1]:
            y = torch.relu(unit(y))
        shortcut = self.downsample(x) if self.downsample is not None else x
        return torch.relu(self.units[-1](y) + shortcut)


class Stem(nn.Module):
    def __init__(self, channels, width):
        super().__init__()
        self.unit = ConvBn(channels, width, 7, 2)

    def forward(self, images):
        return torch.max_pool2d(torch.relu(self.unit(images)), 3, 2, 1)


class ResNetHead(nn.Module):
    def __init__(self, in_channels, classes):
        super().__init__()
        self.classifier = nn.Linear(in_channels, classes)

    def forward(self, features):
        return self.classifier(features.mean((2, 3)))


def build_resnet(name):
    c = RESNET_CONFIGS[name]
    model = nn.Sequential()
    model.add_module("stem", Stem(3, RESNET_WIDTH))
    in_channels, index = RESNET_WIDTH, 0
    for stage, count in enumerate(c["blocks"]):
        width = RESNET_WIDTH << stage
        for block in range(count):
            stride = 2 if stage > 0 and block == 0 else 1
            model.add_module(f"block{index}", ResidualBlock(in_channels, width, stride, c["bottleneck"]))
            in_channels = 4 * width if c["bottleneck"] else width
            index += 1
    model.add_module("head", ResNetHead(in_channels, RESNET_CLASSES))
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    return model


def resnet_parameter_count(name):
    """memento's analytic count (count_convnet_parameters)."""
    c = RESNET_CONFIGS[name]

    def conv_bn(i, o, k):
        return i * o * k * k + 2 * o

    count, in_channels = conv_bn(3, RESNET_WIDTH, 7), RESNET_WIDTH
    for stage, blocks in enumerate(c["blocks"]):
        width = RESNET_WIDTH << stage
        out_channels = 4 * width if c["bottleneck"] else width
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            if c["bottleneck"]:
                count += conv_bn(in_channels, width, 1) + conv_bn(width, width, 3) + conv_bn(width, out_channels, 1)
            else:
                count += conv_bn(in_channels, width, 3) + conv_bn(width, out_channels, 3)
            if stride != 1 or in_channels != out_channels:
                count += conv_bn(in_channels, out_channels, 1)
            in_channels = out_channels
    return count + in_channels * RESNET_CLASSES + RESNET_CLASSES


# ------------------------------------------------------------------------------ batches and loss
@dataclass
class Batch:
    inputs: torch.Tensor
    targets: torch.Tensor


def make_batch(name, batch_size, seq_len=0, image_size=0, seed=0):
    """A random batch of the model's input shape (as memento's example_batch)."""
    generator = torch.Generator().manual_seed(seed)
    if name in GPT_CONFIGS:
        c = GPT_CONFIGS[name]
        length = seq_len or c["context"]
        tokens = torch.randint(0, c["vocab"], (batch_size, length + 1), generator=generator)
        return Batch(tokens[:, :length].contiguous(), tokens[:, 1:].contiguous())
    size = image_size or 224
    images = torch.randn(batch_size, 3, size, size, generator=generator)
    return Batch(images, torch.randint(0, RESNET_CLASSES, (batch_size,), generator=generator))


def loss_function(logits, targets):
    """Cross-entropy over the last dimension, as memento's zoo loss."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))


def build(name, batch_size, seq_len=0, image_size=0, seed=0):
    """The model (an nn.Sequential of memento's stages) and a batch."""
    if name in GPT_CONFIGS:
        model = build_gpt(name)
    elif name in RESNET_CONFIGS:
        model = build_resnet(name)
    else:
        raise ValueError(f"unknown model {name!r}; the peer benchmark knows {', '.join(model_names())}")
    return model, make_batch(name, batch_size, seq_len, image_size, seed)


def parameter_count(model):
    return sum(p.numel() for p in model.parameters())


def expected_parameter_count(name):
    return gpt_parameter_count(name) if name in GPT_CONFIGS else resnet_parameter_count(name)


if __name__ == "__main__":
    import json
    import subprocess
    import sys

    listed = {}
    if len(sys.argv) > 1:  # path of the memento binary: compare with its zoo listing
        listing = json.loads(subprocess.check_output([sys.argv[1], "models", "--format", "json"]))
        models = listing["models"] if isinstance(listing, dict) else listing
        listed = {m["name"]: m["parameter_count"] for m in models}
    failed = False
    for name in model_names():
        model = build_gpt(name) if name in GPT_CONFIGS else build_resnet(name)
        built = parameter_count(model)
        expected = listed.get(name, expected_parameter_count(name))
        status = "ok" if built == expected else "MISMATCH"
        failed |= built != expected
        print(f"{name:12s} {len(model):3d} stages  {built:12,d} parameters  memento {expected:12,d}  {status}")
    sys.exit(1 if failed else 0)
