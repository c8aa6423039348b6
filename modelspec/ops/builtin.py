"""The built-in ops, registered through the same hook a third-party plugin uses."""

from __future__ import annotations

from modelspec.hookspec import hookimpl
from modelspec.ops import activations, linear

OP_MODULES = (linear, activations)


@hookimpl
def mspec_ops():
    return [op for module in OP_MODULES for op in module.OPS]
