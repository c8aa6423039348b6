"""The helpers in `modelspec.ops.base` that the op files share."""

import pytest

from modelspec.ir.dims import Dim
from modelspec.ir.types import TensorType
from modelspec.ops.base import (
    ShapeError,
    exact_quotient,
    normalize_dim,
    ntuple,
    product,
    require_const,
    result_dtype,
    surely_unequal,
)

B, T = Dim.sym("B"), Dim.sym("T")


def test_exact_quotient():
    assert exact_quotient(12, 4) == 3
    assert exact_quotient(12, 5) is None
    assert exact_quotient(768 * B * T, 12 * B * T) == 64
    assert exact_quotient(B * T, 2) is None
    assert exact_quotient(T + 1, T + 1) == 1
    assert exact_quotient(2 * T + 2, T + 1) is None  # true, but not shown by polynomial division


def test_surely_unequal():
    assert surely_unequal(12, 16)
    assert surely_unequal(768 * B * T, 384 * B * T)
    assert surely_unequal(T + 1, T)
    assert surely_unequal(2 * T + 2, T + 1)
    assert not surely_unequal(B * T, B * T)
    assert not surely_unequal(B * T, 64)  # B*T may be 64
    assert not surely_unequal(B, T)


def test_small_helpers():
    assert normalize_dim(-1, 3, "`f`") == 2
    with pytest.raises(ShapeError) as info:
        normalize_dim(3, 3, "`f`", arg="axis")
    assert info.value.arg == "axis" and info.value.code == "E0303"
    assert ntuple(3, 2) == (3, 3) and ntuple((1, 7), 2) == (1, 7)
    assert product([B, T, 2]) == 2 * B * T and product([]) == 1
    assert require_const(Dim.const(5), "`f`") == 5
    with pytest.raises(ShapeError):
        require_const(B, "`f`")
    assert result_dtype("float", "int64", "`add`") == "float"
    assert result_dtype("bool", "bfloat16", "`add`") == "bfloat16"
    with pytest.raises(ShapeError) as info:
        result_dtype("int32", "int64", "`add`")
    assert info.value.code == "E0302"
    assert TensorType("float", (B,)).rank == 1
