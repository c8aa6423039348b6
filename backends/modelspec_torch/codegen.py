"""IR → one readable PyTorch file.

One `nn.Module` class per distinct block body, per distinct repeat
iteration, and for the model; `__init__` builds submodules named exactly as
the spec names them (they are the state_dict keys), `forward` runs the
nodes in the spec's order, one line each, with the output shape and the
spec line as a comment.

Nothing from a spec reaches the source except as a checked identifier or a
`repr()` literal: names go through `Namespace` (locals, classes) or are
checked as attribute names (module attributes must keep the spec's name).
The same program always gives the same bytes.
"""

from __future__ import annotations

import builtins
import functools
import keyword
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePath

import jinja2

from modelspec.diagnostics import CompileError, error
from modelspec.ir.dims import Dim, Floor, Mod
from modelspec.ir.graph import Graph, Node, Program
from modelspec_torch import inplace
from modelspec_torch.helpers import HELPERS
from modelspec_torch.lowerings import Lowering, Site

BACKEND = "torch"
# Names a generated module uses itself: never a local variable or class name.
RESERVED = {"self", "torch", "nn", "F", "math"} | set(dir(builtins)) | set(HELPERS)
# Attributes of nn.Module: a submodule of that name would be shadowed by the
# method (or break the module), so the name is refused with a diagnostic.
MODULE_ATTRIBUTES = {
    "T_destination",
    "add_module",
    "apply",
    "bfloat16",
    "buffers",
    "call_super_init",
    "children",
    "compile",
    "cpu",
    "cuda",
    "double",
    "dump_patches",
    "eval",
    "extra_repr",
    "float",
    "forward",
    "get_buffer",
    "get_extra_state",
    "get_parameter",
    "get_submodule",
    "half",
    "ipu",
    "load_state_dict",
    "modules",
    "mtia",
    "named_buffers",
    "named_children",
    "named_modules",
    "named_parameters",
    "parameters",
    "register_backward_hook",
    "register_buffer",
    "register_forward_hook",
    "register_forward_pre_hook",
    "register_full_backward_hook",
    "register_full_backward_pre_hook",
    "register_load_state_dict_post_hook",
    "register_load_state_dict_pre_hook",
    "register_module",
    "register_parameter",
    "register_state_dict_post_hook",
    "register_state_dict_pre_hook",
    "requires_grad_",
    "set_extra_state",
    "set_submodule",
    "share_memory",
    "state_dict",
    "to",
    "to_empty",
    "train",
    "training",
    "type",
    "xpu",
    "zero_grad",
}


class Namespace:
    """Makes safe, unique Python names: bad characters become `_`, no leading
    digit, no keyword, builtin or reserved name; clashes get `_1`, `_2`."""

    def __init__(self, reserved: set[str] | None = None):
        self.used: set[str] = set(RESERVED if reserved is None else reserved)

    def create(self, candidate: str) -> str:
        name = re.sub(r"\W", "_", candidate, flags=re.ASCII) or "_"
        if keyword.iskeyword(name) or keyword.issoftkeyword(name) or name.startswith("__"):
            name = name.strip("_") + "_" if name.strip("_") else "v_"
        if name[0].isdigit():  # after the strip: `__1__` becomes `1_`
            name = "_" + name
        base, k = name, 1
        while name in self.used:
            name = f"{base}_{k}"
            k += 1
        self.used.add(name)
        return name


def attribute_problem(name: str) -> str | None:
    """Why `name` cannot be a submodule attribute (None when it can)."""
    if not name.isidentifier() or not name.isascii():
        return "is not a plain ASCII identifier"
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        return "is a Python keyword"
    if name.startswith("_"):
        return "starts with `_`, which PyTorch modules keep for themselves"
    if name in MODULE_ATTRIBUTES:
        return f"would shadow `nn.Module.{name}`"
    # The backend's own attributes on generated modules: `build` sets `modelspec_source` (a str, which
    # nn.Module refuses over a submodule); KV-cached sampling takes any module with a truthy
    # `caches_keys_and_values` for an attention and assigns its `past`.
    if name in ("modelspec_source", "caches_keys_and_values"):
        return "is an attribute the torch backend keeps on generated modules"
    return None


@dataclass
class ClassSource:
    name: str
    doc: str
    args: list[str]
    init: list[str] = field(default_factory=list)
    forward: list[str] = field(default_factory=list)
    returns: str = "None"
    return_comment: str = ""  # `  # file.mspec:LINE` of the returned value


