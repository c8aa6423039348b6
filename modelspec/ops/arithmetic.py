"""Arithmetic: `add`, `sub`, `mul`, `div` (elementwise) and `matmul`.

The expression operators map onto these: `a + b` is `add(a, b)`, `x * 0.5`
is `mul(x, scalar=0.5)`, `1 - x` is `sub(x, scalar=1, reverse=true)`,
`a @ b`-style products are written `matmul(a, b)`.

    add(a, b)                     # NumPy broadcasting: [B, T, D] + [T, D]
    x |> mul(0.5)                 # one tensor and a scalar
    x |> div(8.0)
    x |> sub(1.0, reverse=true)   # 1.0 - x
    matmul(q, k |> transpose(-2, -1))

Shapes:
    add/sub/mul/div, two tensors: broadcast(a, b) (sizes equal, or one is 1)
    add/sub/mul/div, a scalar:    [*] -> [*]
    matmul: [*b1, n, k] @ [*b2, k, m] -> [broadcast(b1, b2), n, m];
            a 1-d operand [k] counts as [1, k] (left) or [k, 1] (right), and
            that dim is dropped from the result (torch.matmul's rules)
Dtypes: equal dtypes stay; a float with an integer is the float; `div` of
integers is `float`.
Parameters: none.
Cost: add/sub/mul/div 1 FLOP per output element; matmul 2 per MAC, MACs =
batch * n * k * m.
"""

from __future__ import annotations

from modelspec.ir.dims import Dim
from modelspec.ir.types import TensorType, is_float
from modelspec.ops.base import (
    Args,
    Cost,
    OpSpec,
    ShapeError,
    broadcast,
    elementwise_flops,
    product,
    require_float,
    result_dtype,
)


class ScalarArgs(Args):
    scalar: float | int | None = None  # the second operand, when there is one tensor


class ReversibleArgs(ScalarArgs):
    reverse: bool = False  # scalar - x, scalar / x


class Binary(OpSpec):
    """An elementwise op of two tensors, or of a tensor and a scalar."""

    Args = ScalarArgs
    positional = ("scalar",)
    min_inputs = 1
    max_inputs = 2
    category = "arithmetic"
    shape_rule = "broadcast([*a], [*b]), or [*] with a scalar"
    true_division = False  # integer operands give a float result

    def infer(self, inputs, args):
        what = f"`{self.name}`"
        if len(inputs) == 2:
            if args.scalar is not None:
                raise ShapeError(
                    f"{what} takes a second tensor or a scalar, not both",
                    label="a second tensor is already given",
                    arg="scalar",
                )
            if getattr(args, "reverse", False):
                raise ShapeError(
                    f"{what} reverse applies only to a scalar operand",
                    label="swap the tensors instead",
                    arg="reverse",
                )
            a, b = inputs
            dtype = result_dtype(a.dtype, b.dtype, what)
            shape = broadcast(a, b, self.name)
        else:
            (a,) = inputs
            if args.scalar is None:
                raise ShapeError(
                    f"{what} needs a second operand",
                    label="one tensor and no scalar",
                    help=f"give a scalar, e.g. `{self.name}(x, 1.0)`, or a second tensor",
                )
            dtype = a.dtype
            if isinstance(args.scalar, float) and not is_float(dtype):
                dtype = "float"
            shape = a.shape
        if self.true_division and not is_float(dtype):
            dtype = "float"
        return TensorType(dtype, shape)

    def cost(self, inputs, args, out):
        return elementwise_flops(out, 1)


class Add(Binary):
    name = "add"
    summary = "a + b, elementwise with broadcasting"


class Sub(Binary):
    name = "sub"
    summary = "a - b, elementwise with broadcasting (scalar - x with reverse)"
    Args = ReversibleArgs


class Mul(Binary):
    name = "mul"
    summary = "a * b, elementwise with broadcasting"


class Div(Binary):
    name = "div"
    summary = "a / b, elementwise with broadcasting (scalar / x with reverse); true division"
    Args = ReversibleArgs
    true_division = True


class Matmul(OpSpec):
    name = "matmul"
    summary = "matrix product with batch broadcasting (torch.matmul)"
    shape_rule = "[*b1, n, k] @ [*b2, k, m] -> [broadcast(b1, b2), n, m]"
    min_inputs = 2
    max_inputs = 2
    category = "arithmetic"

    def infer(self, inputs, args):
        a, b = inputs
        for i, t in enumerate(inputs):
            if t.rank == 0:
                raise ShapeError(
                    "`matmul` needs operands of rank 1 or more, got a scalar",
                    label=f"input is {t}",
                    inputs=(i,),
                    code="E0303",
                )
            require_float(t, "`matmul`", i)
        if a.dtype != b.dtype:
            raise ShapeError(
                f"`matmul` needs operands of one dtype, got `{a.dtype}` and `{b.dtype}`",
                label=f"{a} and {b}",
                inputs=(0, 1),
                code="E0302",
            )
        n, k, k2, m, batch = _matmul_dims(a, b)
        if k != k2:
            raise ShapeError(
                f"`matmul` inner dimensions differ: {a.shape_text()} @ {b.shape_text()}",
                label=f"{k} on the left, {k2} on the right",
                inputs=(0, 1),
                help="the last dim of the left operand must equal the second-to-last of the right",
            )
        shape = batch + ((n,) if a.rank > 1 else ()) + ((m,) if b.rank > 1 else ())
        return a.with_shape(shape)

    def cost(self, inputs, args, out):
        a, b = inputs
        n, k, _, m, batch = _matmul_dims(a, b)
        macs = product(batch) * n * k * m
        return Cost(flops=2 * macs, macs=macs)


def _matmul_dims(a: TensorType, b: TensorType):
    """(n, k, k', m, batch) with 1-d operands promoted as torch does."""
    one = Dim.const(1)
    n, k = (one, a.shape[0]) if a.rank == 1 else a.shape[-2:]
    k2, m = (b.shape[0], one) if b.rank == 1 else b.shape[-2:]
    batch_a = TensorType(a.dtype, a.shape[:-2])
    batch_b = TensorType(b.dtype, b.shape[:-2])
    try:
        batch = broadcast(batch_a, batch_b, "matmul")
    except ShapeError as error:
        raise ShapeError(
            f"`matmul` cannot broadcast the batch dims {batch_a.shape_text()} and {batch_b.shape_text()}",
            label=error.label,
            inputs=(0, 1),
        ) from None
    return n, k, k2, m, batch


OPS = [Add(), Sub(), Mul(), Div(), Matmul()]
