"""Convolutions: `conv1d`, `conv2d`, `conv_transpose2d` (channels first).

    x |> conv2d(32, kernel=3)                # in channels inferred from x
    x |> conv2d(3 -> 32, kernel=3)           # in channels declared, and checked
    x |> conv2d(64, kernel=3, padding="same")
    x |> conv2d(64, kernel=(1, 7), stride=2, padding=(0, 3), bias=false)
    x |> conv2d(256, 3, groups=32)           # grouped (depthwise when groups == in)
    x |> conv1d(128, kernel=5, padding=2)
    z |> conv_transpose2d(64, kernel=4, stride=2, padding=1)   # doubles H, W

Shapes (per spatial size n, with kernel k, stride s, padding p, dilation d):
    conv1d:           [B, C_in, L]    -> [B, C_out, L']
    conv2d:           [B, C_in, H, W] -> [B, C_out, H', W']
        n' = (n + 2p - d*(k - 1) - 1) // s + 1      (n' = n with padding="same")
    conv_transpose2d: [B, C_in, H, W] -> [B, C_out, H', W']
        n' = (n - 1)*s - 2p + d*(k - 1) + output_padding + 1
    C_in and C_out must be multiples of `groups`; symbolic sizes stay symbolic.
Parameters (PyTorch's shapes):
    conv:           weight [C_out, C_in/groups, *kernel], bias [C_out]
    conv_transpose: weight [C_in, C_out/groups, *kernel], bias [C_out]
    weight ~ kaiming_uniform, bias ~ uniform_fan_in (fan_in = weight.size(1) * prod(kernel))
Cost: 2 FLOPs per MAC (+1 per output for the bias); MACs:
    conv:           numel(out) * C_in/groups * prod(kernel)
    conv_transpose: numel(in) * C_out/groups * prod(kernel)
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from modelspec.ir.dims import Dim
from modelspec.ops.base import (
    Args,
    Cost,
    NonNegInt,
    OpSpec,
    ParamSpec,
    PosInt,
    ShapeError,
    ntuple,
    require_const,
    require_float,
    require_rank_in,
)

SPATIAL_NAMES = {1: ("length",), 2: ("height", "width")}


class Conv1dArgs(Args):
    out_channels: int = Field(gt=0)
    kernel: PosInt | tuple[PosInt]
    stride: PosInt | tuple[PosInt] = 1
    padding: NonNegInt | tuple[NonNegInt] | Literal["same", "valid"] = 0
    dilation: PosInt | tuple[PosInt] = 1
    groups: int = Field(default=1, gt=0)
    bias: bool = True
    in_channels: int | None = Field(default=None, gt=0)  # checked against the input when given


class Conv2dArgs(Args):
    out_channels: int = Field(gt=0)
    kernel: PosInt | tuple[PosInt, PosInt]
    stride: PosInt | tuple[PosInt, PosInt] = 1
    padding: NonNegInt | tuple[NonNegInt, NonNegInt] | Literal["same", "valid"] = 0
    dilation: PosInt | tuple[PosInt, PosInt] = 1
    groups: int = Field(default=1, gt=0)
    bias: bool = True
    in_channels: int | None = Field(default=None, gt=0)


class ConvTranspose2dArgs(Args):
    out_channels: int = Field(gt=0)
    kernel: PosInt | tuple[PosInt, PosInt]
    stride: PosInt | tuple[PosInt, PosInt] = 1
    padding: NonNegInt | tuple[NonNegInt, NonNegInt] = 0
    output_padding: NonNegInt | tuple[NonNegInt, NonNegInt] = 0
    dilation: PosInt | tuple[PosInt, PosInt] = 1
    groups: int = Field(default=1, gt=0)
    bias: bool = True
    in_channels: int | None = Field(default=None, gt=0)


class ConvBase(OpSpec):
    """Shared by the convolutions; `n` is the number of spatial dimensions."""

    n: ClassVar[int]
    transposed: ClassVar[bool] = False
    positional = ("out_channels", "kernel")
    arrow = ("in_channels", "out_channels")
    category = "conv"

    def layout(self) -> str:
        names = {1: "L", 2: "H, W"}[self.n]
        return f"{self.n + 2}-d [B, C, {names}]"

    def in_channels(self, x, args) -> int:
        what = f"`{self.name}`"
        channels = x.shape[1]
        if args.in_channels is not None and channels != args.in_channels:
            raise ShapeError(
                f"{what} expects {args.in_channels} input channels but receives {channels}",
                label="declared here",
                arg="in_channels",
                inputs=(0,),
                help=f"drop the input size: `{self.name}({args.out_channels}, ...)`",
            )
        channels = require_const(channels, what, label=f"input is {x}")
        for size, arg_text in ((channels, "input"), (args.out_channels, "output")):
            if size % args.groups:
                raise ShapeError(
                    f"{what} cannot split {size} {arg_text} channels into {args.groups} groups",
                    label=f"{size} is not a multiple of {args.groups}",
                    arg="groups",
                    inputs=(0,) if arg_text == "input" else (),
                )
        return channels

    def infer(self, inputs, args):
        (x,) = inputs
        what = f"`{self.name}`"
        require_rank_in(x, (self.n + 2,), what, self.layout())
        require_float(x, what)
        self.in_channels(x, args)
        spatial = tuple(self.out_size(x.shape[2 + i], i, args) for i in range(self.n))
        return x.with_shape((x.shape[0], Dim.const(args.out_channels)) + spatial)

    def out_size(self, size: Dim, i: int, args) -> Dim:
        k = ntuple(args.kernel, self.n)[i]
        s = ntuple(args.stride, self.n)[i]
        d = ntuple(args.dilation, self.n)[i]
        extent = d * (k - 1) + 1
        if args.padding == "same":
            if s != 1:
                raise ShapeError(
                    f'`{self.name}` cannot use padding="same" with stride {s}',
                    label="stride must be 1",
                    arg="stride",
                    help="give the padding as a number, e.g. `padding=" + str((extent - 1) // 2) + "`",
                )
            return size
        p = 0 if args.padding == "valid" else ntuple(args.padding, self.n)[i]
        out = (size + 2 * p - extent) // s + 1
        if out.is_const and out.value < 1:
            name = SPATIAL_NAMES[self.n][i]
            raise ShapeError(
                f"`{self.name}` kernel spans {extent} but the padded input {name} is {size + 2 * p}",
                label=f"the output {name} would be {out}",
                arg="kernel",
                inputs=(0,),
                help="pad the input, or use a smaller kernel or dilation",
            )
        return out

    def kernel_size(self, args) -> int:
        k = 1
        for v in ntuple(args.kernel, self.n):
            k *= v
        return k

    def params(self, inputs, args, out):
        c_in = inputs[0].shape[1].value
        c_out = args.out_channels
        kernel = ntuple(args.kernel, self.n)
        if self.transposed:
            shape = (c_in, c_out // args.groups) + kernel
        else:
            shape = (c_out, c_in // args.groups) + kernel
        fan_in = shape[1] * self.kernel_size(args)
        params = [ParamSpec("weight", shape, init="kaiming_uniform", init_args={"fan_in": fan_in})]
        if args.bias:
            params.append(ParamSpec("bias", (c_out,), init="uniform_fan_in", init_args={"fan_in": fan_in}))
        return params

    def cost(self, inputs, args, out):
        x = inputs[0]
        if self.transposed:
            macs = x.numel() * (args.out_channels // args.groups) * self.kernel_size(args)
        else:
            macs = out.numel() * (x.shape[1] // args.groups) * self.kernel_size(args)
        return Cost(flops=2 * macs + (out.numel() if args.bias else 0), macs=macs)


class Conv1d(ConvBase):
    name = "conv1d"
    summary = "1-d convolution over [B, C, L]"
    shape_rule = "[B, C_in, L] -> [B, C_out, (L + 2p - d*(k-1) - 1)//s + 1]"
    Args = Conv1dArgs
    n = 1


class Conv2d(ConvBase):
    name = "conv2d"
    summary = "2-d convolution over [B, C, H, W]"
    shape_rule = "[B, C_in, H, W] -> [B, C_out, (H + 2p - d*(k-1) - 1)//s + 1, (W + ...)//s + 1]"
    Args = Conv2dArgs
    n = 2


class ConvTranspose2d(ConvBase):
    name = "conv_transpose2d"
    summary = "2-d transposed convolution (the gradient of conv2d), used to upsample"
    shape_rule = "[B, C_in, H, W] -> [B, C_out, (H-1)*s - 2p + d*(k-1) + output_padding + 1, ...]"
    Args = ConvTranspose2dArgs
    n = 2
    transposed = True

    def out_size(self, size: Dim, i: int, args) -> Dim:
        k = ntuple(args.kernel, self.n)[i]
        s = ntuple(args.stride, self.n)[i]
        d = ntuple(args.dilation, self.n)[i]
        p = ntuple(args.padding, self.n)[i]
        op = ntuple(args.output_padding, self.n)[i]
        if op >= max(s, d):
            raise ShapeError(
                f"`{self.name}` output_padding {op} must be smaller than the stride or the dilation",
                label=f"stride is {s}, dilation {d}",
                arg="output_padding",
            )
        out = (size - 1) * s - 2 * p + d * (k - 1) + op + 1
        if out.is_const and out.value < 1:
            name = SPATIAL_NAMES[self.n][i]
            raise ShapeError(
                f"`{self.name}` output {name} would be {out}",
                label=f"padding {p} removes more than the kernel adds",
                arg="padding",
                inputs=(0,),
                help="use less padding",
            )
        return out


OPS = [Conv1d(), Conv2d(), ConvTranspose2d()]
