"""`swiglu`: the gated feed-forward of Shazeer (2020), "GLU Variants Improve
Transformer", as used by LLaMA: `w2(silu(w1 x) * w3 x)`.

    x |> swiglu(hidden)                  # width of x inferred
    x |> swiglu(d -> hidden)             # width declared, and checked
    x |> swiglu(hidden, bias=true)       # biases on the three projections
    x |> swiglu(hidden, init=normal(0.02))

Shape: [*, D] -> [*, D]
Parameters (LLaMA's names, one linear map each, no biases by default):
    w1.weight [hidden, D]   the gate, through silu
    w3.weight [hidden, D]   the value it gates
    w2.weight [D, hidden]   back to the model width
    with bias=true also w1.bias [hidden], w3.bias [hidden], w2.bias [D]
Initialiser: PyTorch's nn.Linear defaults (kaiming_uniform weights, biases
uniform in +-1/sqrt(fan_in)); `init=` sets the three weights, biases 0.
Cost per row: 3*D*hidden MACs (2 FLOPs each), + 5*hidden for silu, + hidden
for the gating product, + 2*hidden + D for the biases.
"""

from __future__ import annotations

from pydantic import Field

from modelspec.ops.base import Args, Cost, OpSpec, ParamSpec, ShapeError, require_float, require_rank


class SwiGLUArgs(Args):
    hidden: int = Field(gt=0)  # width of the gated layer (LLaMA: about 8/3 of D)
    in_features: int | None = Field(default=None, gt=0)  # D, checked when declared
    bias: bool = False  # Shazeer and LLaMA use none


class SwiGLU(OpSpec):
    name = "swiglu"
    summary = "gated feed-forward: w2(silu(w1 x) * w3 x) (Shazeer 2020, LLaMA)"
    shape_rule = "[*, D] -> [*, D]"
    Args = SwiGLUArgs
    positional = ("hidden",)
    arrow = ("in_features", "hidden")
    category = "layers"

    def infer(self, inputs, args):
        (x,) = inputs
        require_rank(x, 1, "`swiglu`")
        require_float(x, "`swiglu`")
        width = x.shape[-1]
        if args.in_features is not None and width != args.in_features:
            raise ShapeError(
                f"`swiglu` declares {args.in_features} input features but receives {width}",
                label="declared here",
                arg="in_features",
                inputs=(0,),
                help=f"drop the input size: `swiglu({args.hidden})`",
            )
        if not width.is_const:
            raise ShapeError(
                f"`swiglu` needs a known number of input features, got `{width}`",
                label=f"input is {x}",
                inputs=(0,),
            )
        return x

    def params(self, inputs, args, out):
        width, hidden = inputs[0].shape[-1].value, args.hidden
        shapes = {"w1": (hidden, width), "w2": (width, hidden), "w3": (hidden, width)}
        params = []
        for name, (rows, fan_in) in shapes.items():
            init_args = {"fan_in": fan_in}
            params.append(ParamSpec(f"{name}.weight", (rows, fan_in), init="kaiming_uniform", init_args=init_args))
            if args.bias:
                params.append(ParamSpec(f"{name}.bias", (rows,), init="uniform_fan_in", init_args=init_args))
        return params

    def cost(self, inputs, args, out):
        width, hidden = inputs[0].shape[-1], args.hidden
        rows = out.numel() // width
        macs = rows * width * hidden * 3
        per_row = 6 * hidden + ((2 * hidden + width) if args.bias else 0)  # silu 5 + product 1 (+ biases)
        return Cost(flops=2 * macs + rows * per_row, macs=macs)


OPS = [SwiGLU()]
