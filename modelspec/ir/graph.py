"""The IR: a Program of checked, typed graphs.

    Program ─ models: {name: Model}      one Model per `model` (and variant)
            ─ gans, trains               validated pairs and regimes
    Model   ─ graph: Graph
    Graph   ─ inputs {name: TensorType}, nodes [Node], outputs {name: value}
    Node    ─ one op call: op, inputs (values), attrs, outputs, params, cost

A *value* is a string: a graph input's name, a node's name (its first
output) or "node:k" (its k-th output). Node names are unique in a graph and
come from the spec (binding names, `name=`), so parameter paths, and so
state_dict keys, are stable: a node's parameter `weight` inside a block
call `attn` inside iteration 3 of repeat `h` is `h.3.attn.weight`.

Two ops are structural: `block` (a call of a block: `body` is the block's
elaborated graph) and `repeat` (`iterations[i]` is repeated `counts[i]`
times, in order; iterations whose inputs have the same types are
elaborated once and counted, so `repeat 96` costs one body).

Everything is a pydantic model with a JSON round trip (`to_json`,
`Program.model_validate_json`).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

from modelspec.diagnostics import Span
from modelspec.ir.dims import Dim, parse_dim
from modelspec.ir.types import TensorType


def _read_dim(value: Any) -> Dim:
    if isinstance(value, Dim):
        return value
    if isinstance(value, int):
        return Dim.const(value)
    return parse_dim(str(value))


def read_type(value: Any) -> TensorType:
    """A TensorType, or one read from its text (`float[B, 1, 28, 28]`, as `str()` writes it)."""
    if isinstance(value, TensorType):
        return value
    dtype, _, rest = str(value).partition("[")
    dims = rest.rstrip("]").strip()
    return TensorType(dtype.strip(), tuple(parse_dim(d) for d in _split_dims(dims)) if dims else ())


def _split_dims(text: str) -> list[str]:
    out, depth, current = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            out.append(current.strip())
            current = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        current += ch
    out.append(current.strip())
    return out


def _read_span(value: Any) -> Span | None:
    if value is None or isinstance(value, Span):
        return value
    return Span(**value)


def _write_span(span: Span | None) -> dict | None:
    if span is None:
        return None
    return {
        "file": span.file,
        "line": span.line,
        "column": span.column,
        "end_line": span.end_line,
        "end_column": span.end_column,
        "start": span.start,
        "end": span.end,
    }


DimField = Annotated[Dim, BeforeValidator(_read_dim), PlainSerializer(str, return_type=str)]
TypeField = Annotated[TensorType, BeforeValidator(read_type), PlainSerializer(str, return_type=str)]
SpanField = Annotated[Span | None, BeforeValidator(_read_span), PlainSerializer(_write_span)]


class IRModel(BaseModel):
    model_config = ConfigDict(frozen=False, arbitrary_types_allowed=True, extra="forbid")


class Param(IRModel):
    """A parameter (or buffer) of a node, with its path relative to the node."""

    name: str
    shape: tuple[int, ...]
    init: str = "default"
    init_args: dict[str, Any] = Field(default_factory=dict)
    trainable: bool = True
    buffer: bool = False
    tied_to: str | None = None
    dtype: str = "float"

    @property
    def numel(self) -> int:
        total = 1
        for d in self.shape:
            total *= d
        return total


class Constraint(IRModel):
    """A condition on symbolic sizes checked once the inputs are known (`assert T <= ctx`)."""

    left: DimField
    op: str
    right: DimField
    text: str
    span: SpanField = None
    message: str | None = None


class Node(IRModel):
    name: str
    op: str
    inputs: list[str] = Field(default_factory=list)
    attrs: dict[str, Any] = Field(default_factory=dict)
    outputs: list[TypeField] = Field(default_factory=list)
    output_names: list[str] = Field(default_factory=list)  # for block/repeat: which variable each output is
    params: list[Param] = Field(default_factory=list)
    flops: DimField = Field(default_factory=lambda: Dim.const(0))
    macs: DimField = Field(default_factory=lambda: Dim.const(0))
    cost_note: str = ""
    span: SpanField = None
    block: str | None = None  # the block's name, for op == "block"
    body: Graph | None = None
    iterations: list[Graph] = Field(default_factory=list)
    counts: list[int] = Field(default_factory=list)

    @property
    def out(self) -> TensorType:
        return self.outputs[0]


class Graph(IRModel):
    name: str
    kind: str = "model"  # "model", "block" or "repeat"
    inputs: dict[str, TypeField] = Field(default_factory=dict)
    input_spans: dict[str, SpanField] = Field(default_factory=dict)
    nodes: list[Node] = Field(default_factory=list)
    outputs: dict[str, str] = Field(default_factory=dict)  # output name -> value
    output_types: dict[str, TypeField] = Field(default_factory=dict)
    constraints: list[Constraint] = Field(default_factory=list)

    def node(self, name: str) -> Node | None:
        for node in self.nodes:
            if node.name == name:
                return node
        return None

    def value_type(self, value: str) -> TensorType:
        if value in self.inputs:
            return self.inputs[value]
        name, _, index = value.partition(":")
        node = self.node(name)
        if node is None:
            raise KeyError(value)
        return node.outputs[int(index) if index else 0]


class Model(IRModel):
    """A checked model: its graph and the hyperparameters it was built with."""

    name: str
    base: str  # the `model` declaration it comes from (itself, or a variant's base)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    graph: Graph
    span: SpanField = None


class Gan(IRModel):
    name: str
    generator: str
    discriminator: str
    span: SpanField = None


class Program(IRModel):
    """Everything a spec declares, checked."""

    models: dict[str, Model] = Field(default_factory=dict)
    gans: dict[str, Gan] = Field(default_factory=dict)
    trains: dict[str, Any] = Field(default_factory=dict)  # name -> TrainSpec
    files: list[str] = Field(default_factory=list)

    def to_json(self) -> str:
        return self.model_dump_json(indent=1)

    def model(self, name: str | None = None) -> Model:
        """A model by name; with no name, the only model or the last one declared."""
        if name is None:
            if not self.models:
                raise KeyError("the spec declares no model that can be built from its defaults")
            return list(self.models.values())[-1]
        return self.models[name]

    def summary(self, model: str | None = None, inputs: dict[str, tuple] | None = None):
        """Parameters, FLOPs and memory of a model (see `modelspec.summary`)."""
        from modelspec.summary import summarise

        return summarise(self.model(model), inputs or {})


Node.model_rebuild()
