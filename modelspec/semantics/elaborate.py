"""Elaboration: declarations + arguments → checked IR graphs.

A model is elaborated by running its body like a program whose values are
constants and typed tensors: every layer call looks its op up in the
registry, validates its arguments (the op's pydantic model), applies the
op's shape rule and appends an IR node. Block calls elaborate the block's
body into a graph of its own (cached per argument and input types), and
`repeat` elaborates its body once per distinct iteration type.

Mistakes are collected, not raised: a failed statement binds its variable
to POISON, and anything computed from POISON stays silent, so each mistake
yields one diagnostic.
"""

from __future__ import annotations

import heapq
import itertools
import keyword
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from modelspec.diagnostics import CompileError, Diagnostic, Label, SourceMap, Span, did_you_mean, error, suggestion
from modelspec.diagnostics.render import NameIndex
from modelspec.ir.dims import Dim
from modelspec.ir.graph import Constraint, Graph, Node, Param
from modelspec.ir.types import DTYPES, TensorType, is_float
from modelspec.ops.base import Cost, OpSpec, ParamSpec, ShapeError
from modelspec.semantics import constants as C
from modelspec.semantics.values import POISON, RecordValue, TensorValue, describe
from modelspec.syntax import ast

PARAM_TYPES = {"int", "float", "bool", "str", "tuple", "list"}
# Iterations of a `repeat` that must each be elaborated (its index is used,
# or its types keep changing) are limited; counted iterations are not.
MAX_UNROLLED_ITERATIONS = 4096
MAX_BLOCK_DEPTH = 64
ARITH_OPS = {"+": "add", "-": "sub", "*": "mul", "/": "div"}


class Scope:
    """Variables of one body. A repeat body's scope captures outer tensors as
    inputs of its own graph (through `capture`)."""

    def __init__(self, parent: Scope | None = None, capture: Callable[[str, Any], Any] | None = None):
        self.vars: dict[str, Any] = {}
        self.parent = parent
        self.capture = capture
        self.assigned: set[str] = set()
        self.assigned_at: dict[str, Span] = {}
        self._index: NameIndex | None = None  # the names of `vars`, for "did you mean" (built when needed)
        self._indexed = 0  # how many of `vars` (the oldest: names are never removed) are in the index

    def get(self, name: str) -> Any:
        if name in self.vars:
            return self.vars[name]
        if self.parent is None:
            raise KeyError(name)
        value = self.parent.get(name)
        if self.capture is not None and isinstance(value, TensorValue | RecordValue):
            value = self.capture(name, value)
            self.vars[name] = value
        return value

    def defines(self, name: str) -> bool:
        """Whether a name is bound here or in an enclosing scope, without capturing it."""
        scope: Scope | None = self
        while scope is not None:
            if name in scope.vars:
                return True
            scope = scope.parent
        return False

    def has(self, name: str) -> bool:
        try:
            self.get(name)
            return True
        except KeyError:
            return False

    def set(self, name: str, value: Any) -> None:
        self.vars[name] = value
        self.assigned.add(name)

    def index(self) -> NameIndex:
        """The names of this scope, indexed; kept up to date in time proportional to the names added."""
        if self._index is None:
            self._index = NameIndex()
        new = len(self.vars) - self._indexed
        if new > 0:
            for name in itertools.islice(reversed(self.vars), new):
                self._index.add(name)
            self._indexed = len(self.vars)
        return self._index

    def candidates(self) -> _ScopeNames:
        """The names in scope, as "did you mean" candidates: bounded work however many there are."""
        indexes = []
        scope: Scope | None = self
        while scope is not None:
            indexes.append(scope.index())
            scope = scope.parent
        return _ScopeNames(indexes)


class _ScopeNames:
    """The names of a scope and its parents, for `did_you_mean`."""

    def __init__(self, indexes: list[NameIndex]):
        self.indexes = indexes

    def __len__(self) -> int:
        return sum(len(index) for index in self.indexes)

    def __iter__(self):
        return iter({name for index in self.indexes for name in index})

    def plausible(self, name: str) -> list[str]:
        return list(dict.fromkeys(n for index in self.indexes for n in index.plausible(name)))


@dataclass
class Builder:
    """The graph being built and the names used in it."""

    graph: Graph
    used: set[str] = field(default_factory=set)
    explicit: set[str] = field(default_factory=set)
    # `fresh` gives `base`, else the first free of `base_1`, `base_2`, ...; per base, every `base_k` below
    # `_next[base]` is taken or was released (and waits in `_freed[base]`), so naming is O(1) amortised.
    _next: dict[str, int] = field(default_factory=dict)
    _freed: dict[str, list[int]] = field(default_factory=dict)

    def fresh(self, base: str) -> str:
        base = base if base.isidentifier() and not keyword.iskeyword(base) else f"{base}_"
        if base not in self.used:
            self.used.add(base)
            return base
        freed = self._freed.get(base)
        while freed:
            name = f"{base}_{heapq.heappop(freed)}"
            if name not in self.used:
                self.used.add(name)
                return name
        k = self._next.get(base, 1)
        while f"{base}_{k}" in self.used:
            k += 1
        self._next[base] = k + 1
        name = f"{base}_{k}"
        self.used.add(name)
        return name

    def release(self, name: str) -> None:
        """`name` is free again (a layer renamed after its binding): `fresh` may give it out again."""
        self.used.discard(name)
        base, sep, k = name.rpartition("_")
        if sep and k.isdigit() and k[0] != "0" and int(k) < self._next.get(base, 1):
            heapq.heappush(self._freed.setdefault(base, []), int(k))

    def add(self, node: Node) -> None:
        self.graph.nodes.append(node)


@dataclass
class Frame:
    """One body being elaborated: its scope and graph builder."""

    scope: Scope
    builder: Builder
    block_stack: tuple[str, ...] = ()
    call_site: Span | None = None  # where the block being elaborated was called
    failed: bool = False  # an assertion failed: the body stopped there


