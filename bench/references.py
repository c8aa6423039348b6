"""Hand-written PyTorch references for the torch-backend benchmark.

Each network is written the way one would write it by hand (nanoGPT-style GPT
with a fused qkv projection, torchvision-style ResNet BasicBlock), and each
comes with a function that copies the weights of the module modelspec builds
into the reference by name, so both sides compute the same function.

Not a test: `bench/torch_backend.py` uses these; nothing here imports tests/.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# ---------------------------------------------------------------- MLP and CNN


class MLP(nn.Module):
    def __init__(self, hidden: int = 128, classes: int = 10):
        super().__init__()
        self.fc1 = nn.Linear(784, hidden)
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


class CNN(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * 8 * 8, 128)
        self.fc2 = nn.Linear(128, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc2(F.relu(self.fc1(x)))


# ---------------------------------------------------------------- DCGAN (PyTorch-examples style)


class Generator(nn.Module):
    def __init__(self, z: int = 100, width: int = 64, inplace: bool = True):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(z, width * 2, 4, 1, 0, bias=False),
            nn.BatchNorm2d(width * 2),
            nn.ReLU(inplace),
            nn.ConvTranspose2d(width * 2, width, 4, 2, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace),
            nn.ConvTranspose2d(width, 1, 4, 2, 1, bias=False),
            nn.Tanh(),
        )

    def forward(self, x):
        return self.main(x)


class Discriminator(nn.Module):
    def __init__(self, width: int = 64, inplace: bool = True):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(1, width, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=inplace),
            nn.Conv2d(width, width * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(width * 2),
            nn.LeakyReLU(0.2, inplace=inplace),
            nn.Conv2d(width * 2, 1, 4, 1, 0, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x):
        return self.main(x).view(-1, 1)


GENERATOR_NAMES = {
    "conv_transpose2d": "main.0",
    "batchnorm2d": "main.1",
    "conv_transpose2d_1": "main.3",
    "batchnorm2d_1": "main.4",
    "conv_transpose2d_2": "main.6",
}
DISCRIMINATOR_NAMES = {"conv2d": "main.0", "conv2d_1": "main.2", "batchnorm2d": "main.3", "conv2d_2": "main.5"}


def renamer(prefixes: dict[str, str]):
    """`conv2d_1.weight` -> `main.2.weight`, by the module-name table `prefixes`."""

    def rename(name: str) -> str:
        head, _, rest = name.partition(".")
        return f"{prefixes[head]}.{rest}"

    return rename


GENERATOR_NAMES_RENAME = renamer(GENERATOR_NAMES)
DISCRIMINATOR_NAMES_RENAME = renamer(DISCRIMINATOR_NAMES)


# ---------------------------------------------------------------- GPT (nanoGPT style)


class CausalSelfAttention(nn.Module):
    def __init__(self, d: int, heads: int, fused: bool = True, dropout: float | None = None):
        super().__init__()
        assert d % heads == 0
        self.fused = fused
        if fused:
            self.c_attn = nn.Linear(d, 3 * d)  # q, k and v in one GEMM
        else:  # only for attributing a difference: three GEMMs, as modelspec's std SelfAttention has
            self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.c_proj = nn.Linear(d, d)
        self.heads, self.d = heads, d
        # dropout=None: no dropout modules at all (p = 0); a number: nanoGPT's nn.Dropout, called even at p = 0
        self.resid_dropout = nn.Dropout(dropout) if dropout is not None else None

    def forward(self, x):
        B, T, C = x.size()
        if self.fused:
            q, k, v = self.c_attn(x).split(self.d, dim=2)
        else:
            q, k, v = self.q(x), self.k(x), self.v(x)
        k = k.view(B, T, self.heads, C // self.heads).transpose(1, 2)
        q = q.view(B, T, self.heads, C // self.heads).transpose(1, 2)
        v = v.view(B, T, self.heads, C // self.heads).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        y = self.c_proj(y)
        return y if self.resid_dropout is None else self.resid_dropout(y)


class GPTMLP(nn.Module):
    def __init__(self, d: int, dropout: float | None = None):
        super().__init__()
        self.c_fc = nn.Linear(d, 4 * d)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * d, d)
        self.dropout = nn.Dropout(dropout) if dropout is not None else None

    def forward(self, x):
        x = self.c_proj(self.gelu(self.c_fc(x)))
        return x if self.dropout is None else self.dropout(x)


class Block(nn.Module):
    def __init__(self, d: int, heads: int, fused: bool = True, dropout: float | None = None):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d)
        self.attn = CausalSelfAttention(d, heads, fused, dropout)
        self.ln_2 = nn.LayerNorm(d)
        self.mlp = GPTMLP(d, dropout)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    """nanoGPT's GPT for p = 0: fused qkv and no dropout modules (`fused`/`dropout` are for attribution runs)."""

    def __init__(
        self, vocab: int, ctx: int, d: int, heads: int, layers: int, fused: bool = True, dropout: float | None = None
    ):
        super().__init__()
        self.ctx = ctx
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(vocab, d),
                wpe=nn.Embedding(ctx, d),
                drop=nn.Dropout(dropout) if dropout is not None else nn.Identity(),
                h=nn.ModuleList([Block(d, heads, fused, dropout) for _ in range(layers)]),
                ln_f=nn.LayerNorm(d),
            )
        )
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying
        self.has_drop = dropout is not None

    def forward(self, idx):
        b, t = idx.size()
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        if self.has_drop:
            x = self.transformer.drop(x)
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))


