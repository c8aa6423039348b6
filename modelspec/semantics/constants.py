"""Evaluation of constant expressions: numbers, sizes, strings, tuples.

The elaborator builds on this for tensor expressions; `train` and `gan`
blocks use it as it is, with bare names becoming `Ref`s and calls
`CallValue`s (see `evaluate_setting`).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

from modelspec.diagnostics import CompileError, Label, error, suggestion
from modelspec.ir.dims import Dim
from modelspec.semantics.values import CallValue, Ref, describe
from modelspec.syntax import ast

# Results beyond this are refused: no size of anything is that large, and
# unbounded integers would let `10**10**10` hang the checker.
MAX_MAGNITUDE = 2**256


def normalise(value: Any) -> Any:
    """Constant dims become plain ints, so `64*8*8` and `4096` are the same value."""
    if isinstance(value, Dim) and value.is_const:
        return value.value
    return value


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float, Dim)) and not isinstance(value, bool)


def is_size(value: Any) -> bool:
    return isinstance(value, Dim) or (isinstance(value, int) and not isinstance(value, bool))


def _check_magnitude(value: Any, span) -> Any:
    if isinstance(value, int) and abs(value) > MAX_MAGNITUDE:
        raise CompileError(error("E0311", "integer result is too large", span, "this overflows 2**256"))
    if isinstance(value, float) and value != value:
        raise CompileError(error("E0311", "arithmetic result is not a number", span, "NaN here"))
    if isinstance(value, Dim):
        for _, coef in value.terms:
            if abs(coef) > MAX_MAGNITUDE:
                raise CompileError(error("E0311", "size is too large", span, "this overflows 2**256"))
    return value


_ARITH = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "//": operator.floordiv,
    "%": operator.mod,
    "**": operator.pow,
}
_COMPARE = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def arithmetic(op: str, left: Any, right: Any, expr: ast.Binary) -> Any:
    """`left op right` on constants (numbers or sizes)."""
    if not (is_number(left) and is_number(right)):
        raise CompileError(
            error(
                "E0307",
                f"`{op}` cannot combine {describe(left)} and {describe(right)}",
                expr.span,
                "here",
                secondary=[Label(expr.left.span, describe(left)), Label(expr.right.span, describe(right))],
            )
        )
    symbolic = isinstance(left, Dim) or isinstance(right, Dim)
    if symbolic:
        if isinstance(left, float) or isinstance(right, float) or op == "/":
            raise CompileError(
                error(
                    "E0307",
                    f"`{op}` on a symbolic size needs integers",
                    expr.span,
                    "symbolic size here",
                    help="use `//` for integer division of sizes" if op == "/" else None,
                )
            )
        if op == "**":
            if not isinstance(right, int) or right < 0 or right > 8:
                raise CompileError(
                    error("E0307", "a symbolic size can be raised only to a small constant power", expr.span, "here")
                )
            return _check_magnitude(Dim.of(left) ** right, expr.span)
        if op in ("//", "%") and Dim.of(right) == 0:
            raise CompileError(error("E0311", "division by zero", expr.right.span, "this is zero"))
        return normalise(_check_magnitude(_ARITH[op](Dim.of(left), Dim.of(right)), expr.span))
    if op in ("/", "//", "%") and right == 0:
        raise CompileError(error("E0311", "division by zero", expr.right.span, "this is zero"))
    if op == "**":
        if left == 0 and right < 0:
            raise CompileError(error("E0311", "division by zero", expr.span, "zero raised to a negative power"))
        if isinstance(left, int) and isinstance(right, int):
            if right < 0:
                try:
                    return float(left) ** right
                except (OverflowError, ZeroDivisionError) as exc:
                    raise CompileError(error("E0311", f"arithmetic error: {exc}", expr.span, "here")) from None
            # Bound the result before computing it.
            if abs(left) > 1 and right * max(abs(left), 2).bit_length() > 300:
                raise CompileError(error("E0311", "integer result is too large", expr.span, "this overflows 2**256"))
        try:
            return _check_magnitude(left**right, expr.span)
        except (OverflowError, ZeroDivisionError) as exc:
            raise CompileError(error("E0311", f"arithmetic error: {exc}", expr.span, "here")) from None
    try:
        result = _ARITH[op](left, right)
    except OverflowError as exc:
        raise CompileError(error("E0311", f"arithmetic error: {exc}", expr.span, "here")) from None
    if isinstance(result, float) and result in (float("inf"), float("-inf")):
        raise CompileError(error("E0311", "arithmetic result is infinite", expr.span, "here"))
    return _check_magnitude(result, expr.span)


def compare(op: str, left: Any, right: Any, expr: ast.Binary) -> bool | None:
    """`left op right`; None when it depends on a symbolic size and cannot be decided yet."""
    if isinstance(left, Dim) or isinstance(right, Dim):
        if not (is_number(left) and is_number(right)):
            raise CompileError(
                error("E0307", f"`{op}` cannot compare {describe(left)} and {describe(right)}", expr.span, "here")
            )
        difference = Dim.of(left) - Dim.of(right) if not isinstance(left, float) else None
        if difference is not None and difference.is_const:
            return _COMPARE[op](difference.value, 0)
        if op in ("==", "!=") and difference is not None and difference.is_const is False:
            return None
        return None
    if op in ("<", "<=", ">", ">=") and not (is_number(left) and is_number(right)):
        if not (isinstance(left, str) and isinstance(right, str)):
            raise CompileError(
                error("E0307", f"`{op}` cannot compare {describe(left)} and {describe(right)}", expr.span, "here")
            )
    return _COMPARE[op](left, right)


def truth(value: Any, expr: ast.Expr, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        raise CompileError(
            error(
                "E0310",
                f"{what} depends on a symbolic size and cannot be decided before the inputs are known",
                expr.span,
                "undecidable here",
            )
        )
    raise CompileError(error("E0307", f"{what} must be a bool, got {describe(value)}", expr.span, "not a bool"))


def evaluate_setting(
    expr: ast.Expr,
    env: Mapping[str, Any],
    lookup_unbound: Callable[[ast.Name], Any] | None = None,
) -> Any:
    """Evaluate an expression of a `train` or `gan` block.

    Names bound in `env` give their values; other bare names become `Ref`s
    (or whatever `lookup_unbound` returns); calls become `CallValue`s with
    evaluated arguments. Tensor operations are not allowed here.
    """

    def ev(e: ast.Expr) -> Any:
        if isinstance(e, ast.Int | ast.Float | ast.Str | ast.Bool):
            return e.value
        if isinstance(e, ast.Name):
            if e.id in env:
                return env[e.id]
            return lookup_unbound(e) if lookup_unbound else Ref(e.id, e.span)
        if isinstance(e, ast.Tuple):
            return tuple(ev(i) for i in e.items)
        if isinstance(e, ast.List):
            return [ev(i) for i in e.items]
        if isinstance(e, ast.Unary):
            value = ev(e.operand)
            if e.op == "not":
                return not truth(value, e.operand, "the operand of `not`")
            if not is_number(value):
                raise CompileError(error("E0307", f"`{e.op}` needs a number, got {describe(value)}", e.span, "here"))
            return -value if e.op == "-" else value
        if isinstance(e, ast.Binary):
            if e.op in ("and", "or"):
                left = truth(ev(e.left), e.left, f"the left side of `{e.op}`")
                if (e.op == "and" and not left) or (e.op == "or" and left):
                    return left
                return truth(ev(e.right), e.right, f"the right side of `{e.op}`")
            left, right = ev(e.left), ev(e.right)
            if e.op in _COMPARE:
                return compare(e.op, left, right, e)
            return arithmetic(e.op, left, right, e)
        if isinstance(e, ast.Call):
            if not isinstance(e.func, ast.Name):
                raise CompileError(error("E0307", "only a name can be called here", e.func.span, "not a name"))
            args, arg_spans, kwargs, kwarg_spans = [], [], {}, {}
            for arg in e.args:
                if isinstance(arg, ast.PositionalArg):
                    if kwargs:
                        raise CompileError(
                            error("E0205", "a positional argument follows a keyword argument", arg.span, "move it")
                        )
                    args.append(ev(arg.value))
                    arg_spans.append(arg.span)
                elif isinstance(arg, ast.KeywordArg):
                    if arg.name in kwargs:
                        raise CompileError(
                            error(
                                "E0206",
                                f"argument `{arg.name}` is given twice",
                                arg.name_span,
                                "again here",
                                secondary=[Label(kwarg_spans[arg.name], "first here")],
                            )
                        )
                    kwargs[arg.name] = ev(arg.value)
                    kwarg_spans[arg.name] = arg.span
                else:
                    raise CompileError(error("E0307", "`in -> out` is only for layers", arg.span, "not allowed here"))
            return CallValue(e.func.id, e.func.span, e.span, tuple(args), tuple(arg_spans), kwargs, kwarg_spans)
        if isinstance(e, ast.Attribute):
            base = ev(e.value)
            if isinstance(base, Ref):
                return Ref(f"{base.name}.{e.attr}", e.span)
            raise CompileError(error("E0307", f"{describe(base)} has no attribute `{e.attr}`", e.span, "here"))
        if isinstance(e, ast.Pipe):
            raise CompileError(error("E0307", "`|>` chains layers; it has no meaning here", e.span, "not allowed here"))
        raise CompileError(error("E9999", f"internal error: cannot evaluate {type(e).__name__}", e.span))

    return ev(expr)


def unknown_name(name: ast.Name, candidates) -> CompileError:
    return CompileError(
        error(
            "E0201",
            f"cannot find `{name.id}` in this scope",
            name.span,
            "not found",
            help=suggestion(name.id, candidates),
        )
    )
