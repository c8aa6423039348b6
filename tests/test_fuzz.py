"""Fuzzing the front end: no input makes `mspec check` crash or hang.

The contract: for any bytes, checking exits 0 or 1 with diagnostics, never a
traceback, never a hang, never exit 2 ("internal error"). Three layers test it:

(a) programs generated from the grammar (grammar/mspec.lark): random but
    syntactically valid specs that use the real op names and argument fields of
    the registry, blocks and calls to them, repeat/if/assert, gan and train
    blocks; checked in-process: nothing escapes, the parser accepts them, and
    every diagnostic is well formed (code, message, a span inside its file).
    Well-typed generated programs must check without any diagnostic;
(b) mutations of the shipped specs (specs/*.mspec, specs/broken/*.mspec, found
    at test time): byte and token ranges deleted, duplicated, swapped, garbage
    inserted (NUL, invalid UTF-8, quotes, braces, 1000-digit numbers, deep
    parentheses, `repeat 10**12`); read back from a file, so through `decode`,
    each within a time bound;
(c) regression cases through the real CLI in a subprocess.

Bugs found here and not fixed yet are pinned by strict xfail tests at the end,
and the properties tolerate exactly those crashes (KNOWN_CRASHES) so that they
keep hunting for new ones; both go when the bugs are fixed (the tests stay, as
regression tests: the bugs found so far are all fixed).

The properties run a few hundred examples by default (well under a minute);
the `slow` variants run more: `pytest -m slow tests/test_fuzz.py`. The examples
are the same on every run (hypothesis derandomized), so that a test run, CI's
included, passes or fails the same way each time; `MSPEC_FUZZ=explore` draws new
ones each run to hunt for bugs (each one found becomes a broken spec or a
regression test here, then the run is made again).
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from modelspec.api import compile_program
from modelspec.diagnostics import render_all
from modelspec.ir.types import DTYPES
from modelspec.plugins import registry

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
CODE = re.compile(r"E\d{4}")
# Per-example bound on checking one input in-process (a real spec takes milliseconds).
TIME_LIMIT_S = 5.0

SETTINGS = settings(
    max_examples=200,
    derandomize=os.environ.get("MSPEC_FUZZ") != "explore",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
SLOW_SETTINGS = settings(SETTINGS, max_examples=2000)
# `compile_program` raises the recursion limit on first use (modelspec.api); raising it here, before any test runs,
# keeps hypothesis from warning that the limit changed during a test.
sys.setrecursionlimit(max(sys.getrecursionlimit(), 20_000))


# ---- crashes found here and not fixed yet ---------------------------------------------------
#
# (exception type, function of the innermost modelspec frame) -> the bug. The properties tolerate
# exactly these (and record a hypothesis event), so that they keep looking for new bugs while the
# known ones wait for a fix; the xfail tests at the end pin each one. Delete an entry (and the
# xfail mark of its test) when the bug is fixed.
KNOWN_CRASHES: dict[tuple[str, str], str] = {}


def _event(message: str) -> None:
    """`hypothesis.event`, also callable from a plain test (where it does nothing)."""
    try:
        event(message)
    except InvalidArgument:
        pass


def _innermost_modelspec_frame(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    names = [f.name for f in frames if f"{os.sep}modelspec{os.sep}" in f.filename and not f.name.startswith("<")]
    return names[-1] if names else "?"


def _known_crash(exc: BaseException) -> str | None:
    kind = type(exc).__name__
    return KNOWN_CRASHES.get((kind, _innermost_modelspec_frame(exc))) or KNOWN_CRASHES.get((kind, "*"))


def check_in_process(source, name: str | None = None):
    """compile_program on text or a path; diagnostics are checked, the time is bounded.

    Returns the diagnostics, or None when a known (reported) crash happened."""
    start = time.perf_counter()
    try:
        _, diagnostics, sources = compile_program(source, name)
    except Exception as exc:
        bug = _known_crash(exc)
        if bug is None:
            raise
        _event(f"known bug: {bug}")
        return None
    elapsed = time.perf_counter() - start
    assert elapsed < TIME_LIMIT_S, f"checking took {elapsed:.1f} s"
    texts = sources.texts
    for d in diagnostics:
        assert CODE.fullmatch(d.code), d
        assert d.code != "E9999", d  # the checker's own "internal error"
        assert d.message.strip(), d
        span = d.span
        if span is not None:
            assert span.file in texts, (d, list(texts))
            n_lines = texts[span.file].count("\n") + 1
            assert 1 <= span.line <= n_lines, (d, n_lines)
            assert span.line <= span.end_line <= n_lines + 1, (d, n_lines)
            assert span.column >= 1, d
        d.to_json()
    render_all(diagnostics, sources)  # what the CLI prints must render too
    return diagnostics


# ---- (a) programs generated from the grammar -------------------------------------------------

KEYWORDS = {
    "import", "use", "model", "block", "input", "output", "repeat", "as", "if", "else", "assert",
    "gan", "train", "true", "false", "not", "and", "or",
}  # fmt: skip
REGISTRY = registry()
OPS = sorted(REGISTRY.ops)
COMPONENTS = sorted(REGISTRY.components)
try:
    from modelspec.train.config import SETTINGS as TRAIN_SETTINGS

    TRAIN_KEYS = sorted(TRAIN_SETTINGS)
except ImportError:  # pragma: no cover - the train settings moved
    TRAIN_KEYS = ["model", "data", "loss", "optimizer", "epochs", "steps", "metrics", "schedule", "seed"]

SIZES = ["1", "2", "3", "4", "8", "16", "32", "64", "128", "768"]
ODD_INTS = ["0", "-1", "50_257", "10**12", "2**64", "9" * 39, "9" * 41, "1" + "0" * 1000]
FLOATS = ["0.0", "0.1", "0.5", "1.0", ".5", "1e-5", "2E+3", "1e308", "1e-320", "3.5"]
STRINGS = ['""', '"s"', '"same"', '"valid"', '"tanh"', '"a\\nb"', '"\\"q\\""', '"#not a comment"', '"∑ü"']
SYMBOLS = ["B", "T", "S", "C", "H", "W", "D", "N"]
DIMS_OPS = ["+", "-", "*", "//", "%", "**", "/"]
COMPARES = ["==", "!=", "<", "<=", ">", ">="]


@dataclass
class Scope:
    consts: list[str] = field(default_factory=list)  # names of constants and sizes
    tensors: list[str] = field(default_factory=list)
    blocks: dict[str, tuple[int, list[str], list[str]]] = field(default_factory=dict)  # inputs, params, outputs
    models: list[str] = field(default_factory=list)
    fresh: list[int] = field(default_factory=lambda: [0])

    def child(self) -> Scope:
        return Scope(list(self.consts), list(self.tensors), self.blocks, self.models, self.fresh)

    def new_name(self, base: str) -> str:
        self.fresh[0] += 1
        return f"{base}{self.fresh[0]}"


def _one(draw, items):
    # An index rather than `st.sampled_from(items)`: integer strategies are cached, which keeps drawing fast.
    return items[draw(st.integers(0, len(items) - 1))]


def _maybe(draw, p: float = 0.5) -> bool:
    return draw(st.integers(0, 99)) < p * 100


def const_expr(draw, scope: Scope, depth: int = 0) -> str:
    kind = draw(st.integers(0, 11 if depth < 3 else 4))
    if kind == 0 or (kind == 1 and not scope.consts):
        return _one(draw, SIZES)
    if kind == 1:
        return _one(draw, scope.consts)
    if kind == 2:
        return _one(draw, SIZES + ODD_INTS + FLOATS)
    if kind == 3:
        return _one(draw, ["true", "false", *STRINGS])
    if kind == 4:
        return _one(draw, scope.consts or SIZES)
    a, b = const_expr(draw, scope, depth + 1), const_expr(draw, scope, depth + 1)
    if kind in (5, 6):
        return f"({a} {_one(draw, DIMS_OPS)} {b})"
    if kind == 7:
        return f"({a} {_one(draw, COMPARES)} {b})"
    if kind == 8:
        return _one(draw, [f"({a} and {b})", f"({a} or {b})", f"(not {a})", f"-{a}", f"+{a}"])
    if kind == 9:
        return _one(draw, [f"({a}, {b})", f"({a},)", "()", f"[{a}, {b}]", "[]", f"[{a}]"])
    if kind == 10:
        # Unparenthesised operators, to exercise precedence (the whole is parenthesised for the caller).
        return (
            "("
            + _one(draw, [f"{a} + {b} * {a}", f"{a} ** {b} ** 2", f"-{a} // {b} % 3", f"not {a} == {b} or {a}"])
            + ")"
        )
    return f"(({a}))"


def _literals(annotation: str) -> list[str]:
    return (
        [f'"{s}"' for s in re.findall(r"'([^']*)'", annotation.split("Literal[", 1)[1])]
        if "Literal[" in annotation
        else []
    )


def arg_value(draw, scope: Scope, annotation: str) -> str:
    if _maybe(draw, 0.12):
        return const_expr(draw, scope)
    if "Literal[" in annotation and _maybe(draw, 0.6):
        return _one(draw, _literals(annotation))
    if annotation == "<class 'bool'>":
        return _one(draw, ["true", "false"])
    if "Dim" in annotation:
        return _one(draw, SIZES + scope.consts + ["(T + 1)", "(2 * T)"] if "T" in scope.consts else SIZES)
    if "tuple" in annotation and _maybe(draw, 0.4):
        items = draw(st.lists(st.sampled_from(["0", "1", "2", "3", "-1"]), min_size=1, max_size=3))
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if "int" in annotation:
        return _one(draw, SIZES + ["0", "-1", "-2"] + [c for c in scope.consts if c.isupper() or len(c) > 1])
    if "float" in annotation:
        return _one(draw, ["0.0", "0.1", "0.5", "0.2", "1e-5", "1", "2.0"])
    if "str" in annotation:
        return _one(draw, ["wte", "fc", "nothing", '"s"', "x"])
    return const_expr(draw, scope)


def op_call(draw, scope: Scope, op_name: str, inputs: list[str]) -> str:
    """`op(inputs..., positional..., key=value...)` with arguments drawn from the op's fields."""
    spec = REGISTRY.ops[op_name]
    fields = {name: str(info.annotation) for name, info in spec.Args.model_fields.items()}
    args = list(inputs)
    positional = list(spec.positional)
    used = set()
    for pname in positional[: draw(st.integers(0, len(positional)))]:
        if pname.startswith("*"):
            pname = pname[1:]
            n = draw(st.integers(1, 4))
            args += [_one(draw, ["-1", "1", "2", "4", "0"] + scope.consts) for _ in range(n)]
        else:
            args.append(arg_value(draw, scope, fields.get(pname, "")))
        used.add(pname)
    for fname, annotation in fields.items():
        if fname not in used and _maybe(draw, 0.25):
            args.append(f"{fname}={arg_value(draw, scope, annotation)}")
    if spec.arrow and _maybe(draw, 0.15):
        args.insert(len(inputs), f"{_one(draw, SIZES)} -> {_one(draw, SIZES)}")
    if _maybe(draw, 0.05):
        args.append(f"{_one(draw, ['zzz', 'bias', 'dim', 'p'])}={const_expr(draw, scope)}")
    if _maybe(draw, 0.15):
        args.append(f"name={scope.new_name(_one(draw, ['fc', 'layer', 'wte', 'proj']))}")
    if not args and _maybe(draw, 0.5):
        return op_name
    return f"{op_name}({', '.join(args)})"


