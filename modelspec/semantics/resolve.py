"""Name resolution for blocks (and models with required parameters) that no
checked model calls.

Such a declaration cannot be elaborated without arguments and input types,
but its names can still be checked: every name it reads must be a
parameter, an input, a size bound by an input's type, an earlier binding,
a repeat index, or (when called) an op, block or model. This catches typos
in library blocks before anyone calls them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from modelspec.diagnostics import Diagnostic, error, suggestion
from modelspec.syntax import ast


@dataclass(frozen=True)
class Callables:
    """What a call may name (ops, blocks, models), and who provides a missing op when known."""

    names: set[str]
    hint: Callable[..., str | None] = lambda **_: None  # Registry.hint: "provided by the plugin package X"


def resolve_names(decl: ast.ModelDecl, callables: set[str], hint=None) -> list[Diagnostic]:
    known = Callables(callables, hint) if hint is not None else Callables(callables)
    bound = {p.name for p in decl.params}
    out: list[Diagnostic] = []
    for param in decl.params:
        if param.default is not None:
            _check_expr(param.default, bound, known, out)
    _check_body(decl.body, bound, known, out)
    return out


def _check_body(body, bound: set[str], callables: Callables, out: list[Diagnostic]) -> None:
    for stmt in body:
        if isinstance(stmt, ast.Input):
            for dim in stmt.type.dims:
                if isinstance(dim, ast.Name):
                    bound.add(dim.id)  # a new size name binds
                else:
                    _check_expr(dim, bound, callables, out)
            bound.add(stmt.name)
        elif isinstance(stmt, ast.Let | ast.Output):
            if stmt.value is not None:
                _check_expr(stmt.value, bound, callables, out)
            elif stmt.name not in bound:
                out.append(_unknown(stmt.name, stmt.name_span, bound))
            bound.add(stmt.name)
        elif isinstance(stmt, ast.Assert):
            _check_expr(stmt.condition, bound, callables, out)
        elif isinstance(stmt, ast.If):
            _check_expr(stmt.condition, bound, callables, out)
            _check_body(stmt.then, bound, callables, out)
            _check_body(stmt.orelse, bound, callables, out)
        elif isinstance(stmt, ast.Repeat):
            _check_expr(stmt.count, bound, callables, out)
            if stmt.index:
                bound.add(stmt.index)
            _check_body(stmt.body, bound, callables, out)


def _check_expr(expr, bound: set[str], callables: Callables, out: list[Diagnostic]) -> None:
    stack = [expr]
    while stack:
        e = stack.pop()
        if isinstance(e, ast.Name):
            if e.id not in bound:
                out.append(_unknown(e.id, e.span, bound))
        elif isinstance(e, ast.Pipe):
            stack.append(e.value)
            for stage in e.stages:
                if isinstance(stage, ast.Name):
                    _check_callee(stage, callables, out)
                else:
                    stack.append(stage)
        elif isinstance(e, ast.Call):
            if isinstance(e.func, ast.Name):
                _check_callee(e.func, callables, out)
            else:
                stack.append(e.func)
            for arg in e.args:
                if isinstance(arg, ast.KeywordArg):
                    # `name=` and identifier arguments (`tie=wte`) name layers, not values.
                    if arg.name in ("name", "tie") and isinstance(arg.value, ast.Name):
                        continue
                    if arg.name == "init":
                        _check_initialiser(arg.value, stack, out)
                        continue
                    stack.append(arg.value)
                elif isinstance(arg, ast.PositionalArg):
                    stack.append(arg.value)
                else:
                    stack += [arg.input, arg.output]
        elif isinstance(e, ast.Binary):
            stack += [e.left, e.right]
        elif isinstance(e, ast.Unary):
            stack.append(e.operand)
        elif isinstance(e, ast.Tuple | ast.List):
            stack += list(e.items)
        elif isinstance(e, ast.Attribute):
            stack.append(e.value)


def _check_initialiser(value, stack: list, out: list[Diagnostic]) -> None:
    """`init=normal(std)`: the initialiser's name is not a layer; its arguments are values."""
    from modelspec.ops.init import INITIALISERS

    func = value.func if isinstance(value, ast.Call) else value
    if isinstance(func, ast.Name) and func.id not in INITIALISERS:
        out.append(
            error(
                "E0202",
                f"unknown initialiser `{func.id}`",
                func.span,
                "not an initialiser",
                help=suggestion(func.id, INITIALISERS),
            )
        )
    if isinstance(value, ast.Call):
        for arg in value.args:
            if isinstance(arg, ast.PositionalArg | ast.KeywordArg):
                stack.append(arg.value)


def _check_callee(name: ast.Name, callables: Callables, out: list[Diagnostic]) -> None:
    if name.id not in callables.names:
        out.append(
            error(
                "E0202",
                f"unknown layer `{name.id}`",
                name.span,
                "no op, block or model has this name",
                help=callables.hint(op=name.id) or suggestion(name.id, callables.names),
            )
        )


def _unknown(name: str, span, bound: set[str]) -> Diagnostic:
    return error("E0201", f"cannot find `{name}` in this scope", span, "not found", help=suggestion(name, bound))
