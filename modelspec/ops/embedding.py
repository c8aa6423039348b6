"""Token and position embeddings: `embedding`, `positions`,
`positional_encoding`, `rotary`.

    tokens |> embedding(vocab, d)                 # int[*] -> float[*, d]
    embedding(positions(T), ctx, d)               # a learned position table
    tokens |> embedding(vocab, d, padding_idx=0)
    x |> positional_encoding                      # sinusoidal, added to x
    x |> positional_encoding("learned", max_len=1024)
    q |> rotary                                   # rotary position embedding
    q |> rotary(base=500000.0)

Shapes:
    embedding:           int[*] -> float[*, dim]
    positions(length):   (no tensor input) -> int64[length]
    positional_encoding: [*, T, D] -> [*, T, D]   (T <= max_len)
    rotary:              [*, T, dk] -> [*, T, dk]  (dk even; e.g. [B, h, T, dk])
Parameters:
    embedding: weight [num, dim] ~ normal(0, 1) (PyTorch's nn.Embedding)
    positional_encoding "learned": weight [max_len, D] ~ normal(0, 1);
    "sinusoidal" and rotary register none (computed from positions).
Cost: embedding and positions 0 (lookups); positional_encoding 1 FLOP per
element (the add; sinusoidal tables are precomputed); rotary 3 per element.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from modelspec.ir.types import TensorType
from modelspec.ops.base import (
    Args,
    Cost,
    DimArg,
    OpSpec,
    ParamSpec,
    ShapeError,
    elementwise_flops,
    require_const,
    require_float,
    require_int,
    require_rank,
)


class EmbeddingArgs(Args):
    num: int = Field(gt=0)  # number of rows: the vocabulary size
    dim: int = Field(gt=0)  # width of each row
    padding_idx: int | None = None  # a row kept at zero and not trained


class Embedding(OpSpec):
    name = "embedding"
    summary = "a lookup table: row i of `weight` for each index i"
    shape_rule = "int[*] -> float[*, dim]"
    Args = EmbeddingArgs
    positional = ("num", "dim")
    category = "layers"

    def infer(self, inputs, args):
        (x,) = inputs
        require_int(x, "`embedding`")
        if args.padding_idx is not None and not -args.num <= args.padding_idx < args.num:
            raise ShapeError(
                f"`embedding` padding_idx {args.padding_idx} is out of range for {args.num} rows",
                label=f"must be in {-args.num}..{args.num - 1}",
                arg="padding_idx",
            )
        return x.with_dtype("float").with_shape(x.shape + (args.dim,))

    def params(self, inputs, args, out):
        init_args = {"mean": 0.0, "std": 1.0}
        if args.padding_idx is not None:
            init_args["padding_idx"] = args.padding_idx % args.num  # this row starts at zero
        return [ParamSpec("weight", (args.num, args.dim), init="normal", init_args=init_args)]

    def cost(self, inputs, args, out):
        return Cost(note="table lookup")


class PositionsArgs(Args):
    length: DimArg


class Positions(OpSpec):
    name = "positions"
    summary = "the positions 0, 1, ..., length-1"
    shape_rule = "() -> int64[length]"
    Args = PositionsArgs
    positional = ("length",)
    min_inputs = 0
    max_inputs = 0
    category = "layers"

    def infer(self, inputs, args):
        if args.length.is_const and args.length.value < 1:
            raise ShapeError(
                f"`positions` needs a positive length, got {args.length}",
                label="must be at least 1",
                arg="length",
            )
        return TensorType("int64", (args.length,))


class PositionalEncodingArgs(Args):
    kind: Literal["sinusoidal", "learned"] = "sinusoidal"
    max_len: int | None = Field(default=None, gt=0)  # longest sequence; required for "learned"


class PositionalEncoding(OpSpec):
    name = "positional_encoding"
    summary = "add a position encoding (fixed sinusoids, or a learned table) to a sequence"
    shape_rule = "[*, T, D] -> [*, T, D]"
    Args = PositionalEncodingArgs
    positional = ("kind",)
    category = "layers"

    def infer(self, inputs, args):
        (x,) = inputs
        require_rank(x, 2, "`positional_encoding`")
        require_float(x, "`positional_encoding`")
        length, width = x.shape[-2], x.shape[-1]
        if args.kind == "learned":
            if args.max_len is None:
                raise ShapeError(
                    '`positional_encoding` of kind "learned" needs `max_len`',
                    label="the table's size is not given",
                    help='give the longest sequence: `positional_encoding("learned", max_len=1024)`',
                )
            require_const(width, "`positional_encoding`", label=f"input is {x}")
        elif width.is_const and width.value % 2:
            raise ShapeError(
                f"`positional_encoding` sinusoids need an even model width, got {width}",
                label=f"input is {x}",
                inputs=(0,),
            )
        if args.max_len is not None and length.is_const and length.value > args.max_len:
            raise ShapeError(
                f"`positional_encoding` covers {args.max_len} positions but the sequence has {length}",
                label=f"max_len is {args.max_len}",
                arg="max_len",
                inputs=(0,),
                help=f"raise it: `max_len={length.value}`",
            )
        return x

    def params(self, inputs, args, out):
        if args.kind != "learned":
            return []
        width = inputs[0].shape[-1].value
        return [ParamSpec("weight", (args.max_len, width), init="normal", init_args={"mean": 0.0, "std": 1.0})]

    def cost(self, inputs, args, out):
        return elementwise_flops(out, 1)


class RotaryArgs(Args):
    base: float = Field(default=10000.0, gt=0.0)


class Rotary(OpSpec):
    name = "rotary"
    summary = "rotary position embedding: rotate pairs of features by position-dependent angles"
    shape_rule = "[*, T, dk] -> [*, T, dk] (dk even)"
    Args = RotaryArgs
    category = "layers"

    def infer(self, inputs, args):
        (x,) = inputs
        require_rank(x, 2, "`rotary`")
        require_float(x, "`rotary`")
        width = x.shape[-1]
        if width.is_const and width.value % 2:
            raise ShapeError(
                f"`rotary` rotates pairs of features, so the last dimension must be even, got {width}",
                label=f"input is {x}",
                inputs=(0,),
            )
        return x

    def cost(self, inputs, args, out):
        return elementwise_flops(out, 3)  # x*cos + rotate_half(x)*sin


OPS = [Embedding(), Positions(), PositionalEncoding(), Rotary()]