def block_call(draw, scope: Scope, name: str, inputs: list[str]) -> str:
    n_inputs, params, _ = scope.blocks[name]
    args = list(inputs)
    for p in params:
        if _maybe(draw, 0.6):
            args.append(f"{p}={_one(draw, SIZES[:6] + ['0.1', 'true'])}" if _maybe(draw, 0.7) else _one(draw, SIZES))
    if _maybe(draw, 0.2):
        args.append(f"name={scope.new_name('blk')}")
    if not args:
        return name
    return f"{name}({', '.join(args)})"


def stage(draw, scope: Scope) -> str:
    """The right side of `|>`: an op, a call of one, or a block."""
    if scope.blocks and _maybe(draw, 0.25):
        return block_call(draw, scope, _one(draw, sorted(scope.blocks)), [])
    common = ["linear", "relu", "gelu", "layernorm", "dropout", "tanh", "softmax", "flatten", "conv2d", "maxpool"]
    return op_call(draw, scope, _one(draw, common if _maybe(draw, 0.5) else OPS), [])


def tensor_expr(draw, scope: Scope, depth: int = 0) -> str:
    if not scope.tensors:
        return const_expr(draw, scope)
    base = _one(draw, scope.tensors)
    kind = draw(st.integers(0, 9 if depth < 2 else 3))
    if kind <= 3:
        chain = [base] + [stage(draw, scope) for _ in range(draw(st.integers(1, 4)))]
        return " |> ".join(chain)
    if kind == 4:
        other = tensor_expr(draw, scope, depth + 1) if _maybe(draw) else _one(draw, ["2", "0.5", "-1", "(d ** 0.5)"])
        return f"({base} {_one(draw, ['+', '-', '*', '/', '+', '//', '**', '%', '=='])} ({other}))"
    if kind == 5:
        op = _one(draw, OPS)
        spec = REGISTRY.ops[op]
        n = draw(st.integers(spec.min_inputs, min(spec.max_inputs or 3, spec.min_inputs + 1)))
        return op_call(draw, scope, op, [_one(draw, scope.tensors) for _ in range(n)])
    if kind == 6 and scope.blocks:
        name = _one(draw, sorted(scope.blocks))
        n_inputs, _, outputs = scope.blocks[name]
        call = block_call(draw, scope, name, [_one(draw, scope.tensors) for _ in range(n_inputs)])
        if len(outputs) > 1 or _maybe(draw, 0.1):
            return f"{call}.{_one(draw, outputs + ['nope'])}"
        return call
    if kind == 7:
        return _one(draw, [f"-{base}", f"+{base}", f"(not {base})", f"{base}.x", f"({base}, {base})", f"[{base}]"])
    if kind == 8:
        pair = ", ".join(_one(draw, scope.tensors) for _ in range(draw(st.integers(2, 4))))
        fn = _one(draw, ["concat", "attention", "matmul", "add", "mul"])
        extra = _one(draw, ["", ", dim=-1", ", dim=1", ", causal=true", ", dim=10**30"])
        return f"{fn}({pair}{extra})"
    return f"({tensor_expr(draw, scope, depth + 1)}) |> {stage(draw, scope)}"


