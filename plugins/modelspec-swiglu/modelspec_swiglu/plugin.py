"""Registers the op `swiglu` and its torch lowering through modelspec's hooks,
as any third-party plugin would (entry point `modelspec: swiglu`).

Checking a spec imports only `modelspec_swiglu.op`; the lowering is imported
when a backend asks for lowerings, and it imports no torch either (the
generated source does).
"""

from __future__ import annotations

from modelspec.hookspec import hookimpl


@hookimpl
def mspec_ops():
    from modelspec_swiglu.op import OPS

    return OPS


@hookimpl
def mspec_lowerings():
    from modelspec_swiglu.lowering import LOWERING

    return [LOWERING]
