"""`add`, `sub`, `mul`, `div`, `matmul`."""

import pytest
from pydantic import ValidationError


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div"])
def test_broadcasting(ops, at, name):
    op = ops.op(name)
    assert (op.min_inputs, op.max_inputs, op.positional) == (1, 2, ("scalar",))
    r = ops(name, "float[B, T, 768]", "float[T, 768]")
    assert str(r.out) == "float[B, T, 768]"
    assert at(r.cost.flops, B=2, T=3) == 2 * 3 * 768
    assert str(ops(name, "float[B, 1, T]", "float[B, T, 1]").out) == "float[B, T, T]"
    err = ops.error(name, "float[B, 3]", "float[B, 4]")
    assert err.inputs == (0, 1) and err.message == f"`{name}` cannot broadcast [B, 3] with [B, 4]"


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div"])
def test_scalar(ops, name):
    assert str(ops(name, "float[B, T]", scalar=0.5).out) == "float[B, T]"
    assert str(ops(name, "float16[B, T]", scalar=2).out) == "float16[B, T]"
    err = ops.error(name, "float[B, T]")
    assert err.message == f"`{name}` needs a second operand"
    assert ops.error(name, "float[B]", "float[B]", scalar=1.0).arg == "scalar"


def test_reverse(ops):
    assert str(ops("sub", "float[B]", scalar=1.0, reverse=True).out) == "float[B]"
    assert str(ops("div", "float[B]", scalar=1.0, reverse=True).out) == "float[B]"
    assert ops.error("sub", "float[B]", "float[B]", reverse=True).arg == "reverse"
    with pytest.raises(ValidationError):
        ops.op("add").Args.model_validate({"scalar": 1.0, "reverse": True})


def test_dtypes(ops):
    assert str(ops("add", "float[B]", "int64[B]").out) == "float[B]"
    assert str(ops("mul", "int64[B]", scalar=2).out) == "int64[B]"
    assert str(ops("mul", "int64[B]", scalar=0.5).out) == "float[B]"
    assert str(ops("div", "int64[B]", "int64[B]").out) == "float[B]"
    err = ops.error("add", "float16[B]", "float32[B]")
    assert err.code == "E0302" and err.message == "`add` cannot mix `float16` and `float32`"


def test_matmul(ops):
    op = ops.op("matmul")
    assert (op.min_inputs, op.max_inputs) == (2, 2)
    assert str(ops("matmul", "float[B, h, T, dk]", "float[B, h, dk, S]").out) == "float[B, h, T, S]"
    assert str(ops("matmul", "float[B, T, 64]", "float[64, 10]").out) == "float[B, T, 10]"
    assert str(ops("matmul", "float[B, 1, T, 8]", "float[h, 8, T]").out) == "float[B, h, T, T]"
    assert str(ops("matmul", "float[8]", "float[8]").out) == "float[]"
    assert str(ops("matmul", "float[T, 8]", "float[8]").out) == "float[T]"
    assert str(ops("matmul", "float[8]", "float[B, 8, 3]").out) == "float[B, 3]"


def test_matmul_errors(ops):
    err = ops.error("matmul", "float[B, T, 64]", "float[32, 10]")
    assert err.inputs == (0, 1)
    assert err.message == "`matmul` inner dimensions differ: [B, T, 64] @ [32, 10]"
    assert err.label == "64 on the left, 32 on the right"
    assert ops.error("matmul", "float[2, T, 8]", "float[3, 8, 4]").inputs == (0, 1)
    assert ops.error("matmul", "int64[T, 8]", "float[8, 4]").code == "E0302"
    assert ops.error("matmul", "float16[T, 8]", "float[8, 4]").code == "E0302"
    assert ops.error("matmul", "float[]", "float[8, 4]").code == "E0303"


def test_matmul_cost(ops):
    r = ops("matmul", "float[2, 3, 4]", "float[4, 5]")
    assert r.cost.macs == 2 * 3 * 4 * 5 and r.cost.flops == 2 * 2 * 3 * 4 * 5