def statements(draw, scope: Scope, depth: int, n_max: int = 5) -> list[str]:
    out = []
    for _ in range(draw(st.integers(0, n_max))):
        kind = draw(st.integers(0, 9 if depth < 2 else 5))
        if kind <= 2:
            target = _one(draw, scope.tensors) if scope.tensors and _maybe(draw, 0.5) else scope.new_name("h")
            out.append(f"{target} = {tensor_expr(draw, scope)}")
            if target not in scope.tensors:
                scope.tensors.append(target)
        elif kind == 3:
            name = scope.new_name("c")
            out.append(f"{name} = {const_expr(draw, scope)}")
            scope.consts.append(name)
        elif kind in (4, 5):
            a, b = _one(draw, scope.consts or SIZES), const_expr(draw, scope)
            message = _one(draw, ["", ', "the width must divide evenly"', ', "\\t"'])
            out.append(f"assert {a} {_one(draw, COMPARES)} {b}{message}")
        elif kind in (6, 7):
            count = _one(draw, ["0", "1", "2", "3", "12", "10**12", "-1", "2.5", "B", *scope.consts])
            as_clause = _one(draw, ["", f" as {scope.new_name('r')}", f" as {scope.new_name('r')}[i]"])
            inner = scope.child()
            if "[i]" in as_clause:
                inner.consts.append("i")
            body = statements(draw, inner, depth + 1, 3)
            out.append(f"repeat {count}{as_clause} {{ " + "\n    ".join(body) + " }")
        else:
            condition = const_expr(draw, scope)
            then = statements(draw, scope.child(), depth + 1, 3)
            text = f"if {condition} {{ " + "\n    ".join(then) + " }"
            if _maybe(draw):
                text += " else { " + "\n    ".join(statements(draw, scope.child(), depth + 1, 2)) + " }"
            elif _maybe(draw, 0.2):
                text += f" else if {const_expr(draw, scope)} {{ }}"
            out.append(text)
    return out


