"""The built-in ops, registered through the same hook a third-party plugin uses."""

from __future__ import annotations

from modelspec.hookspec import hookimpl
from modelspec.ops import (
    activations,
    arithmetic,
    attention,
    conv,
    dropout,
    embedding,
    linear,
    norms,
    pooling,
    shape,
)

OP_MODULES = (linear, embedding, norms, activations, dropout, conv, pooling, shape, arithmetic, attention)


@hookimpl
def mspec_ops():
    return [op for module in OP_MODULES for op in module.OPS]
