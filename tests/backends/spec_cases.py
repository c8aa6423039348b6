"""Every model of every shipped spec, as a test case: the spec (a small
variant where the full model is too big for a quick CPU test), the model,
and seeded random inputs. Shared by the reference and torch.compile tests."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

import modelspec
from modelspec.ir.graph import Graph, Param, Program

SPECS = Path(__file__).resolve().parents[2] / "specs"


def variant(file: str, declaration: str) -> str:
    """Spec text: a shipped spec imported by absolute path, plus one declaration."""
    return f'import "{SPECS / file}"\n{declaration}\n'


def images(*shape: int) -> Callable[[torch.Generator], tuple]:
    return lambda g: (torch.randn(*shape, generator=g),)


def tokens(vocab: int, *shapes: tuple[int, ...], high: tuple[int, ...] = ()) -> Callable[[torch.Generator], tuple]:
    """Random ids for each shape, below `vocab` (or below the matching entry of `high`)."""

    def make(g):
        limits = high or (vocab,) * len(shapes)
        return tuple(torch.randint(0, n, shape, generator=g) for n, shape in zip(limits, shapes))

    return make


@dataclass(frozen=True)
class Case:
    id: str
    source: str  # a path to a shipped spec, or spec text for a small variant
    model: str
    inputs: Callable[[torch.Generator], tuple]
    train: bool = False  # compare gradients in training mode (batch-norm statistics; no dropout in these)
    slow: bool = False  # every test of the case takes more than ~5 s
    gradients: str = "yes"  # "yes", "slow" (more than ~5 s), or "no"

    def param(self, slow: bool = False):
        return pytest.param(self, id=self.id, marks=[pytest.mark.slow] if self.slow or slow else [])


# GPT-3 is `GPT2(ctx=2048, d=12288, heads=96, layers=96)`; a variant of a variant is
# refused (E0202), so its small case is GPT2 at GPT-3's context, from gpt3.mspec.
CASES = [
    Case("mlp_digits", str(SPECS / "mlp_digits.mspec"), "MLP", images(4, 1, 28, 28)),
    Case("cnn", str(SPECS / "cnn.mspec"), "CNN", images(4, 3, 32, 32)),
    Case("dcgan-generator", str(SPECS / "dcgan.mspec"), "Generator", images(4, 100, 1, 1), train=True),
    Case("dcgan-discriminator", str(SPECS / "dcgan.mspec"), "Discriminator", images(4, 1, 16, 16), train=True),
    Case("resnet18", str(SPECS / "resnet18.mspec"), "ResNet18", images(2, 3, 224, 224), train=True, gradients="slow"),
    # VGG-16 has no size parameter (224×224 in, 138M parameters): its gradients would take
    # ~30 s; every one of its weights already shows in the output comparison.
    Case("vgg16", str(SPECS / "vgg16.mspec"), "VGG16", images(1, 3, 224, 224), slow=True, gradients="no"),
    Case(
        "bert_base-tiny",
        variant("bert_base.mspec", "model Tiny = BertBase(vocab=101, ctx=16, d=32, heads=4, layers=2, ff=64)"),
        "Tiny",
        tokens(101, (2, 12), (2, 12), high=(101, 2)),
    ),
    Case(
        "gpt2-tiny",
        variant("gpt2.mspec", "model Tiny = GPT2(vocab=97, ctx=32, d=64, heads=4, layers=2)"),
        "Tiny",
        tokens(97, (2, 13)),
    ),
    Case(
        "gpt3-tiny",
        variant("gpt3.mspec", "model Tiny = GPT2(vocab=97, ctx=2048, d=48, heads=3, layers=2)"),
        "Tiny",
        tokens(97, (2, 9)),
    ),
    Case(
        "transformer-tiny",
        variant(
            "transformer.mspec",
            "model Tiny = Transformer(src_vocab=53, tgt_vocab=59, d=32, heads=4, ff=64, layers=2, ctx=16)",
        ),
        "Tiny",
        tokens(0, (2, 11), (2, 7), high=(53, 59)),
    ),
]

# A spec that arrived after the ones above; small enough to test at its declared size.
if (SPECS / "gpt_tiny.mspec").exists():
    CASES.append(Case("gpt_tiny", str(SPECS / "gpt_tiny.mspec"), "GPTTiny", tokens(96, (2, 21))))
# Uses the plugins in plugins/modelspec-swiglu and plugins/modelspec-lion (installed for the tests).
if (SPECS / "llama_tiny.mspec").exists():
    CASES.append(Case("llama_tiny", str(SPECS / "llama_tiny.mspec"), "LlamaTiny", tokens(96, (2, 19))))


@functools.cache
def load(source: str) -> Program:
    return modelspec.load(source)


def shipped_models() -> list[tuple[str, str]]:
    """(file, model) for every model declared in specs/*.mspec, at its declared size."""
    found = []
    for path in sorted(SPECS.glob("*.mspec")):
        for name, model in load(str(path)).models.items():
            if model.span is None or Path(model.span.file).name == path.name:  # not the imported ones
                found.append((path.name, name))
    return found


FULL_SIZE = shipped_models()


def inputs(case: Case, seed: int = 0) -> tuple:
    return case.inputs(torch.Generator().manual_seed(seed))


def ir_state(graph: Graph, prefix: str = "") -> dict[str, Param]:
    """Every parameter and buffer of the IR by its path (`h.3.attn.q.weight`)."""
    found = {}
    for node in graph.nodes:
        for param in node.params:
            found[f"{prefix}{node.name}.{param.name}"] = param
        if node.body is not None:
            found.update(ir_state(node.body, f"{prefix}{node.name}."))
        index = 0
        for iteration, count in zip(node.iterations, node.counts):
            for _ in range(count):
                found.update(ir_state(iteration, f"{prefix}{node.name}.{index}."))
                index += 1
    return found


@torch.no_grad()
def perturb_(module: nn.Module, seed: int = 1) -> nn.Module:
    """Give every tensor a distinctive value, so that a swapped or dropped tensor shows:
    weights ~ N(0, 1/fan_in), biases and norm affines shifted, batch-norm statistics
    away from 0 and 1."""
    g = torch.Generator().manual_seed(seed)
    seen = set()
    for name, tensor in module.state_dict().items():
        if not tensor.is_floating_point() or tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        noise = torch.randn(tensor.shape, generator=g, dtype=tensor.dtype)
        if name.endswith("running_var"):
            tensor.copy_(0.5 + noise.abs())
        elif tensor.dim() >= 2:
            tensor.copy_(noise / (tensor[0].numel() ** 0.5))
        else:
            tensor.add_(0.1 * noise)
    return module


def as_tuple(output) -> tuple:
    if isinstance(output, dict):
        return tuple(output.values())
    if isinstance(output, tuple | list):
        return tuple(output)
    return (output,)