PARAM_TYPES = ["int", "int", "int", "float", "bool", "str", "tuple", "list", "tensor"]
DEFAULTS = {
    "int": ["1", "2", "4", "8", "16", "64", "768", "0", "-3"],
    "float": ["0.1", "0.0", "1e-5", "1"],
    "bool": ["true", "false"],
    "str": ['"s"', '""'],
    "tuple": ["(1, 2)", "(3,)", "()"],
    "list": ["[1, 2]", "[]"],
    "tensor": ["1"],
}


def params(draw, scope: Scope) -> tuple[str, list[str]]:
    names = draw(st.lists(st.sampled_from(["d", "heads", "hidden", "p", "layers", "k", "classes", "d"]), max_size=4))
    parts = []
    for name in names:
        kind = _one(draw, PARAM_TYPES)
        if _maybe(draw, 0.85):
            default = _one(draw, DEFAULTS[kind]) if _maybe(draw, 0.85) else const_expr(draw, scope)
            parts.append(f"{name}: {kind} = {default}")
        else:
            parts.append(f"{name}: {kind}")
        scope.consts.append(name)
    if not parts and _maybe(draw, 0.5):
        return "", names
    return "(" + ", ".join(parts) + ("," if parts and _maybe(draw, 0.1) else "") + ")", names


def tensor_type(draw, scope: Scope) -> str:
    dtype = _one(draw, ["float"] * 6 + ["int64"] * 2 + list(DTYPES) + ["tensor"])
    dims = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.integers(0, 4))
        if kind <= 1:
            dims.append(_one(draw, SYMBOLS))
        elif kind == 2:
            dims.append(_one(draw, SIZES))
        elif kind == 3:
            dims.append(_one(draw, scope.consts or SIZES))
        else:
            dims.append(const_expr(draw, scope))
    for d in dims:
        if re.fullmatch(r"[A-Za-z_]\w*", d) and d not in scope.consts:
            scope.consts.append(d)
    return f"{dtype}[{', '.join(dims)}]"


def model_or_block(draw, scope: Scope, keyword: str, name: str) -> tuple[str, int, list[str], list[str]]:
    inner = Scope(blocks=scope.blocks, models=scope.models, fresh=scope.fresh)
    header, param_names = params(draw, inner)
    lines = []
    n_inputs = draw(st.integers(0 if keyword == "model" else 1, 3))
    for k in range(n_inputs):
        input_name = ["x", "memory", "y"][k]
        lines.append(f"input {input_name}: {tensor_type(draw, inner)}")
        inner.tensors.append(input_name)
    lines += statements(draw, inner, 0)
    outputs = []
    for k in range(draw(st.integers(0 if _maybe(draw, 0.1) else 1, 2))):
        out = ["y", "out", "logits"][k]
        outputs.append(out)
        lines.append(f"output {out} = {tensor_expr(draw, inner)}" if _maybe(draw, 0.9) else f"output {out}")
    sep = _one(draw, ["\n    ", "\n    ", " ", "\n\n  # a comment\n    "])
    text = f"{keyword} {name}{header} {{{sep}" + sep.join(lines) + "\n}"
    return text, n_inputs, param_names, outputs


@st.composite
def programs(draw) -> str:
    scope = Scope()
    items = []
    if _maybe(draw, 0.3):
        items.append('import "std/transformer.mspec"')
        scope.blocks.update(
            {
                "SelfAttention": (1, ["heads", "causal", "p"], ["out"]),
                "Mlp": (1, ["hidden", "p"], ["out"]),
                "GPTBlock": (1, ["heads", "p"], ["y"]),
                "CrossAttention": (2, ["heads", "p"], ["out"]),
            }
        )
    if _maybe(draw, 0.05):
        items.append(_one(draw, ['use "modelspec.ops.builtin"', 'use "not-installed"', 'import "nowhere.mspec"']))
    for k in range(draw(st.integers(0, 3))):
        name = _one(draw, ["Block", "Stage", "Head", "relu"]) + str(k)
        text, n_inputs, param_names, outputs = model_or_block(draw, scope, "block", name)
        items.append(text)
        scope.blocks[name] = (n_inputs, param_names, outputs or ["y"])
    for k in range(draw(st.integers(1, 3))):
        name = _one(draw, ["Net", "Gen", "Disc", "MLP", "linear"]) + ("" if k == 0 else str(k))
        text, *_ = model_or_block(draw, scope, "model", name)
        items.append(text)
        scope.models.append(name)
    if _maybe(draw, 0.2):
        base = _one(draw, scope.models + ["Missing"])
        args = ", ".join(f"{p}={_one(draw, SIZES)}" for p in draw(st.lists(st.sampled_from(["d", "k", "p"]))))
        items.append(f"model {scope.new_name('Variant')} = {base}({args})")
    if _maybe(draw, 0.3):
        roles = (
            ["generator", "discriminator"]
            if _maybe(draw, 0.8)
            else draw(st.lists(st.sampled_from(["generator", "discriminator", "critic"]), max_size=3))
        )
        body = " ".join(f"{r} {_one(draw, scope.models + ['Nope'])}{_one(draw, ['()', '', '(d=2)'])}" for r in roles)
        name = scope.new_name("GAN")
        items.append(f"gan {name} {{ {body} }}")
        scope.models.append(name)
    if _maybe(draw, 0.35):
        items.append(train_block(draw, scope))
    return "\n\n".join(items) + _one(draw, ["\n", "", "\n\n# trailing comment"])


