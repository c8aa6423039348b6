"""The op `swiglu` as the checker and the summary see it: registered through
the entry-point group, shape rule, parameters (LLaMA's names), count, FLOPs,
initialisers, and mistakes reported at the call."""

from __future__ import annotations

import json

import pytest

import modelspec
from modelspec.cli import main
from modelspec.plugins import registry
from modelspec.summary import summarise


def spec(tmp_path, call: str, input_type: str = "float[B, T, 12]"):
    path = tmp_path / "ffn.mspec"
    path.write_text(
        f'use "swiglu"\nmodel Ffn() {{\n    input x: {input_type}\n    output y = x |> {call}\n}}\n', encoding="utf-8"
    )
    return path


def diagnostics(path, capsys) -> list[dict]:
    main(["check", "--format", "json", str(path)])
    return json.loads(capsys.readouterr().out)


def test_registered_through_the_entry_point_group():
    reg = registry()
    assert reg.op_owner["swiglu"] == "swiglu"
    assert reg.lowering_owner[("torch", "swiglu")] == "swiglu"
    assert {"swiglu", "modelspec-swiglu"} <= reg.plugins
    assert not [p for p in reg.problems if p.plugin == "swiglu"]


@pytest.mark.parametrize("bias", [False, True])
def test_shape_parameters_and_count(tmp_path, bias):
    program = modelspec.load(spec(tmp_path, f"swiglu(12 -> 41, bias={str(bias).lower()}, name=ffn)"))
    graph = program.models["Ffn"].graph
    (node,) = graph.nodes
    assert str(node.out) == "float[B, T, 12]"
    shapes = {p.name: p.shape for p in node.params}
    expected = {"w1.weight": (41, 12), "w2.weight": (12, 41), "w3.weight": (41, 12)}
    if bias:
        expected |= {"w1.bias": (41,), "w2.bias": (12,), "w3.bias": (41,)}
    assert shapes == expected
    d, h = 12, 41
    assert summarise(program.models["Ffn"], {"x": (2, 3, 12)}).parameters == 3 * d * h + ((2 * h + d) if bias else 0)


def test_flops_count_three_products_the_gate_and_silu(tmp_path):
    program = modelspec.load(spec(tmp_path, "swiglu(41)"))
    summary = summarise(program.models["Ffn"], {"x": (2, 5, 12)})
    rows, d, h = 2 * 5, 12, 41
    assert summary.forward_macs == rows * 3 * d * h
    assert summary.forward_flops == 2 * rows * 3 * d * h + rows * h * (5 + 1)


def test_default_initialisers_are_pytorchs_linear_ones(tmp_path):
    (node,) = modelspec.load(spec(tmp_path, "swiglu(41, bias=true)")).models["Ffn"].graph.nodes
    inits = {p.name: (p.init, p.init_args) for p in node.params}
    assert inits["w1.weight"] == ("kaiming_uniform", {"fan_in": 12})
    assert inits["w2.weight"] == ("kaiming_uniform", {"fan_in": 41})
    assert inits["w2.bias"] == ("uniform_fan_in", {"fan_in": 41})


def test_init_sets_the_three_weights_and_zeroes_the_biases(tmp_path):
    (node,) = modelspec.load(spec(tmp_path, "swiglu(41, bias=true, init=normal(0.02))")).models["Ffn"].graph.nodes
    for param in node.params:
        if param.name.endswith("weight"):
            assert (param.init, param.init_args) == ("normal", {"std": 0.02, "mean": 0.0}), param.name
        else:
            assert param.init == "zeros", param.name


@pytest.mark.parametrize(
    "call,input_type,code,where,message",
    [
        ("swiglu(8 -> 16)", "float[B, T, 12]", "E0301", "8 ->", "`swiglu` declares 8 input features but receives 12"),
        ("swiglu(4)", "int64[B, T, 12]", "E0302", "swiglu(4)", "`swiglu` needs a floating-point input"),
        ("swiglu(4)", "float[B, T, D]", "E0301", "swiglu(4)", "`swiglu` needs a known number of input features"),
        ("swiglu(0)", "float[B, T, 12]", "E0208", "0)", "argument `hidden` of `swiglu`"),
        ("swiglu(4, bias=1)", "float[B, T, 12]", "E0207", "bias=1", "argument `bias` of `swiglu` has the wrong type"),
        ("swiglu(4, gate=2)", "float[B, T, 12]", "E0203", "gate=2", "`swiglu` has no argument `gate`"),
        ("swiglu", "float[B, T, 12]", "E0204", "swiglu", "`swiglu` needs the argument `hidden`"),
    ],
)
def test_mistakes_are_reported_at_the_call(tmp_path, capsys, call, input_type, code, where, message):
    path = spec(tmp_path, call, input_type)
    (found,) = diagnostics(path, capsys)
    line = path.read_text().splitlines()[3]
    assert (found["code"], found["line"], found["column"]) == (code, 4, line.index(where) + 1)
    assert found["message"].startswith(message), found["message"]
