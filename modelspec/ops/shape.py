"""Shape ops: `flatten`, `reshape`, `view`, `transpose`, `permute`, `concat`,
`select`, `mean`, `split_heads`, `merge_heads`.

    x |> flatten                    # [B, C, H, W] -> [B, C*H*W]
    x |> flatten(0, 1)              # start_dim, end_dim
    x |> reshape(B, T, 12, -1)      # every positional argument is a size; one -1 is inferred
    x |> view(B, -1)
    x |> transpose(1, 2)
    x |> permute(0, 2, 1, 3)
    concat(a, b, c, dim=1)          # any number of tensors
    x |> select(1, 0)               # index 0 along dim 1, which goes away
    x |> mean(1)                    # or mean((2, 3), keepdim=true); no dim: all
    x |> split_heads(12)            # [B, T, D] -> [B, 12, T, D/12]
    x |> merge_heads                # [B, h, T, dk] -> [B, T, h*dk]

Shapes:
    flatten(s, e):     [.., d_s, .., d_e, ..] -> [.., d_s*...*d_e, ..]
    reshape, view:     [*] -> shape (same number of elements)
    transpose(i, j):   swaps dims i and j
    permute(*dims):    [d_0, ..] -> [d_dims[0], ..]
    concat(dim=k):     equal shapes except along k, where sizes add up
    select(dim, i):    removes `dim`
    mean(dim):         removes `dim` (keeps it as 1 with keepdim)
    split_heads(h):    [*, T, D] -> [*, h, T, D/h]   (D % h == 0)
    merge_heads:       [*, h, T, dk] -> [*, T, h*dk]
Parameters: none.
Cost: 0, except `mean`: 1 FLOP per input element.
"""

from __future__ import annotations

from modelspec.ir.dims import Dim
from modelspec.ops.base import (
    Args,
    Cost,
    DimArg,
    OpSpec,
    PosInt,
    ShapeError,
    exact_quotient,
    normalize_dim,
    product,
    require_float,
    require_rank,
    surely_unequal,
)


def _shape_text(dims) -> str:
    return "[" + ", ".join(str(d) for d in dims) + "]"


class FlattenArgs(Args):
    start_dim: int = 1
    end_dim: int = -1


class Flatten(OpSpec):
    name = "flatten"
    summary = "merge the dims start_dim..end_dim into one"
    shape_rule = "[.., d_s, .., d_e, ..] -> [.., d_s*...*d_e, ..]"
    Args = FlattenArgs
    positional = ("start_dim", "end_dim")
    category = "shape"

    def infer(self, inputs, args):
        (x,) = inputs
        start = normalize_dim(args.start_dim, x.rank, "`flatten`", arg="start_dim")
        end = normalize_dim(args.end_dim, x.rank, "`flatten`", arg="end_dim")
        if start > end:
            raise ShapeError(
                f"`flatten` start_dim {args.start_dim} comes after end_dim {args.end_dim}",
                label=f"for {x} these are dims {start} and {end}",
                arg="start_dim",
                inputs=(0,),
            )
        merged = product(x.shape[start : end + 1])
        return x.with_shape(x.shape[:start] + (merged,) + x.shape[end + 1 :])


class ReshapeArgs(Args):
    shape: tuple[DimArg, ...]