def component_call(draw, scope: Scope, kind: str | None = None) -> str:
    kinds = sorted({k for k, _ in COMPONENTS})
    kind = kind if kind in kinds else _one(draw, kinds)
    name = _one(draw, [n for k, n in COMPONENTS if k == kind])
    args = [const_expr(draw, scope) for _ in range(draw(st.integers(0, 1)))]
    keys = ["lr", "batch", "size", "momentum", "betas", "warmup", "every", "split", "shuffle", "k", "patience"]
    for key in draw(st.lists(st.sampled_from(keys), max_size=3, unique=True)):
        args.append(f"{key}={_one(draw, ['1e-3', '64', '0.9', '(0.5, 0.999)', 'true', '0', '-1', '16', '10**12'])}")
    return name if not args and _maybe(draw) else f"{name}({', '.join(args)})"


def train_block(draw, scope: Scope) -> str:
    settings_ = [f"model {_one(draw, scope.models)}{_one(draw, ['', '()'])}"] if _maybe(draw, 0.9) else []
    plain = {"data": "dataset", "loss": "loss", "optimizer": "optimizer", "schedule": "schedule"}
    for key in draw(st.lists(st.sampled_from(TRAIN_KEYS + ["bogus"]), max_size=7)):
        if key in plain:
            if _maybe(draw, 0.2):
                value = ", ".join(
                    f"{r}: {component_call(draw, scope, plain[key])}" for r in ("generator", "discriminator")
                )
            else:
                value = component_call(draw, scope, plain[key])
        elif key == "metrics":
            value = _one(draw, ["[accuracy]", "accuracy", "[accuracy, top_k(5)]", "[]", "perplexity"])
        elif key == "model":
            value = _one(draw, scope.models + ["Nope()"])
        else:
            value = _one(draw, ["10", "1", "0", "-1", '"bf16"', "every(epochs=1)", "grid(8, 8, every=1)", "[a, b]"])
            if _maybe(draw, 0.2):
                value = const_expr(draw, scope)
        settings_.append(f"{key} {value}")
    return f"train {scope.new_name('run')} {{\n    " + "\n    ".join(settings_) + "\n}"


def _check_generated(text: str) -> None:
    diagnostics = check_in_process(text, "fuzz.mspec")
    if diagnostics is None:
        return
    # The generator follows the grammar, so the parser must accept its programs (syntax errors are E0001-E0003;
    # a literal can still be refused, e.g. E0007 for a 1000-digit integer).
    syntax = [d for d in diagnostics if d.code in ("E0001", "E0002", "E0003")]
    assert not syntax, (syntax, text)
    _event("clean" if not diagnostics else "with diagnostics")


ACTIVATIONS = ["relu", "gelu", "tanh", "sigmoid", "silu", "identity"]


@st.composite
def sane_programs(draw) -> str:
    """Well-typed programs: every one must check without a single diagnostic."""
    items = []
    std = _maybe(draw, 0.3)
    if std:
        items.append('import "std/transformer.mspec"')
    blocks = []
    for k in range(draw(st.integers(0, 2))):
        hidden = _one(draw, ["2 * D", "D", "16", "hidden"])
        act = _one(draw, ACTIVATIONS)
        items.append(
            f"block Res{k}(hidden: int = {_one(draw, SIZES[:7])}, p: float = {_one(draw, ['0.0', '0.1'])}) {{\n"
            "    input x: float[B, T, D]\n"
            f"    h = x |> layernorm |> linear({hidden}) |> {act} |> dropout(p)\n"
            + ('    assert D % 1 == 0, "always"\n' if _maybe(draw, 0.3) else "")
            + "    output y = x + (h |> linear(D))\n}"
        )
        blocks.append(f"Res{k}")
    for k in range(draw(st.integers(1, 2))):
        d = _one(draw, ["8", "16", "32", "64"])
        lines = [f"input x: float[B, T, {_one(draw, ['d', d])}]"]
        for _ in range(draw(st.integers(0, 6))):
            choice = draw(st.integers(0, 5))
            if choice == 0:
                lines.append(f"x = x |> linear(d) |> {_one(draw, ACTIVATIONS)}")
            elif choice == 1 and blocks:
                lines.append(f"x = x |> {_one(draw, blocks)}({_one(draw, ['', 'hidden=4', '8', 'p=0.2'])})")
            elif choice == 2:
                count = _one(draw, ["0", "1", "layers", "layers + 1", "10**12"])
                body = (
                    f"x = x |> {_one(draw, blocks)}"
                    if blocks
                    else f"x = x + (x |> linear(d) |> {_one(draw, ACTIVATIONS)})"
                )
                as_clause = _one(draw, ["", f" as stack{len(lines)}", f" as stack{len(lines)}[i]"])
                lines.append(f"repeat {count}{as_clause} {{ {body} }}")
            elif choice == 3:
                lines.append(f"if d > {_one(draw, SIZES[:6])} {{ x = x |> layernorm }} else {{ x = x |> relu }}")
            elif choice == 4:
                lines.append(f'assert T <= {_one(draw, ["1024", "d * 100"])}, "the sequence is too long"')
            elif std:
                lines.append(f"x = x |> GPTBlock({_one(draw, ['1', '2', '4'])})")
            else:
                lines.append("x = x * 0.5 + x |> dropout(0.1)" if _maybe(draw) else "x = (x - x) / 2.0")
        lines.append(f"output y = x |> linear({_one(draw, SIZES[:6])})")
        items.append(
            f"model Net{k}(d: int = {d}, layers: int = {_one(draw, ['1', '2', '12'])}) {{\n    "
            + "\n    ".join(lines)
            + "\n}"
        )
    return "\n\n".join(items) + "\n"


def _check_sane(text: str) -> None:
    diagnostics = check_in_process(text, "sane.mspec")
    assert diagnostics == [], (diagnostics, text)


