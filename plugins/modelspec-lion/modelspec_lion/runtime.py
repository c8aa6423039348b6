"""The runtime side of the `lion` component: what `mspec train` calls (see
`modelspec.train.builders` for the contract of an optimizer's `build`)."""

from __future__ import annotations

from modelspec_lion.optimizer import Lion


def lion_optimizer(args, param_groups) -> Lion:
    """`param_groups` come grouped by `no_decay` (exempt groups carry weight_decay 0)."""
    return Lion(param_groups, lr=args.lr, betas=tuple(args.betas), weight_decay=args.weight_decay)
