"""Normalisation layers: `layernorm`, `rmsnorm`, `batchnorm1d`,
`batchnorm2d`, `groupnorm`.

    x |> layernorm                  # over the last dimension
    x |> layernorm(768, eps=1e-12)  # the width declared, and checked
    x |> layernorm(bias=false)
    x |> rmsnorm(eps=1e-6)
    x |> batchnorm2d                # channels inferred from x
    x |> batchnorm2d(64)            # channels declared, and checked
    x |> batchnorm1d                # [B, C] or [B, C, L]
    x |> groupnorm(32)              # 32 groups over the channels

Shapes (all keep the input type):
    layernorm, rmsnorm: [*, D]       statistics over D
    batchnorm1d:        [B, C] or [B, C, L]
    batchnorm2d:        [B, C, H, W] statistics per channel, over B (and L / H, W)
    groupnorm:          [B, C, *]    C % groups == 0
Parameters (PyTorch's state_dict names):
    layernorm: weight [D] = 1, bias [D] = 0 (none when affine=false; no bias when bias=false)
    rmsnorm:   weight [D] = 1
    batchnorm: weight [C] = 1, bias [C] = 0; buffers running_mean [C] = 0,
               running_var [C] = 1, num_batches_tracked [] int64 = 0
    groupnorm: weight [C] = 1, bias [C] = 0
Cost: 5 FLOPs per element, +1 per element for a scale and +1 for a shift.
"""

from __future__ import annotations

from pydantic import Field

from modelspec.ops.base import (
    Args,
    Cost,
    OpSpec,
    ParamSpec,
    ShapeError,
    require_const,
    require_float,
    require_rank,
    require_rank_in,
)


def _check_declared(what: str, declared: int | None, actual, arg: str, noun: str = "features") -> None:
    if declared is not None and actual != declared:
        raise ShapeError(
            f"`{what}` declares {declared} {noun} but receives {actual}",
            label="declared here",
            arg=arg,
            inputs=(0,),
            help=f"drop the size, and `{what}` takes it from its input",
        )


def _affine(width: int, weight: bool = True, bias: bool = True) -> list[ParamSpec]:
    params = []
    if weight:
        params.append(ParamSpec("weight", (width,), init="ones"))
    if bias:
        params.append(ParamSpec("bias", (width,), init="zeros"))
    return params


def _norm_cost(out, scale: bool, shift: bool) -> Cost:
    return Cost(flops=out.numel() * (5 + int(scale) + int(shift)))


class LayerNormArgs(Args):
    normalized_shape: int | None = Field(default=None, gt=0)  # D, checked when given
    eps: float = Field(default=1e-5, gt=0.0)
    affine: bool = True  # learn a per-feature scale (PyTorch's elementwise_affine)
    bias: bool = True  # and a shift (only with affine)


class LayerNorm(OpSpec):
    name = "layernorm"
    summary = "normalise the last dimension to zero mean and unit variance, then scale and shift"
    shape_rule = "[*, D] -> [*, D]"
    Args = LayerNormArgs
    positional = ("normalized_shape",)
    category = "norms"

    def infer(self, inputs, args):
        (x,) = inputs
        require_rank(x, 1, f"`{self.name}`")
        require_float(x, f"`{self.name}`")
        width = x.shape[-1]
        _check_declared(self.name, args.normalized_shape, width, "normalized_shape")
        if args.affine:
            require_const(width, f"`{self.name}`", label=f"input is {x}")
        return x

    def params(self, inputs, args, out):
        if not args.affine:
            return []
        return _affine(inputs[0].shape[-1].value, bias=args.bias)

    def cost(self, inputs, args, out):
        return _norm_cost(out, args.affine, args.affine and args.bias)


class RMSNormArgs(Args):
    normalized_shape: int | None = Field(default=None, gt=0)
    eps: float = Field(default=1e-6, gt=0.0)
    affine: bool = True