@SETTINGS
@given(sane_programs())
def test_well_typed_generated_programs_check_cleanly(text):
    _check_sane(text)


@SETTINGS
@given(programs())
def test_generated_programs_check_without_crashing(text):
    _check_generated(text)


@pytest.mark.slow
@SLOW_SETTINGS
@given(programs())
def test_generated_programs_check_without_crashing_more(text):
    _check_generated(text)


@pytest.mark.slow
@SLOW_SETTINGS
@given(sane_programs())
def test_well_typed_generated_programs_check_cleanly_more(text):
    _check_sane(text)


# ---- (b) mutations of the shipped specs ------------------------------------------------------


def shipped_specs() -> list[Path]:
    return sorted(SPECS.glob("*.mspec")) + sorted((SPECS / "broken").glob("*.mspec"))


SNIPPETS = [
    b"\x00", b"\xff", b"\xfe\xff", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xef\xbb\xbf", b"\x1b[31m", b"\x7f",
    "×".encode(), "\u2028".encode(), b'"', b'"unterminated', b"\\", b"{", b"}", b"(", b")", b"[", b"]", b",",
    b"|>", b"->", b"=", b":", b".", b"#", b"\n", b"\r", b"\t", b" ", b"-", b"**", b"//",
    b"9" * 1000, b"1" + b"0" * 1000, b"1e999", b"0.0", b"0", b"-1", b"10**1000", b"2**2**2**2**2",
    b"repeat 10**12 ", b"repeat 10**12 { x = x |> linear(4) }", b"(" * 300, b")" * 300, b"(" * 10_000,
    b"[" * 500, b"-" * 500, b"{" * 500,
    b"model", b"block", b"input", b"output", b"if", b"else", b"assert", b"gan", b"train", b"as", b"not",
    b"and", b"true", b"x", b"B", b"T", b"linear(0)", b"relu", b"|> relu" * 50,
    b'import "std/transformer.mspec"', b'import "nowhere.mspec"', b'import "gpt2.mspec"', b'use "x"',
    b"model M { }", b"block B { input x: float[B, 4] output y = x }",
]  # fmt: skip
TOKEN = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*|\d[\d_]*(?:\.\d+)?(?:[eE][+-]?\d+)?|\"[^\"\n]*\"|\|>|->|\*\*|//|\S")


@st.composite
def mutated(draw, sources: list[tuple[str, bytes]]) -> tuple[str, bytes]:
    name, original = draw(st.sampled_from(sources))
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 5))):
        n = len(data)
        i = draw(st.integers(0, n))
        j = draw(st.integers(i, min(n, i + draw(st.sampled_from([1, 4, 16, 64, 512])))))
        kind = draw(st.sampled_from(["delete", "duplicate", "swap", "snippet", "bytes", "token", "truncate"]))
        if kind == "delete":
            del data[i:j]
        elif kind == "duplicate":
            data[j:j] = data[i:j] * draw(st.integers(1, 3))
        elif kind == "swap":
            k = draw(st.integers(j, n))
            m = draw(st.integers(k, min(n, k + j - i + 8)))
            data[i:m] = data[k:m] + data[j:k] + data[i:j]
        elif kind == "snippet":
            data[i:i] = draw(st.sampled_from(SNIPPETS))
        elif kind == "bytes":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "token":
            tokens = list(TOKEN.finditer(data))
            if tokens:
                target = draw(st.sampled_from(tokens))
                replacement = draw(
                    st.one_of(st.sampled_from(tokens).map(lambda t: t.group()), st.sampled_from(SNIPPETS))
                )
                data[target.start() : target.end()] = replacement
        else:
            del data[i:]
    return name, bytes(data)


@pytest.fixture(scope="module")
def spec_copies(tmp_path_factory) -> tuple[Path, list[tuple[str, bytes]]]:
    """Copies of every shipped spec in one folder, so relative imports (gpt3 -> gpt2, the cycles) resolve."""
    folder = tmp_path_factory.mktemp("specs")
    sources = []
    for path in shipped_specs():
        data = path.read_bytes()
        (folder / path.name).write_bytes(data)
        sources.append((path.name, data))
    assert len(sources) >= 9, "the shipped specs are missing"
    return folder, sources


def _check_mutation(folder: Path, data: bytes) -> None:
    path = folder / "mutated.mspec"
    path.write_bytes(data)
    diagnostics = check_in_process(path)
    if diagnostics is not None:
        parse_codes = {"E0001", "E0002", "E0003", "E0004", "E0006", "E0007"}
        codes = {d.code for d in diagnostics}
        _event("clean" if not diagnostics else "parse error" if parse_codes & codes else "checked")


@settings(SETTINGS, max_examples=400)  # mutants are cheap: most stop at a syntax error
@given(st.data())
def test_mutated_specs_check_without_crashing(spec_copies, data):
    folder, sources = spec_copies
    _, mutant = data.draw(mutated(sources))
    _check_mutation(folder, mutant)


@pytest.mark.slow
@SLOW_SETTINGS
@given(st.data())
def test_mutated_specs_check_without_crashing_more(spec_copies, data):
    folder, sources = spec_copies
    _, mutant = data.draw(mutated(sources))
    _check_mutation(folder, mutant)


@pytest.mark.parametrize("path", shipped_specs(), ids=lambda p: str(p.relative_to(SPECS)))
def test_every_shipped_spec_checks_within_bounds(path, spec_copies):
    folder, _ = spec_copies
    _check_mutation(folder, path.read_bytes())


# ---- (c) regression cases through the CLI ----------------------------------------------------

H = "model M {\n    input x: float[B, 4]\n"
T = "\n    output o = x\n}\n"


