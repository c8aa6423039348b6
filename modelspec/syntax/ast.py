"""The abstract syntax tree: frozen dataclasses, each carrying its source Span.

The parser builds these and nothing else; meaning (names, types, shapes)
is given to them in `modelspec.semantics`.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelspec.diagnostics.span import Span

# ---- expressions -------------------------------------------------------------


@dataclass(frozen=True)
class Expr:
    span: Span


@dataclass(frozen=True)
class Name(Expr):
    id: str


@dataclass(frozen=True)
class Int(Expr):
    value: int
    text: str  # as written, so `fmt` keeps `50_257`


@dataclass(frozen=True)
class Float(Expr):
    value: float
    text: str


@dataclass(frozen=True)
class Str(Expr):
    value: str
    text: str


@dataclass(frozen=True)
class Bool(Expr):
    value: bool


@dataclass(frozen=True)
class Tuple(Expr):
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class List(Expr):
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Unary(Expr):
    op: str  # "-", "+" or "not"
    operand: Expr


@dataclass(frozen=True)
class Binary(Expr):
    """Arithmetic, comparison and boolean operators: `op` is the operator's text."""

    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Arg:
    span: Span


@dataclass(frozen=True)
class PositionalArg(Arg):
    value: Expr


@dataclass(frozen=True)
class KeywordArg(Arg):
    name: str
    name_span: Span
    value: Expr


@dataclass(frozen=True)
class ArrowArg(Arg):
    """`in -> out` inside a call, e.g. `linear(2304 -> 128)`."""

    input: Expr
    output: Expr


@dataclass(frozen=True)
class Call(Expr):
    func: Expr
    args: tuple[Arg, ...]


@dataclass(frozen=True)
class Attribute(Expr):
    value: Expr
    attr: str


@dataclass(frozen=True)
class Pipe(Expr):
    """`value |> s1 |> s2 ...`, kept flat so long chains do not nest deeply."""

    value: Expr
    stages: tuple[Expr, ...]


# ---- statements --------------------------------------------------------------


@dataclass(frozen=True)
class Stmt:
    span: Span


@dataclass(frozen=True)
class TensorTypeExpr:
    span: Span
    dtype: str
    dtype_span: Span
    dims: tuple[Expr, ...]


@dataclass(frozen=True)
class Input(Stmt):
    name: str
    name_span: Span
    type: TensorTypeExpr


@dataclass(frozen=True)
class Output(Stmt):
    name: str
    name_span: Span
    value: Expr | None


@dataclass(frozen=True)
class Let(Stmt):
    name: str
    name_span: Span
    value: Expr


@dataclass(frozen=True)
class Repeat(Stmt):
    count: Expr
    name: str | None
    name_span: Span | None
    index: str | None
    body: tuple[Stmt, ...]
    index_span: Span | None = None


@dataclass(frozen=True)
class If(Stmt):
    condition: Expr
    then: tuple[Stmt, ...]
    orelse: tuple[Stmt, ...]


@dataclass(frozen=True)
class Assert(Stmt):
    condition: Expr
    message: str | None


# ---- declarations ------------------------------------------------------------


@dataclass(frozen=True)
class Decl:
    span: Span
    name: str
    name_span: Span


@dataclass(frozen=True)
class Import:
    span: Span
    path: str


@dataclass(frozen=True)
class Use:
    span: Span
    plugin: str


@dataclass(frozen=True)
class Param:
    span: Span
    name: str
    type_name: str
    type_span: Span
    default: Expr | None


@dataclass(frozen=True)
class ModelDecl(Decl):
    """`model` or `block`: hyperparameters and a body of statements."""

    kind: str  # "model" or "block"
    params: tuple[Param, ...]
    body: tuple[Stmt, ...]


@dataclass(frozen=True)
class Variant(Decl):
    """`model GPT3 = GPT(d=12288, ...)`: a model with other arguments."""

    base: str
    base_span: Span
    args: tuple[Arg, ...]


@dataclass(frozen=True)
class GanItem:
    span: Span
    role: str
    role_span: Span
    value: Expr


@dataclass(frozen=True)
class Gan(Decl):
    items: tuple[GanItem, ...]


@dataclass(frozen=True)
class Labelled:
    span: Span
    label: str
    label_span: Span
    value: Expr


@dataclass(frozen=True)
class Setting:
    span: Span
    key: str
    key_span: Span
    value: Expr | tuple[Labelled, ...]


@dataclass(frozen=True)
class Train(Decl):
    settings: tuple[Setting, ...]


@dataclass(frozen=True)
class Module:
    """One parsed file."""

    file: str
    imports: tuple[Import, ...]
    uses: tuple[Use, ...]
    decls: tuple[Decl, ...]
