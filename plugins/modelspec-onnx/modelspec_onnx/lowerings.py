"""How each built-in op lowers to ONNX nodes (opset 18).

A lowering is registered through the `mspec_lowerings` hook as an
`OnnxLowering(op, emit, check)`, so a plugin that adds an op can add its ONNX
lowering the same way. `emit(site)` appends nodes through `site` and returns
the ONNX tensor of the op's output (or a list, one per output). `check(node,
input_types)` runs before anything is emitted and returns why this call
cannot be expressed (None when it can): the exporter gathers every such
reason, and every op without a lowering, into one diagnostic.

What each op computes is the torch backend's meaning of it
(`modelspec_torch/lowerings.py`), in inference mode: dropout is the identity
and batch norm uses its running statistics.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from onnx import TensorProto, helper

from modelspec.ir.dims import parse_dim
from modelspec_onnx.emitter import NUMPY_TYPES, ONNX_TYPES, Emitter, Scope

BACKEND = "onnx"


@dataclass
class Site:
    """What a lowering may use: the node, its inputs as ONNX tensors, and the emitter."""

    node: Any  # ir.Node
    inputs: list[str]
    input_types: list[Any]  # TensorTypes
    scope: Scope
    emitter: Emitter
    parameter: Callable[[str], str]  # a parameter's name on the node -> its initializer

    @property
    def attrs(self) -> dict:
        return self.node.attrs

    @property
    def x(self) -> str:
        return self.inputs[0]

    @property
    def path(self) -> str:
        return self.scope.prefix + self.node.name

    def op(self, op_type: str, inputs: list[str], **attributes) -> str:
        return self.emitter.op(op_type, inputs, self.path, **attributes)

    def const(self, value, dtype=np.float32) -> str:
        return self.emitter.constant(value, dtype, f"{self.path}.const")

    def has(self, name: str) -> bool:
        return any(p.name == name for p in self.node.params)


@dataclass(frozen=True)
class OnnxLowering:
    op: str
    emit: Callable[[Site], str | list[str]]
    check: Callable[[Any, list], str | None] | None = None
    backend: str = BACKEND


def _axes(site: Site, axes) -> str:
    return site.const(list(axes), np.int64)


# ---- layers -------------------------------------------------------------------------------


def _linear(site: Site, x: str, rank: int, weight: str, bias: str | None) -> str:
    if rank == 2:
        return site.op("Gemm", [x, weight] + ([bias] if bias else []), transB=1)
    y = site.op("MatMul", [x, site.op("Transpose", [weight], perm=[1, 0])])
    return site.op("Add", [y, bias]) if bias else y


def linear(site: Site) -> str:
    bias = site.parameter("bias") if site.has("bias") else None
    return _linear(site, site.x, site.input_types[0].rank, site.parameter("weight"), bias)


def embedding(site: Site) -> str:
    return site.op("Gather", [site.parameter("weight"), site.x], axis=0)


def positions(site: Site) -> str:
    # 0..T-1 as the running sum of T ones, less one. Not `Range`: onnxruntime's optimizer rewrites a
    # Gather of a Range (the position embedding's lookup) into a Slice that then fails at run time.
    length = site.emitter.size(parse_dim(str(site.attrs["length"])), site.scope)
    ones = site.op("ConstantOfShape", [length], value=helper.make_tensor("one", TensorProto.INT64, [1], [1]))
    return site.op("Sub", [site.op("CumSum", [ones, site.const(0, np.int64)]), site.const(1, np.int64)])


def sinusoid_table(length: int, width: int) -> np.ndarray:
    """The torch backend's SinusoidalPositions table, computed the same way in float32."""
    position = np.arange(length, dtype=np.float32)[:, None]
    frequency = np.exp(np.arange(0, width, 2, dtype=np.float32) * np.float32(-math.log(10000.0) / width))
    table = np.zeros((length, width), dtype=np.float32)
    table[:, 0::2] = np.sin(position * frequency)
    table[:, 1::2] = np.cos(position * frequency[: width // 2])
    return table


def positional_encoding(site: Site) -> str:
    t = site.input_types[0]
    if site.attrs["kind"] == "learned":
        table = site.parameter("weight")
    else:
        length = site.attrs.get("max_len") or t.shape[-2].value
        table = site.const(sinusoid_table(length, t.shape[-1].value))
    # The first T rows, T read off the input at run time.
    length = site.op("Shape", [site.x], start=t.rank - 2, end=t.rank - 1)
    rows = site.op("Slice", [table, site.const([0], np.int64), length, site.const([0], np.int64)])
    return site.op("Add", [site.x, rows])


def check_positional_encoding(node, types) -> str | None:
    if node.attrs["kind"] != "learned" and not node.attrs.get("max_len") and not types[0].shape[-2].is_const:
        return "a sinusoidal table over a symbolic length needs `max_len`"
    return None


def rotary(site: Site) -> str:
    t = site.input_types[0]
    half = t.shape[-1].value // 2
    frequency = np.float32(site.attrs["base"]) ** (-np.arange(half, dtype=np.float32) / np.float32(half))
    length = site.op("Shape", [site.x], start=t.rank - 2, end=t.rank - 1)
    steps = site.op("Range", [site.const(0, np.int64), site.op("Squeeze", [length]), site.const(1, np.int64)])
    steps = site.op("Unsqueeze", [site.op("Cast", [steps], to=ONNX_TYPES[t.dtype]), _axes(site, [1])])
    angle = site.op("Mul", [steps, site.const(frequency.astype(NUMPY_TYPES[t.dtype]), NUMPY_TYPES[t.dtype])])
    cos, sin = site.op("Cos", [angle]), site.op("Sin", [angle])
    x1 = site.op("Slice", [site.x, site.const([0], np.int64), site.const([half], np.int64), _axes(site, [-1])])
    x2 = site.op("Slice", [site.x, site.const([half], np.int64), site.const([2 * half], np.int64), _axes(site, [-1])])
    first = site.op("Sub", [site.op("Mul", [x1, cos]), site.op("Mul", [x2, sin])])
    second = site.op("Add", [site.op("Mul", [x1, sin]), site.op("Mul", [x2, cos])])
    return site.op("Concat", [first, second], axis=-1)


def check_rotary(node, types) -> str | None:
    return None if types[0].shape[-1].is_const else "the rotated width must be a known number"


# ---- norms ------------------------------------------------------------------------------------


def _width_const(site: Site, value: float, axis: int) -> str:
    width = site.input_types[0].shape[axis].value
    return site.const(np.full((width,), value, dtype=NUMPY_TYPES[site.input_types[0].dtype]))


def layernorm(site: Site) -> str:
    scale = site.parameter("weight") if site.has("weight") else _width_const(site, 1.0, -1)
    inputs = [site.x, scale] + ([site.parameter("bias")] if site.has("bias") else [])
    return site.op("LayerNormalization", inputs, axis=-1, epsilon=float(site.attrs["eps"]))


def rmsnorm(site: Site) -> str:
    # x / sqrt(mean(x^2) + eps) * weight, as torch.nn.RMSNorm
    square = site.op("Mul", [site.x, site.x])
    mean = site.op("ReduceMean", [square, _axes(site, [-1])], keepdims=1)
    root = site.op("Sqrt", [site.op("Add", [mean, site.const(site.attrs["eps"])])])
    y = site.op("Div", [site.x, root])
    return site.op("Mul", [y, site.parameter("weight")]) if site.has("weight") else y


def _channel_view(site: Site, tensor: str) -> str:
    """A per-channel [C] tensor as [C, 1, ...] so that it broadcasts over [B, C, *]."""
    rank = site.input_types[0].rank
    if rank == 2:
        return tensor
    return site.op("Unsqueeze", [tensor, _axes(site, range(1, rank - 1))])


def batchnorm(site: Site) -> str:
    a = site.attrs
    scale = site.parameter("weight") if a["affine"] else _width_const(site, 1.0, 1)
    shift = site.parameter("bias") if a["affine"] else _width_const(site, 0.0, 1)
    if a["track_running_stats"]:
        stats = [site.parameter("running_mean"), site.parameter("running_var")]
        return site.op("BatchNormalization", [site.x, scale, shift, *stats], epsilon=float(a["eps"]))
    # Without running statistics torch normalises with the batch's, in inference too.
    axes = _axes(site, [0] + list(range(2, site.input_types[0].rank)))
    mean = site.op("ReduceMean", [site.x, axes], keepdims=1)
    centred = site.op("Sub", [site.x, mean])
    variance = site.op("ReduceMean", [site.op("Mul", [centred, centred]), axes], keepdims=1)
    y = site.op("Div", [centred, site.op("Sqrt", [site.op("Add", [variance, site.const(a["eps"])])])])
    return site.op("Add", [site.op("Mul", [y, _channel_view(site, scale)]), _channel_view(site, shift)])


def groupnorm(site: Site) -> str:
    # Normalise each of `groups` channel groups over its channels and positions, then scale per channel.
    a = site.attrs
    grouped = site.op("Reshape", [site.x, site.const([0, a["groups"], -1], np.int64)])
    axes = _axes(site, [2])
    mean = site.op("ReduceMean", [grouped, axes], keepdims=1)
    centred = site.op("Sub", [grouped, mean])
    variance = site.op("ReduceMean", [site.op("Mul", [centred, centred]), axes], keepdims=1)
    y = site.op("Div", [centred, site.op("Sqrt", [site.op("Add", [variance, site.const(a["eps"])])])])
    y = site.op("Reshape", [y, site.op("Shape", [site.x])])
    if not a["affine"]:
        return y
    scale, shift = _channel_view(site, site.parameter("weight")), _channel_view(site, site.parameter("bias"))
    return site.op("Add", [site.op("Mul", [y, scale]), shift])


# ---- convolution and pooling ---------------------------------------------------------------------


def _tuple(value, n: int) -> list[int]:
    return list(value) if isinstance(value, list | tuple) else [value] * n


def _pads(padding, kernel: list[int], dilation: list[int]) -> list[int]:
    """ONNX pads (all begins, then all ends) for torch's padding argument."""
    n = len(kernel)
    if padding == "valid":
        return [0] * 2 * n
    if padding == "same":  # torch puts the odd element of the total at the end
        total = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return [t // 2 for t in total] + [t - t // 2 for t in total]
    pads = _tuple(padding, n)
    return pads + pads


def conv(site: Site) -> str:
    a = site.attrs
    n = site.input_types[0].rank - 2
    kernel, dilation = _tuple(a["kernel"], n), _tuple(a.get("dilation", 1), n)
    options = {
        "kernel_shape": kernel,
        "strides": _tuple(a.get("stride", 1), n),
        "dilations": dilation,
        "group": a.get("groups", 1),
        "pads": _pads(a.get("padding", 0), kernel, dilation),
    }
    inputs = [site.x, site.parameter("weight")] + ([site.parameter("bias")] if site.has("bias") else [])
    if site.node.op == "conv_transpose2d":
        return site.op("ConvTranspose", inputs, output_padding=_tuple(a.get("output_padding", 0), n), **options)
    return site.op("Conv", inputs, **options)


def pool(site: Site) -> str:
    a = site.attrs
    n = site.input_types[0].rank - 2
    kernel = _tuple(a["kernel"], n)
    options = {
        "kernel_shape": kernel,
        "strides": _tuple(a["stride"], n) if a.get("stride") is not None else kernel,
        "pads": _pads(a.get("padding", 0), kernel, [1] * n),
        "ceil_mode": int(a.get("ceil_mode", False)),
    }
    if site.node.op.startswith("max"):
        return site.op("MaxPool", [site.x], dilations=_tuple(a.get("dilation", 1), n), **options)
    return site.op("AveragePool", [site.x], count_include_pad=int(a.get("count_include_pad", True)), **options)


def adaptive_avgpool(site: Site) -> str:
    t = site.input_types[0]
    out = _tuple(site.attrs["output_size"], 2)
    if out == [1, 1]:
        return site.op("GlobalAveragePool", [site.x])
    kernel = [t.shape[2 + i].value // out[i] for i in range(2)]
    return site.op("AveragePool", [site.x], kernel_shape=kernel, strides=kernel)


def check_adaptive_avgpool(node, types) -> str | None:
    out = _tuple(node.attrs["output_size"], 2)
    if out == [1, 1]:
        return None
    sizes = types[0].shape[2:]
    if all(s.is_const and s.value % o == 0 for s, o in zip(sizes, out)):
        return None
    shown = ", ".join(str(s) for s in sizes)
    return f"pools [{shown}] to {tuple(out)}: ONNX needs input sizes that are known multiples of the output size"


# ---- elementwise -----------------------------------------------------------------------------------


def unary(op_type: str, **fixed) -> Callable[[Site], str]:
    def emit(site: Site) -> str:
        return site.op(op_type, [site.x], **fixed)

    return emit


def leaky_relu(site: Site) -> str:
    return site.op("LeakyRelu", [site.x], alpha=float(site.attrs["negative_slope"]))


def softmax(op_type: str) -> Callable[[Site], str]:
    def emit(site: Site) -> str:
        return site.op(op_type, [site.x], axis=int(site.attrs["dim"]))

    return emit


def gelu(site: Site) -> str:
    x, dtype = site.x, NUMPY_TYPES[site.input_types[0].dtype]
    if site.attrs["approximate"] == "tanh":
        # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        cube = site.op("Mul", [site.op("Mul", [x, x]), x])
        inner = site.op("Add", [x, site.op("Mul", [cube, site.const(0.044715, dtype)])])
        gate = site.op("Tanh", [site.op("Mul", [inner, site.const(math.sqrt(2 / math.pi), dtype)])])
    else:
        # 0.5 x (1 + erf(x / sqrt(2)))
        gate = site.op("Erf", [site.op("Div", [x, site.const(math.sqrt(2.0), dtype)])])
    half = site.op("Mul", [x, site.const(0.5, dtype)])
    return site.op("Mul", [half, site.op("Add", [gate, site.const(1.0, dtype)])])


def silu(site: Site) -> str:
    return site.op("Mul", [site.x, site.op("Sigmoid", [site.x])])


def binary(op_type: str) -> Callable[[Site], str]:
    def emit(site: Site) -> str:
        out = site.node.outputs[0].dtype
        operands = []
        for tensor, t in zip(site.inputs, site.input_types):
            # torch promotes an integer operand to the float result; ONNX wants equal types.
            operands.append(tensor if t.dtype == out else site.op("Cast", [tensor], to=ONNX_TYPES[out]))
        if len(operands) == 1:
            scalar = site.const(site.attrs["scalar"], NUMPY_TYPES[out])
            operands = [scalar, operands[0]] if site.attrs.get("reverse") else [operands[0], scalar]
        return site.op(op_type, operands)

    return emit


# ---- shape -----------------------------------------------------------------------------------------


def flatten(site: Site) -> str:
    rank = site.input_types[0].rank
    start, end = site.attrs["start_dim"] % rank, site.attrs["end_dim"] % rank
    parts = []
    if start:
        parts.append(site.op("Shape", [site.x], start=0, end=start))
    parts.append(site.const([-1], np.int64))
    if end + 1 < rank:
        parts.append(site.op("Shape", [site.x], start=end + 1))
    shape = parts[0] if len(parts) == 1 else site.op("Concat", parts, axis=0)
    return site.op("Reshape", [site.x, shape])


def reshape(site: Site) -> str:
    dims = [parse_dim(str(d)) for d in site.attrs["shape"]]
    return site.op("Reshape", [site.x, site.emitter.shape(dims, site.scope)])


def transpose(site: Site) -> str:
    rank = site.input_types[0].rank
    perm = list(range(rank))
    i, j = site.attrs["dim0"] % rank, site.attrs["dim1"] % rank
    perm[i], perm[j] = perm[j], perm[i]
    return site.op("Transpose", [site.x], perm=perm)


def permute(site: Site) -> str:
    rank = site.input_types[0].rank
    return site.op("Transpose", [site.x], perm=[d % rank for d in site.attrs["dims"]])


def concat(site: Site) -> str:
    return site.op("Concat", site.inputs, axis=int(site.attrs["dim"]))


def select(site: Site) -> str:
    return site.op("Gather", [site.x, site.const(site.attrs["index"], np.int64)], axis=int(site.attrs["dim"]))


def mean(site: Site) -> str:
    dim, keep = site.attrs["dim"], int(site.attrs["keepdim"])
    if dim is None:
        return site.op("ReduceMean", [site.x], keepdims=keep)
    return site.op("ReduceMean", [site.x, _axes(site, _tuple(dim, 1))], keepdims=keep)


def _split_heads(site: Site, x: str, rank: int, heads: int) -> str:
    """[*, T, D] -> [*, h, T, D/h]"""
    y = site.op("Reshape", [x, site.const([0] * (rank - 1) + [heads, -1], np.int64)])
    return site.op("Transpose", [y], perm=list(range(rank - 2)) + [rank - 1, rank - 2, rank])


def _merge_heads(site: Site, x: str, rank: int) -> str:
    """[*, h, T, dk] -> [*, T, h*dk]"""
    y = site.op("Transpose", [x], perm=list(range(rank - 3)) + [rank - 2, rank - 3, rank - 1])
    return site.op("Reshape", [y, site.const([0] * (rank - 2) + [-1], np.int64)])


def split_heads(site: Site) -> str:
    return _split_heads(site, site.x, site.input_types[0].rank, site.attrs["heads"])


def merge_heads(site: Site) -> str:
    return _merge_heads(site, site.x, site.input_types[0].rank)


# ---- attention -----------------------------------------------------------------------------------------


def _attend(site: Site, q: str, k: str, v: str, rank: int, width: int, dtype: str, causal: bool, mask, scale) -> str:
    """softmax(q k^T * scale + mask) v over [*, T, dk], as F.scaled_dot_product_attention in inference."""
    dt = NUMPY_TYPES[dtype]
    keys_t = site.op("Transpose", [k], perm=list(range(rank - 2)) + [rank - 1, rank - 2])
    scores = site.op("MatMul", [q, keys_t])
    scores = site.op("Mul", [scores, site.const(1.0 / math.sqrt(width) if scale is None else scale, dt)])
    allowed = None
    if causal:
        # Query i may see keys 0..i (torch's is_causal: the top-left triangle).
        rows = site.op("Range", [site.const(0, np.int64), _length(site, q, rank), site.const(1, np.int64)])
        cols = site.op("Range", [site.const(0, np.int64), _length(site, k, rank), site.const(1, np.int64)])
        allowed = site.op("LessOrEqual", [cols, site.op("Unsqueeze", [rows, _axes(site, [1])])])
    if mask is not None:
        mask_tensor, mask_dtype = mask
        if mask_dtype == "bool":
            allowed = mask_tensor if allowed is None else site.op("And", [mask_tensor, allowed])
        else:
            scores = site.op("Add", [scores, mask_tensor])
    if allowed is not None:
        scores = site.op("Where", [allowed, scores, site.const(-np.inf, dt)])
    weights = site.op("Softmax", [scores], axis=-1)
    return site.op("MatMul", [weights, v])


def _length(site: Site, tensor: str, rank: int) -> str:
    return site.op("Squeeze", [site.op("Shape", [tensor], start=rank - 2, end=rank - 1), _axes(site, [0])])


def attention(site: Site) -> str:
    q, k, v = site.inputs[:3]
    types = site.input_types
    mask = (site.inputs[3], types[3].dtype) if len(site.inputs) == 4 else None
    rank, width = types[0].rank, types[0].shape[-1]
    width = width.value if width.is_const else 1  # only read without an explicit scale (see the check)
    return _attend(site, q, k, v, rank, width, types[0].dtype, site.attrs["causal"], mask, site.attrs.get("scale"))


def check_attention(node, types) -> str | None:
    if node.attrs.get("scale") is None and not types[0].shape[-1].is_const:
        return "the default scale 1/sqrt(dk) needs a known key width"
    if len({t.rank for t in types[:3]}) != 1:
        return "queries, keys and values of different ranks"
    return None


def multihead_attention(site: Site) -> str:
    types = site.input_types
    x, memory, memory_rank, mask = site.x, site.x, 3, None
    for tensor, t in zip(site.inputs[1:], types[1:]):
        if t.dtype == "bool":
            mask = (tensor, "bool")
        else:
            memory = tensor
    heads, width = site.attrs["heads"], types[0].shape[-1].value

    def project(name: str, tensor: str) -> str:
        bias = site.parameter(f"{name}.bias") if site.has(f"{name}.bias") else None
        return _linear(site, tensor, 3, site.parameter(f"{name}.weight"), bias)

    q = _split_heads(site, project("q_proj", x), 3, heads)
    k = _split_heads(site, project("k_proj", memory), memory_rank, heads)
    v = _split_heads(site, project("v_proj", memory), memory_rank, heads)
    y = _attend(site, q, k, v, 4, width // heads, types[0].dtype, site.attrs["causal"], mask, None)
    return project("out_proj", _merge_heads(site, y, 4))


LOWERINGS = [
    OnnxLowering("linear", linear),
    OnnxLowering("embedding", embedding),
    OnnxLowering("positions", positions),
    OnnxLowering("positional_encoding", positional_encoding, check_positional_encoding),
    OnnxLowering("rotary", rotary, check_rotary),
    OnnxLowering("layernorm", layernorm),
    OnnxLowering("rmsnorm", rmsnorm),
    OnnxLowering("batchnorm1d", batchnorm),
    OnnxLowering("batchnorm2d", batchnorm),
    OnnxLowering("groupnorm", groupnorm),
    OnnxLowering("conv1d", conv),
    OnnxLowering("conv2d", conv),
    OnnxLowering("conv_transpose2d", conv),
    OnnxLowering("maxpool", pool),
    OnnxLowering("avgpool", pool),
    OnnxLowering("maxpool1d", pool),
    OnnxLowering("avgpool1d", pool),
    OnnxLowering("adaptive_avgpool", adaptive_avgpool, check_adaptive_avgpool),
    OnnxLowering("relu", unary("Relu")),
    OnnxLowering("gelu", gelu),
    OnnxLowering("silu", silu),
    OnnxLowering("tanh", unary("Tanh")),
    OnnxLowering("sigmoid", unary("Sigmoid")),
    OnnxLowering("leaky_relu", leaky_relu),
    OnnxLowering("softmax", softmax("Softmax")),
    OnnxLowering("log_softmax", softmax("LogSoftmax")),
    OnnxLowering("identity", unary("Identity")),
    OnnxLowering("dropout", unary("Identity")),  # inference: the identity
    OnnxLowering("add", binary("Add")),
    OnnxLowering("sub", binary("Sub")),
    OnnxLowering("mul", binary("Mul")),
    OnnxLowering("div", binary("Div")),
    OnnxLowering("matmul", lambda site: site.op("MatMul", site.inputs)),
    OnnxLowering("flatten", flatten),
    OnnxLowering("reshape", reshape),
    OnnxLowering("view", reshape),
    OnnxLowering("transpose", transpose),
    OnnxLowering("permute", permute),
    OnnxLowering("concat", concat),
    OnnxLowering("select", select),
    OnnxLowering("mean", mean),
    OnnxLowering("split_heads", split_heads),
    OnnxLowering("merge_heads", merge_heads),
    OnnxLowering("attention", attention, check_attention),
    OnnxLowering("multihead_attention", multihead_attention),
]
