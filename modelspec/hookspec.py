"""The hook specification: the one way anything is added to modelspec.

Built-in ops (and later optimizers, losses, backends...) are registered by
plain modules implementing these hooks, exactly as a third-party plugin
installed under the entry-point group `modelspec` does.
"""

from __future__ import annotations

import pluggy

PROJECT = "modelspec"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# ---- language: ops --------------------------------------------------------------


@hookspec
def mspec_ops() -> list:
    """Return the ops this plugin adds, as a list of `modelspec.ops.OpSpec` instances.

    An op name may be registered by one plugin only; a clash is reported
    naming both plugins.
    """


# ---- training regimes: components a `train` block names -----------------------


@hookspec
def mspec_train_components() -> list:
    """Return `modelspec.train.components.Component` instances: optimizers,
    schedules, losses, metrics, datasets, regularizers and distributed
    strategies, each with the pydantic model of its arguments (what `mspec
    check` validates a `train` setting against) and, but for distributed
    strategies, its runtime `build` (see `modelspec.train.builders`)."""


# ---- backends: IR -> something that runs ------------------------------------------


@hookspec
def mspec_backends() -> list:
    """Return backend objects: `name`, `description`, `file_suffix`,
    `generate(program, model) -> str` (the source `mspec compile` writes) and
    `build(program, model, **options)` (a runnable module).

    A backend whose output is a binary file (ONNX, a compiled archive) sets
    `binary = True` and adds `write(program, model, path, **options)`, which
    writes `path` itself (and any files beside it). `mspec compile -o PATH`
    calls it instead of `generate`, passing `checkpoint=` when `--checkpoint`
    is given, and refuses a binary backend without `-o`. `write` reports a
    spec it cannot express by raising `CompileError` and an option whose
    value does not fit (a checkpoint of another model) by raising
    `ValueError` with a message naming the option and the value."""


@hookspec
def mspec_lowerings() -> list:
    """Return lowerings: objects with `backend` and `op` naming which op they
    lower for which backend (the backend decides the rest of their shape).
    One (backend, op) pair may be registered by one plugin only."""
