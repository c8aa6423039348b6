"""How each built-in op lowers to PyTorch: a template macro per op and a
function that computes the macro's arguments (names and expressions come
from here; templates/ops/*.j2 only lay them out).

A lowering's context function gets the IR node and a `Site` (what codegen
knows at that point: input expressions, the module attribute, dims as
Python expressions) and returns a dict for the macros. An op with
parameters has an `init` macro (the submodule built in `__init__`, whose
state_dict keys must equal the op's ParamSpec names) and every op has a
`forward` macro (the expression computing its output).

Three optional facts let codegen save work (see inplace.py for the rules):
`skip` says a node computes nothing (its output is its input), `inplace`
lists the inputs a node can overwrite with its result, and `fresh` says the
output is a new tensor that autograd does not keep, so a later op may
overwrite it. A plugin's lowering that says nothing gets none of these.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modelspec.ir.dims import parse_dim


@dataclass
class Site:
    """What a lowering may use: inputs as Python expressions and their types."""

    node: Any  # ir.Node
    inputs: list[str]  # Python expressions of the node's inputs
    input_types: list[Any]  # their TensorTypes
    module: str  # `self.<name>` for ops with parameters
    dim: Callable[[Any], str]  # Dim -> Python expression
    device: str  # an expression for the device the graph runs on
    helpers: set[str] = field(default_factory=set)  # helper names this file needs
    overwrite: int | None = None  # the input the forward may write its result into (codegen decides)

    @property
    def attrs(self) -> dict:
        return self.node.attrs

    @property
    def x(self) -> str:
        return self.inputs[0]


@dataclass(frozen=True)
class Lowering:
    """A backend's lowering of one op: template file, macros, context function."""

    op: str
    template: str
    forward: str
    context: Callable[[Site], dict]
    init: str | None = None
    backend: str = "torch"
    # The package whose `templates/ops/` folder holds `template`: a plugin ships its own templates.
    package: str = "modelspec_torch"
    # node -> True when the node computes nothing: no line is emitted and its output is its first input.
    skip: Callable[[Any], bool] | None = None
    # (node, input types) -> the inputs this op can write its result into, in order of preference.
    inplace: Callable[[Any, list[Any]], tuple[int, ...]] | None = None
    # The output is a new tensor that autograd does not keep for backward: a later op may overwrite it.
    fresh: bool = False


def _py(value: Any) -> str:
    """A Python literal for an attribute value (numbers, bools, tuples, strings via repr)."""
    if isinstance(value, list | tuple):
        items = ", ".join(_py(v) for v in value)
        return f"({items},)" if len(value) == 1 else f"({items})"
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int | float):
        return repr(value)
    return repr(str(value))


def _width(site: Site, axis: int = -1) -> int:
    return site.input_types[0].shape[axis].value


# ---- layers -------------------------------------------------------------------------


def linear(site: Site) -> dict:
    a = site.attrs
    return {
        "in_features": _width(site),
        "out_features": a["out_features"],
        "bias": a["bias"],
        "module": site.module,
        "x": site.x,
    }


def embedding(site: Site) -> dict:
    a = site.attrs
    return {"num": a["num"], "dim": a["dim"], "padding_idx": a.get("padding_idx"), "module": site.module, "x": site.x}


def positions(site: Site) -> dict:
    site.helpers.add("Positions")
    length = site.dim(parse_dim(str(site.attrs["length"])))
    return {"length": length, "device": site.device, "module": site.module}


def positional_encoding(site: Site) -> dict:
    a = site.attrs
    t = site.input_types[0]
    learned = a["kind"] == "learned"
    if not learned:
        site.helpers.add("SinusoidalPositions")
    max_len = a.get("max_len") or t.shape[-2].value
    return {
        "learned": learned,
        "max_len": max_len,
        "width": t.shape[-1].value,
        "module": site.module,
        "x": site.x,
        "length": f"{site.x}.size(-2)",
    }


def rotary(site: Site) -> dict:
    site.helpers.add("Rotary")
    return {"module": site.module, "x": site.x, "base": _py(float(site.attrs["base"]))}


# ---- norms ----------------------------------------------------------------------------


