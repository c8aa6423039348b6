"""Tensor types: a dtype and a shape of dims."""

from __future__ import annotations

from dataclasses import dataclass

from modelspec.ir.dims import Dim

# Dtype names a spec may write. `float` is the model's floating compute dtype
# (float32 unless a train regime's precision says otherwise).
FLOAT_DTYPES = ("float", "float16", "bfloat16", "float32", "float64")
INT_DTYPES = ("int", "int8", "int16", "int32", "int64", "uint8")
DTYPES = FLOAT_DTYPES + INT_DTYPES + ("bool",)
DTYPE_BYTES = {
    "float": 4,
    "float16": 2,
    "bfloat16": 2,
    "float32": 4,
    "float64": 8,
    "int": 8,
    "int8": 1,
    "int16": 2,
    "int32": 4,
    "int64": 8,
    "uint8": 1,
    "bool": 1,
}


def is_float(dtype: str) -> bool:
    return dtype in FLOAT_DTYPES


def is_int(dtype: str) -> bool:
    return dtype in INT_DTYPES


@dataclass(frozen=True)
class TensorType:
    dtype: str
    shape: tuple[Dim, ...]

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(Dim.of(d) for d in self.shape))

    @property
    def rank(self) -> int:
        return len(self.shape)

    def with_shape(self, shape) -> TensorType:
        return TensorType(self.dtype, tuple(shape))

    def with_dtype(self, dtype: str) -> TensorType:
        return TensorType(dtype, self.shape)

    def numel(self) -> Dim:
        total = Dim.const(1)
        for d in self.shape:
            total = total * d
        return total

    def shape_text(self) -> str:
        return "[" + ", ".join(str(d) for d in self.shape) + "]"

    def __str__(self) -> str:
        return f"{self.dtype}{self.shape_text()}"