class Reshape(OpSpec):
    name = "reshape"
    summary = "the same elements in a new shape; one size may be -1 (inferred)"
    shape_rule = "[*] -> shape, numel kept"
    Args = ReshapeArgs
    positional = ("*shape",)
    category = "shape"

    def infer(self, inputs, args):
        (x,) = inputs
        what = f"`{self.name}`"
        target = args.shape
        holes = [i for i, d in enumerate(target) if d == -1]
        if len(holes) > 1:
            raise ShapeError(
                f"{what} can infer only one size, got {len(holes)} sizes of -1",
                label="more than one -1",
                arg="shape",
                help="give every size but one",
            )
        for d in target:
            if d.is_const and d.value < 1 and d != -1:
                raise ShapeError(
                    f"{what} size {d} is not a valid size",
                    label="sizes are positive, or -1 to infer one",
                    arg="shape",
                )
        numel = x.numel()
        known = product(d for d in target if d != -1)
        if holes:
            inferred = exact_quotient(numel, known)
            if inferred is None:
                if numel.is_const and known.is_const:
                    raise self._mismatch(x, target, f"{numel} elements do not split into parts of {known}")
                raise ShapeError(
                    f"{what} cannot infer the -1: {numel} is not known to be a multiple of {known}",
                    label=f"input is {x}",
                    arg="shape",
                    inputs=(0,),
                    help="write that size out",
                )
            target = tuple(inferred if i == holes[0] else d for i, d in enumerate(target))
        elif surely_unequal(numel, known):
            raise self._mismatch(x, target, f"{numel} elements, but the new shape has {known}")
        return x.with_shape(target)

    def _mismatch(self, x, target, label):
        return ShapeError(
            f"`{self.name}` cannot turn {x.shape_text()} into {_shape_text(target)}",
            label=label,
            arg="shape",
            inputs=(0,),
        )


class View(Reshape):
    name = "view"
    summary = "reshape (PyTorch's view): the same elements in a new shape"


class TransposeArgs(Args):
    dim0: int
    dim1: int


class Transpose(OpSpec):
    name = "transpose"
    summary = "swap two dims"
    shape_rule = "[.., a, .., b, ..] -> [.., b, .., a, ..]"
    Args = TransposeArgs
    positional = ("dim0", "dim1")
    category = "shape"

    def infer(self, inputs, args):
        (x,) = inputs
        i = normalize_dim(args.dim0, x.rank, "`transpose`", arg="dim0")
        j = normalize_dim(args.dim1, x.rank, "`transpose`", arg="dim1")
        shape = list(x.shape)
        shape[i], shape[j] = shape[j], shape[i]
        return x.with_shape(shape)


class PermuteArgs(Args):
    dims: tuple[int, ...]


class Permute(OpSpec):
    name = "permute"
    summary = "reorder the dims"
    shape_rule = "[d_0, .., d_n] -> [d_dims[0], .., d_dims[n]]"
    Args = PermuteArgs
    positional = ("*dims",)
    category = "shape"

    def infer(self, inputs, args):
        (x,) = inputs
        if len(args.dims) != x.rank:
            raise ShapeError(
                f"`permute` needs {x.rank} dims for a rank-{x.rank} input, got {len(args.dims)}",
                label=f"input is {x}",
                arg="dims",
                inputs=(0,),
                code="E0303",
            )
        order = [normalize_dim(d, x.rank, "`permute`", arg="dims") for d in args.dims]
        if len(set(order)) != len(order):
            repeated = next(d for d in order if order.count(d) > 1)
            raise ShapeError(
                f"`permute` names dim {repeated} more than once",
                label="each dim must appear once",
                arg="dims",
            )
        return x.with_shape(x.shape[d] for d in order)


class ConcatArgs(Args):
    dim: int


class Concat(OpSpec):
    name = "concat"
    summary = "join tensors along one dim"
    shape_rule = "[.., a_i, ..] for each i -> [.., sum(a_i), ..]"
    Args = ConcatArgs
    positional = ("dim",)
    min_inputs = 2
    max_inputs = None
    category = "shape"

    def infer(self, inputs, args):
        first = inputs[0]
        dim = normalize_dim(args.dim, first.rank, "`concat`")
        total = Dim.const(0)
        for i, t in enumerate(inputs):
            if t.rank != first.rank:
                raise ShapeError(
                    f"`concat` needs inputs of one rank, got {first} and {t}",
                    label=f"rank {t.rank}, not {first.rank}",
                    inputs=(0, i),
                    code="E0303",
                )
            if t.dtype != first.dtype:
                raise ShapeError(
                    f"`concat` needs inputs of one dtype, got `{first.dtype}` and `{t.dtype}`",
                    label=f"input is {t}",
                    inputs=(0, i),
                    code="E0302",
                )
            for k, (a, b) in enumerate(zip(first.shape, t.shape, strict=True)):
                if k != dim and a != b:
                    raise ShapeError(
                        f"`concat` along dim {args.dim} needs the other dims to match, got {first} and {t}",
                        label=f"dim {k} is {a} and {b}",
                        inputs=(0, i),
                    )
            total = total + t.shape[dim]
        return first.with_shape(first.shape[:dim] + (total,) + first.shape[dim + 1 :])


