"""Helpers for op tests: call an op the way the elaborator does.

    def test_x(ops):
        r = ops("conv2d", "float[B, 3, H, W]", out_channels=32, kernel=3)
        assert str(r.out) == "float[B, 32, H - 2, W - 2]"
        err = ops.error("conv2d", "float[B, 3, 2, 2]", out_channels=8, kernel=3)

Inputs are `TensorType`s or their text ("float[B, T*D]" is not understood;
write sizes as ints or single symbols).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from modelspec.ir.dims import Dim
from modelspec.ir.types import TensorType
from modelspec.ops.base import Cost, ParamSpec, ShapeError
from modelspec.plugins import registry


def tensor(text: str) -> TensorType:
    m = re.fullmatch(r"\s*(\w+)\[(.*)\]\s*", text)
    assert m, f"bad tensor text {text!r}"
    dims = [d.strip() for d in m.group(2).split(",") if d.strip()]
    return TensorType(m.group(1), tuple(Dim.const(int(d)) if d.lstrip("-").isdigit() else Dim.sym(d) for d in dims))


@dataclass
class Result:
    out: TensorType
    params: list[ParamSpec]
    cost: Cost

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {p.name: p.shape for p in self.params}

    @property
    def n_params(self) -> int:
        """Trainable parameters, as `sum(p.numel() for p in m.parameters())` counts them."""
        return sum(p.numel for p in self.params if not p.buffer)

    @property
    def buffers(self) -> dict[str, ParamSpec]:
        return {p.name: p for p in self.params if p.buffer}


class Ops:
    tensor = staticmethod(tensor)

    def op(self, name: str):
        op = registry().op(name)
        assert op is not None, f"op `{name}` is not registered"
        return op

    def _types(self, inputs) -> list[TensorType]:
        return [tensor(t) if isinstance(t, str) else t for t in inputs]

    def __call__(self, name: str, *inputs, **args) -> Result:
        op = self.op(name)
        types = self._types(inputs)
        assert op.min_inputs <= len(types) and (op.max_inputs is None or len(types) <= op.max_inputs)
        parsed = op.Args.model_validate(args)
        out = op.infer(types, parsed)
        return Result(out, op.params(types, parsed, out), op.cost(types, parsed, out))

    def error(self, name: str, *inputs, **args) -> ShapeError:
        with pytest.raises(ShapeError) as info:
            self(name, *inputs, **args)
        err = info.value
        # The house style for messages: lowercase start, no final period.
        assert err.message[:1] == err.message[:1].lower(), err.message
        assert not err.message.endswith("."), err.message
        return err


@pytest.fixture(scope="session")
def ops() -> Ops:
    return Ops()


def _at(dim: Dim, **values: int) -> int:
    """The value of a symbolic dim once its symbols are known."""
    return dim.substitute(values).value


@pytest.fixture(scope="session")
def at():
    return _at