def run_check(path: Path | str, timeout: float = 60) -> tuple[int, str, float]:
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "modelspec.cli", "check", str(path)],
        capture_output=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "NO_COLOR": "1"},
    )
    elapsed = time.perf_counter() - start
    return result.returncode, (result.stdout + result.stderr).decode("utf-8", errors="replace"), elapsed


def _write(tmp_path: Path, content: bytes | str, name: str = "case.mspec") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def _import_cycle(tmp_path: Path) -> Path:
    _write(tmp_path, 'import "b.mspec"\n' + H + T, "a.mspec")
    _write(tmp_path, 'import "a.mspec"\nblock X {\n    input x: float[B, 4]\n    output y = x\n}\n', "b.mspec")
    return tmp_path / "a.mspec"


def _directory(tmp_path: Path) -> Path:
    folder = tmp_path / "folder.mspec"
    folder.mkdir()
    return folder


def bug(reason: str):
    """A bug this fuzzer found, reported and not fixed yet: remove the mark when it is fixed."""
    return pytest.mark.xfail(strict=True, reason=f"bug: {reason}")


# name -> (make the file, expected exit code or None for 0 or 1, a code the output must contain, time limit)
CLI_CASES = {
    "empty file": (lambda p: _write(p, b""), 0, None, 30),
    "only whitespace": (lambda p: _write(p, b" \n\t\r\n  \f\n"), 0, None, 30),
    "only a comment": (lambda p: _write(p, b"# nothing but a comment"), 0, None, 30),
    "binary garbage": (lambda p: _write(p, random.Random(1234).randbytes(8192)), 1, None, 30),
    "binary garbage, valid UTF-8": (
        lambda p: _write(p, bytes(random.Random(99).randrange(1, 128) for _ in range(8192))),
        1,
        None,
        30,
    ),
    "NUL byte": (lambda p: _write(p, H.encode() + b"\x00" + T.encode()), 1, "E0002", 30),
    "unterminated string": (lambda p: _write(p, 'import "std/transformer.mspec\n' + H + T), 1, "E0003", 30),
    "unknown names": (
        lambda p: _write(p, H + "    y = zz |> frobnicate(q) |> Nope\n    output o = y\n}\n"),
        1,
        "E0201",
        30,
    ),
    "wrong argument types": (
        lambda p: _write(p, H + '    output o = x |> linear("a") |> dropout(true) |> conv2d(1.5, kernel="x")\n}\n'),
        1,
        "E0207",
        30,
    ),
    "10,000-deep parentheses": (
        lambda p: _write(p, H + "    y = " + "(" * 10_000 + "1" + ")" * 10_000 + T),
        None,
        None,
        30,
    ),
    "10,000-deep brackets": (lambda p: _write(p, H + "    y = " + "[" * 10_000 + "]" * 10_000 + T), 1, "E0006", 30),
    "10,000-deep unary minus": (lambda p: _write(p, H + "    y = " + "-" * 10_000 + "1" + T), 1, "E0006", 30),
    "10,000-deep calls": (
        lambda p: _write(p, H + "    y = " + "relu(" * 10_000 + "x" + ")" * 10_000 + T),
        1,
        "E0006",
        30,
    ),
    "10,000-deep blocks {{{": (lambda p: _write(p, "model M " + "{" * 10_000 + "}" * 10_000), 1, None, 30),
    "10,000-deep ifs": (lambda p: _write(p, H + "    if true {" * 10_000 + "}" * 10_000 + T), 1, "E0006", 30),
    "10,000-term sum": (lambda p: _write(p, H + "    y = " + "+".join(["1"] * 10_000) + T), None, None, 30),
    "1000-digit integer": (lambda p: _write(p, H + "    y = " + "9" * 1000 + T), 1, "E0007", 30),
    "1000-digit float": (lambda p: _write(p, H + "    y = " + "9" * 1000 + ".5e99999" + T), 1, None, 30),
    "10**1000": (lambda p: _write(p, H + "    y = 10 ** 1000\n    z = 10 ** 10 ** 10" + T), 1, "E0311", 30),
    "repeat 10**12 (counted, not unrolled)": (
        lambda p: _write(p, H + "    repeat 10**12 { x = x |> linear(4) }" + T),
        0,
        None,
        5,
    ),
    "repeat 10**12 using its index": (
        lambda p: _write(p, H + "    repeat 10**12 as h[i] { x = x |> linear(4) }" + T),
        None,
        None,
        10,
    ),
    "import cycle": (_import_cycle, 1, "E0102", 30),
    "missing import": (lambda p: _write(p, 'import "not/here.mspec"\n' + H + T), 1, "E0101", 30),
    "non-UTF-8 text": (lambda p: _write(p, (H + "    # café" + T).encode("latin-1")), 1, "E0004", 30),
    "a directory": (_directory, 1, "E0005", 30),
    "a missing file": (lambda p: p / "missing.mspec", 1, "E0005", 30),
    "a file name too long for the OS": (lambda p: p / ("a" * 300 + ".mspec"), 1, "E0005", 30),
    "20,000-stage pipe chain": (
        lambda p: _write(p, H + "    output y = x" + " |> relu" * 20_000 + "\n}\n"),
        0,
        None,
        8,
    ),
    "20,000 bindings": (lambda p: _write(p, H + "".join(f"    v{k} = {k}\n" for k in range(20_000)) + T), 0, None, 30),
}


