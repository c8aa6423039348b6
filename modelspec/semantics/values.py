"""What expressions evaluate to during elaboration.

Constants are plain Python values (int, float, bool, str, tuple) or `Dim`
for sizes that are symbolic. Tensors are `TensorValue`s that name the IR
value producing them. In `train` and `gan` blocks, calls evaluate to
`CallValue` (validated later against a component's arguments) and bare
names that are not constants to `Ref`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelspec.diagnostics import Span
from modelspec.ir.types import TensorType


@dataclass(frozen=True)
class TensorValue:
    ref: str  # the IR value: an input name, a node name, or "node:k"
    type: TensorType
    origin: Span  # where it was made, for secondary labels
    label: str = ""  # how to call it in a message (a variable name, or "")


@dataclass(frozen=True)
class RecordValue:
    """The several named outputs of a block call; `.name` picks one."""

    fields: dict[str, TensorValue]
    origin: Span


class Poison:
    """Stands for a value whose computation already failed (and was reported),
    so that one mistake yields one diagnostic, not a cascade."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<poison>"


POISON = Poison()


@dataclass(frozen=True)
class Ref:
    """A bare name in a `train`/`gan` block: a model, an output, a metric..."""

    name: str
    span: Span


@dataclass(frozen=True)
class CallValue:
    """`name(args, key=value)` in a `train`/`gan` block, evaluated but not yet validated."""

    name: str
    name_span: Span
    span: Span
    args: tuple[Any, ...] = ()
    arg_spans: tuple[Span, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    kwarg_spans: dict[str, Span] = field(default_factory=dict)


def spec_literal(value: Any) -> str:
    """A constant as a spec writes it (`true`, `"text"`, `3`), for labels such as `GPT2(layers=2)`."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def describe(value: Any) -> str:
    """A value's kind in words, for messages: "int 3", "tensor float[B, 10]"."""
    from modelspec.ir.dims import Dim

    if isinstance(value, TensorValue):
        return f"a tensor {value.type}"
    if isinstance(value, RecordValue):
        return "a block's outputs (" + ", ".join(value.fields) + ")"
    if isinstance(value, bool):
        return f"bool `{str(value).lower()}`"
    if isinstance(value, int):
        return f"int `{value}`"
    if isinstance(value, float):
        return f"float `{value}`"
    if isinstance(value, str):
        return "string " + '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, Dim):
        return f"symbolic size `{value}`"
    if isinstance(value, tuple):
        return "tuple (" + ", ".join(describe(v) for v in value) + ")"
    if isinstance(value, list):
        return "list [" + ", ".join(describe(v) for v in value) + "]"
    if isinstance(value, Ref):
        return f"name `{value.name}`"
    if isinstance(value, CallValue):
        return f"call `{value.name}(...)`"
    return type(value).__name__