class Elaborator:
    def __init__(self, decls: dict[str, ast.Decl], registry, sources: SourceMap):
        self.decls = decls
        self.registry = registry
        self.sources = sources
        self.diagnostics: list[Diagnostic] = []
        self.reported = 0
        self._seen: set[tuple] = set()
        self._block_cache: dict[tuple, tuple[Graph, list[str], list[TensorType]] | None] = {}

    # ---- diagnostics ------------------------------------------------------------

    def report(self, diagnostic: Diagnostic, frame: Frame | None = None) -> None:
        self.reported += 1  # counts repeats too: a model that hits a known mistake again has failed
        if frame is not None and frame.call_site is not None and diagnostic.span is not None:
            if diagnostic.span.file != frame.call_site.file or diagnostic.span.line != frame.call_site.line:
                block = frame.block_stack[-1] if frame.block_stack else "block"
                diagnostic = Diagnostic(
                    code=diagnostic.code,
                    message=diagnostic.message,
                    primary=diagnostic.primary,
                    secondary=diagnostic.secondary + (Label(frame.call_site, f"in `{block}` called here"),),
                    notes=diagnostic.notes,
                    help=diagnostic.help,
                    severity=diagnostic.severity,
                )
        key = (diagnostic.code, diagnostic.message, diagnostic.span)
        if key in self._seen:
            return
        self._seen.add(key)
        self.diagnostics.append(diagnostic)

    def text_of(self, span: Span) -> str:
        text = self.sources.texts.get(span.file, "")
        return text[span.start : span.end] if span.end > span.start else ""

    # ---- models -------------------------------------------------------------------

    def bind_params(
        self,
        decl: ast.ModelDecl,
        positional: list[tuple[Any, Span]],
        keywords: dict[str, tuple[Any, Span]],
        call_span: Span,
        what: str,
    ) -> dict[str, Any]:
        """Hyperparameters of a model/block from call arguments and defaults."""
        for param in decl.params:
            _check_bindable(param.name, param.span)
        params = {p.name: p for p in decl.params}
        values: dict[str, Any] = {}
        if len(positional) > len(decl.params):
            extra = positional[len(decl.params)]
            raise CompileError(
                error(
                    "E0205",
                    f"`{decl.name}` takes {len(decl.params)} positional argument(s) but {len(positional)} were given",
                    extra[1],
                    "one too many",
                )
            )
        for param, (value, span) in zip(decl.params, positional):
            values[param.name] = self.coerce_param(param, value, span, decl)
        for key, (value, span) in keywords.items():
            if key not in params:
                raise CompileError(
                    error(
                        "E0203",
                        f"`{decl.name}` has no parameter `{key}`",
                        span,
                        "unknown argument",
                        secondary=[Label(decl.name_span, f"`{decl.name}` is declared here")],
                        help=suggestion(key, params) or _param_list_help(decl),
                    )
                )
            if key in values:
                raise CompileError(
                    error("E0206", f"argument `{key}` is given twice", span, "given again here (also by position)")
                )
            values[key] = self.coerce_param(params[key], value, span, decl)
        env: dict[str, Any] = {}
        for param in decl.params:
            if param.name in values:
                env[param.name] = values[param.name]
                continue
            if param.default is None:
                raise CompileError(
                    error(
                        "E0204",
                        f"{what} `{decl.name}` needs a value for `{param.name}`",
                        call_span,
                        f"`{param.name}` is missing",
                        secondary=[Label(param.span, "declared without a default here")],
                    )
                )
            default = self.eval_const(param.default, Scope_from(env))
            env[param.name] = self.coerce_param(param, default, param.default.span, decl)
        return env

    def coerce_param(self, param: ast.Param, value: Any, span: Span, decl: ast.ModelDecl) -> Any:
        kind = param.type_name
        if kind not in PARAM_TYPES:
            raise CompileError(
                error(
                    "E0202",
                    f"unknown parameter type `{kind}`",
                    param.type_span,
                    "not a type",
                    help=suggestion(kind, PARAM_TYPES) or "parameter types are int, float, bool, str, tuple, list",
                )
            )
        value = C.normalise(value)
        ok = {
            "int": C.is_size(value),
            "float": C.is_number(value) and not isinstance(value, Dim),
            "bool": isinstance(value, bool),
            "str": isinstance(value, str),
            "tuple": isinstance(value, tuple),
            "list": isinstance(value, list | tuple),
        }[kind]
        if not ok:
            raise CompileError(
                error(
                    "E0207",
                    f"`{param.name}` of `{decl.name}` is {kind}, got {describe(value)}",
                    span,
                    f"expected {kind}",
                    secondary=[Label(param.span, "declared here")],
                )
            )
        if kind == "float":
            return float(value)
        return value

    def elaborate_model(self, decl: ast.ModelDecl, env: dict[str, Any], name: str) -> Graph:
        builder = Builder(Graph(name=name, kind="model"))
        scope = Scope()
        scope.vars.update(env)
        frame = Frame(scope, builder, (decl.name,))
        self.run_body(decl.body, frame, model_level=True)
        self.finish_outputs(decl, frame)
        return builder.graph

    def finish_outputs(self, decl: ast.ModelDecl, frame: Frame) -> None:
        graph = frame.builder.graph
        if not any(isinstance(s, ast.Output) for s in _walk(decl.body)):
            self.report(
                error(
                    "E0314",
                    f"{decl.kind} `{decl.name}` has no output",
                    decl.name_span,
                    "declared here",
                    help="add `output NAME = ...`",
                )
            )

        for name, value in list(graph.outputs.items()):
            if value is None:
                del graph.outputs[name]

    # ---- statements ---------------------------------------------------------------

    def run_body(self, body: tuple[ast.Stmt, ...], frame: Frame, model_level: bool = False) -> None:
        for index, stmt in enumerate(body):
            try:
                self.run_stmt(stmt, frame, model_level)
            except CompileError as exc:
                for d in exc.diagnostics:
                    self.report(d, frame)
                for name in _bound_names(stmt):
                    frame.scope.set(name, POISON)
                if isinstance(stmt, ast.Assert):
                    # What follows a failed assertion relies on it: checking on would only
                    # repeat the same mistake in other words.
                    for rest in body[index + 1 :]:
                        for name in _bound_names(rest):
                            frame.scope.set(name, POISON)
                    frame.builder.graph.outputs.clear()
                    frame.builder.graph.output_types.clear()
                    frame.failed = True
                    return

    def run_stmt(self, stmt: ast.Stmt, frame: Frame, model_level: bool) -> None:
        scope, builder = frame.scope, frame.builder
        if isinstance(stmt, ast.Input):
            self.declare_input(stmt, frame, model_level)
        elif isinstance(stmt, ast.Let):
            _check_bindable(stmt.name, stmt.name_span)
            start = len(builder.graph.nodes)
            value = self.eval(stmt.value, frame)
            value = self.name_binding(stmt, value, frame, start)
            if isinstance(value, TensorValue):
                value = TensorValue(value.ref, value.type, value.origin, stmt.name)
            scope.set(stmt.name, value)
            scope.assigned_at[stmt.name] = stmt.span
        elif isinstance(stmt, ast.Output):
            _check_bindable(stmt.name, stmt.name_span)
            if stmt.name in builder.graph.outputs:
                raise CompileError(error("E0209", f"output `{stmt.name}` is declared twice", stmt.name_span, "again"))
            if stmt.value is None:
                if not scope.has(stmt.name):
                    raise C.unknown_name(ast.Name(stmt.name_span, stmt.name), scope.candidates())
                value = scope.get(stmt.name)
            else:
                start = len(builder.graph.nodes)
                value = self.eval(stmt.value, frame)
                value = self.name_binding(stmt, value, frame, start)
                scope.set(stmt.name, value)
            if value is POISON:
                return
            if not isinstance(value, TensorValue):
                raise CompileError(
                    error("E0307", f"output `{stmt.name}` must be a tensor, got {describe(value)}", stmt.span, "here")
                )
            builder.graph.outputs[stmt.name] = value.ref
            builder.graph.output_types[stmt.name] = value.type
        elif isinstance(stmt, ast.Assert):
            self.run_assert(stmt, frame)
        elif isinstance(stmt, ast.If):
            condition = self.eval(stmt.condition, frame)
            if condition is POISON:
                return
            taken = C.truth(condition, stmt.condition, "the condition of `if`")
            self.run_body(stmt.then if taken else stmt.orelse, frame)
        elif isinstance(stmt, ast.Repeat):
            self.run_repeat(stmt, frame)
        else:  # pragma: no cover - the parser makes no other statements
            raise CompileError(error("E9999", f"internal error: unknown statement {type(stmt).__name__}", stmt.span))

    def declare_input(self, stmt: ast.Input, frame: Frame, model_level: bool) -> None:
        graph = frame.builder.graph
        _check_bindable(stmt.name, stmt.name_span)
        if stmt.name in graph.inputs or frame.scope.vars.get(stmt.name) is not None and stmt.name in graph.inputs:
            raise CompileError(error("E0209", f"input `{stmt.name}` is declared twice", stmt.name_span, "again"))
        ttype = self.eval_tensor_type(stmt.type, frame, bind_unknown=True)
        graph.inputs[stmt.name] = ttype
        graph.input_spans[stmt.name] = stmt.span
        frame.builder.used.add(stmt.name)
        frame.scope.set(stmt.name, TensorValue(stmt.name, ttype, stmt.span, stmt.name))

    def eval_tensor_type(self, texpr: ast.TensorTypeExpr, frame: Frame, bind_unknown: bool) -> TensorType:
        if texpr.dtype not in DTYPES:
            raise CompileError(
                error(
                    "E0202",
                    f"unknown dtype `{texpr.dtype}`",
                    texpr.dtype_span,
                    "not a dtype",
                    help=suggestion(texpr.dtype, DTYPES) or "dtypes are " + ", ".join(DTYPES),
                )
            )
        dims = []
        for d in texpr.dims:
            if isinstance(d, ast.Name) and not frame.scope.has(d.id) and bind_unknown:
                # A new size name: a symbolic dimension from here on.
                frame.scope.set(d.id, Dim.sym(d.id))
            dims.append(self.eval_size(d, frame.scope))
        return TensorType(texpr.dtype, tuple(dims))

    def eval_size(self, d: ast.Expr, scope: Scope):
        """The size a dimension of a tensor type evaluates to (E0307 when it is not one, E0208 when
        it is negative)."""
        value = C.normalise(self.eval_const(d, scope))
        if not C.is_size(value):
            raise CompileError(error("E0307", f"a dimension must be a size, got {describe(value)}", d.span, "here"))
        if isinstance(value, int) and value < 0:
            raise CompileError(error("E0208", f"a dimension cannot be negative, got {value}", d.span, "here"))
        return value

    def run_assert(self, stmt: ast.Assert, frame: Frame) -> None:
        cond = stmt.condition
        value = self.eval(cond, frame)
        if value is POISON or value is True:
            return
        text = self.text_of(cond.span) or "condition"
        if value is None and isinstance(cond, ast.Binary) and cond.op in ("==", "!=", "<", "<=", ">", ">="):
            left, right = self.eval(cond.left, frame), self.eval(cond.right, frame)
            frame.builder.graph.constraints.append(
                Constraint(
                    left=Dim.of(left), op=cond.op, right=Dim.of(right), text=text, span=stmt.span, message=stmt.message
                )
            )
            return
        if value is None:
            raise CompileError(
                error(
                    "E0310",
                    "this assertion depends on symbolic sizes in a way that cannot be checked",
                    cond.span,
                    "undecidable",
                    help="assert one comparison per `assert`",
                )
            )
        if not isinstance(value, bool):
            raise CompileError(error("E0307", f"`assert` needs a bool, got {describe(value)}", cond.span, "not a bool"))
        notes = []
        for name in sorted({n.id for n in _names_in(cond)}):
            if frame.scope.has(name):
                v = frame.scope.get(name)
                if not isinstance(v, TensorValue | RecordValue):
                    notes.append(f"`{name}` is {C.normalise(v)}")
        message = f"assertion failed: {stmt.message}" if stmt.message else f"assertion failed: `{text}`"
        raise CompileError(error("E0308", message, cond.span, "this is false", notes=notes))

    def name_binding(self, stmt, value: Any, frame: Frame, start: int) -> Any:
        """`q = x |> linear(d) |> split_heads(h)`: the one layer with parameters
        created by a binding takes the binding's name (if it was not named).

        A name that a backend cannot use (`class = ...`: a Python keyword for the torch backend) is
        taken all the same: the backend refuses it (E0601) rather than the layer being silently named
        after its op."""
        nodes = frame.builder.graph.nodes[start:]
        with_params = [n for n in nodes if _has_params(n)]
        name = stmt.name
        if len(with_params) != 1 or with_params[0].name in frame.builder.explicit or name in frame.builder.used:
            return value
        node = with_params[0]
        old = node.name
        frame.builder.release(old)
        frame.builder.used.add(name)
        node.name = name
        for other in nodes:
            other.inputs = [_rename_ref(ref, old, name) for ref in other.inputs]
        return _rename_value(value, old, name)

    # ---- repeat --------------------------------------------------------------------

    def run_repeat(self, stmt: ast.Repeat, frame: Frame) -> None:
        count = C.normalise(self.eval_const(stmt.count, frame.scope))
        if not isinstance(count, int) or isinstance(count, bool):
            raise CompileError(
                error(
                    "E0310",
                    f"`repeat` needs a known integer count, got {describe(count)}",
                    stmt.count.span,
                    "not a known integer",
                )
            )
        if count < 0:
            raise CompileError(
                error("E0312", f"`repeat` count cannot be negative, got {count}", stmt.count.span, "here")
            )
        outer = frame.scope
        if stmt.index is not None:
            index_span = stmt.index_span or stmt.span
            _check_bindable(stmt.index, index_span)
            if outer.defines(stmt.index):
                raise CompileError(
                    error(
                        "E0209",
                        f"the index `{stmt.index}` of this `repeat` has the name of a variable in scope",
                        index_span,
                        f"shadows `{stmt.index}`",
                        help="give the index a name of its own",
                    )
                )
        if count == 0:
            return
        name = frame.builder.fresh(stmt.name) if stmt.name else frame.builder.fresh("blocks")
        if stmt.name:
            if stmt.name != name:
                raise CompileError(
                    error("E0209", f"name `{stmt.name}` is already used in this scope", stmt.name_span, "taken")
                )
            frame.builder.explicit.add(name)
        uses_index = stmt.index is not None and any(n.id == stmt.index for n in _names_in_body(stmt.body))
        if uses_index and count > MAX_UNROLLED_ITERATIONS:
            # Each iteration sees another index, so each would be elaborated: refuse before the first.
            raise _too_many_iterations(stmt, count)

        iterations: list[Graph] = []
        counts: list[int] = []
        outer_refs: dict[str, TensorValue] = {}  # captured outer variable -> its value before the repeat
        carried_now: dict[str, Any] = {}  # values of carried variables entering the next iteration
        previous_inputs: dict[str, TensorType] | None = None
        index = 0
        while index < count:
            sub = Builder(Graph(name=f"{name}.{index}", kind="repeat"))

            def capture(var: str, value: Any, sub=sub) -> Any:
                if isinstance(value, RecordValue):
                    raise CompileError(
                        error(
                            "E0307", f"`{var}` holds several outputs; pick one before the `repeat`", stmt.span, "here"
                        )
                    )
                if var not in outer_refs:
                    outer_refs[var] = value
                current = carried_now.get(var, value)
                if current is POISON:
                    return POISON
                sub.graph.inputs[var] = current.type
                sub.used.add(var)
                return TensorValue(var, current.type, current.origin, var)

            scope = Scope(outer, capture)
            if stmt.index is not None:
                scope.vars[stmt.index] = index
            sub_frame = Frame(scope, sub, frame.block_stack, frame.call_site)
            self.run_body(stmt.body, sub_frame)
            for var in sorted(scope.assigned):
                if var == stmt.index or not outer.has(var):
                    continue
                value = scope.vars[var]
                if not isinstance(value, TensorValue):
                    if value is POISON:
                        carried_now[var] = POISON
                        continue
                    where = scope.assigned_at.get(var, stmt.span)
                    raise CompileError(
                        error(
                            "E0209",
                            f"`{var}` is a constant and cannot change inside `repeat`",
                            where,
                            "assigned here",
                            help="give each iteration its value through the repeat's index: `repeat n as name[i]`",
                        )
                    )
                sub.graph.outputs[var] = value.ref
                sub.graph.output_types[var] = value.type
                carried_now[var] = TensorValue(f"{name}:{var}", value.type, stmt.span, var)
            inputs = dict(sub.graph.inputs)
            if iterations and not uses_index and inputs == previous_inputs and _same_graph(iterations[-1], sub.graph):
                counts[-1] += 1
            else:
                iterations.append(sub.graph)
                counts.append(1)
            index += 1
            # Every later iteration sees the same types as this one: count them, don't elaborate them. The
            # next one's types are known without elaborating it (this one's, with the carried variables' new
            # types), so a type-stable body is elaborated once, and k nested repeats cost k elaborations.
            if not uses_index and (previous_inputs == inputs or _following_inputs(inputs, carried_now) == inputs):
                counts[-1] += count - index
                break
            previous_inputs = inputs
            if len(iterations) > MAX_UNROLLED_ITERATIONS:
                raise _too_many_iterations(stmt, count)
        carried = sorted(v for v in carried_now)
        node = Node(
            name=name,
            op="repeat",
            inputs=[outer_refs[v].ref for v in outer_refs if outer_refs[v] is not POISON],
            attrs={"count": count, "index": stmt.index, "captured": list(outer_refs)},
            outputs=[carried_now[v].type for v in carried if carried_now[v] is not POISON],
            output_names=[v for v in carried if carried_now[v] is not POISON],
            span=stmt.span,
            iterations=iterations,
            counts=counts,
        )
        frame.builder.add(node)
        for k, var in enumerate(node.output_names):
            ref = name if k == 0 else f"{name}:{k}"
            outer.set(var, TensorValue(ref, carried_now[var].type, stmt.span, var))
        for var in carried:
            if carried_now[var] is POISON:
                outer.set(var, POISON)

    # ---- expressions ---------------------------------------------------------------

    def eval_const(self, expr: ast.Expr, scope: Scope) -> Any:
        """A constant expression (no layers): hyperparameters, sizes, numbers."""
        frame = Frame(scope, Builder(Graph(name="<const>")))
        value = self.eval(expr, frame)
        if isinstance(value, TensorValue | RecordValue):
            raise CompileError(error("E0307", f"expected a constant, got {describe(value)}", expr.span, "a tensor"))
        return value

    def eval(self, e: ast.Expr, frame: Frame) -> Any:
        if isinstance(e, ast.Bool) and frame.scope.defines("true" if e.value else "false"):
            return POISON  # a variable named like the literal was refused (E0209): stay silent about its uses
        if isinstance(e, ast.Int | ast.Float | ast.Str | ast.Bool):
            return e.value
        if isinstance(e, ast.Name):
            try:
                return frame.scope.get(e.id)
            except KeyError:
                if e.id in self.decls or self.registry.op(e.id):
                    # A layer used as a value: `x = relu` is almost surely `x |> relu`.
                    raise CompileError(
                        error(
                            "E0307",
                            f"`{e.id}` is a layer, not a value",
                            e.span,
                            "a layer",
                            help=f"apply it: `x |> {e.id}` or `{e.id}(x)`",
                        )
                    ) from None
                raise C.unknown_name(e, frame.scope.candidates()) from None
        if isinstance(e, ast.Tuple):
            return tuple(self.eval(i, frame) for i in e.items)
        if isinstance(e, ast.List):
            return [self.eval(i, frame) for i in e.items]
        if isinstance(e, ast.Unary):
            value = self.eval(e.operand, frame)
            if value is POISON:
                return POISON
            if e.op == "not":
                return not C.truth(value, e.operand, "the operand of `not`")
            if isinstance(value, TensorValue):
                if e.op == "+":
                    return value
                return self.apply_op("mul", [value], {"scalar": -1.0}, e, frame, {})
            if not C.is_number(value):
                raise CompileError(error("E0307", f"`{e.op}` needs a number, got {describe(value)}", e.span, "here"))
            return -value if e.op == "-" else value
        if isinstance(e, ast.Binary):
            return self.eval_binary(e, frame)
        if isinstance(e, ast.Pipe):
            value = self.eval(e.value, frame)
            left = e.value.span  # the left side of the stage: the chain so far
            for stage in e.stages:
                if value is POISON:
                    return POISON
                if not isinstance(value, TensorValue):
                    raise CompileError(_not_a_tensor_piped(value, left))
                first = stage is e.stages[0]
                if isinstance(stage, ast.Name):
                    value = self.call(stage, stage.id, stage.span, [], stage, frame, piped=(value, e.value.span))
                elif isinstance(stage, ast.Call) and isinstance(stage.func, ast.Name):
                    piped = (value, e.value.span if first else None)
                    value = self.call(stage, stage.func.id, stage.func.span, stage.args, stage, frame, piped=piped)
                else:
                    raise CompileError(
                        error(
                            "E0307",
                            "the right side of `|>` must be a layer or a call",
                            stage.span,
                            "not a layer",
                            help="write `x |> linear(10)` or `x |> relu`",
                        )
                    )
                # Where this value came from, for later messages: the chain up to this stage.
                left = e.value.span.to(stage.span)
                value = _with_origin(value, left)
            return value
        if isinstance(e, ast.Call):
            if not isinstance(e.func, ast.Name):
                raise CompileError(
                    error("E0307", "only a layer or block name can be called", e.func.span, "not a name")
                )
            return self.call(e, e.func.id, e.func.span, e.args, e, frame, piped=None)
        if isinstance(e, ast.Attribute):
            base = self.eval(e.value, frame)
            if base is POISON:
                return POISON
            if isinstance(base, RecordValue):
                if e.attr not in base.fields:
                    raise CompileError(
                        error(
                            "E0201",
                            f"no output `{e.attr}` here",
                            e.span,
                            "unknown output",
                            help=suggestion(e.attr, base.fields) or "outputs: " + ", ".join(base.fields),
                        )
                    )
                return base.fields[e.attr]
            raise CompileError(error("E0307", f"{describe(base)} has no attribute `{e.attr}`", e.span, "here"))
        raise CompileError(error("E9999", f"internal error: cannot evaluate {type(e).__name__}", e.span))

    def eval_binary(self, e: ast.Binary, frame: Frame) -> Any:
        if e.op in ("and", "or"):
            left = self.eval(e.left, frame)
            if left is POISON:
                return POISON
            left = C.truth(left, e.left, f"the left side of `{e.op}`")
            if (e.op == "and" and not left) or (e.op == "or" and left):
                return left
            right = self.eval(e.right, frame)
            return POISON if right is POISON else C.truth(right, e.right, f"the right side of `{e.op}`")
        left, right = self.eval(e.left, frame), self.eval(e.right, frame)
        if left is POISON or right is POISON:
            return POISON
        left, right = C.normalise(left), C.normalise(right)
        if isinstance(left, TensorValue) or isinstance(right, TensorValue):
            return self.tensor_binary(e, left, right, frame)
        if e.op in ("==", "!=", "<", "<=", ">", ">="):
            return C.compare(e.op, left, right, e)
        return C.normalise(C.arithmetic(e.op, left, right, e))

    def tensor_binary(self, e: ast.Binary, left: Any, right: Any, frame: Frame) -> Any:
        op = ARITH_OPS.get(e.op)
        if op is None:
            raise CompileError(
                error(
                    "E0307",
                    f"`{e.op}` is not defined on tensors",
                    e.span,
                    "here",
                    help="tensor arithmetic has `+`, `-`, `*` and `/`; use `matmul(a, b)` for products",
                )
            )
        spans = {}
        if isinstance(left, TensorValue) and isinstance(right, TensorValue):
            return self.apply_op(op, [left, right], {}, e, frame, spans, input_spans=[e.left.span, e.right.span])
        tensor, scalar = (left, right) if isinstance(left, TensorValue) else (right, left)
        if not (C.is_number(scalar) and not isinstance(scalar, Dim)):
            raise CompileError(
                error(
                    "E0307",
                    f"`{e.op}` cannot combine {describe(left)} and {describe(right)}",
                    e.span,
                    "here",
                )
            )
        args: dict[str, Any] = {"scalar": float(scalar)}
        if op in ("sub", "div") and tensor is right:
            args["reverse"] = True
        return self.apply_op(op, [tensor], args, e, frame, spans)

    # ---- calls ---------------------------------------------------------------------

    def call(
        self,
        node: ast.Expr,
        name: str,
        name_span: Span,
        args: tuple[ast.Arg, ...] | list,
        whole: ast.Expr,
        frame: Frame,
        piped: tuple[Any, Span | None] | None,
    ) -> Any:
        decl = self.decls.get(name)
        op = self.registry.op(name)
        if op is not None and decl is not None and not isinstance(decl, ast.ModelDecl):
            decl = None  # a train, gan or variant named like an op is no layer: the op is meant
        if decl is None and op is None:
            if frame.scope.has(name):
                raise CompileError(error("E0307", f"`{name}` is a value, not a layer", name_span, "cannot be called"))
            known = set(self.registry.ops) | {n for n, d in self.decls.items() if isinstance(d, ast.ModelDecl)}
            raise CompileError(
                error(
                    "E0202",
                    f"unknown layer `{name}`",
                    name_span,
                    "no op, block or model has this name",
                    help=self.registry.hint(op=name) or suggestion(name, known),
                )
            )
        if decl is not None and not isinstance(decl, ast.ModelDecl):
            raise CompileError(
                error(
                    "E0307", f"`{name}` is a {type(decl).__name__.lower()}, not a layer", name_span, "cannot be called"
                )
            )

        # Evaluate arguments: leading tensors are inputs; the rest are arguments.
        inputs: list[TensorValue] = []
        input_spans: list[Span] = []
        positional: list[tuple[Any, Span]] = []
        keywords: dict[str, tuple[Any, Span]] = {}
        arrow: tuple[tuple[Any, Span], tuple[Any, Span]] | None = None
        identifier_args = set(op.identifier_args) if op else set()
        node_name: tuple[str, Span] | None = None
        initialiser: tuple[dict, Span] | None = None
        if piped is not None:
            value, span = piped
            if value is POISON:
                return POISON
            inputs.append(value)
            input_spans.append(span or value.origin)
        poisoned = False
        for arg in args:
            if isinstance(arg, ast.KeywordArg):
                if arg.name in keywords or (arg.name == "name" and node_name):
                    raise CompileError(error("E0206", f"argument `{arg.name}` is given twice", arg.name_span, "again"))
                if arg.name == "name":
                    node_name = (self.identifier(arg), arg.span)
                    continue
                if arg.name == "init" and op is not None:
                    initialiser = self.initialiser(arg, frame)
                    continue
                if arg.name in identifier_args and isinstance(arg.value, ast.Name):
                    keywords[arg.name] = (arg.value.id, arg.span)
                    continue
                value = self.eval(arg.value, frame)
                poisoned |= value is POISON
                keywords[arg.name] = (value, arg.span)
            elif isinstance(arg, ast.ArrowArg):
                if arrow is not None:
                    raise CompileError(error("E0206", "only one `in -> out` is allowed", arg.span, "again"))
                arrow = ((self.eval(arg.input, frame), arg.input.span), (self.eval(arg.output, frame), arg.output.span))
            else:
                if keywords:
                    raise CompileError(
                        error("E0205", "a positional argument follows a keyword argument", arg.span, "move it")
                    )
                value = self.eval(arg.value, frame)
                poisoned |= value is POISON
                if isinstance(value, TensorValue):
                    if positional:
                        raise CompileError(
                            error(
                                "E0205",
                                "tensor inputs must come before the other arguments",
                                arg.span,
                                "a tensor after non-tensor arguments",
                            )
                        )
                    inputs.append(value)
                    input_spans.append(arg.span)
                elif isinstance(value, RecordValue):
                    raise CompileError(
                        error(
                            "E0307",
                            "this value holds several outputs; pick one with `.name`",
                            arg.span,
                            "outputs: " + ", ".join(value.fields),
                        )
                    )
                else:
                    positional.append((value, arg.span))
        if poisoned:
            return POISON
        if decl is not None:
            return self.call_block(
                decl, name_span, whole, inputs, input_spans, positional, keywords, arrow, node_name, frame
            )
        kwargs: dict[str, Any] = {}
        spans: dict[str, Span] = {}
        pos_names = list(op.positional)
        if arrow is not None and op.arrow is not None:
            # `conv2d(3 -> 32, 3)`: the arrow fills its two names; positionals fill the rest.
            pos_names = [n for n in pos_names if n not in op.arrow]
        variadic = pos_names and pos_names[-1].startswith("*")
        if variadic:
            star = pos_names.pop()[1:]
        if len(positional) > len(pos_names) and not variadic:
            extra = positional[len(pos_names)]
            takes = ", ".join(f"`{n}`" for n in pos_names) or "none"
            raise CompileError(
                error(
                    "E0205",
                    f"`{name}` takes {len(pos_names)} positional argument(s) besides its input, got {len(positional)}",
                    extra[1],
                    "unexpected argument",
                    notes=[f"positional arguments of `{name}`: {takes}"],
                    help=f"name it: `{name}(..., key=value)`" if pos_names else None,
                )
            )
        for pname, (value, span) in zip(pos_names, positional):
            kwargs[pname], spans[pname] = value, span
        if variadic:
            rest = positional[len(pos_names) :]
            if rest:
                kwargs[star] = tuple(v for v, _ in rest)
                spans[star] = rest[0][1].to(rest[-1][1])
        if arrow is not None:
            if op.arrow is None:
                raise CompileError(
                    error("E0203", f"`{name}` does not take `in -> out`", whole.span, "here", help="drop the `->` part")
                )
            (vin, sin), (vout, sout) = arrow
            for pname, value, span in ((op.arrow[0], vin, sin), (op.arrow[1], vout, sout)):
                if pname in kwargs:
                    raise CompileError(error("E0206", f"argument `{pname}` is given twice", span, "again"))
                kwargs[pname], spans[pname] = value, span
        for key, (value, span) in keywords.items():
            if key in kwargs:
                raise CompileError(error("E0206", f"argument `{key}` is given twice", span, "again (also by position)"))
            kwargs[key], spans[key] = value, span
        return self.apply_op(
            name,
            inputs,
            kwargs,
            whole,
            frame,
            spans,
            input_spans=input_spans,
            node_name=node_name,
            call_span=name_span,
            initialiser=initialiser,
        )

    def identifier(self, arg: ast.KeywordArg) -> str:
        value = arg.value
        text = value.id if isinstance(value, ast.Name) else value.value if isinstance(value, ast.Str) else None
        if not isinstance(text, str) or not text.isidentifier() or keyword.iskeyword(text):
            raise CompileError(
                error(
                    "E0209",
                    "`name=` needs a plain identifier",
                    value.span,
                    "not an identifier",
                    help="names are letters, digits and `_`, not starting with a digit",
                )
            )
        return text

    def apply_op(
        self,
        op_name: str,
        inputs: list[TensorValue],
        kwargs: dict[str, Any],
        whole: ast.Expr,
        frame: Frame,
        spans: dict[str, Span],
        input_spans: list[Span] | None = None,
        node_name: tuple[str, Span] | None = None,
        call_span: Span | None = None,
        initialiser: tuple[dict, Span] | None = None,
    ) -> Any:
        op: OpSpec | None = self.registry.op(op_name)
        if op is None:
            raise CompileError(
                error(
                    "E0202",
                    f"no op `{op_name}` is registered",
                    whole.span,
                    "needs this op",
                    help="is a plugin missing?",
                )
            )
        input_spans = input_spans or [v.origin for v in inputs]
        n = len(inputs)
        if n < op.min_inputs or (op.max_inputs is not None and n > op.max_inputs):
            want = (
                f"{op.min_inputs}"
                if op.max_inputs == op.min_inputs
                else f"{op.min_inputs} or more"
                if op.max_inputs is None
                else f"{op.min_inputs} to {op.max_inputs}"
            )
            raise CompileError(
                error(
                    "E0205",
                    f"`{op_name}` takes {want} tensor input(s), got {n}",
                    whole.span,
                    f"{n} tensor input(s) here",
                    help="pipe the input in: `x |> " + op_name + "(...)`" if n == 0 and op.min_inputs else None,
                )
            )
        clean = {k: _arg_value(v) for k, v in kwargs.items()}
        stage = "argument model (`Args`)"
        try:
            args = op.Args.model_validate(clean)
            types = [v.type for v in inputs]
            stage = "shape rule (`infer`)"
            out = op.infer(types, args)
            outputs = list(out) if isinstance(out, tuple | list) else [out]
            wrong = _not_a_type(out)
            if wrong is None:
                stage = "parameters (`params`)"
                params = op.params(types, args, outputs[0])
                wrong = _not_params(params)
            if wrong is None:
                stage = "cost (`cost`)"
                cost = op.cost(types, args, outputs[0])
                wrong = None if isinstance(cost, Cost) else f"returned {cost!r:.60}, not a `Cost`"
        except ValidationError as exc:
            raise CompileError(self.argument_errors(op, op_name, exc, spans, whole.span)) from None
        except ShapeError as exc:
            raise CompileError(self.shape_error(exc, op_name, inputs, input_spans, spans, whole.span)) from None
        except Exception as exc:  # the op's own code broke: its plugin's fault, not the spec's
            raise CompileError(
                self.op_fault(op_name, stage, f"raised {type(exc).__name__}: {exc}", whole.span)
            ) from None
        if wrong is not None:
            raise CompileError(self.op_fault(op_name, stage, wrong, whole.span))
        for param in params:
            if param.tied_to:
                self.check_tie(param, frame, spans.get("tie", whole.span))
        if node_name is not None:
            name, span = node_name
            if name in frame.builder.used:
                raise CompileError(
                    error(
                        "E0209", f"name `{name}` is already used in this scope", span, "taken", help="pick another name"
                    )
                )
            frame.builder.used.add(name)
            frame.builder.explicit.add(name)
        else:
            name = frame.builder.fresh(op_name)
        node = Node(
            name=name,
            op=op_name,
            inputs=[v.ref for v in inputs],
            attrs=op.attrs(args),
            outputs=outputs,
            params=[_param(p) for p in params],
            flops=Dim.of(cost.flops),
            macs=Dim.of(cost.macs),
            cost_note=cost.note,
            span=whole.span,
        )
        if initialiser is not None:
            self.apply_initialiser(node, op_name, *initialiser)
        frame.builder.add(node)
        if len(outputs) == 1:
            return TensorValue(name, outputs[0], whole.span)
        return RecordValue(
            {str(k): TensorValue(f"{name}:{k}", t, whole.span) for k, t in enumerate(outputs)}, whole.span
        )

    def op_fault(self, op_name: str, stage: str, what: str, span: Span) -> Diagnostic:
        """An op's code failed while checking a call: blame its plugin, at the call."""
        owner = self.registry.op_owner.get(op_name, "?")
        if self.registry.is_builtin(owner):
            who = f"the built-in op `{op_name}`"
            note = "this is a bug in modelspec, not in the spec; please report it"
        else:
            who = f"the op `{op_name}` of the plugin {self.registry.describe(owner)}"
            note = f"this is a fault in the plugin `{owner}`, not in the spec; report it to the plugin's authors"
        return error("E0105", f"{who} failed: its {stage} {what}", span, "while checking this call", notes=[note])

    def initialiser(self, arg: ast.KeywordArg, frame: Frame) -> tuple[dict, Span]:
        """`init=normal(0.02)`: validated against modelspec.ops.init."""
        from modelspec.ops.init import INITIALISERS
        from modelspec.semantics.values import CallValue, Ref

        value = C.evaluate_setting(arg.value, _ScopeEnv(frame.scope))
        if isinstance(value, Ref):
            value = CallValue(value.name, value.span, value.span)
        if not isinstance(value, CallValue):
            raise CompileError(
                error(
                    "E0207",
                    f"`init=` needs an initialiser such as `normal(0.02)`, got {describe(value)}",
                    arg.value.span,
                    "not an initialiser",
                )
            )
        if value.name not in INITIALISERS:
            raise CompileError(
                error(
                    "E0202",
                    f"unknown initialiser `{value.name}`",
                    value.name_span,
                    "not an initialiser",
                    help=suggestion(value.name, INITIALISERS) or "initialisers: " + ", ".join(INITIALISERS),
                )
            )
        model, positional = INITIALISERS[value.name]
        if len(value.args) > len(positional):
            raise CompileError(
                error("E0205", f"`{value.name}` takes at most {len(positional)} positional argument(s)", value.span, "")
            )
        given = dict(zip(positional, (C.normalise(v) for v in value.args)))
        spans = dict(zip(positional, value.arg_spans))
        for key, v in value.kwargs.items():
            if key in given:
                raise CompileError(error("E0206", f"argument `{key}` is given twice", value.kwarg_spans[key], "again"))
            given[key], spans[key] = C.normalise(v), value.kwarg_spans[key]
        try:
            args = model.model_validate(given)
        except ValidationError as exc:
            raise CompileError(self.argument_errors(model, value.name, exc, spans, value.span)) from None
        return {"name": value.name, "args": args.model_dump(mode="json")}, arg.span

    def apply_initialiser(self, node: Node, op_name: str, initialiser: dict, span: Span) -> None:
        weights = [p for p in node.params if not p.buffer and not p.tied_to]
        if not weights:
            raise CompileError(error("E0203", f"`{op_name}` here has no parameters to initialise", span, "`init=`"))
        node.attrs["init"] = initialiser
        for param in weights:
            if param.name.split(".")[-1] == "weight":
                param.init, param.init_args = initialiser["name"], dict(initialiser["args"])
            elif param.name.split(".")[-1] == "bias":
                param.init, param.init_args = "zeros", {}

    def check_tie(self, param, frame: Frame, span: Span) -> None:
        """A tied parameter must name an existing parameter of the same shape."""
        target_node, _, target_param = param.tied_to.rpartition(".")
        node = frame.builder.graph.node(target_node)
        if node is None:
            layers = [n.name for n in frame.builder.graph.nodes if n.params]
            raise CompileError(
                error(
                    "E0201",
                    f"cannot find a layer `{target_node}` to tie `{param.name}` to",
                    span,
                    "not a layer in this scope",
                    help=suggestion(target_node, layers) or "tie to a layer declared earlier with `name=`",
                )
            )
        target = next((p for p in node.params if p.name == target_param), None)
        if target is None:
            raise CompileError(
                error("E0201", f"layer `{target_node}` has no parameter `{target_param}` to share", span, "here")
            )
        if tuple(target.shape) != tuple(param.shape):
            raise CompileError(
                error(
                    "E0301",
                    f"cannot tie `{param.name}` of shape {list(param.shape)} to `{param.tied_to}` of shape "
                    f"{list(target.shape)}",
                    span,
                    "shapes differ",
                    secondary=[Label(node.span, f"`{target_node}` is declared here")] if node.span else [],
                )
            )

    def argument_errors(self, op, op_name: str, exc: ValidationError, spans: dict[str, Span], call: Span):
        out = []
        fields = list(getattr(op, "Args", op).model_fields)
        errors = _one_error_per_argument(exc.errors())
        meant = {
            m for e in errors if e.get("type") == "extra_forbidden" for m in did_you_mean(str(e["loc"][0]), fields)
        }
        for err in errors:
            loc = err.get("loc") or ()
            key = str(loc[0]) if loc else None
            if err.get("type") == "missing" and key in meant:
                continue  # already reported as the misspelt argument
            span = spans.get(key, call) if key else call
            kind = err.get("type", "")
            if kind == "extra_forbidden":
                out.append(
                    error(
                        "E0203",
                        f"`{op_name}` has no argument `{key}`",
                        span,
                        "unknown argument",
                        help=suggestion(key, fields) or f"`{op_name}` takes: " + ", ".join(fields),
                    )
                )
            elif kind == "missing":
                out.append(
                    error(
                        "E0204",
                        f"`{op_name}` needs the argument `{key}`",
                        call,
                        f"`{key}` is missing",
                        help=f"e.g. `{op_name}({key}=...)`",
                    )
                )
            elif kind.endswith("_type") or kind in ("is_instance_of", "union_tag_invalid", "literal_error"):
                given = err.get("input")
                out.append(
                    error(
                        "E0207",
                        f"argument `{key}` of `{op_name}` has the wrong type: {_pydantic_message(err)}",
                        span,
                        f"got {describe(given)}",
                    )
                )
            else:
                out.append(
                    error(
                        "E0208",
                        f"argument `{key}` of `{op_name}` is invalid: {_pydantic_message(err)}",
                        span,
                        "invalid value",
                    )
                )
        return out

    def shape_error(
        self,
        exc: ShapeError,
        op_name: str,
        inputs: list[TensorValue],
        input_spans: list[Span],
        spans: dict[str, Span],
        call: Span,
    ) -> Diagnostic:
        span = spans.get(exc.arg, call) if exc.arg else call
        secondary = []
        notes = list(exc.notes)
        for i in exc.inputs:
            if i < len(inputs):
                value = inputs[i]
                what = f"`{value.label}`" if value.label else "this"
                origin = value.origin if value.origin != call else input_spans[i]
                if origin != span:
                    secondary.append(Label(origin, f"{what} is {value.type}"))
                else:
                    notes.append(f"{what} is {value.type}")
        return error(exc.code, exc.message, span, exc.label, secondary=secondary, notes=notes, help=exc.help)

    # ---- blocks ---------------------------------------------------------------------

    def call_block(
        self,
        decl: ast.ModelDecl,
        name_span: Span,
        whole: ast.Expr,
        inputs: list[TensorValue],
        input_spans: list[Span],
        positional,
        keywords,
        arrow,
        node_name,
        frame: Frame,
    ) -> Any:
        if arrow is not None:
            raise CompileError(error("E0203", f"`{decl.name}` does not take `in -> out`", whole.span, "here"))
        if decl.name in frame.block_stack:
            raise CompileError(
                error(
                    "E0315",
                    f"`{decl.name}` calls itself",
                    name_span,
                    "recursive call",
                    secondary=[Label(decl.name_span, "declared here")],
                    help="a block cannot contain itself; use `repeat` to stack it",
                )
            )
        if len(frame.block_stack) >= MAX_BLOCK_DEPTH:
            raise CompileError(error("E0315", "blocks are nested too deeply", name_span, f"over {MAX_BLOCK_DEPTH}"))
        input_decls = [s for s in decl.body if isinstance(s, ast.Input)]
        if len(inputs) != len(input_decls):
            raise CompileError(
                error(
                    "E0205",
                    f"`{decl.name}` takes {len(input_decls)} tensor input(s), got {len(inputs)}",
                    whole.span,
                    f"{len(inputs)} given",
                    secondary=[Label(s.span, "input declared here") for s in input_decls],
                )
            )
        env = self.bind_params(decl, positional, keywords, whole.span, decl.kind)
        key = (decl.name, _freeze(env), tuple(v.type for v in inputs))
        if key not in self._block_cache:
            self._block_cache[key] = None  # in progress
            self._block_cache[key] = self.elaborate_block(decl, env, inputs, input_spans, input_decls, whole, frame)
        cached = self._block_cache[key]
        if cached is None:
            return POISON
        body, names, types = cached
        if node_name is not None:
            name, span = node_name
            if name in frame.builder.used:
                raise CompileError(error("E0209", f"name `{name}` is already used in this scope", span, "taken"))
            frame.builder.used.add(name)
            frame.builder.explicit.add(name)
        else:
            name = frame.builder.fresh(decl.name.lower())
        node = Node(
            name=name,
            op="block",
            block=decl.name,
            inputs=[v.ref for v in inputs],
            attrs={k: _json(v) for k, v in env.items()},
            outputs=types,
            output_names=names,
            span=whole.span,
            body=body,
        )
        frame.builder.add(node)
        values = {
            n: TensorValue(name if k == 0 else f"{name}:{k}", t, whole.span)
            for k, (n, t) in enumerate(zip(names, types))
        }
        if len(values) == 1:
            return next(iter(values.values()))
        return RecordValue(values, whole.span)

    def elaborate_block(self, decl, env, inputs, input_spans, input_decls, whole, frame):
        builder = Builder(Graph(name=decl.name, kind="block"))
        scope = Scope()
        scope.vars.update(env)
        sub = Frame(scope, builder, frame.block_stack + (decl.name,), whole.span)
        # Bind the declared inputs against the arguments (unifying sizes).
        given = dict(zip((s.name for s in input_decls), inputs))
        failed = False
        for stmt in decl.body:
            if not isinstance(stmt, ast.Input):
                continue
            value = given[stmt.name]
            try:
                self.unify_input(stmt, value, input_spans[input_decls.index(stmt)], sub, whole.span)
            except CompileError as exc:
                failed = True
                for d in exc.diagnostics:
                    self.report(d)
        if failed:
            return None
        before = len(self.diagnostics)
        self.run_body(tuple(s for s in decl.body if not isinstance(s, ast.Input)), sub)
        self.finish_outputs(decl, sub)
        graph = builder.graph
        if len(self.diagnostics) > before and not graph.outputs:
            return None
        names = list(graph.outputs)
        types = [graph.output_types[n] for n in names]
        if len(names) != len([s for s in _walk(decl.body) if isinstance(s, ast.Output)]):
            return None  # an output failed and was reported
        return graph, names, types

    def unify_input(self, stmt: ast.Input, value: TensorValue, arg_span: Span, frame: Frame, call: Span) -> None:
        texpr = stmt.type
        graph = frame.builder.graph
        _check_bindable(stmt.name, stmt.name_span)

        def mismatch(message: str, label: str, help: str | None = None) -> CompileError:
            what = f"`{value.label}`" if value.label else "this"
            return CompileError(
                error(
                    "E0304",
                    message,
                    call,
                    label,
                    secondary=[
                        Label(arg_span, f"{what} is {value.type}"),
                        Label(stmt.type.span, f"`{stmt.name}` is declared as this"),
                    ],
                    help=help,
                )
            )

        block = frame.block_stack[-1]
        if texpr.dtype not in DTYPES:
            self.eval_tensor_type(texpr, frame, bind_unknown=True)  # reports the unknown dtype
        dtype_ok = texpr.dtype == value.type.dtype or (texpr.dtype == "float" and is_float(value.type.dtype))
        if not dtype_ok:
            raise mismatch(
                f"`{block}` expects `{stmt.name}` of dtype `{texpr.dtype}`, got `{value.type.dtype}`",
                f"expects `{texpr.dtype}`",
            )
        if len(texpr.dims) != value.type.rank:
            raise mismatch(
                f"`{block}` expects `{stmt.name}` of rank {len(texpr.dims)}, got rank {value.type.rank}",
                f"expects rank {len(texpr.dims)}",
            )
        for dim_expr, actual in zip(texpr.dims, value.type.shape):
            if isinstance(dim_expr, ast.Name) and not frame.scope.has(dim_expr.id):
                frame.scope.set(dim_expr.id, C.normalise(actual))
                continue
            expected = self.eval_size(dim_expr, frame.scope)
            if Dim.of(expected) != actual:
                raise mismatch(
                    f"`{block}` expects `{stmt.name}` with size {expected} where it receives {actual}",
                    f"expects size {expected} here",
                )
        graph.inputs[stmt.name] = value.type
        graph.input_spans[stmt.name] = stmt.span
        frame.builder.used.add(stmt.name)
        frame.scope.set(stmt.name, TensorValue(stmt.name, value.type, stmt.span, stmt.name))


