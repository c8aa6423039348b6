"""`flatten`, `reshape`, `view`, `transpose`, `permute`, `concat`, `select`,
`mean`, `split_heads`, `merge_heads`."""

import pytest

from modelspec.ir.dims import Dim
from modelspec.ir.types import TensorType

B, T, D = Dim.sym("B"), Dim.sym("T"), Dim.sym("D")


def test_flatten(ops):
    r = ops("flatten", "float[B, 64, 6, 6]")
    assert str(r.out) == "float[B, 2304]"
    assert r.params == [] and r.cost.flops == 0
    assert ops("flatten", "float[B, T, D]", start_dim=0, end_dim=1).out.shape == (B * T, D)
    assert ops("flatten", "float[B, C, H, W]", start_dim=2).out.shape[2] == Dim.sym("H") * Dim.sym("W")
    assert ops.op("flatten").positional == ("start_dim", "end_dim")


def test_flatten_errors(ops):
    err = ops.error("flatten", "float[B, T, D]", start_dim=2, end_dim=1)
    assert err.arg == "start_dim" and err.message == "`flatten` start_dim 2 comes after end_dim 1"
    err = ops.error("flatten", "float[B]")
    assert err.arg == "start_dim" and err.code == "E0303"


@pytest.mark.parametrize("name", ["reshape", "view"])
def test_reshape_infers_minus_one(ops, name):
    assert ops.op(name).positional == ("*shape",)
    r = ops(name, "float[B, T, 768]", shape=(B, T, 12, -1))
    assert str(r.out) == "float[B, T, 12, 64]"
    assert ops(name, "float[B, T, 768]", shape=(-1, 768)).out.shape == (B * T, 768)
    assert ops(name, "float[B, T, D]", shape=(B, -1)).out.shape == (B, T * D)
    assert str(ops(name, "float[2, 6]", shape=(3, -1)).out) == "float[3, 4]"


@pytest.mark.parametrize("name", ["reshape", "view"])
def test_reshape_checks_numel(ops, name):
    assert str(ops(name, "float[2, 6]", shape=(4, 3)).out) == "float[4, 3]"
    err = ops.error(name, "float[2, 6]", shape=(4, 4))
    assert err.arg == "shape" and err.message == f"`{name}` cannot turn [2, 6] into [4, 4]"
    err = ops.error(name, "float[B, T, 768]", shape=(B, T, 12, 32))
    assert err.message == f"`{name}` cannot turn [B, T, 768] into [B, T, 12, 32]"
    assert ops.error(name, "float[2, 5]", shape=(3, -1)).arg == "shape"
    # undecidable: accepted, the sizes are checked when the model runs
    assert str(ops(name, "float[B, N]", shape=(B, Dim.sym("M"))).out) == "float[B, M]"


def test_reshape_errors(ops):
    err = ops.error("reshape", "float[B, 8]", shape=(-1, -1))
    assert err.arg == "shape" and err.message == "`reshape` can infer only one size, got 2 sizes of -1"
    assert ops.error("reshape", "float[B, 8]", shape=(B, 0, 8)).message == "`reshape` size 0 is not a valid size"
    err = ops.error("reshape", "float[B, N]", shape=(B, 2, -1))
    assert err.message == "`reshape` cannot infer the -1: B*N is not known to be a multiple of 2*B"
    assert err.help == "write that size out"


def test_transpose(ops):
    assert str(ops("transpose", "float[B, T, h, dk]", dim0=1, dim1=2).out) == "float[B, h, T, dk]"
    assert str(ops("transpose", "float[B, h, T, dk]", dim0=-2, dim1=-1).out) == "float[B, h, dk, T]"
    err = ops.error("transpose", "float[B, T]", dim0=0, dim1=2)
    assert err.arg == "dim1" and err.message == "`transpose` dimension 2 is out of range for a rank-2 input"


def test_permute(ops):
    assert ops.op("permute").positional == ("*dims",)
    assert str(ops("permute", "float[B, T, h, dk]", dims=(0, 2, 1, -1)).out) == "float[B, h, T, dk]"
    err = ops.error("permute", "float[B, T, D]", dims=(0, 1))
    assert err.arg == "dims" and err.code == "E0303"
    assert err.message == "`permute` needs 3 dims for a rank-3 input, got 2"
    assert ops.error("permute", "float[B, T, D]", dims=(0, 1, 1)).message == "`permute` names dim 1 more than once"


def test_concat(ops):
    op = ops.op("concat")
    assert op.min_inputs == 2 and op.max_inputs is None
    r = ops("concat", "float[B, 16, H, W]", "float[B, 32, H, W]", "float[B, 8, H, W]", dim=1)
    assert str(r.out) == "float[B, 56, H, W]"
    assert ops("concat", "float[B, T, D]", "float[B, S, D]", dim=-2).out.shape[1] == T + Dim.sym("S")


def test_concat_errors(ops):
    err = ops.error("concat", "float[B, 16, H, W]", "float[B, 16, H, 7]", dim=1)
    assert err.inputs == (0, 1) and err.label == "dim 3 is W and 7"
    assert ops.error("concat", "float[B, 16]", "float[B, 16, 1]", dim=1).code == "E0303"
    assert ops.error("concat", "float[B, 16]", "int64[B, 16]", dim=1).code == "E0302"
    assert ops.error("concat", "float[B, 16]", "float[B, 16]", dim=2).arg == "dim"


def test_select(ops):
    assert str(ops("select", "float[B, T, 768]", dim=1, index=0).out) == "float[B, 768]"
    assert str(ops("select", "float[B, 4, 768]", dim=1, index=-1).out) == "float[B, 768]"
    err = ops.error("select", "float[B, 4, 768]", dim=1, index=4)
    assert err.arg == "index" and err.message == "`select` index 4 is out of range for dim 1 of size 4"
    assert ops.error("select", "float[B, 4]", dim=5, index=0).arg == "dim"


def test_mean(ops, at):
    r = ops("mean", "float[B, T, D]", dim=1)
    assert str(r.out) == "float[B, D]"
    assert at(r.cost.flops, B=2, T=3, D=4) == 24
    assert str(ops("mean", "float[B, C, H, W]", dim=(2, 3), keepdim=True).out) == "float[B, C, 1, 1]"
    assert str(ops("mean", "float[B, C]").out) == "float[]"
    assert ops.error("mean", "float[B, C]", dim=(1, -1)).arg == "dim"
    assert ops.error("mean", "float[B, C]", dim=2).code == "E0303"


def test_split_heads(ops):
    assert str(ops("split_heads", "float[B, T, 768]", heads=12).out) == "float[B, 12, T, 64]"
    err = ops.error("split_heads", "float[B, T, 770]", heads=12)
    assert err.arg == "heads" and err.message == "`split_heads` cannot split 770 features into 12 heads"
    assert ops.error("split_heads", "float[B, T, D]", heads=12).label == "`D` is not known to be a multiple of 12"
    k = Dim.sym("k")
    assert ops("split_heads", TensorType("float", (B, T, 12 * k)), heads=12).out.shape == (B, 12, T, k)


def test_merge_heads(ops):
    assert str(ops("merge_heads", "float[B, 12, T, 64]").out) == "float[B, T, 768]"
    r = ops("merge_heads", "float[B, h, T, dk]")
    assert r.out.shape == (B, T, Dim.sym("h") * Dim.sym("dk"))
    assert ops.error("merge_heads", "float[T, D]").inputs == (0,)
