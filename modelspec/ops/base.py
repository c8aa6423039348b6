"""The one description of an op: `OpSpec`.

check, summary, every backend and the docs read the same OpSpec. An op file
reads top to bottom: docstring (the `.mspec` call and shape formula), the
arguments (a pydantic model), the shape rule, the parameters, the cost.

How a call maps onto an OpSpec (the elaborator does this, see
`modelspec.semantics.elaborate`):

- leading tensor-valued positional arguments are the op's tensor inputs
  (`x |> f(a)` is `f(x, a)`); their count must fit `min_inputs..max_inputs`
  (`max_inputs=None`: any number, e.g. `concat(a, b, c, dim=1)`;
  `min_inputs=0`: a source op such as `positions(T)`);
- the remaining positional arguments fill `positional` in order; a name
  written `*name` (always last) takes all the rest as a tuple, like Python's
  `*args` (`reshape(B, T, 12, -1)` gives `shape=(B, T, 12, -1)`);
- `in -> out` fills the two names in `arrow`;
- keyword arguments fill `Args` fields by name; unknown names are errors;
- arguments named in `identifier_args` take a bare name unevaluated
  (`tie=wte`), given to the op as a string;
- `name=` is universal: the node's name (and so its parameters' prefix).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

from modelspec.ir.dims import Dim
from modelspec.ir.types import TensorType


class Args(BaseModel):
    """Base of every op's argument model: strict types, no unknown fields."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, arbitrary_types_allowed=True)


class NoArgs(Args):
    pass


def _to_dim(value: Any) -> Dim:
    if isinstance(value, Dim):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Dim.const(value)
    raise ValueError(f"expected a dimension, got {type(value).__name__}")


# A size that may be symbolic (`positions(T)`, `reshape(B, T, -1)`).
DimArg = Annotated[Dim, BeforeValidator(_to_dim), PlainSerializer(str, return_type=str)]

# Integer argument types for kernel sizes, strides and paddings.
PosInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]


class ShapeError(Exception):
    """Raised by a shape rule. The elaborator turns it into a Diagnostic at the call.

    `arg` names the argument to point at (else the whole call); `inputs`
    lists tensor inputs (by index) whose origin is worth showing as a
    secondary label.
    """

    def __init__(
        self,
        message: str,
        *,
        label: str = "",
        arg: str | None = None,
        inputs: tuple[int, ...] = (),
        notes: tuple[str, ...] | list[str] = (),
        help: str | None = None,
        code: str = "E0301",
    ):
        super().__init__(message)
        self.message = message
        self.label = label
        self.arg = arg
        self.inputs = tuple(inputs)
        self.notes = tuple(notes)
        self.help = help
        self.code = code


@dataclass(frozen=True)
class ParamSpec:
    """One learnable tensor (or buffer) an op creates.

    `init` names the initialiser the backends apply (PyTorch's defaults
    unless a spec says otherwise): "kaiming_uniform", "uniform_fan_in",
    "normal", "zeros", "ones", ...; `init_args` gives its arguments.
    """

    name: str
    shape: tuple[int, ...]
    init: str = "default"
    init_args: dict = field(default_factory=dict)
    trainable: bool = True
    buffer: bool = False  # running statistics: stored in state_dict, not trained
    tied_to: str | None = None  # a parameter of another node, by its path (no storage of its own)
    dtype: str = "float"

    @property
    def numel(self) -> int:
        total = 1
        for d in self.shape:
            total *= d
        return total