# ---- helpers ---------------------------------------------------------------------------


class _ScopeEnv:
    """A scope seen as the mapping `evaluate_setting` reads constants from."""

    def __init__(self, scope: Scope):
        self.scope = scope

    def __contains__(self, name: str) -> bool:
        return self.scope.has(name)

    def __getitem__(self, name: str) -> Any:
        return self.scope.get(name)


def Scope_from(env: dict[str, Any]) -> Scope:  # noqa: N802 - reads as a constructor
    scope = Scope()
    scope.vars.update(env)
    return scope


def _param_list_help(decl: ast.ModelDecl) -> str:
    if not decl.params:
        return f"`{decl.name}` takes no parameters"
    return f"`{decl.name}` takes: " + ", ".join(p.name for p in decl.params)


def _arg_value(value: Any) -> Any:
    value = C.normalise(value)
    if isinstance(value, list):
        return tuple(_arg_value(v) for v in value)
    if isinstance(value, tuple):
        return tuple(_arg_value(v) for v in value)
    return value


def _pydantic_message(err: dict) -> str:
    msg = err.get("msg", "invalid")
    # pydantic says "input"; in a spec an input is a tensor, so say "value".
    msg = msg.replace("Input should", "value should").replace("input should", "value should")
    return msg[0].lower() + msg[1:] if msg else msg