def layernorm(site: Site) -> dict:
    a = site.attrs
    return {
        "width": _width(site),
        "eps": _py(a["eps"]),
        "affine": a["affine"],
        "bias": a.get("bias", True),
        "module": site.module,
        "x": site.x,
    }


def rmsnorm(site: Site) -> dict:
    a = site.attrs
    return {"width": _width(site), "eps": _py(a["eps"]), "affine": a["affine"], "module": site.module, "x": site.x}


def batchnorm(kind: str) -> Callable[[Site], dict]:
    def context(site: Site) -> dict:
        a = site.attrs
        return {
            "kind": kind,
            "width": _width(site, 1),
            "eps": _py(a["eps"]),
            "momentum": _py(a["momentum"]),
            "affine": a["affine"],
            "track_running_stats": a["track_running_stats"],
            "module": site.module,
            "x": site.x,
        }

    return context


def groupnorm(site: Site) -> dict:
    a = site.attrs
    return {
        "groups": a["groups"],
        "width": _width(site, 1),
        "eps": _py(a["eps"]),
        "affine": a["affine"],
        "module": site.module,
        "x": site.x,
    }


# ---- convolution and pooling ------------------------------------------------------------


def conv(cls: str) -> Callable[[Site], dict]:
    def context(site: Site) -> dict:
        a = site.attrs
        options = []
        for key, default in (("stride", 1), ("padding", 0), ("output_padding", 0), ("dilation", 1), ("groups", 1)):
            if key in a and a[key] != default and a[key] != [default] * _spatial(a):
                options.append((key, _py(a[key])))
        if not a.get("bias", True):
            options.append(("bias", "False"))
        return {
            "cls": cls,
            "in_channels": _width(site, 1),
            "out_channels": a["out_channels"],
            "kernel": _py(a["kernel"]),
            "options": options,
            "module": site.module,
            "x": site.x,
        }

    return context


def _spatial(attrs: dict) -> int:
    kernel = attrs.get("kernel")
    return len(kernel) if isinstance(kernel, list) else 1


def pool(function: str) -> Callable[[Site], dict]:
    def context(site: Site) -> dict:
        a = site.attrs
        options = []
        if "output_size" in a:
            options.append(("output_size", _py(a["output_size"])))
        else:
            options.append(("kernel_size", _py(a["kernel"])))
            if a.get("stride") is not None:
                options.append(("stride", _py(a["stride"])))
            for key, default in (("padding", 0), ("dilation", 1), ("ceil_mode", False), ("count_include_pad", True)):
                if key in a and a[key] != default:
                    options.append((key, _py(a[key])))
        return {"function": function, "x": site.x, "options": options}

    return context


# ---- elementwise ----------------------------------------------------------------------------


def call(function: str, *keys: str) -> Callable[[Site], dict]:
    def context(site: Site) -> dict:
        options = [(k, _py(site.attrs[k])) for k in keys if k in site.attrs]
        if site.overwrite is not None:  # only for functions that take `inplace` (see their `inplace` below)
            options.append(("inplace", "True"))
        return {"function": function, "x": site.x, "options": options}

    return context


def overwrites_its_input(node, types) -> tuple[int, ...]:
    """ReLU in place: its backward needs only its result, which it keeps."""
    return (0,)


def leaky_relu_overwrites(node, types) -> tuple[int, ...]:
    """LeakyReLU in place keeps its result for backward, which tells the input's sign only for a slope >= 0
    (autograd refuses a negative slope in place)."""
    return (0,) if float(node.attrs["negative_slope"]) >= 0 else ()


def add_overwrites(node, types) -> tuple[int, ...]:
    """The operands that already have the sum's shape and dtype (no broadcasting into them), left first."""
    out = node.outputs[0]
    return tuple(k for k, t in enumerate(types) if t.shape == out.shape and t.dtype == out.dtype)


def gelu(site: Site) -> dict:
    options = [("approximate", _py(site.attrs["approximate"]))] if site.attrs["approximate"] != "none" else []
    return {"function": "F.gelu", "x": site.x, "options": options}


def dropout(site: Site) -> dict:
    return {"x": site.x, "p": _py(float(site.attrs["p"]))}


