"""`conv1d`, `conv2d`, `conv_transpose2d`."""

import pytest
from pydantic import ValidationError


def test_conv2d_params_match_pytorch(ops):
    r = ops("conv2d", "float[B, 3, 32, 32]", out_channels=64, kernel=3)
    assert str(r.out) == "float[B, 64, 30, 30]"
    assert r.shapes == {"weight": (64, 3, 3, 3), "bias": (64,)}
    assert r.n_params == 1792
    assert r.params[0].init == "kaiming_uniform" and r.params[0].init_args == {"fan_in": 27}
    assert r.params[1].init == "uniform_fan_in"


def test_conv2d_symbolic_sizes(ops, at):
    r = ops("conv2d", "float[B, 3, H, W]", out_channels=32, kernel=3, padding=1)
    assert str(r.out) == "float[B, 32, H, W]"
    stem = ops("conv2d", "float[B, 3, H, W]", out_channels=64, kernel=7, stride=2, padding=3, bias=False)
    assert stem.n_params == 9408  # resnet18's conv1
    assert at(stem.out.shape[2], H=224) == 112 and at(stem.out.shape[3], W=225) == 113


def test_conv2d_same_padding_and_tuples(ops):
    assert str(ops("conv2d", "float[B, 8, H, W]", out_channels=8, kernel=5, padding="same").out) == "float[B, 8, H, W]"
    r = ops("conv2d", "float[B, 8, 17, 17]", out_channels=8, kernel=(1, 7), padding=(0, 3), dilation=(1, 1))
    assert str(r.out) == "float[B, 8, 17, 17]"
    assert r.shapes["weight"] == (8, 8, 1, 7)
    assert str(ops("conv2d", "float[B, 8, 17, 17]", out_channels=8, kernel=3, padding="valid").out) == (
        "float[B, 8, 15, 15]"
    )
    err = ops.error("conv2d", "float[B, 8, H, W]", out_channels=8, kernel=3, padding="same", stride=2)
    assert err.arg == "stride" and err.message == '`conv2d` cannot use padding="same" with stride 2'
    with pytest.raises(ValidationError):
        ops.op("conv2d").Args.model_validate({"out_channels": 8, "kernel": [3, 3]})  # tuples, not lists


def test_conv2d_declared_in_channels(ops):
    assert ops.op("conv2d").arrow == ("in_channels", "out_channels")
    assert str(ops("conv2d", "float[B, 3, H, W]", in_channels=3, out_channels=32, kernel=3).out).startswith(
        "float[B, 32"
    )
    err = ops.error("conv2d", "float[B, 64, H, W]", in_channels=3, out_channels=32, kernel=3)
    assert err.message == "`conv2d` expects 3 input channels but receives 64"
    assert err.arg == "in_channels" and err.inputs == (0,)


def test_conv2d_groups(ops):
    depthwise = ops("conv2d", "float[B, 32, H, W]", out_channels=32, kernel=3, groups=32, bias=False)
    assert depthwise.shapes == {"weight": (32, 1, 3, 3)}
    err = ops.error("conv2d", "float[B, 30, H, W]", out_channels=32, kernel=3, groups=4)
    assert err.arg == "groups" and err.message == "`conv2d` cannot split 30 input channels into 4 groups"
    err = ops.error("conv2d", "float[B, 32, H, W]", out_channels=30, kernel=3, groups=4)
    assert err.arg == "groups" and "30 output channels" in err.message


def test_conv2d_errors(ops):
    err = ops.error("conv2d", "float[B, 3, 3, 3]", out_channels=8, kernel=5)
    assert err.arg == "kernel"
    assert err.message == "`conv2d` kernel spans 5 but the padded input height is 3"
    assert err.label == "the output height would be -1"
    err = ops.error("conv2d", "float[B, 3, 32]", out_channels=8, kernel=3)
    assert err.code == "E0303" and err.message == "`conv2d` expects a 4-d [B, C, H, W] input, got float[B, 3, 32]"
    assert "known size" in ops.error("conv2d", "float[B, C, H, W]", out_channels=8, kernel=3).message
    assert ops.error("conv2d", "int64[B, 3, 8, 8]", out_channels=8, kernel=3).code == "E0302"


def test_conv2d_cost(ops):
    r = ops("conv2d", "float[1, 3, 32, 32]", out_channels=64, kernel=3, padding=1)
    macs = 64 * 32 * 32 * 3 * 9
    assert r.cost.macs == macs and r.cost.flops == 2 * macs + 64 * 32 * 32


def test_conv1d(ops, at):
    r = ops("conv1d", "float[B, 16, L]", out_channels=32, kernel=5, padding=2)
    assert str(r.out) == "float[B, 32, L]"
    assert r.shapes == {"weight": (32, 16, 5), "bias": (32,)}
    strided = ops("conv1d", "float[B, 16, L]", out_channels=32, kernel=3, stride=2)
    assert at(strided.out.shape[2], L=10) == 4
    assert at(strided.cost.macs, B=1, L=10) == 32 * 4 * 16 * 3
    err = ops.error("conv1d", "float[B, 16, 2]", out_channels=4, kernel=3)
    assert err.arg == "kernel" and "input length is 2" in err.message


def test_conv_transpose2d(ops, at):
    r = ops("conv_transpose2d", "float[B, 128, 16, 16]", out_channels=64, kernel=4, stride=2, padding=1)
    assert str(r.out) == "float[B, 64, 32, 32]"
    assert r.shapes == {"weight": (128, 64, 4, 4), "bias": (64,)}  # PyTorch: [in, out/groups, kh, kw]
    assert r.n_params == 128 * 64 * 16 + 64
    assert r.params[0].init_args == {"fan_in": 64 * 16}
    sym = ops(
        "conv_transpose2d", "float[B, 128, H, W]", out_channels=64, kernel=3, stride=2, padding=1, output_padding=1
    )
    assert str(sym.out) == "float[B, 64, 2*H, 2*W]"
    grouped = ops("conv_transpose2d", "float[B, 8, H, W]", out_channels=4, kernel=2, groups=2)
    assert grouped.shapes["weight"] == (8, 2, 2, 2)
    assert at(r.cost.macs, B=1) == 128 * 16 * 16 * 64 * 16


def test_conv_transpose2d_errors(ops):
    err = ops.error("conv_transpose2d", "float[B, 8, H, W]", out_channels=4, kernel=3, stride=2, output_padding=2)
    assert err.arg == "output_padding"
    err = ops.error("conv_transpose2d", "float[B, 8, 1, 1]", out_channels=4, kernel=1, padding=1)
    assert err.arg == "padding" and err.message == "`conv_transpose2d` output height would be -1"
    err = ops.error("conv_transpose2d", "float[B, 8, H, W]", in_channels=4, out_channels=4, kernel=3)
    assert err.arg == "in_channels"