@dataclass(frozen=True)
class Cost:
    """Forward cost of one call. FLOPs count a multiply-add as two; `macs`
    counts multiply-accumulates of matrix work separately.

    The built-in ops count, per output element unless said otherwise:
    matrix and convolution work 2 FLOPs per MAC (+1 per output for a bias);
    `add`/`sub`/`mul`/`div`/`relu`/`positional_encoding` 1; `leaky_relu` 2;
    `rotary` 3; `sigmoid` 4; `silu`, `tanh`, `softmax`, `log_softmax` 5;
    `gelu` 8; norms 5 (+1 for a scale, +1 for a shift); `mean` 1 per input
    element; pooling 1 per window element read; attention 5 per score for
    the softmax on top of its two products; reshapes, views, `dropout`
    (the identity in inference), `embedding` lookups and `identity` 0.
    `note` says what the count leaves out or overstates (e.g. causal masks).
    """

    flops: Dim = field(default_factory=lambda: Dim.const(0))
    macs: Dim = field(default_factory=lambda: Dim.const(0))
    note: str = ""


class OpSpec:
    """Subclass once per op; register an instance through the `mspec_ops` hook."""

    name: ClassVar[str]
    summary: ClassVar[str] = ""  # one line, shown by `mspec ops` and docs
    shape_rule: ClassVar[str] = ""  # the shape formula in words, e.g. "[*, in] -> [*, out]"
    Args: ClassVar[type[Args]] = NoArgs
    positional: ClassVar[tuple[str, ...]] = ()
    arrow: ClassVar[tuple[str, str] | None] = None
    identifier_args: ClassVar[tuple[str, ...]] = ()
    min_inputs: ClassVar[int] = 1
    max_inputs: ClassVar[int | None] = 1  # None: any number
    category: ClassVar[str] = "other"

    def infer(self, inputs: list[TensorType], args: Args) -> TensorType:
        """Output type from input types and arguments, or raise ShapeError."""
        raise NotImplementedError

    def params(self, inputs: list[TensorType], args: Args, out: TensorType) -> list[ParamSpec]:
        return []

    def cost(self, inputs: list[TensorType], args: Args, out: TensorType) -> Cost:
        return Cost()

    def attrs(self, args: Args) -> dict:
        """The arguments as JSON-able attributes of the IR node."""
        return args.model_dump(mode="json")


# ---- helpers shared by op files ----------------------------------------------


def elementwise_flops(t: TensorType, per_element: int = 1) -> Cost:
    return Cost(flops=t.numel() * per_element)


def require_rank(t: TensorType, at_least: int, what: str, index: int = 0) -> None:
    if t.rank < at_least:
        raise ShapeError(
            f"{what} needs an input of rank {at_least} or more, got {t}",
            label=f"input has rank {t.rank}",
            inputs=(index,),
        )


def require_float(t: TensorType, what: str, index: int = 0) -> None:
    from modelspec.ir.types import is_float

    if not is_float(t.dtype):
        raise ShapeError(
            f"{what} needs a floating-point input, got `{t.dtype}`",
            label=f"input is {t}",
            inputs=(index,),
            code="E0302",
        )


def dims_equal(a: Dim, b: Dim) -> bool:
    return Dim.of(a) == Dim.of(b)


def broadcast(a: TensorType, b: TensorType, what: str) -> tuple[Dim, ...]:
    """NumPy broadcasting of two shapes; symbolic dims must be equal or 1."""
    out = []
    for i in range(1, max(a.rank, b.rank) + 1):
        da = a.shape[-i] if i <= a.rank else Dim.const(1)
        db = b.shape[-i] if i <= b.rank else Dim.const(1)
        if da == db or db == 1:
            out.append(da)
        elif da == 1:
            out.append(db)
        else:
            raise ShapeError(
                f"`{what}` cannot broadcast {a.shape_text()} with {b.shape_text()}",
                label=f"dimension {-i} is {da} on the left and {db} on the right",
                inputs=(0, 1),
            )
    return tuple(reversed(out))


# ---- more helpers (dims, ranks, dtypes) ----------------------------------------


