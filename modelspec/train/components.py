"""Train components (optimizers, schedules, losses, metrics, datasets): placeholder registry."""

from __future__ import annotations

from modelspec.hookspec import hookimpl


@hookimpl
def mspec_train_components():
    return []
