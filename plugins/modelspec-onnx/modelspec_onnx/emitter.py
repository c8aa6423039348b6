"""The ONNX graph under construction: nodes, unique tensor names, constants,
and symbolic sizes computed at run time.

The IR is flattened into one ONNX graph: block calls are inlined and
`repeat` bodies unrolled. A `Scope` is one IR graph being inlined: its
parameter-path prefix (`h.3.attn.`), the ONNX tensor of each of its values,
and where each of its symbolic sizes (`B`, `T`) can be read off an input,
exactly as the torch backend reads `x.size(1)` in a module's forward.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from modelspec.ir.dims import Dim, Floor, Mod

# modelspec dtype -> ONNX element type. `float` is the model's compute dtype: float32.
ONNX_TYPES = {
    "float": TensorProto.FLOAT,
    "float32": TensorProto.FLOAT,
    "float16": TensorProto.FLOAT16,
    "bfloat16": TensorProto.BFLOAT16,
    "float64": TensorProto.DOUBLE,
    "int": TensorProto.INT64,
    "int64": TensorProto.INT64,
    "int32": TensorProto.INT32,
    "int16": TensorProto.INT16,
    "int8": TensorProto.INT8,
    "uint8": TensorProto.UINT8,
    "bool": TensorProto.BOOL,
}
NUMPY_TYPES = {
    "float": np.float32,
    "float32": np.float32,
    "float16": np.float16,
    "float64": np.float64,
    "int": np.int64,
    "int64": np.int64,
    "int32": np.int32,
    "int16": np.int16,
    "int8": np.int8,
    "uint8": np.uint8,
    "bool": np.bool_,
}


class SizeUnknown(Exception):
    """A symbolic size that no input of the scope has as a dimension."""

    def __init__(self, symbol: str):
        super().__init__(symbol)
        self.symbol = symbol


@dataclass
class Scope:
    """One IR graph being inlined into the ONNX graph."""

    prefix: str  # parameter-path prefix: "" for the model, "h.3.attn." inside a block of a repeat
    values: dict[str, str] = field(default_factory=dict)  # IR value -> ONNX tensor name
    symbols: dict[str, tuple[str, int]] = field(default_factory=dict)  # size -> (ONNX tensor, axis)
    parent: Scope | None = None  # a repeat body shares its enclosing graph's sizes; a block does not

    def bind_inputs(self, types: dict, tensors: list[str]) -> None:
        """Name the graph's inputs and note the sizes each one carries as a plain dimension."""
        for (name, t), tensor in zip(types.items(), tensors, strict=True):
            self.values[name] = tensor
            for axis, d in enumerate(t.shape):
                if len(d.terms) == 1 and d.terms[0][1] == 1 and len(d.terms[0][0]) == 1:
                    atom = d.terms[0][0][0]
                    if isinstance(atom, str) and atom not in self.symbols:
                        self.symbols[atom] = (tensor, axis)

    def where(self, symbol: str) -> tuple[str, int]:
        scope = self
        while scope is not None:
            if symbol in scope.symbols:
                return scope.symbols[symbol]
            scope = scope.parent
        raise SizeUnknown(symbol)


class Emitter:
    """Collects ONNX nodes and initializers with unique names."""

    def __init__(self) -> None:
        self.nodes: list = []
        self.initializers: dict[str, np.ndarray] = {}  # name -> array: parameters and constants
        self.used: set[str] = set()
        self._constants: dict[tuple, str] = {}
        self._sizes: dict[tuple, str] = {}

    def fresh(self, hint: str) -> str:
        name, k = hint or "t", 1
        while name in self.used:
            name = f"{hint}_{k}"
            k += 1
        self.used.add(name)
        return name

    def op(self, op_type: str, inputs: list[str], hint: str, outputs: int = 1, **attributes):
        """Append one node; returns its output name (or names, when `outputs` > 1)."""
        names = [self.fresh(hint if outputs == 1 else f"{hint}.{k}") for k in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, names, name=names[0], **attributes))
        return names[0] if outputs == 1 else names

    def constant(self, value, dtype=np.float32, hint: str = "const") -> str:
        """A small constant tensor (shared by equal values), stored as an initializer."""
        array = np.asarray(value, dtype=dtype)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._constants:
            name = self.fresh(hint)
            self.initializers[name] = array
            self._constants[key] = name
        return self._constants[key]

    def initializer(self, name: str, array: np.ndarray) -> str:
        """A named initializer (a parameter: its name is the state_dict key)."""
        if name not in self.initializers:
            self.used.add(name)
            self.initializers[name] = array
        return name

    # ---- sizes known only at run time ---------------------------------------------------

    def size(self, d: Dim, scope: Scope) -> str:
        """A 1-element int64 tensor holding the value of `d` (constants fold to constants)."""
        d = Dim.of(d)
        if d.is_const:
            return self.constant([d.value], np.int64, "size")
        key = (id(scope), str(d))
        if key in self._sizes:
            return self._sizes[key]
        total = None
        for mono, coef in d.terms:
            term = None if coef == 1 and mono else self.constant([coef], np.int64, "size")
            for atom in mono:
                factor = self._atom(atom, scope)
                term = factor if term is None else self.op("Mul", [term, factor], "size")
            total = term if total is None else self.op("Add", [total, term], "size")
        self._sizes[key] = total
        return total

    def _atom(self, atom, scope: Scope) -> str:
        if isinstance(atom, str):
            tensor, axis = scope.where(atom)
            key = ("symbol", tensor, axis)
            if key not in self._sizes:
                self._sizes[key] = self.op("Shape", [tensor], f"size.{atom}", start=axis, end=axis + 1)
            return self._sizes[key]
        num, den = self.size(atom.num, scope), self.size(atom.den, scope)
        # Sizes are positive, so ONNX's truncating integer division is the floor.
        return self.op("Div" if isinstance(atom, Floor) else "Mod", [num, den], "size")

    def shape(self, dims, scope: Scope) -> str:
        """A 1-D int64 shape tensor from dims (ints, -1 included, or symbolic Dims)."""
        parts, pending = [], []
        for d in dims:
            d = Dim.of(d)
            if d.is_const:
                pending.append(d.value)
                continue
            if pending:
                parts.append(self.constant(pending, np.int64, "shape"))
                pending = []
            parts.append(self.size(d, scope))
        if pending:
            parts.append(self.constant(pending, np.int64, "shape"))
        return parts[0] if len(parts) == 1 else self.op("Concat", parts, "shape", axis=0)

    def scalar(self, d: Dim, scope: Scope) -> str:
        """A 0-d int64 tensor holding `d` (what Range takes)."""
        d = Dim.of(d)
        if d.is_const:
            return self.constant(d.value, np.int64, "size")
        return self.op("Squeeze", [self.size(d, scope), self.constant([0], np.int64, "axes")], "size")


def tensor_type(name: str, t, symbolic=str) -> object:
    """A graph input/output declaration; symbolic sizes become `dim_param`s named as in the spec."""
    shape = [d.value if d.is_const else symbolic(d) for d in t.shape]
    return helper.make_tensor_value_info(name, ONNX_TYPES[t.dtype], shape)


def to_initializer(name: str, array: np.ndarray):
    # Not np.ascontiguousarray: it turns a 0-d scalar into shape [1].
    return numpy_helper.from_array(array if array.flags.c_contiguous else array.copy(order="C"), name)


# Re-exported for lowerings: they test atoms of sizes.
__all__ = ["Emitter", "Scope", "SizeUnknown", "ONNX_TYPES", "NUMPY_TYPES", "Floor", "Mod", "tensor_type"]