def _one_error_per_argument(errors: list[dict]) -> list[dict]:
    """pydantic reports one error per member of a union (`int | tuple[int, int]`);
    keep the most telling one per argument: a range error over a type error."""
    chosen: dict = {}
    order = []
    for err in errors:
        loc = err.get("loc") or ()
        key = loc[0] if loc else None
        if key not in chosen:
            chosen[key] = err
            order.append(key)
            continue
        current = chosen[key]
        if _is_type_error(current) and not _is_type_error(err):
            chosen[key] = err
    return [chosen[k] for k in order]


def _is_type_error(err: dict) -> bool:
    kind = err.get("type", "")
    return kind.endswith("_type") or kind in ("is_instance_of", "union_tag_invalid", "literal_error")


LITERAL_NAMES = ("true", "false")


def _check_bindable(name: str, span: Span) -> None:
    """`true` and `false` read as the literals, so a variable of that name could never be used."""
    if name in LITERAL_NAMES:
        raise CompileError(
            error(
                "E0209",
                f"`{name}` cannot be a name: it is the literal `{name}`",
                span,
                "a literal",
                help="pick another name",
            )
        )


def _not_a_tensor_piped(value: Any, span: Span) -> Diagnostic:
    if isinstance(value, RecordValue):
        help = "pick one output with `.name`: " + ", ".join(f"`.{n}`" for n in value.fields)
    else:
        help = "only tensors flow through `|>`; pass other values as arguments: `x |> linear(4)`"
    return error("E0307", f"`|>` needs a tensor on its left, got {describe(value)}", span, "not a tensor", help=help)


