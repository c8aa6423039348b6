"""Every built-in op the exporter lowers, against the torch backend on the same weights, in small
specs that use each op's less common arguments too."""

from __future__ import annotations

import numpy as np
import pytest
from onnx_helpers import floats, tokens

import modelspec
from modelspec.plugins import registry
from modelspec_onnx.lowerings import LOWERINGS

SPECS = {
    "images": (
        """model Images() {
    input x: float[B, 4, 12, 12]
    a = x |> conv2d(8, kernel=3, padding="same", dilation=2, name=c1) |> groupnorm(2, name=gn) |> silu
    b = x |> conv2d(8, kernel=(3, 1), stride=2, padding=(1, 0), groups=4, bias=false, name=c2)
        |> batchnorm2d(affine=false, name=bn) |> avgpool(3, stride=1, padding=1, count_include_pad=false)
    c = a |> maxpool(3, stride=2, ceil_mode=true)
    d = concat(b, c, dim=1) |> conv_transpose2d(4, kernel=3, stride=2, padding=1, output_padding=1, name=up)
    e = d |> batchnorm2d(track_running_stats=false, name=bn_batch) |> adaptive_avgpool((3, 4))
    output y = e |> flatten(1, 2) |> transpose(1, 2) |> softmax(dim=1) |> sub(1.0, reverse=true) |> log_softmax(-1)
}""",
        {"x": (3, 4, 12, 12)},
    ),
    "sequences": (
        """model Sequences() {
    input x: float[B, 6, L]
    a = x |> conv1d(8, kernel=5, padding=2, name=c) |> batchnorm1d(name=bn) |> maxpool1d(2)
    b = a |> avgpool1d(2, ceil_mode=false) |> permute(0, 2, 1) |> layernorm(affine=false)
    c = b |> rmsnorm(name=rms) |> layernorm(bias=false, name=ln) |> mul(2.0) |> div(3.0)
    output y = c |> select(1, 0) |> batchnorm1d(name=bn_flat) |> sigmoid |> tanh |> leaky_relu(0.1)
}""",
        {"x": (2, 6, 16)},
    ),
    "attention": (
        """model Attn(d: int = 16, heads: int = 4) {
    input x: float[B, T, d]
    input memory: float[B, S, 12]
    input keep: bool[B, 4, T, T]
    s = x |> positional_encoding("learned", max_len=32, name=pe) |> positional_encoding(max_len=32)
    q = s |> linear(d, name=q) |> split_heads(heads) |> rotary
    k = s |> linear(d, name=k) |> split_heads(heads) |> rotary(base=500.0)
    v = s |> linear(d, name=v) |> split_heads(heads)
    a = attention(q, k, v, keep, causal=true, scale=0.3) |> merge_heads
    m = multihead_attention(a, keep, heads, causal=true, name=self_attn)
    c = multihead_attention(m, memory, heads, bias=false, name=cross)
    scores = matmul(c, c |> transpose(-2, -1)) |> view(B, T * T) |> reshape(B, T, T)
    output y = add(scores |> softmax, 0.5) |> gelu(approximate="tanh") |> identity |> dropout(0.3)
}""",
        {"x": (2, 7, 16), "memory": (2, 5, 12), "keep": (2, 4, 7, 7)},
    ),
    "tokens": (
        """model Tokens() {
    input ids: int64[B, T]
    e = embedding(ids, 20, 8, padding_idx=0, name=emb) |> relu |> mean(-1, keepdim=true)
    p = embedding(positions(T), 40, 8, name=pos) |> mean((0, 1))
    output y = sub(e, p) |> add(positions(T) |> add(1) |> reshape(1, T, 1)) |> mean
}""",
        {"ids": (3, 9)},
    ),
}


def feeds_for(shapes: dict, seed: int = 0) -> dict:
    feeds = {}
    for name, shape in shapes.items():
        if name == "ids":
            feeds[name] = tokens(shape, vocab=20, seed=seed)
        elif name == "keep":  # a random mask that keeps each query's first key, so no row is all masked
            keep = np.random.default_rng(seed).random(shape) < 0.7
            keep[..., 0] = True
            feeds[name] = keep
        else:
            feeds[name] = floats(shape, seed=seed)
    return feeds


@pytest.mark.parametrize("name", list(SPECS))
def test_op_zoo_against_torch(reference_from_text, name):
    text, shapes = SPECS[name]
    ref = reference_from_text(name, text)
    ref.compare(feeds_for(shapes))


def test_every_builtin_op_has_a_lowering():
    builtin = {name for name, owner in registry().op_owner.items() if owner.startswith("modelspec.")}
    assert builtin <= {lw.op for lw in LOWERINGS}


def test_the_zoo_uses_every_lowering():
    used = set()
    for text, _ in SPECS.values():
        program = modelspec.load(text)
        for model in program.models.values():
            used |= {node.op for node in model.graph.nodes}
    assert {lw.op for lw in LOWERINGS} - used == set()