def dropout_is_identity(node) -> bool:
    """p == 0 drops nothing in training and in evaluation: the node is skipped (it has no parameters)."""
    return float(node.attrs["p"]) == 0.0


def binary(operator: str, method: str | None = None) -> Callable[[Site], dict]:
    """`left <operator> right`; with `method` (`add_`), `target.method(other)` when codegen lets the op
    overwrite an input (only commutative operators: the other operand may be either side)."""

    def context(site: Site) -> dict:
        if len(site.inputs) == 2:
            left, right = site.inputs
        elif site.attrs.get("reverse"):
            left, right = _py(site.attrs["scalar"]), site.x
        else:
            left, right = site.x, _py(site.attrs["scalar"])
        if site.overwrite is not None and method is not None:
            target = site.inputs[site.overwrite]
            other = right if left == target else left
            return {"target": target, "method": method, "other": other}
        return {"left": left, "right": right, "operator": operator}

    return context


def matmul(site: Site) -> dict:
    return {"left": site.inputs[0], "right": site.inputs[1], "operator": "@"}


# ---- shape -----------------------------------------------------------------------------------


def method(name: str, arguments: Callable[[Site], str]) -> Callable[[Site], dict]:
    def context(site: Site) -> dict:
        return {"x": site.x, "method": name, "arguments": arguments(site)}

    return context


def _shape_arguments(site: Site) -> str:
    return ", ".join(site.dim(parse_dim(str(d))) for d in site.attrs["shape"])


def _mean_arguments(site: Site) -> str:
    arguments = [] if site.attrs["dim"] is None else [f"dim={_py(site.attrs['dim'])}"]
    if site.attrs["keepdim"]:
        arguments.append("keepdim=True")
    return ", ".join(arguments)


def concat(site: Site) -> dict:
    return {"tensors": ", ".join(site.inputs), "dim": site.attrs["dim"]}


def split_heads(site: Site) -> dict:
    return {"x": site.x, "heads": site.attrs["heads"]}


# ---- attention --------------------------------------------------------------------------------


def attention(site: Site) -> dict:
    site.helpers.add("Attention")
    a = site.attrs
    scale = a.get("scale")
    return {
        "causal": a["causal"],
        "dropout": _py(float(a["dropout"])),
        "scale": None if scale is None else _py(float(scale)),
        "module": site.module,
        "arguments": ", ".join(site.inputs),
    }


def multihead_attention(site: Site) -> dict:
    a = site.attrs
    site.helpers.add("MultiheadAttention")
    types = site.input_types
    x = site.inputs[0]
    memory, mask = x, None
    memory_width = types[0].shape[-1].value
    rest = list(zip(site.inputs[1:], types[1:]))
    for expr, t in rest:
        if t.dtype == "bool":
            mask = expr
        else:
            memory, memory_width = expr, t.shape[-1].value
    arguments = f"{x}, {memory}" + (f", {mask}" if mask else "")
    return {
        "width": types[0].shape[-1].value,
        "memory_width": memory_width,
        "heads": a["heads"],
        "causal": a["causal"],
        "dropout": _py(float(a["dropout"])),
        "bias": a["bias"],
        "module": site.module,
        "arguments": arguments,
    }


def _dims_tuple(values) -> str:
    return ", ".join(str(v) for v in values)