def _with_origin(value: Any, origin: Span) -> Any:
    if isinstance(value, TensorValue):
        return TensorValue(value.ref, value.type, origin, value.label)
    return value


def _not_a_type(out) -> str | None:
    """Why what a shape rule returned (a TensorType, or a list of them) is not its outputs' types,
    showing the whole value it returned; None when it is."""
    many = isinstance(out, tuple | list)
    outputs = list(out) if many else [out]

    def shown(value) -> str:
        return str(value) if isinstance(value, TensorType) else repr(value)

    text = ", ".join(shown(t) for t in outputs)
    text = (f"[{text}]" if isinstance(out, list) else f"({text})") if many else shown(out)
    text = text if len(text) <= 80 else text[:77] + "..."
    if not outputs:
        return f"returned {text}: no output type"
    for k, t in enumerate(outputs):
        if not isinstance(t, TensorType):
            if many:
                return f"returned {text}: item {k} ({shown(t):.40}) is not a tensor type (`TensorType`)"
            return f"returned {text}, not a tensor type (`TensorType`)"
        whose = f"output {k}'s" if many else "its"
        if not isinstance(t.dtype, str) or t.dtype not in DTYPES:
            return f"returned {text}: {whose} dtype {t.dtype!r} is not one of {', '.join(DTYPES)}"
        for i, dim in enumerate(t.shape):
            if dim.is_const and dim.value < 0:
                return f"returned {text}: {whose} dimension {i} is {dim.value}, a negative size"
    return None


