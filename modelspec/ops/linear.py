"""`linear`: an affine map over the last dimension.

    x |> linear(out)                 # in features inferred from x
    x |> linear(in -> out)           # in features declared, and checked
    x |> linear(vocab, bias=false, tie=wte)   # weight shared with `wte`

Shape: [*, in] -> [*, out]
Parameters: weight [out, in], bias [out]
Cost: 2*in*out FLOPs per row (+ out for the bias); in*out MACs per row.
"""

from __future__ import annotations

from pydantic import Field

from modelspec.ops.base import Args, Cost, OpSpec, ParamSpec, ShapeError, require_float, require_rank


class LinearArgs(Args):
    out_features: int = Field(gt=0)
    in_features: int | None = Field(default=None, gt=0)
    bias: bool = True
    tie: str | None = None  # name of a node whose `weight` this one shares


class Linear(OpSpec):
    name = "linear"
    summary = "affine map over the last dimension: y = x W^T + b"
    shape_rule = "[*, in] -> [*, out]"
    Args = LinearArgs
    positional = ("out_features",)
    arrow = ("in_features", "out_features")
    identifier_args = ("tie",)
    category = "layers"

    def infer(self, inputs, args):
        (x,) = inputs
        require_rank(x, 1, "`linear`")
        require_float(x, "`linear`")
        features = x.shape[-1]
        if args.in_features is not None and features != args.in_features:
            raise ShapeError(
                f"`linear` declares {args.in_features} input features but receives {features}",
                label="declared here",
                arg="in_features",
                inputs=(0,),
                help=f"drop the input size: `linear({args.out_features})`",
            )
        if not features.is_const:
            raise ShapeError(
                f"`linear` needs a known number of input features, got `{features}`",
                label=f"input is {x}",
                inputs=(0,),
            )
        return x.with_shape(x.shape[:-1] + (args.out_features,))

    def params(self, inputs, args, out):
        fan_in = inputs[0].shape[-1].value
        weight = ParamSpec(
            "weight",
            (args.out_features, fan_in),
            init="kaiming_uniform",
            init_args={"fan_in": fan_in},
            tied_to=f"{args.tie}.weight" if args.tie else None,
        )
        params = [weight]
        if args.bias:
            params.append(ParamSpec("bias", (args.out_features,), init="uniform_fan_in", init_args={"fan_in": fan_in}))
        return params

    def cost(self, inputs, args, out):
        rows = out.numel() // args.out_features
        macs = rows * inputs[0].shape[-1] * args.out_features
        flops = 2 * macs + (out.numel() if args.bias else 0)
        return Cost(flops=flops, macs=macs)


OPS = [Linear()]