class RMSNorm(LayerNorm):
    name = "rmsnorm"
    summary = "divide the last dimension by its root mean square, then scale"
    Args = RMSNormArgs

    def params(self, inputs, args, out):
        if not args.affine:
            return []
        return _affine(inputs[0].shape[-1].value, bias=False)

    def cost(self, inputs, args, out):
        return _norm_cost(out, args.affine, False)


class BatchNormArgs(Args):
    num_features: int | None = Field(default=None, gt=0)  # C, checked when given
    eps: float = Field(default=1e-5, gt=0.0)
    momentum: float = Field(default=0.1, ge=0.0, le=1.0)
    affine: bool = True
    track_running_stats: bool = True


class BatchNorm2d(OpSpec):
    name = "batchnorm2d"
    summary = "normalise each channel over the batch and spatial positions, then scale and shift"
    shape_rule = "[B, C, H, W] -> [B, C, H, W]"
    Args = BatchNormArgs
    positional = ("num_features",)
    category = "norms"
    ranks = (4,)
    layout = "4-d [B, C, H, W]"

    def infer(self, inputs, args):
        (x,) = inputs
        require_rank_in(x, self.ranks, f"`{self.name}`", self.layout)
        require_float(x, f"`{self.name}`")
        channels = x.shape[1]
        _check_declared(self.name, args.num_features, channels, "num_features", "channels")
        require_const(channels, f"`{self.name}`", label=f"input is {x}")
        return x

    def params(self, inputs, args, out):
        channels = inputs[0].shape[1].value
        params = _affine(channels) if args.affine else []
        if args.track_running_stats:
            params += [
                ParamSpec("running_mean", (channels,), init="zeros", trainable=False, buffer=True),
                ParamSpec("running_var", (channels,), init="ones", trainable=False, buffer=True),
                ParamSpec("num_batches_tracked", (), init="zeros", trainable=False, buffer=True, dtype="int64"),
            ]
        return params

    def cost(self, inputs, args, out):
        return _norm_cost(out, args.affine, args.affine)


class BatchNorm1d(BatchNorm2d):
    name = "batchnorm1d"
    summary = "normalise each feature (channel) over the batch (and length), then scale and shift"
    shape_rule = "[B, C] or [B, C, L] -> same"
    ranks = (2, 3)
    layout = "2-d [B, C] or 3-d [B, C, L]"


class GroupNormArgs(Args):
    groups: int = Field(gt=0)
    eps: float = Field(default=1e-5, gt=0.0)
    affine: bool = True


class GroupNorm(OpSpec):
    name = "groupnorm"
    summary = "split the channels into groups and normalise each group, then scale and shift per channel"
    shape_rule = "[B, C, *] -> [B, C, *] (C % groups == 0)"
    Args = GroupNormArgs
    positional = ("groups",)
    category = "norms"

    def infer(self, inputs, args):
        (x,) = inputs
        require_rank(x, 2, "`groupnorm`")
        require_float(x, "`groupnorm`")
        channels = require_const(x.shape[1], "`groupnorm`", label=f"input is {x}")
        if channels % args.groups:
            raise ShapeError(
                f"`groupnorm` cannot split {channels} channels into {args.groups} groups",
                label=f"{channels} is not a multiple of {args.groups}",
                arg="groups",
                inputs=(0,),
                help=f"use a divisor of {channels}, e.g. `groupnorm({_divisor_near(channels, args.groups)})`",
            )
        return x

    def params(self, inputs, args, out):
        return _affine(inputs[0].shape[1].value) if args.affine else []

    def cost(self, inputs, args, out):
        return _norm_cost(out, args.affine, args.affine)


def _divisor_near(n: int, k: int) -> int:
    return min((d for d in range(1, n + 1) if n % d == 0), key=lambda d: (abs(d - k), -d))


OPS = [LayerNorm(), RMSNorm(), BatchNorm1d(), BatchNorm2d(), GroupNorm()]