def _not_params(params) -> str | None:
    if not isinstance(params, list | tuple):
        return f"returned {params!r:.60}, not a list of `ParamSpec`"
    for param in params:
        if not isinstance(param, ParamSpec):
            return f"returned {param!r:.60} in its list, not a `ParamSpec`"
    return None


def _param(p) -> Param:
    return Param(
        name=p.name,
        shape=tuple(p.shape),
        init=p.init,
        init_args=dict(p.init_args),
        trainable=p.trainable,
        buffer=p.buffer,
        tied_to=p.tied_to,
        dtype=p.dtype,
    )


def _has_params(node: Node) -> bool:
    if node.params:
        return True
    if node.body is not None:
        return any(_has_params(n) for n in node.body.nodes)
    return any(_has_params(n) for g in node.iterations for n in g.nodes)


def _rename_ref(ref: str, old: str, new: str) -> str:
    name, sep, index = ref.partition(":")
    return new + sep + index if name == old else ref


def _rename_value(value: Any, old: str, new: str) -> Any:
    if isinstance(value, TensorValue):
        return TensorValue(_rename_ref(value.ref, old, new), value.type, value.origin, value.label)
    if isinstance(value, RecordValue):
        return RecordValue({k: _rename_value(v, old, new) for k, v in value.fields.items()}, value.origin)
    return value


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return (type(value).__name__,) + tuple(_freeze(v) for v in value)
    if isinstance(value, float):
        return ("float", value)
    if isinstance(value, bool):
        return ("bool", value)
    return value


