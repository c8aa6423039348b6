"""Initialisers a spec may declare with `init=`, e.g. `linear(d, init=normal(0.02))`.

`init=` is an argument of every op that declares parameters (`takes_init`),
built-in or from a plugin; the elaborator handles it, not the op's `Args`.
It sets the initialiser of a layer's weights (every parameter whose name
ends in `weight`); its biases start at zero, as in GPT-2 and BERT. Without
`init=`, parameters keep their op's declared initialiser (PyTorch's
defaults). Backends map these names onto their own functions.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from modelspec.ops.base import Args


class NormalArgs(Args):
    std: float = Field(gt=0)
    mean: float = 0.0


class TruncNormalArgs(Args):
    std: float = Field(gt=0)
    mean: float = 0.0
    a: float = -2.0
    b: float = 2.0


class UniformArgs(Args):
    low: float
    high: float


class ConstantArgs(Args):
    value: float


class GainArgs(Args):
    gain: float = Field(default=1.0, gt=0)


class KaimingArgs(Args):
    a: float = 0.0
    mode: Literal["fan_in", "fan_out"] = "fan_in"
    nonlinearity: Literal["relu", "leaky_relu", "linear", "tanh", "sigmoid"] = "leaky_relu"


class NoArgs(Args):
    pass


# name -> (arguments, positional argument names)
INITIALISERS: dict[str, tuple[type[Args], tuple[str, ...]]] = {
    "normal": (NormalArgs, ("std", "mean")),
    "trunc_normal": (TruncNormalArgs, ("std", "mean", "a", "b")),
    "uniform": (UniformArgs, ("low", "high")),
    "constant": (ConstantArgs, ("value",)),
    "zeros": (NoArgs, ()),
    "ones": (NoArgs, ()),
    "xavier_uniform": (GainArgs, ("gain",)),
    "xavier_normal": (GainArgs, ("gain",)),
    "kaiming_uniform": (KaimingArgs, ("a", "mode", "nonlinearity")),
    "kaiming_normal": (KaimingArgs, ("a", "mode", "nonlinearity")),
    "orthogonal": (GainArgs, ("gain",)),
}


# How `mspec ops` and docs/language.md list `init=` among an op's arguments.
INIT_ARGUMENT = {"name": "init", "type": "initialiser", "default": "the op's own"}


def takes_init(op) -> bool:
    """Whether `init=` is an argument of `op`: of an op that declares parameters (overrides `params`). An
    op whose parameters depend on its arguments (`layernorm(affine=false)`) refuses it there (E0203)."""
    from modelspec.ops.base import OpSpec

    return type(op).params is not OpSpec.params