def require_rank_in(t: TensorType, ranks: tuple[int, ...], what: str, layout: str, index: int = 0) -> None:
    """The input's rank must be one of `ranks`; `layout` names them, e.g. "[B, C, H, W]"."""
    if t.rank not in ranks:
        raise ShapeError(
            f"{what} expects a {layout} input, got {t}",
            label=f"input has rank {t.rank}",
            inputs=(index,),
            code="E0303",
        )


def require_int(t: TensorType, what: str, index: int = 0) -> None:
    from modelspec.ir.types import is_int

    if not is_int(t.dtype):
        raise ShapeError(
            f"{what} needs an integer input, got `{t.dtype}`",
            label=f"input is {t}",
            inputs=(index,),
            code="E0302",
            help="indices must be an integer tensor, e.g. `int64[B, T]`",
        )


def normalize_dim(dim: int, rank: int, what: str, arg: str = "dim", index: int = 0) -> int:
    """A dimension index, possibly negative (-1 is the last), as 0..rank-1."""
    if not -rank <= dim < rank:
        raise ShapeError(
            f"{what} dimension {dim} is out of range for a rank-{rank} input",
            label=f"must be in {-rank}..{rank - 1}",
            arg=arg,
            inputs=(index,),
            code="E0303",
        )
    return dim % rank


def require_const(d: Dim, what: str, label: str = "", arg: str | None = None, index: int | None = 0) -> int:
    """The value of a dim that sizes a parameter: it must be a known number."""
    d = Dim.of(d)
    if not d.is_const:
        raise ShapeError(
            f"{what} needs a known size here, got `{d}`",
            label=label or f"`{d}` is symbolic",
            arg=arg,
            inputs=() if index is None else (index,),
            help="give the dimension a number in the input's type, or as a model argument",
        )
    return d.value


def product(dims) -> Dim:
    total = Dim.const(1)
    for d in dims:
        total = total * d
    return total


def ntuple(value: int | tuple[int, ...], n: int) -> tuple[int, ...]:
    """An int or an n-tuple argument as an n-tuple (`kernel=3` is `(3, 3)`)."""
    return value if isinstance(value, tuple) else (value,) * n


def exact_quotient(d: Dim | int, n: Dim | int) -> Dim | None:
    """`d / n` when it is known to divide exactly, else None."""
    d, n = Dim.of(d), Dim.of(n)
    if d == n:
        return Dim.const(1)
    if d.is_const and n.is_const:
        return Dim.const(d.value // n.value) if n.value and d.value % n.value == 0 else None
    if len(n.terms) == 1:
        return d.exact_div(n)
    return None


def surely_unequal(a: Dim | int, b: Dim | int) -> bool:
    """True when two sizes differ whatever their symbols stand for (sizes are
    positive): their difference is a constant other than 0, or their ratio a
    constant other than 1. False when they are equal or it cannot be told."""
    a, b = Dim.of(a), Dim.of(b)
    if a == b:
        return False
    if (a - b).is_const:
        return True
    ma = [m for m, _ in a.terms]
    mb = [m for m, _ in b.terms]
    if ma != mb:
        return False
    ca = [c for _, c in a.terms]
    cb = [c for _, c in b.terms]
    # a = r*b for one rational r (cross-multiplied), and r != 1 since a != b.
    return all(x * cb[0] == y * ca[0] for x, y in zip(ca, cb, strict=True))


def result_dtype(a: str, b: str, what: str, inputs: tuple[int, ...] = (0, 1)) -> str:
    """The dtype of a binary elementwise op: equal dtypes stay; a float with
    an integer or bool is the float; anything else must be cast first."""
    from modelspec.ir.types import is_float

    if a == b:
        return a
    if is_float(a) and not is_float(b):
        return a
    if is_float(b) and not is_float(a):
        return b
    if {a, b} <= {"int", "int64"}:
        return "int64"
    raise ShapeError(
        f"{what} cannot mix `{a}` and `{b}`",
        label=f"`{a}` on the left, `{b}` on the right",
        inputs=inputs,
        code="E0302",
        help="give both operands the same dtype",
    )