class SelectArgs(Args):
    dim: int
    index: int


class Select(OpSpec):
    name = "select"
    summary = "take one index along a dim, removing that dim"
    shape_rule = "[.., n, ..] -> [.., ..]"
    Args = SelectArgs
    positional = ("dim", "index")
    category = "shape"

    def infer(self, inputs, args):
        (x,) = inputs
        dim = normalize_dim(args.dim, x.rank, "`select`")
        size = x.shape[dim]
        if size.is_const and not -size.value <= args.index < size.value:
            raise ShapeError(
                f"`select` index {args.index} is out of range for dim {args.dim} of size {size}",
                label=f"must be in {-size.value}..{size.value - 1}",
                arg="index",
                inputs=(0,),
            )
        return x.with_shape(x.shape[:dim] + x.shape[dim + 1 :])


class MeanArgs(Args):
    dim: int | tuple[int, ...] | None = None  # None: every dim
    keepdim: bool = False


class Mean(OpSpec):
    name = "mean"
    summary = "average over one or more dims"
    shape_rule = "[.., n, ..] -> [.., ..] (or [.., 1, ..] with keepdim)"
    Args = MeanArgs
    positional = ("dim", "keepdim")
    category = "shape"

    def infer(self, inputs, args):
        (x,) = inputs
        require_float(x, "`mean`")
        if args.dim is None:
            dims = set(range(x.rank))
        else:
            listed = args.dim if isinstance(args.dim, tuple) else (args.dim,)
            dims = {normalize_dim(d, x.rank, "`mean`") for d in listed}
            if len(dims) != len(listed):
                raise ShapeError("`mean` names a dim more than once", label="each dim must appear once", arg="dim")
        if args.keepdim:
            return x.with_shape(Dim.const(1) if i in dims else d for i, d in enumerate(x.shape))
        return x.with_shape(d for i, d in enumerate(x.shape) if i not in dims)

    def cost(self, inputs, args, out):
        return Cost(flops=inputs[0].numel())


class SplitHeadsArgs(Args):
    heads: PosInt


class SplitHeads(OpSpec):
    name = "split_heads"
    summary = "split the features into heads: [B, T, D] -> [B, heads, T, D/heads]"
    shape_rule = "[*, T, D] -> [*, heads, T, D/heads]"
    Args = SplitHeadsArgs
    positional = ("heads",)
    category = "shape"

    def infer(self, inputs, args):
        (x,) = inputs
        require_rank(x, 2, "`split_heads`")
        width = x.shape[-1]
        per_head = exact_quotient(width, args.heads)
        if per_head is None:
            known = width.is_const
            raise ShapeError(
                f"`split_heads` cannot split {width} features into {args.heads} heads",
                label=f"{width} is not a multiple of {args.heads}"
                if known
                else f"`{width}` is not known to be a multiple of {args.heads}",
                arg="heads",
                inputs=(0,),
                help="the model width must be a multiple of the number of heads",
            )
        return x.with_shape(x.shape[:-2] + (Dim.const(args.heads), x.shape[-2], per_head))


class MergeHeads(OpSpec):
    name = "merge_heads"
    summary = "join the heads back: [B, h, T, dk] -> [B, T, h*dk]"
    shape_rule = "[*, h, T, dk] -> [*, T, h*dk]"
    category = "shape"

    def infer(self, inputs, args):
        (x,) = inputs
        require_rank(x, 3, "`merge_heads`")
        heads, length, per_head = x.shape[-3:]
        return x.with_shape(x.shape[:-3] + (length, heads * per_head))


OPS = [
    Flatten(),
    Reshape(),
    View(),
    Transpose(),
    Permute(),
    Concat(),
    Select(),
    Mean(),
    SplitHeads(),
    MergeHeads(),
]