LOWERINGS = [
    Lowering("linear", "layers.j2", "forward_linear", linear, init="init_linear", fresh=True),
    Lowering("embedding", "layers.j2", "forward_embedding", embedding, init="init_embedding"),
    Lowering("positions", "layers.j2", "forward_positions", positions, init="init_positions"),
    Lowering(
        "positional_encoding",
        "layers.j2",
        "forward_positional_encoding",
        positional_encoding,
        init="init_positional_encoding",
    ),
    Lowering("rotary", "layers.j2", "forward_rotary", rotary, init="init_rotary"),
    Lowering("layernorm", "norms.j2", "forward_norm", layernorm, init="init_layernorm", fresh=True),
    Lowering("rmsnorm", "norms.j2", "forward_norm", rmsnorm, init="init_rmsnorm"),
    Lowering("batchnorm1d", "norms.j2", "forward_norm", batchnorm("1d"), init="init_batchnorm", fresh=True),
    Lowering("batchnorm2d", "norms.j2", "forward_norm", batchnorm("2d"), init="init_batchnorm", fresh=True),
    Lowering("groupnorm", "norms.j2", "forward_norm", groupnorm, init="init_groupnorm", fresh=True),
    Lowering("conv1d", "conv.j2", "forward_conv", conv("Conv1d"), init="init_conv", fresh=True),
    Lowering("conv2d", "conv.j2", "forward_conv", conv("Conv2d"), init="init_conv", fresh=True),
    Lowering("conv_transpose2d", "conv.j2", "forward_conv", conv("ConvTranspose2d"), init="init_conv", fresh=True),
    Lowering("maxpool", "conv.j2", "forward_pool", pool("max_pool2d")),
    Lowering("avgpool", "conv.j2", "forward_pool", pool("avg_pool2d")),
    Lowering("maxpool1d", "conv.j2", "forward_pool", pool("max_pool1d")),
    Lowering("avgpool1d", "conv.j2", "forward_pool", pool("avg_pool1d")),
    Lowering("adaptive_avgpool", "conv.j2", "forward_pool", pool("adaptive_avg_pool2d")),
    Lowering("relu", "elementwise.j2", "forward_call", call("F.relu"), inplace=overwrites_its_input),
    Lowering("gelu", "elementwise.j2", "forward_call", gelu),
    Lowering("silu", "elementwise.j2", "forward_call", call("F.silu")),
    Lowering("tanh", "elementwise.j2", "forward_call", call("torch.tanh")),
    Lowering("sigmoid", "elementwise.j2", "forward_call", call("torch.sigmoid")),
    Lowering(
        "leaky_relu",
        "elementwise.j2",
        "forward_call",
        call("F.leaky_relu", "negative_slope"),
        inplace=leaky_relu_overwrites,
    ),
    Lowering("softmax", "elementwise.j2", "forward_call", call("F.softmax", "dim")),
    Lowering("log_softmax", "elementwise.j2", "forward_call", call("F.log_softmax", "dim")),
    Lowering("identity", "elementwise.j2", "forward_call", call("")),
    Lowering("dropout", "elementwise.j2", "forward_dropout", dropout, skip=dropout_is_identity),
    Lowering("add", "elementwise.j2", "forward_binary", binary("+", "add_"), inplace=add_overwrites, fresh=True),
    Lowering("sub", "elementwise.j2", "forward_binary", binary("-"), fresh=True),
    Lowering("mul", "elementwise.j2", "forward_binary", binary("*"), fresh=True),
    Lowering("div", "elementwise.j2", "forward_binary", binary("/")),
    Lowering("matmul", "elementwise.j2", "forward_binary", matmul),
    Lowering(
        "flatten",
        "shape.j2",
        "forward_method",
        method("flatten", lambda s: f"{s.attrs['start_dim']}, {s.attrs['end_dim']}"),
    ),
    Lowering("reshape", "shape.j2", "forward_method", method("reshape", _shape_arguments)),
    Lowering("view", "shape.j2", "forward_method", method("view", _shape_arguments)),
    Lowering(
        "transpose",
        "shape.j2",
        "forward_method",
        method("transpose", lambda s: f"{s.attrs['dim0']}, {s.attrs['dim1']}"),
    ),
    Lowering("permute", "shape.j2", "forward_method", method("permute", lambda s: _dims_tuple(s.attrs["dims"]))),
    Lowering("concat", "shape.j2", "forward_concat", concat),
    Lowering(
        "select", "shape.j2", "forward_method", method("select", lambda s: f"{s.attrs['dim']}, {s.attrs['index']}")
    ),
    Lowering(
        "mean",
        "shape.j2",
        "forward_method",
        method("mean", _mean_arguments),
    ),
    Lowering("split_heads", "shape.j2", "forward_split_heads", split_heads),
    Lowering("merge_heads", "shape.j2", "forward_merge_heads", lambda s: {"x": s.x}),
    Lowering("attention", "attention.j2", "forward_attention", attention, init="init_attention"),
    Lowering(
        "multihead_attention",
        "attention.j2",
        "forward_multihead_attention",
        multihead_attention,
        init="init_multihead_attention",
    ),
]