def _json(value: Any) -> Any:
    if isinstance(value, Dim):
        return str(value)
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return value


def _too_many_iterations(stmt: ast.Repeat, count: int) -> CompileError:
    return CompileError(
        error(
            "E0312",
            f"`repeat` would elaborate more than {MAX_UNROLLED_ITERATIONS} different iterations",
            stmt.count.span,
            f"{count} iterations",
            help="iterations that do not use the index and keep their types are counted, not unrolled",
        )
    )


def _following_inputs(inputs: dict[str, TensorType], carried: dict[str, Any]) -> dict[str, TensorType] | None:
    """The input types of a repeat's next iteration, from this iteration's inputs and the values it carries
    on; None when a carried value failed (the next iteration may then read other variables)."""
    following = {}
    for var, ttype in inputs.items():
        value = carried.get(var)
        if value is None:
            following[var] = ttype
        elif isinstance(value, TensorValue):
            following[var] = value.type
        else:
            return None
    return following


def _same_graph(a: Graph, b: Graph) -> bool:
    return a.model_dump(exclude={"name"}) == b.model_dump(exclude={"name"})


def _walk(body: tuple[ast.Stmt, ...]):
    for stmt in body:
        yield stmt
        if isinstance(stmt, ast.If):
            yield from _walk(stmt.then)
            yield from _walk(stmt.orelse)
        elif isinstance(stmt, ast.Repeat):
            yield from _walk(stmt.body)


