"""Pooling: `maxpool`, `avgpool` (2-d), `maxpool1d`, `avgpool1d`,
`adaptive_avgpool` (2-d).

    x |> maxpool(2)                          # kernel 2, stride 2
    x |> maxpool(3, stride=2, padding=1)     # ResNet's stem
    x |> maxpool(3, 2, ceil_mode=true)
    x |> avgpool(kernel=2)
    x |> maxpool1d(2)
    x |> adaptive_avgpool(1)                 # [B, C, H, W] -> [B, C, 1, 1]
    x |> adaptive_avgpool((7, 7))

Shapes (per spatial size n, kernel k, stride s (default k), padding p, dilation d):
    maxpool, avgpool:       [B, C, H, W] -> [B, C, H', W']
    maxpool1d, avgpool1d:   [B, C, L]    -> [B, C, L']
        n' = (n + 2p - d*(k - 1) - 1) // s + 1
        with ceil_mode: rounded up instead, less one when the last window
        would start in the right padding (PyTorch's rule)
    adaptive_avgpool:       [B, C, H, W] -> [B, C, *output_size]
    padding may be at most half the kernel.
Parameters: none.
Cost: 1 FLOP per window element read (numel(out) * prod(kernel));
adaptive_avgpool numel(in) + numel(out).
"""

from __future__ import annotations

from typing import ClassVar

from modelspec.ir.dims import Dim
from modelspec.ops.base import (
    Args,
    Cost,
    NonNegInt,
    OpSpec,
    PosInt,
    ShapeError,
    ntuple,
    require_float,
    require_rank_in,
)

SPATIAL_NAMES = {1: ("length",), 2: ("height", "width")}


class MaxPool2dArgs(Args):
    kernel: PosInt | tuple[PosInt, PosInt]
    stride: PosInt | tuple[PosInt, PosInt] | None = None  # None: the kernel
    padding: NonNegInt | tuple[NonNegInt, NonNegInt] = 0
    dilation: PosInt | tuple[PosInt, PosInt] = 1
    ceil_mode: bool = False


class AvgPool2dArgs(Args):
    kernel: PosInt | tuple[PosInt, PosInt]
    stride: PosInt | tuple[PosInt, PosInt] | None = None
    padding: NonNegInt | tuple[NonNegInt, NonNegInt] = 0
    ceil_mode: bool = False
    count_include_pad: bool = True


class MaxPool1dArgs(Args):
    kernel: PosInt | tuple[PosInt]
    stride: PosInt | tuple[PosInt] | None = None
    padding: NonNegInt | tuple[NonNegInt] = 0
    dilation: PosInt | tuple[PosInt] = 1
    ceil_mode: bool = False


class AvgPool1dArgs(Args):
    kernel: PosInt | tuple[PosInt]
    stride: PosInt | tuple[PosInt] | None = None
    padding: NonNegInt | tuple[NonNegInt] = 0
    ceil_mode: bool = False
    count_include_pad: bool = True


def pool_size(what: str, size: Dim, k: int, s: int, p: int, d: int, ceil_mode: bool, name: str) -> Dim:
    """PyTorch's `pooling_output_shape` for one spatial size."""
    extent = d * (k - 1) + 1
    out = (size + 2 * p - extent + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and p + s > extent:
        # The last window may start in the padding; PyTorch drops it.
        if not size.is_const:
            raise ShapeError(
                f"`{what}` with ceil_mode needs a known input {name}, got `{size}`",
                label=f"the output {name} depends on the value of `{size}`",
                arg="ceil_mode",
                inputs=(0,),
                help="drop ceil_mode, or give the input size a number",
            )
        if (out.value - 1) * s >= size.value + p:
            out = out - 1
    if out.is_const and out.value < 1:
        raise ShapeError(
            f"`{what}` kernel spans {extent} but the padded input {name} is {size + 2 * p}",
            label=f"the output {name} would be {out}",
            arg="kernel",
            inputs=(0,),
            help="use a smaller kernel, or pool an earlier, larger feature map",
        )
    return out


class Pool(OpSpec):
    n: ClassVar[int]
    positional = ("kernel", "stride", "padding")
    category = "pooling"

    def infer(self, inputs, args):
        (x,) = inputs
        what = f"`{self.name}`"
        names = {1: "L", 2: "H, W"}[self.n]
        require_rank_in(x, (self.n + 2,), what, f"{self.n + 2}-d [B, C, {names}]")
        require_float(x, what)
        kernel = ntuple(args.kernel, self.n)
        stride = ntuple(args.stride, self.n) if args.stride is not None else kernel
        padding = ntuple(args.padding, self.n)
        dilation = ntuple(getattr(args, "dilation", 1), self.n)
        spatial = []
        for i in range(self.n):
            extent = dilation[i] * (kernel[i] - 1) + 1
            if 2 * padding[i] > extent:
                raise ShapeError(
                    f"{what} padding {padding[i]} is more than half the kernel ({extent})",
                    label=f"at most {extent // 2}",
                    arg="padding",
                )
            size = x.shape[2 + i]
            name = SPATIAL_NAMES[self.n][i]
            spatial.append(
                pool_size(self.name, size, kernel[i], stride[i], padding[i], dilation[i], args.ceil_mode, name)
            )
        return x.with_shape(x.shape[:2] + tuple(spatial))

    def cost(self, inputs, args, out):
        window = 1
        for k in ntuple(args.kernel, self.n):
            window *= k
        return Cost(flops=out.numel() * window)


class MaxPool2d(Pool):
    name = "maxpool"
    summary = "2-d max pooling over [B, C, H, W]"
    shape_rule = "[B, C, H, W] -> [B, C, (H + 2p - d*(k-1) - 1)//s + 1, (W + ...)//s + 1]"
    Args = MaxPool2dArgs
    n = 2


class AvgPool2d(Pool):
    name = "avgpool"
    summary = "2-d average pooling over [B, C, H, W]"
    shape_rule = "[B, C, H, W] -> [B, C, (H + 2p - k)//s + 1, (W + 2p - k)//s + 1]"
    Args = AvgPool2dArgs
    n = 2


class MaxPool1d(Pool):
    name = "maxpool1d"
    summary = "1-d max pooling over [B, C, L]"
    shape_rule = "[B, C, L] -> [B, C, (L + 2p - d*(k-1) - 1)//s + 1]"
    Args = MaxPool1dArgs
    n = 1


class AvgPool1d(Pool):
    name = "avgpool1d"
    summary = "1-d average pooling over [B, C, L]"
    shape_rule = "[B, C, L] -> [B, C, (L + 2p - k)//s + 1]"
    Args = AvgPool1dArgs
    n = 1


class AdaptiveAvgPoolArgs(Args):
    output_size: PosInt | tuple[PosInt, PosInt]


class AdaptiveAvgPool2d(OpSpec):
    name = "adaptive_avgpool"
    summary = "2-d average pooling to a fixed output size, whatever the input size"
    shape_rule = "[B, C, H, W] -> [B, C, oh, ow]"
    Args = AdaptiveAvgPoolArgs
    positional = ("output_size",)
    category = "pooling"

    def infer(self, inputs, args):
        (x,) = inputs
        require_rank_in(x, (4,), "`adaptive_avgpool`", "4-d [B, C, H, W]")
        require_float(x, "`adaptive_avgpool`")
        return x.with_shape(x.shape[:2] + ntuple(args.output_size, 2))

    def cost(self, inputs, args, out):
        return Cost(flops=inputs[0].numel() + out.numel())


OPS = [MaxPool2d(), AvgPool2d(), MaxPool1d(), AvgPool1d(), AdaptiveAvgPool2d()]
