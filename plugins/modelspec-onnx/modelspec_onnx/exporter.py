"""IR → one ONNX model, and the file it is saved as.

    parameters(graph)      every parameter path (the state_dict keys) and the ties between them
    export(program, ...)   walk the model's graph: inline block calls, unroll repeats, lower each
                           node through its `OnnxLowering`; every op that cannot be expressed is
                           gathered into ONE diagnostic (E0603) before any weight is read
    save(model, path)      weights over 2 GB (or too many for one protobuf file with the graph)
                           go to external data beside the file

Symbolic sizes of the model's inputs stay symbolic: they become `dim_param`s
named as in the spec (`B`, `T`), and sizes the graph needs at run time are
read off the inputs with `Shape`.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import onnx
from onnx import helper

from modelspec.diagnostics import CompileError, Label, error
from modelspec.ir.graph import Graph, Node, Program
from modelspec_onnx.emitter import Emitter, Scope, SizeUnknown, tensor_type, to_initializer
from modelspec_onnx.lowerings import BACKEND, OnnxLowering, Site
from modelspec_onnx.weights import UNUSED_BUFFERS, CheckpointWeights, Parameter, SeededWeights

OPSET = 18
IR_VERSION = 9  # what onnxruntime releases of the last two years all read
NO_LOWERING = "no ONNX lowering"
# Protobuf serialises no message over 2 GiB, and an .onnx file is one message: weights AND graph.
PROTOBUF_LIMIT = 2**31 - 1
# Weights over 2 GB (decimal) always go to external data: that leaves ~147 MB below the limit
# for the rest of the model, whose size `other_bytes` estimates besides.
EXTERNAL_DATA_THRESHOLD = 2 * 10**9
# Bytes the estimate may miss: the model's header, opset imports, doc string, field tags.
PROTO_MARGIN = 1024**2


# ---- parameters -----------------------------------------------------------------------------------


def parameters(graph: Graph, prefix: str = "") -> tuple[dict[str, Parameter], dict[str, list[str]]]:
    """Every stored parameter by path, and for each one the paths tied to it (torch's state_dict
    lists a tied weight under both names; the ONNX file stores it once, under the owner's)."""
    found: dict[str, Parameter] = {}
    aliases: dict[str, list[str]] = {}
    _collect(graph, prefix, found, aliases)
    return found, aliases


def _collect(graph: Graph, prefix: str, found: dict, aliases: dict) -> None:
    for node in graph.nodes:
        if node.op == "block" and node.body is not None:
            _collect(node.body, f"{prefix}{node.name}.", found, aliases)
        elif node.op == "repeat":
            for index, body in _unrolled(node):
                _collect(body, f"{prefix}{node.name}.{index}.", found, aliases)
        for param in node.params:
            path = f"{prefix}{node.name}.{param.name}"
            if param.tied_to:
                aliases.setdefault(prefix + param.tied_to, []).append(path)
            elif param.name.rsplit(".", 1)[-1] not in UNUSED_BUFFERS:
                found[path] = Parameter(path, param, node)


def _unrolled(node: Node):
    """(index, body) for every iteration of a repeat, in order: iteration i repeated counts[i] times."""
    index = 0
    for body, count in zip(node.iterations, node.counts):
        for _ in range(count):
            yield index, body
            index += 1


# ---- the graph --------------------------------------------------------------------------------------


@dataclass
class Problem:
    node: Node
    reason: str


@dataclass
class Exporter:
    lowerings: dict[str, OnnxLowering]
    other_backends: dict[str, list[str]]  # op -> backends that lower it, for the diagnostic's notes
    emitter: Emitter = field(default_factory=Emitter)
    problems: list[Problem] = field(default_factory=list)
    parameters_used: list[str] = field(default_factory=list)

    def graph(self, graph: Graph, scope: Scope) -> list[str]:
        """Emit the nodes of `graph` into the ONNX graph; returns the tensors of its outputs."""
        for node in graph.nodes:
            if node.op == "block":
                body = Scope(f"{scope.prefix}{node.name}.")
                body.bind_inputs(node.body.inputs, [scope.values[v] for v in node.inputs])
                self.bind(node, scope, self.graph(node.body, body))
            elif node.op == "repeat":
                self.repeat(node, scope)
            else:
                self.bind(node, scope, self.lower(node, graph, scope))
        return [scope.values[v] for v in graph.outputs.values()]

    def bind(self, node: Node, scope: Scope, tensors: list[str]) -> None:
        for k, tensor in enumerate(tensors):
            scope.values[node.name if k == 0 else f"{node.name}:{k}"] = tensor

    def repeat(self, node: Node, scope: Scope) -> None:
        # Unrolled: layer i's parameters are `<name>.<i>.*`, as torch's ModuleList names them.
        state = dict(zip(node.attrs.get("captured", []), [scope.values[v] for v in node.inputs]))
        for index, body in _unrolled(node):
            inner = Scope(f"{scope.prefix}{node.name}.{index}.", parent=scope)
            inner.bind_inputs(body.inputs, [state[v] for v in body.inputs])
            state.update(zip(body.outputs, self.graph(body, inner)))
        self.bind(node, scope, [state[v] for v in node.output_names])

    def lower(self, node: Node, graph: Graph, scope: Scope) -> list[str]:
        placeholder = [self.emitter.fresh(f"{scope.prefix}{node.name}.missing") for _ in node.outputs]
        types = [graph.value_type(v) for v in node.inputs]
        lowering = self.lowerings.get(node.op)
        if lowering is None:
            self.problems.append(Problem(node, NO_LOWERING))
            return placeholder
        reason = lowering.check(node, types) if lowering.check else None
        if reason:
            self.problems.append(Problem(node, reason))
            return placeholder
        tensors = [scope.values[v] for v in node.inputs]
        site = Site(node, tensors, types, scope, self.emitter, self.parameter(node, scope))
        try:
            out = lowering.emit(site)
        except SizeUnknown as exc:
            self.problems.append(Problem(node, f"needs the size `{exc.symbol}`, which no input of its block has"))
            return placeholder
        return out if isinstance(out, list) else [out]

    def parameter(self, node: Node, scope: Scope):
        def initializer(name: str) -> str:
            param = next(p for p in node.params if p.name == name)
            path = scope.prefix + (param.tied_to or f"{node.name}.{name}")
            if path not in self.parameters_used:
                self.parameters_used.append(path)
                self.emitter.used.add(path)
            return path

        return initializer

    def diagnostic(self):
        """One error for every op the exporter cannot express (each place once)."""
        seen, unique = set(), []
        for p in self.problems:
            key = (p.node.op, p.reason, p.node.span)
            if key not in seen:
                seen.add(key)
                unique.append(p)
        ops = sorted({p.node.op for p in unique})
        first = unique[0]
        labels = [Label(p.node.span, f"`{p.node.op}`: {p.reason}") for p in unique[1:] if p.node.span is not None]
        # Labels show where; notes say what the labels cannot: calls without a place, other backends.
        notes = [f"`{p.node.op}` {p.reason}" for p in unique[1:] if p.node.span is None]
        for op in sorted({p.node.op for p in unique if p.reason == NO_LOWERING}):
            others = self.other_backends.get(op)
            notes.append(f"backends that lower `{op}`: {', '.join(others)}" if others else f"no backend lowers `{op}`")
        shown = ", ".join(f"`{op}`" for op in ops)
        if len(unique) == 1:
            message = f"the op `{first.node.op}` cannot be exported to ONNX"
        else:
            message = f"{len(unique)} op calls cannot be exported to ONNX ({shown})"
        return error(
            "E0603",
            message,
            first.node.span,
            first.reason if len(unique) == 1 else f"`{first.node.op}`: {first.reason}",
            secondary=labels,
            notes=notes,
            help="compile with a backend that lowers these ops, or write them with ops the ONNX backend lowers",
        )


# ---- the model --------------------------------------------------------------------------------------


def _lowerings(registry) -> tuple[dict[str, OnnxLowering], dict[str, list[str]]]:
    """This backend's lowerings in `registry` (the only source: none there, none used), and for
    each op the other backends that lower it."""
    table = registry.lowerings
    mine = {op: lw for (backend, op), lw in table.items() if backend == BACKEND}
    others: dict[str, list[str]] = {}
    for backend, op in sorted(table):
        if backend != BACKEND:
            others.setdefault(op, []).append(backend)
    return mine, others


def export(
    program: Program,
    model: str,
    *,
    checkpoint: str | Path | None = None,
    seed: int = 0,
    registry=None,
) -> onnx.ModelProto:
    """The ONNX model of `model`, with weights from `checkpoint` (a `mspec train` checkpoint folder
    or a .safetensors file of the state_dict), else seeded from each parameter's initialiser.

    Raises `CompileError` (one E0603 diagnostic) when ops cannot be expressed, and
    `CheckpointError` when the checkpoint does not fit the model."""
    if registry is None:
        from modelspec.plugins import registry as process_registry

        registry = process_registry()
    ir = program.models[model]
    found, aliases = parameters(ir.graph)
    weights = CheckpointWeights(checkpoint) if checkpoint is not None else SeededWeights(seed)
    weights.check(found, aliases)

    exporter = Exporter(*_lowerings(registry))
    scope = Scope("")
    inputs = list(ir.graph.inputs)
    # Inputs, outputs and parameters keep their names; inner tensors take others.
    exporter.emitter.used |= set(inputs) | set(ir.graph.outputs) | set(found)
    scope.bind_inputs(ir.graph.inputs, inputs)
    results = exporter.graph(ir.graph, scope)
    if exporter.problems:
        raise CompileError(exporter.diagnostic())

    emitter = exporter.emitter
    outputs = list(ir.graph.outputs)
    nodes = list(emitter.nodes)
    for name, tensor in zip(outputs, results):
        # Graph outputs carry the spec's names; an Identity keeps them apart from inner tensors.
        nodes.append(helper.make_node("Identity", [tensor], [name], name=f"output.{name}"))
    initializers = [to_initializer(path, weights.value(found[path], aliases)) for path in exporter.parameters_used]
    initializers += [to_initializer(name, array) for name, array in emitter.initializers.items()]
    graph = helper.make_graph(
        nodes,
        ir.name,
        [tensor_type(n, t) for n, t in ir.graph.inputs.items()],
        [tensor_type(n, ir.graph.output_types[n]) for n in outputs],
        initializer=initializers,
    )
    result = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="modelspec-onnx",
        ir_version=IR_VERSION,
        doc_string=f"model {ir.name} ({'checkpoint ' + str(checkpoint) if checkpoint else f'seed {seed}'})",
    )
    return result