@pytest.mark.parametrize(
    "case",
    list(CLI_CASES.values()),
    ids=list(CLI_CASES),
)
def test_cli_regression(case, tmp_path):
    make, expected, code, limit = case
    path = make(tmp_path)
    try:
        rc, output, elapsed = run_check(path, timeout=limit)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`mspec check` took more than {limit} s")
    assert rc in (0, 1), output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert "internal error" not in output, output[-3000:]
    # Not a vacuous pass: the command ran and said something about the file.
    assert ("ok" in output) if rc == 0 else ("error" in output), output[-3000:]
    if expected is not None:
        assert rc == expected, output[-3000:]
    if code is not None:
        assert f"[{code}]" in output, output[-3000:]
    assert elapsed < limit


# ---- the bugs this fuzzer found (xfail until fixed; see KNOWN_CRASHES), fixed since ------------


@pytest.mark.parametrize(
    "text",
    [
        H + "    y = 3 |> relu" + T,
        H + "    y = (1, 2) |> linear(4)" + T,
        "block A {\n    input x: float[B, 4]\n    output o = x\n}\nmodel M {\n    output o = 3 |> A\n}\n",
        "block A {\n    input x: float[B, 4]\n    output o = x\n    output p = x\n}\n"
        "model M {\n    input x: float[B, 4]\n    output o = x |> A |> relu\n}\n",
    ],
    ids=["int piped", "tuple piped", "int piped into a block", "two-output block piped"],
)
def test_piping_a_non_tensor_is_a_diagnostic(text):
    # Was AttributeError: 'int' / 'tuple' / 'RecordValue' object has no attribute 'type' (elaborate.apply_op and
    # elaborate.call_block): `call` appended the piped value to the tensor inputs without checking it.
    program, diagnostics, sources = compile_program(text, "bug.mspec")
    assert [d.code for d in diagnostics] == ["E0307"], diagnostics
    (d,) = diagnostics
    assert d.message.startswith("`|>` needs a tensor on its left, got "), d.message
    left = sources.texts["bug.mspec"][d.span.start : d.span.end]
    assert left in ("3", "(1, 2)", "x |> A"), left


def test_zero_to_a_negative_power_is_a_diagnostic():
    # Was ZeroDivisionError: 0.0 cannot be raised to a negative power (constants.arithmetic, int ** negative int).
    for expr in ("0 ** -1", "0.0 ** -2", "0 ** -0.5"):
        diagnostics = compile_program(H + f"    a = {expr}" + T, "bug.mspec")[1]
        assert [(d.code, d.message) for d in diagnostics] == [("E0311", "division by zero")], expr


def test_a_train_block_naming_a_model_with_an_error_is_a_diagnostic():
    # Was KeyError: 'model' (train/config.py, _Checker.build): the model's own error is reported, the train
    # block's checker saw no diagnostic of its own and built without a model. It adds nothing of its own.
    text = (
        "model M {\n    input x: float[B, 4]\n    output o = x |> nope\n}\n"
        "train t {\n    model M()\n    data digits(batch=8)\n    loss cross_entropy(o, label)\n"
        "    optimizer adam(lr=1e-3)\n    steps 10\n}\n"
    )
    program, diagnostics, _ = compile_program(text, "bug.mspec")
    assert [d.code for d in diagnostics] == ["E0202"]
    assert "t" not in program.trains


@pytest.mark.parametrize("path", ["a" * 300, "std/" + "(" * 300 + "transformer.mspec"], ids=["relative", "std/"])
def test_an_import_path_too_long_for_the_os_is_a_diagnostic(path):
    # Was OSError: [Errno 36] File name too long, from Path.is_file in loader.load_import (or loader._std_path
    # for `std/...`); Path.is_file swallows ENOENT and a few others, not ENAMETOOLONG.
    diagnostics = compile_program(f'import "{path}"\n' + H + T, "bug.mspec")[1]
    assert [d.code for d in diagnostics] == ["E0101"]


def _many_lines(n: int, line: str) -> str:
    return H + "".join(line.format(k=k) for k in range(n)) + T


# name -> (spec text, time limit in seconds); each goes through the CLI in a subprocess.
SLOW_CASES = {
    # Each `repeat` elaborated its body twice (once, then again to see the types settle), so k nested repeats
    # elaborated the innermost body 2**k times: 14 levels took ~2 s, 22 levels minutes. Now once per level.
    "22 nested repeats": (H + "    repeat 2 {" * 22 + " x = x |> relu " + "}" * 22 + T, 6),
    # An index-using `repeat` with a count over MAX_UNROLLED_ITERATIONS (4096) was refused only after elaborating
    # 4096 iterations: ~1 s per body line (38 s for 40 lines). Now refused before the first.
    "indexed repeat 10**12 of 40 lines": (
        H + "    repeat 10**12 as r[i] {\n" + "        x = x |> linear(4) |> dropout(0.0 * i)\n" * 40 + "    }" + T,
        6,
    ),
    # "did you mean" compared each unknown name with every name in scope (difflib): quadratic, ~21 s for 3,000.
    "5,000 unknown names": (_many_lines(5000, "    y{k} = zz{k}\n"), 8),
    # SourceMap.line split the whole text for every diagnostic it rendered: 16,000 diagnostics spent ~5 s in split.
    "20,000 diagnostics": (_many_lines(20_000, "    y{k} = x |> nope{k}\n"), 8),
}


@pytest.mark.parametrize("case", list(SLOW_CASES.values()), ids=list(SLOW_CASES))
def test_no_input_makes_the_checker_slow(case, tmp_path):
    text, limit = case
    path = _write(tmp_path, text)
    try:
        rc, output, _ = run_check(path, timeout=limit)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`mspec check` took more than {limit} s")
    assert rc in (0, 1) and "Traceback" not in output
