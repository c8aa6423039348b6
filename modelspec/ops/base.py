"""The one description of an op: `OpSpec`.

check, summary, every backend and the docs read the same OpSpec. An op file
reads top to bottom: docstring (the `.mspec` call and shape formula), the
arguments (a pydantic model), the shape rule, the parameters, the cost.

How a call maps onto an OpSpec (the elaborator does this, see
`modelspec.semantics.elaborate`):

- leading tensor-valued positional arguments are the op's tensor inputs
  (`x |> f(a)` is `f(x, a)`); their count must fit `min_inputs..max_inputs`;
- the remaining positional arguments fill `positional` in order;
- `in -> out` fills the two names in `arrow`;
- keyword arguments fill `Args` fields by name; unknown names are errors;
- arguments named in `identifier_args` take a bare name unevaluated
  (`tie=wte`), given to the op as a string;
- `name=` is universal: the node's name (and so its parameters' prefix).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer

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
    counts multiply-accumulates of matrix work separately."""

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
