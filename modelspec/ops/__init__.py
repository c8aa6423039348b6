"""Ops: each described once by an OpSpec (see `base.py`)."""

from modelspec.ops.base import Args, Cost, DimArg, OpSpec, ParamSpec, ShapeError

__all__ = ["Args", "Cost", "DimArg", "OpSpec", "ParamSpec", "ShapeError"]