def initializer_bytes(model: onnx.ModelProto) -> int:
    return sum(len(t.raw_data) for t in model.graph.initializer)


def other_bytes(model: onnx.ModelProto) -> int:
    """About how many bytes the model takes besides its weights' values: nodes (with any constant
    tensors they hold), the graph's inputs and outputs, the initializers' names and shapes. Measured
    part by part, never serialising the whole, which may be the very thing that cannot be done."""
    graph = model.graph
    parts = [*graph.node, *graph.input, *graph.output, *graph.value_info]
    headers = sum(len(t.name) + 11 * len(t.dims) + 16 for t in graph.initializer)  # name, dims, type, tags
    return sum(part.ByteSize() for part in parts) + headers


def external_data_needed(weights: int, other: int, threshold: int = EXTERNAL_DATA_THRESHOLD) -> bool:
    """Whether `weights` bytes of initializers must go to external data: over `threshold`, or too
    many to fit protobuf's limit together with the `other` bytes of the model and a margin."""
    return weights > threshold or weights + other + PROTO_MARGIN > PROTOBUF_LIMIT


class SaveError(ValueError):
    """The model cannot be serialised as an ONNX file. A ValueError: `mspec compile` shows its
    message as it shows any option's value that does not fit, without a traceback."""


def save(model: onnx.ModelProto, path: str | Path, external_threshold: int = EXTERNAL_DATA_THRESHOLD) -> Path | None:
    """Write `model` to `path`; when its initializers exceed `external_threshold` bytes, or would not
    fit one protobuf message with the rest of the model, they go to `<path>.data` beside it (ONNX
    external data). Returns that file, or None. Raises SaveError when the model cannot be
    serialised even so.

    Writing external data moves the weights out of `model` (onnx does it in place, which spares a
    copy of gigabytes): export again to keep using the model in memory."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    data = path.with_name(path.name + ".data")
    weights, other = initializer_bytes(model), other_bytes(model)
    external = external_data_needed(weights, other, external_threshold)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        if external:
            # onnx appends to an existing data file: start from an empty one.
            data.unlink(missing_ok=True)
            onnx.save_model(
                model,
                tmp,
                save_as_external_data=True,
                all_tensors_to_one_file=True,
                location=data.name,
                size_threshold=1024,
            )
        else:
            onnx.save_model(model, tmp)
        umask = os.umask(0)
        os.umask(umask)
        for written in (tmp, data) if external else (tmp,):  # mkstemp's file is private; these are ordinary
            os.chmod(written, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if external:
            data.unlink(missing_ok=True)
        if isinstance(exc, OSError) or not isinstance(exc, Exception):
            raise
        # protobuf's EncodeError ("Failed to serialize proto") and the like: say what and why.
        where = f"{weights:,} bytes of weights in {data.name}" if external else f"{weights:,} bytes of weights inline"
        raise SaveError(
            f"cannot write {path}: the model does not serialise as an ONNX file ({type(exc).__name__}: {exc}); "
            f"it holds {where} and about {other:,} bytes of graph, and protobuf limits a file to "
            f"{PROTOBUF_LIMIT:,} bytes (a smaller `external_threshold` moves more weights out)"
        ) from None
    return data if external else None