@functools.cache
def _environment(package: str = "modelspec_torch") -> jinja2.Environment:
    """Templates of `package` (this backend's, or a plugin's that ships lowerings)."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader(package, "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


@functools.cache
def _macros(template: str, package: str = "modelspec_torch"):
    return _environment(package).get_template(f"ops/{template}").module


def _render_macro(lowering: Lowering, macro: str, context: dict) -> str:
    return str(getattr(_macros(lowering.template, lowering.package), macro)(context)).strip()


def lowerings(registry=None) -> dict[str, Lowering]:
    """The torch lowerings of `registry`; None: the process-wide registry, so that plugins' ops lower
    whichever way the source is generated (`mspec compile`, `build`, or this module's functions).
    The registry is the only source: without the hooks' lowerings no op lowers (E0603)."""
    if registry is None:
        from modelspec.plugins import registry as process_registry

        registry = process_registry()
    return {op: lw for (backend, op), lw in registry.lowerings.items() if backend == BACKEND}


def _comment_file(span) -> str:
    """The file of `span` as a comment names it: its base name, or `std/NAME` for the standard library
    (so that `std/transformer.mspec:20` is not taken for a line of a spec's own transformer.mspec)."""
    if not span:
        return ""
    parts = _std_parts(span.file) or (PurePath(span.file).name,)
    # File names can hold anything; keep only what is safe in a comment.
    return "/".join(re.sub(r"[^\w.\-+@]", "?", part, flags=re.ASCII) for part in parts)


@functools.cache
def _std_folder() -> Path | None:
    from importlib import resources

    try:
        return Path(str(resources.files("modelspec.std"))).resolve()
    except (ImportError, OSError, RuntimeError, ValueError):
        return None


def _std_parts(file: str) -> tuple[str, ...]:
    """("std", "transformer.mspec") for a file of the shipped standard library, else ()."""
    if file.startswith("<"):  # `<string>`: spec text, no file
        return ()
    try:
        cwd = os.getcwd()  # spans name files relative to the working folder
    except OSError:
        return ()
    return _std_parts_from(file, cwd)


@functools.lru_cache(maxsize=256)  # one resolve per file, not one per generated line
def _std_parts_from(file: str, cwd: str) -> tuple[str, ...]:
    folder = _std_folder()
    if folder is None:
        return ()
    try:
        relative = (Path(cwd) / file).resolve().relative_to(folder)
    except (OSError, RuntimeError, ValueError):
        return ()
    return ("std", *relative.parts)


def _where(span) -> str:
    """`file.mspec:LINE`, the pointer every generated statement carries back to the spec (or "")."""
    return f"{_comment_file(span)}:{span.line}" if span else ""


def _pointer(where: str, text: str = "") -> str:
    """A statement's trailing comment: `  # TEXT  WHERE` (either may be empty)."""
    comment = "  ".join(part for part in (text, where) if part)
    return f"  # {comment}" if comment else ""


def _doc_text(text: str) -> str:
    # Docstrings carry spec names and numbers only; escape anything that could end the string, and
    # control characters (a NUL is a syntax error; \r, \x0b, \x0c, \x1c-\x1e break lines for linecache).
    text = text.encode("ascii", "backslashreplace").decode().replace("\\", "\\\\").replace('"', '\\"')
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\\\x{ord(m.group()):02x}", text)


class Generator:
    def __init__(self, program: Program, lowering_table: dict[str, Lowering], registry=None):
        self.program = program
        self.lowerings = lowering_table
        self.registry = registry  # for E0603's note; None: the process-wide registry
        self.span = None  # the span of the node being emitted, for E0602
        self.class_names = Namespace()
        self.classes: list[ClassSource] = []
        self.by_key: dict[str, str] = {}
        self.helpers: set[str] = set()
        self.problems: list = []

    # ---- classes ------------------------------------------------------------------

    def class_for(self, graph: Graph, base: str, doc: str, where: str = "") -> str:
        """The class of `graph`, emitted once per distinct graph; `where` points at the construct the class
        comes from (a repeat) for statements that have no span of their own."""
        # Python-mode JSON data, not JSON text: strings may hold lone surrogates (from file names that are not
        # UTF-8, or str specs), which JSON text cannot encode.
        key = repr((where, graph.model_dump(mode="json", exclude={"name"})))
        if key in self.by_key:
            return self.by_key[key]
        name = self.class_names.create(_camel(base))
        self.by_key[key] = name  # before the body, so recursion cannot loop
        source = self.emit(graph, name, doc, where)
        self.classes.append(source)
        return name

    def emit(self, graph: Graph, class_name: str, doc: str, where: str = "") -> ClassSource:
        ns = Namespace()
        values: dict[str, str] = {}
        symbols: dict[str, str] = {}  # symbolic size -> expression reading it off an input
        symbol_where: dict[str, str] = {}  # symbolic size -> the input declaration it is read off
        for input_name, t in graph.inputs.items():
            local = ns.create(input_name)
            values[input_name] = local
            for axis, d in enumerate(t.shape):
                if len(d.terms) == 1 and d.terms[0][1] == 1 and len(d.terms[0][0]) == 1:
                    atom = d.terms[0][0][0]
                    if isinstance(atom, str) and atom not in symbols:
                        symbols[atom] = f"{local}.size({axis})"
                        symbol_where[atom] = _where(graph.input_spans.get(input_name)) or where
        source = ClassSource(class_name, _doc_text(doc), list(values.values()))
        used_symbols: dict[str, str] = {}
        # Floors and remainders of sizes, each computed once into a local of its own (dependencies first),
        # so that no expression nests deeper than one polynomial however deep the spec's sizes nest.
        atoms: dict[Floor | Mod, str] = {}
        atom_lines: list[str] = []
        first_input = next(iter(values.values()), None)
        device = f"{first_input}.device" if first_input else "None"

        def dim(d: Dim) -> str:
            return self.dim_expr(d, symbols, used_symbols, ns, atoms, atom_lines)

        plan = inplace.plan(graph, self.lowerings)
        for node in graph.nodes:
            self.emit_node(node, graph, source, values, ns, dim, device, plan)
        self.span = None
        if used_symbols or atom_lines:
            bindings = [
                f"{local} = {symbols[sym]}{_pointer(symbol_where[sym], f'size `{sym}`')}"
                for sym, local in used_symbols.items()
            ]
            source.forward = bindings + atom_lines + source.forward
        # The return points where its (first) value is made: the call, or the input declaration; a repeat
        # iteration's inputs have no declaration of their own, so they point at the repeat.
        first = next(iter(graph.outputs.values()), None)
        source.return_comment = _pointer(self.value_where(graph, first) or where) if first else ""
        outputs = [values[ref] for ref in graph.outputs.values()]
        source.returns = outputs[0] if len(outputs) == 1 else "(" + ", ".join(outputs) + ")"
        if graph.kind == "model" and len(outputs) > 1:
            pairs = ", ".join(f"{name!r}: {values[ref]}" for name, ref in graph.outputs.items())
            source.returns = "{" + pairs + "}"
        return source

    def dim_expr(
        self,
        d: Dim,
        symbols: dict,
        used: dict,
        ns: Namespace,
        atoms: dict | None = None,
        atom_lines: list[str] | None = None,
    ) -> str:
        """A size as a Python expression over the sizes read off the inputs (`used`) and the floors and
        remainders already computed (`atoms`: each becomes one line of `atom_lines`, a local of its own)."""
        atoms = {} if atoms is None else atoms
        atom_lines = [] if atom_lines is None else atom_lines
        if d.is_const:
            return str(d.value)
        parts = []
        for mono, coef in d.terms:
            factors = [] if coef == 1 and mono else [str(coef)]
            for atom in mono:
                if isinstance(atom, str):
                    if atom not in symbols:
                        raise CompileError(
                            error(
                                "E0602",
                                f"the size `{atom}` cannot be read off any input of this module",
                                self.span,
                                "needs this size",
                            )
                        )
                    if atom not in used:
                        used[atom] = ns.create(atom)
                    factors.append(used[atom])
                elif isinstance(atom, Floor | Mod):
                    if atom not in atoms:
                        num = self.dim_expr(atom.num, symbols, used, ns, atoms, atom_lines)
                        den = self.dim_expr(atom.den, symbols, used, ns, atoms, atom_lines)
                        local = ns.create("floor" if isinstance(atom, Floor) else "mod")
                        operator = "//" if isinstance(atom, Floor) else "%"
                        # It points at the call that first needs it (the node being emitted).
                        comment = _pointer(_where(self.span), _size_comment(atom))
                        atom_lines.append(f"{local} = {num} {operator} {_operand(den)}{comment}")
                        atoms[atom] = local
                    factors.append(atoms[atom])
            parts.append(" * ".join(factors))
        return "(" + " + ".join(parts) + ")" if len(parts) > 1 else parts[0]

    # ---- nodes ---------------------------------------------------------------------

    def check_attribute(self, node: Node) -> None:
        problem = attribute_problem(node.name)
        if problem:
            raise CompileError(
                error(
                    "E0601",
                    f"the name `{node.name}` cannot be a PyTorch submodule: it {problem}",
                    node.span,
                    "named here",
                    help="rename the layer with `name=...` or a different binding",
                )
            )

    def emit_node(
        self, node: Node, graph: Graph, source: ClassSource, values, ns, dim, device, plan: inplace.Plan
    ) -> None:
        where = _where(node.span)
        shapes = ", ".join(t.shape_text() for t in node.outputs)
        comment = _pointer(where, shapes)
        inputs = [values[ref] for ref in node.inputs]
        if plan.skips(node.name):
            # The node computes nothing (dropout with p=0): its output is its input; a comment keeps the line.
            values[node.name] = inputs[0]
            op = re.sub(r"\W", "?", node.op, flags=re.ASCII)
            source.forward.append(f"# {op} skipped: with these arguments it is the identity  {where}".rstrip())
            return
        if node.op == "block":
            self.check_attribute(node)
            doc = f"block {node.block}(" + ", ".join(f"{k}={v!r}" for k, v in node.attrs.items()) + ")"
            cls = self.class_for(node.body, node.block or "Block", doc)
            source.init.append(f"self.{node.name} = {cls}(){_pointer(where)}")
            outs = self.bind_outputs(node, values, ns)
            source.forward.append(f"{', '.join(outs)} = self.{node.name}({', '.join(inputs)}){comment}")
            return
        if node.op == "repeat":
            self.emit_repeat(node, source, values, ns, where)
            return
        self.span = node.span
        lowering = self.lowerings.get(node.op)
        if lowering is None:
            registry = self.registry
            if registry is None:
                from modelspec.plugins import registry as process_registry

                registry = process_registry()
            others = sorted({b for (b, op) in getattr(registry, "lowerings", {}) if op == node.op and b != BACKEND})
            raise CompileError(
                error(
                    "E0603",
                    f"the op `{node.op}` has no lowering in the `{BACKEND}` backend",
                    node.span,
                    "used here",
                    notes=[f"backends that lower it: {', '.join(others)}" if others else "no backend lowers it"],
                )
            )
        module = f"self.{node.name}"
        types = [self.value_type(graph, r) for r in node.inputs]
        site = Site(node, inputs, types, module, dim, device, self.helpers, plan.overwrite.get(node.name))
        context = lowering.context(site)
        if lowering.init:
            self.check_attribute(node)
            init = _render_macro(lowering, lowering.init, context)
            source.init.append(f"{module} = {init}{_pointer(where)}")
            if "init" in node.attrs:
                source.init += [line + _pointer(where) for line in _init_lines(module, node)]
            for param in node.params:
                if param.tied_to:
                    owner, _, pname = param.tied_to.rpartition(".")
                    source.init.append(f"{module}.{param.name} = self.{owner}.{pname}{_pointer(where, 'tied')}")
        expression = _render_macro(lowering, lowering.forward, context)
        (out,) = self.bind_outputs(node, values, ns)
        source.forward.append(f"{out} = {expression}{comment}")

    def value_type(self, graph: Graph, ref: str):
        return graph.value_type(ref)

    def value_where(self, graph: Graph, ref: str) -> str:
        """The pointer of the spec line that makes the value `ref`: its node's call, or its input's declaration."""
        if ref in graph.inputs:
            return _where(graph.input_spans.get(ref))
        node = graph.node(ref.partition(":")[0])
        return _where(node.span) if node is not None else ""

    def bind_outputs(self, node: Node, values: dict, ns: Namespace) -> list[str]:
        names = node.output_names or [node.name]
        outs = []
        for k, name in enumerate(names if len(node.outputs) > 1 else [node.name]):
            local = ns.create(name)
            values[node.name if k == 0 else f"{node.name}:{k}"] = local
            outs.append(local)
        return outs

    def emit_repeat(self, node: Node, source: ClassSource, values: dict, ns: Namespace, where: str) -> None:
        self.check_attribute(node)
        captured = list(node.attrs.get("captured", []))
        outer = dict(zip(captured, [values[r] for r in node.inputs]))
        carried = list(node.output_names)
        locals_ = {v: ns.create(v) for v in carried}
        for v in carried:
            if v in outer and outer[v] != locals_[v]:
                source.forward.append(f"{locals_[v]} = {outer[v]}{_pointer(where)}")
        classes = [
            self.class_for(graph, f"{node.name}_layer", f"one iteration of `repeat ... as {node.name}`", where)
            for graph in node.iterations
        ]
        if len(classes) == 1:
            items = f"[{classes[0]}() for _ in range({node.counts[0]})]"
        else:
            parts = [
                f"{cls}()" if n == 1 else f"*({cls}() for _ in range({n}))" for cls, n in zip(classes, node.counts)
            ]
            items = "[" + ", ".join(parts) + "]"
        source.init.append(f"self.{node.name} = nn.ModuleList({items}){_pointer(where)}")
        # One loop when every iteration takes and gives the same variables; else one loop per run.
        signatures = {(tuple(g.inputs), tuple(g.outputs)) for g in node.iterations}
        runs = [(0, sum(node.counts), node.iterations[0])]
        if len(signatures) > 1:
            runs, start = [], 0
            for graph, count in zip(node.iterations, node.counts):
                runs.append((start, start + count, graph))
                start += count
        layer = ns.create("layer")
        for start, stop, graph in runs:
            args = [locals_[v] if v in locals_ else outer[v] for v in graph.inputs]
            outs = [locals_[v] for v in graph.outputs]
            target = f"self.{node.name}" if len(runs) == 1 else f"self.{node.name}[{start}:{stop}]"
            source.forward.append(f"for {layer} in {target}:{_pointer(where)}")
            source.forward.append(f"    {', '.join(outs)} = {layer}({', '.join(args)}){_pointer(where)}")
        for k, v in enumerate(carried):
            values[node.name if k == 0 else f"{node.name}:{k}"] = locals_[v]

    # ---- file ---------------------------------------------------------------------

    def generate(self, model_name: str) -> tuple[str, str]:
        model = self.program.models[model_name]
        doc = f"model {model.name}(" + ", ".join(f"{k}={v!r}" for k, v in model.hyperparameters.items()) + ")"
        class_name = self.class_for(model.graph, model.name, doc)
        helpers = []
        for name, (text, _needs) in HELPERS.items():
            if name in self.helpers or any(name in HELPERS[h][1] for h in self.helpers):
                helpers.append(text)
        from modelspec import __version__

        body = "\n".join(helpers + [line for c in self.classes for line in c.init + c.forward + [c.returns]])
        imports = [name for name in ("math", "torch", "F") if re.search(rf"\b{name}\.", body)]
        source_file = _comment_file(model.span) or "<string>"
        text = (
            _environment()
            .get_template("module.py.j2")
            .render(
                title=_doc_text(f"PyTorch module for model {model.name}."),
                version=__version__,
                source=source_file,
                helpers=helpers,
                classes=self.classes,
                imports=imports,
            )
        )
        return text, class_name


# The spec's initialisers (modelspec.ops.init) as torch.nn.init calls: name -> (function, argument names).
INIT_FUNCTIONS = {
    "normal": ("normal_", {"mean": "mean", "std": "std"}),
    "trunc_normal": ("trunc_normal_", {"mean": "mean", "std": "std", "a": "a", "b": "b"}),
    "uniform": ("uniform_", {"low": "a", "high": "b"}),
    "constant": ("constant_", {"value": "val"}),
    "zeros": ("zeros_", {}),
    "ones": ("ones_", {}),
    "xavier_uniform": ("xavier_uniform_", {"gain": "gain"}),
    "xavier_normal": ("xavier_normal_", {"gain": "gain"}),
    "kaiming_uniform": ("kaiming_uniform_", {"a": "a", "mode": "mode", "nonlinearity": "nonlinearity"}),
    "kaiming_normal": ("kaiming_normal_", {"a": "a", "mode": "mode", "nonlinearity": "nonlinearity"}),
    "orthogonal": ("orthogonal_", {"gain": "gain"}),
}


def _init_lines(module: str, node: Node) -> list[str]:
    """`nn.init` calls for the parameters whose initialiser the spec declared (`init=`)."""
    lines = []
    for param in node.params:
        if param.buffer or param.tied_to or param.init not in INIT_FUNCTIONS:
            continue
        function, names = INIT_FUNCTIONS[param.init]
        arguments = "".join(f", {names[k]}={v!r}" for k, v in param.init_args.items() if k in names)
        lines.append(f"nn.init.{function}({module}.{param.name}{arguments})")
    return lines


def _operand(expr: str) -> str:
    """`expr` as the right operand of `//` or `%`: a name or number as it is, anything else parenthesised."""
    return expr if re.fullmatch(r"\w+", expr) else f"({expr})"


def _size_comment(atom) -> str:
    """`size `(T + 1)//2``, or nothing when the size's text is long or not plain ASCII arithmetic."""
    text = str(atom)
    if len(text) > 60 or not re.fullmatch(r"[\w+\-*/%() ]*", text, flags=re.ASCII):
        return ""
    return f"size `{text}`"


def _camel(name: str) -> str:
    if name and name[0].isupper():
        return name
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part) or "Module"


def generate_source(program: Program, model: str, registry=None) -> tuple[str, str]:
    """(source, class name) of the PyTorch module for `model`."""
    return Generator(program, lowerings(registry), registry).generate(model)
