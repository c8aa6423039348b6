"""Registers the optimizer `lion` through the `mspec_train_components` hook.

    use "lion"
    ...
    optimizer lion(lr=3e-4, betas=(0.9, 0.99), weight_decay=0.1, no_decay=[bias, norm])

This module imports no torch: `mspec check` validates the arguments against
`LionArgs`; `mspec train` imports `modelspec_lion.runtime` (and so torch)
through the component's `build` only when training starts.
"""

from __future__ import annotations

from pydantic import Field

from modelspec.hookspec import hookimpl
from modelspec.train.components import (
    Betas,
    Component,
    NonNegativeFloat,
    OptimizerArgs,
    PositiveFloat,
    Words,
)


class LionArgs(OptimizerArgs):
    """The defaults are the paper's: lr 1e-4 and betas (0.9, 0.99). Lion's update
    has the size of the learning rate in every coordinate, so the paper uses a
    rate 3-10x smaller and a weight decay 3-10x larger than AdamW's."""

    lr: PositiveFloat = 1e-4
    betas: Betas = (0.9, 0.99)
    weight_decay: NonNegativeFloat = 0.0
    # Parameter-name patterns exempt from weight decay, as for the built-in optimizers.
    no_decay: Words = Field(default_factory=list)


LION = Component(
    "optimizer",
    "lion",
    LionArgs,
    "Lion: the sign of interpolated momentum, decoupled weight decay (Chen et al., 2023)",
    positional=("lr",),
    state=lambda args: 1,  # one momentum tensor per parameter (Adam keeps two)
    build="modelspec_lion.runtime:lion_optimizer",
)


@hookimpl
def mspec_train_components():
    return [LION]