# ---------------------------------------------------------------- ResNet-18 (torchvision style)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, inplace: bool = True
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=inplace)
        self.inplace = inplace
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        if self.inplace:
            out += identity
        else:  # only for attributing a difference: what modelspec generates
            out = out + identity
        return self.relu(out)


class ResNet18(nn.Module):
    """torchvision's resnet18; `inplace=False` (out-of-place ReLU and residual add) is for attribution runs."""

    def __init__(self, classes: int = 1000, inplace: bool = True):
        super().__init__()
        self.inplanes = 64
        self.inplace = inplace
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=inplace)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, 2)
        self.layer2 = self._make_layer(128, 2, stride=2)
        self.layer3 = self._make_layer(256, 2, stride=2)
        self.layer4 = self._make_layer(512, 2, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, classes)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )
        layers = [BasicBlock(self.inplanes, planes, stride, downsample, self.inplace)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes, inplace=self.inplace) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def resnet_name(name: str) -> str:
    """`layer2_0.down_conv.weight` -> `layer2.0.downsample.0.weight`; stem and fc names are shared."""
    head, _, rest = name.partition(".")
    if head.startswith("layer") and "_" in head:
        stage, index = head.split("_")
        rest = rest.replace("down_conv.", "downsample.0.").replace("down_bn.", "downsample.1.")
        return f"{stage}.{index}.{rest}"
    return name


# ---------------------------------------------------------------- copying weights by name


def copy_state(source: nn.Module, target: nn.Module, rename=lambda name: name) -> None:
    """Copy every parameter and buffer of `source` into `target[rename(name)]`; all of `target` must be covered."""
    src = source.state_dict()
    dst = target.state_dict()
    covered = set()
    with torch.no_grad():
        for name, value in src.items():
            key = rename(name)
            if key not in dst:
                raise KeyError(f"{name} -> {key}: no such entry in the reference")
            if dst[key].shape != value.shape:
                raise ValueError(f"{name} -> {key}: shape {tuple(value.shape)} != {tuple(dst[key].shape)}")
            dst[key].copy_(value)
            covered.add(key)
    missing = set(dst) - covered
    if missing:
        raise KeyError(f"reference entries not set from the modelspec module: {sorted(missing)}")


def copy_gpt(source: nn.Module, target: GPT) -> None:
    """modelspec GPT2 (separate q/k/v, `h.N.*`) -> nanoGPT (fused c_attn, `transformer.h.N.*`)."""
    src = source.state_dict()
    dst = target.state_dict()
    covered = set()

    def put(key, value):
        if dst[key].shape != value.shape:
            raise ValueError(f"{key}: shape {tuple(value.shape)} != {tuple(dst[key].shape)}")
        dst[key].copy_(value)
        covered.add(key)

    with torch.no_grad():
        put("transformer.wte.weight", src["wte.weight"])
        put("lm_head.weight", src["lm_head.weight"])
        put("transformer.wpe.weight", src["wpe.weight"])
        put("transformer.ln_f.weight", src["ln_f.weight"])
        put("transformer.ln_f.bias", src["ln_f.bias"])
        for i in range(len(target.transformer.h)):
            s, t = f"h.{i}.", f"transformer.h.{i}."
            for ln in ("ln_1", "ln_2"):
                for p in ("weight", "bias"):
                    put(f"{t}{ln}.{p}", src[f"{s}{ln}.{p}"])
            for p in ("weight", "bias"):
                if target.transformer.h[i].attn.fused:
                    put(f"{t}attn.c_attn.{p}", torch.cat([src[f"{s}attn.{n}.{p}"] for n in ("q", "k", "v")], dim=0))
                else:
                    for n in ("q", "k", "v"):
                        put(f"{t}attn.{n}.{p}", src[f"{s}attn.{n}.{p}"])
                put(f"{t}attn.c_proj.{p}", src[f"{s}attn.proj.{p}"])
                put(f"{t}mlp.c_fc.{p}", src[f"{s}mlp.fc.{p}"])
                put(f"{t}mlp.c_proj.{p}", src[f"{s}mlp.proj.{p}"])
    missing = set(dst) - covered
    if missing:
        raise KeyError(f"reference entries not set from the modelspec module: {sorted(missing)}")
    # sanity: tying survived the copy
    assert target.lm_head.weight.data_ptr() == target.transformer.wte.weight.data_ptr()
    assert math.isfinite(float(target.lm_head.weight.detach().sum()))
