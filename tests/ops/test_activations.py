"""Elementwise activations, softmax, `identity`, and `dropout`."""

import pytest
from pydantic import ValidationError

FLOPS = {"relu": 1, "gelu": 8, "silu": 5, "tanh": 5, "sigmoid": 4, "leaky_relu": 2, "softmax": 5, "log_softmax": 5}


@pytest.mark.parametrize("name", sorted(FLOPS))
def test_elementwise_keeps_type_and_counts_flops(ops, at, name):
    r = ops(name, "float[B, T, 16]")
    assert str(r.out) == "float[B, T, 16]"
    assert r.params == []
    assert at(r.cost.flops, B=2, T=3) == FLOPS[name] * 2 * 3 * 16


@pytest.mark.parametrize("name", ["relu", "gelu", "silu", "softmax"])
def test_needs_float(ops, name):
    err = ops.error(name, "int64[B, 4]")
    assert err.code == "E0302" and err.message == f"`{name}` needs a floating-point input, got `int64`"


def test_arguments(ops):
    assert ops.op("gelu").Args.model_validate({"approximate": "tanh"}).approximate == "tanh"
    with pytest.raises(ValidationError):
        ops.op("gelu").Args.model_validate({"approximate": "fast"})
    assert ops.op("leaky_relu").positional == ("negative_slope",)
    assert str(ops("leaky_relu", "float[4]", negative_slope=0.2).out) == "float[4]"


def test_softmax_dim(ops):
    assert str(ops("softmax", "float[B, h, T, T]", dim=-1).out) == "float[B, h, T, T]"
    assert str(ops("log_softmax", "float[B, 10]", dim=1).out) == "float[B, 10]"
    err = ops.error("softmax", "float[B, 10]", dim=2)
    assert err.arg == "dim" and err.code == "E0303"
    assert err.message == "`softmax` dimension 2 is out of range for a rank-2 input"


def test_identity(ops):
    r = ops("identity", "int64[B, T]")
    assert str(r.out) == "int64[B, T]" and r.cost.flops == 0


def test_dropout(ops):
    r = ops("dropout", "float[B, T, 768]", p=0.1)
    assert str(r.out) == "float[B, T, 768]"
    assert r.params == [] and r.cost.flops == 0
    assert ops.op("dropout").positional == ("p",)
    assert ops.op("dropout").Args().p == 0.5
    assert ops.op("dropout").Args.model_validate({"p": 0}).p == 0.0
    for bad in (1.0, -0.1):
        with pytest.raises(ValidationError):
            ops.op("dropout").Args.model_validate({"p": bad})