def _bound_names(stmt: ast.Stmt) -> list[str]:
    if isinstance(stmt, ast.Let | ast.Output):
        return [stmt.name]
    if isinstance(stmt, ast.Input):
        return [stmt.name]
    if isinstance(stmt, ast.If | ast.Repeat):
        body = stmt.then + stmt.orelse if isinstance(stmt, ast.If) else stmt.body
        return [n for s in body for n in _bound_names(s)]
    return []


def _names_in(expr: Any):
    """Every ast.Name inside an expression, without recursion limits mattering
    (the parser bounds nesting)."""
    stack = [expr]
    while stack:
        e = stack.pop()
        if isinstance(e, ast.Name):
            yield e
        elif isinstance(e, ast.Binary):
            stack += [e.left, e.right]
        elif isinstance(e, ast.Unary):
            stack.append(e.operand)
        elif isinstance(e, ast.Tuple | ast.List):
            stack += list(e.items)
        elif isinstance(e, ast.Call):
            stack.append(e.func)
            for a in e.args:
                if isinstance(a, ast.PositionalArg | ast.KeywordArg):
                    stack.append(a.value)
                elif isinstance(a, ast.ArrowArg):
                    stack += [a.input, a.output]
        elif isinstance(e, ast.Attribute):
            stack.append(e.value)
        elif isinstance(e, ast.Pipe):
            stack += [e.value, *e.stages]


def _names_in_body(body: tuple[ast.Stmt, ...]):
    for stmt in _walk(body):
        for attr in ("value", "condition", "count"):
            expr = getattr(stmt, attr, None)
            if isinstance(expr, ast.Expr):
                yield from _names_in(expr)
        if isinstance(stmt, ast.Input):
            for d in stmt.type.dims:
                yield from _names_in(d)
