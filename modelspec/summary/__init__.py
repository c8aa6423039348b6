"""Counting a model without building it: parameters, FLOPs, memory.

Everything is read off the IR: each node carries its parameters and its
cost as a polynomial in the symbolic sizes. Sizes are bound from the
inputs a user gives (`--input tokens=1x1024`), else `B=1` and every other
symbol from the bound an `assert` puts on it (`assert T <= ctx` gives
T = ctx). Nothing here imports torch, so a 175-billion-parameter spec is
summarised in milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from modelspec.diagnostics import CompileError, error
from modelspec.ir.dims import Dim
from modelspec.ir.graph import Constraint, Graph, Model, Node
from modelspec.ir.types import DTYPE_BYTES, TensorType

DEFAULT_BATCH = 1


@dataclass
class Row:
    name: str  # the node's path, e.g. "h" or "h.0.attn"
    kind: str  # op name, "Block" for block calls, "repeat ×12 Block"
    output: str
    parameters: int
    flops: int
    macs: int
    depth: int
    note: str = ""


@dataclass
class Summary:
    model: str
    inputs: dict[str, str]
    bindings: dict[str, int]
    rows: list[Row]
    parameters: int
    trainable_parameters: int
    buffers: int
    forward_flops: int
    forward_macs: int
    notes: list[str] = field(default_factory=list)
    training: dict | None = None

    def parameter_bytes(self, dtype: str) -> int:
        return self.parameters * DTYPE_BYTES[dtype]

    def to_json(self) -> dict:
        out = {
            "model": self.model,
            "parameters": self.parameters,
            "trainable_parameters": self.trainable_parameters,
            "buffers": self.buffers,
            "forward_flops": self.forward_flops,
            "forward_macs": self.forward_macs,
            "inputs": self.inputs,
            "bindings": self.bindings,
            "parameter_memory_bytes": {d: self.parameter_bytes(d) for d in ("float32", "bfloat16", "float16")},
            "notes": self.notes,
            "layers": [
                {
                    "name": r.name,
                    "kind": r.kind,
                    "output": r.output,
                    "parameters": r.parameters,
                    "flops": r.flops,
                    "macs": r.macs,
                    "depth": r.depth,
                }
                for r in self.rows
            ],
        }
        if self.training is not None:
            out["training"] = self.training
        return out


# ---- counting ----------------------------------------------------------------------


def graph_params(graph: Graph) -> tuple[int, int, int]:
    """(parameters, trainable, buffer elements) of a graph; tied parameters count once."""
    total = trainable = buffers = 0
    for node in graph.nodes:
        p, t, b = node_params(node)
        total, trainable, buffers = total + p, trainable + t, buffers + b
    return total, trainable, buffers


def node_params(node: Node) -> tuple[int, int, int]:
    total = trainable = buffers = 0
    for param in node.params:
        if param.tied_to:
            continue
        if param.buffer:
            buffers += param.numel
        else:
            total += param.numel
            trainable += param.numel if param.trainable else 0
    if node.body is not None:
        p, t, b = graph_params(node.body)
        total, trainable, buffers = total + p, trainable + t, buffers + b
    for graph, count in zip(node.iterations, node.counts):
        p, t, b = graph_params(graph)
        total, trainable, buffers = total + count * p, trainable + count * t, buffers + count * b
    return total, trainable, buffers


def node_cost(node: Node) -> tuple[Dim, Dim]:
    flops, macs = node.flops, node.macs
    if node.body is not None:
        f, m = graph_cost(node.body)
        flops, macs = flops + f, macs + m
    for graph, count in zip(node.iterations, node.counts):
        f, m = graph_cost(graph)
        flops, macs = flops + f * count, macs + m * count
    return flops, macs


def graph_cost(graph: Graph) -> tuple[Dim, Dim]:
    flops, macs = Dim.const(0), Dim.const(0)
    for node in graph.nodes:
        f, m = node_cost(node)
        flops, macs = flops + f, macs + m
    return flops, macs


def constraints(graph: Graph) -> list[Constraint]:
    out = list(graph.constraints)
    for node in graph.nodes:
        if node.body is not None:
            out += constraints(node.body)
        for g in node.iterations:
            out += constraints(g)
    return out


def activation_elements(graph: Graph, bindings: dict[str, int]) -> int:
    """Elements of every intermediate output: what a backward pass keeps, roughly."""
    total = 0
    for node in graph.nodes:
        if node.body is not None:
            total += activation_elements(node.body, bindings)
        elif node.iterations:
            total += sum(c * activation_elements(g, bindings) for g, c in zip(node.iterations, node.counts))
        else:
            total += sum(_evaluate(t.numel(), bindings) for t in node.outputs)
    return total


# ---- binding sizes ------------------------------------------------------------------


def parse_shape(text: str) -> tuple[int, ...]:
    """`1x1024`, `1,1024` or `[1, 1024]` → (1, 1024)."""
    cleaned = text.strip().strip("[]()").replace("x", ",").replace("×", ",")
    parts = [p.strip() for p in cleaned.split(",") if p.strip()]
    if not parts or not all(p.isdigit() for p in parts):
        raise ValueError(f"cannot read shape {text!r}: write sizes like 1x1024")
    return tuple(int(p) for p in parts)


def bind_sizes(model: Model, given: dict[str, tuple[int, ...]]) -> tuple[dict[str, int], list[str]]:
    graph = model.graph
    bindings: dict[str, int] = {}
    notes: list[str] = []
    for name, shape in given.items():
        if name not in graph.inputs:
            from modelspec.diagnostics import suggestion

            hint = suggestion(name, graph.inputs) or "inputs: " + ", ".join(graph.inputs)
            raise CompileError(error("E0501", f"model `{model.name}` has no input `{name}` ({hint})", None))
        declared = graph.inputs[name]
        if len(shape) != declared.rank:
            raise CompileError(
                error("E0501", f"input `{name}` is {declared}: give {declared.rank} sizes, not {len(shape)}", None)
            )
        for dim, size in zip(declared.shape, shape):
            if dim.is_const:
                if dim.value != size:
                    raise CompileError(
                        error("E0501", f"input `{name}` is {declared}: size {size} does not fit `{dim}`", None)
                    )
            elif len(dim.terms) == 1 and dim.terms[0][1] == 1 and len(dim.terms[0][0]) == 1:
                symbol = dim.terms[0][0][0]
                if isinstance(symbol, str):
                    if symbol in bindings and bindings[symbol] != size:
                        raise CompileError(
                            error("E0501", f"`{symbol}` is given as {bindings[symbol]} and {size}", None)
                        )
                    bindings[symbol] = size
    free = sorted(
        set().union(*(t.shape[i].symbols() for t in graph.inputs.values() for i in range(t.rank))) - set(bindings)
    )
    rules = constraints(graph)
    for symbol in free:
        if symbol == "B":
            bindings[symbol] = DEFAULT_BATCH
            notes.append(f"B = {DEFAULT_BATCH} (the default batch; set it with --input)")
            continue
        bound = _upper_bound(symbol, rules, bindings)
        if bound is None:
            raise CompileError(
                error(
                    "E0501",
                    f"the size `{symbol}` of model `{model.name}` is not known: give it with "
                    f"--input (e.g. --input {_input_with(graph, symbol)})",
                    None,
                )
            )
        bindings[symbol] = bound
        notes.append(f"{symbol} = {bound} (its largest value allowed by `assert`)")
    for rule in rules:
        left, right = _evaluate(rule.left, bindings), _evaluate(rule.right, bindings)
        ok = {"==": left == right, "!=": left != right, "<": left < right, "<=": left <= right,
              ">": left > right, ">=": left >= right}[rule.op]  # fmt: skip
        if not ok:
            where = f" ({rule.span})" if rule.span else ""
            raise CompileError(
                error(
                    "E0308", f"assertion failed for these sizes: `{rule.text}` ({left} {rule.op} {right}){where}", None
                )
            )
    return bindings, notes


def _upper_bound(symbol: str, rules: list[Constraint], bindings: dict[str, int]) -> int | None:
    for rule in rules:
        left, right = rule.left.substitute(bindings), rule.right.substitute(bindings)
        if left == Dim.sym(symbol) and right.is_const and rule.op in ("<=", "<", "=="):
            return right.value - (1 if rule.op == "<" else 0)
        if right == Dim.sym(symbol) and left.is_const and rule.op in (">=", ">", "=="):
            return left.value - (1 if rule.op == ">" else 0)
    return None


def _input_with(graph: Graph, symbol: str) -> str:
    for name, t in graph.inputs.items():
        if any(symbol in d.symbols() for d in t.shape):
            sizes = "x".join(str(d.value) if d.is_const else ("1" if str(d) == "B" else "N") for d in t.shape)
            return f"{name}={sizes}"
    return f"NAME={symbol}"


def _evaluate(dim: Dim, bindings: dict[str, int]) -> int:
    value = dim.substitute(bindings)
    if not value.is_const:
        raise CompileError(error("E0501", f"the size `{value}` is still unknown: give it with --input", None))
    return value.value


def _shape(t: TensorType, bindings: dict[str, int] | None = None) -> str:
    return t.shape_text()


# ---- the summary --------------------------------------------------------------------


def summarise(model: Model, given: dict[str, tuple[int, ...]], depth: int = 1) -> Summary:
    bindings, notes = bind_sizes(model, given)
    rows: list[Row] = []
    _rows(model.graph, bindings, "", 0, depth, rows)
    parameters, trainable, buffers = graph_params(model.graph)
    flops, macs = graph_cost(model.graph)
    notes += sorted({r.note for r in rows if r.note})
    return Summary(
        model=model.name,
        inputs={k: str(t) for k, t in model.graph.inputs.items()},
        bindings=bindings,
        rows=rows,
        parameters=parameters,
        trainable_parameters=trainable,
        buffers=buffers,
        forward_flops=_evaluate(flops, bindings),
        forward_macs=_evaluate(macs, bindings),
        notes=notes,
    )


def _rows(graph: Graph, bindings, prefix: str, level: int, depth: int, out: list[Row]) -> None:
    for node in graph.nodes:
        params, _, _ = node_params(node)
        flops, macs = node_cost(node)
        if node.op == "block":
            kind = node.block or "block"
        elif node.op == "repeat":
            inner = _repeat_kind(node)
            kind = f"repeat ×{sum(node.counts)}" + (f" {inner}" if inner else "")
        else:
            kind = node.op
        output = ", ".join(t.shape_text() for t in node.outputs) or "—"
        out.append(
            Row(
                name=prefix + node.name,
                kind=kind,
                output=output,
                parameters=params,
                flops=_evaluate(flops, bindings),
                macs=_evaluate(macs, bindings),
                depth=level,
                note=_note(node),
            )
        )
        if level + 1 < depth:
            if node.body is not None:
                _rows(node.body, bindings, f"{prefix}{node.name}.", level + 1, depth, out)
            start = 0
            for g, count in zip(node.iterations, node.counts):
                label = f"{start}" if count == 1 else f"{start}-{start + count - 1}"
                _rows(g, bindings, f"{prefix}{node.name}.{label}.", level + 1, depth, out)
                start += count


def _repeat_kind(node: Node) -> str:
    kinds = []
    for g in node.iterations:
        for n in g.nodes:
            if n.op == "block" and n.block not in kinds:
                kinds.append(n.block)
    return "/".join(kinds)


def _note(node: Node) -> str:
    # Only notes on work that is counted matter here (e.g. causal attention).
    if node.cost_note and not (node.flops.is_const and node.flops.value == 0):
        return f"{node.name}: {node.cost_note}"
    for graph in ([node.body] if node.body else []) + list(node.iterations):
        for inner in graph.nodes:
            note = _note(inner)
            if note:
                return note.split(": ", 1)[1] if ": " in note else note
    return ""
