"""Where the exported initializers come from: a checkpoint, or seeded numpy
initialisation following each parameter's declared initialiser.

Both are keyed by the IR parameter paths (`h.3.attn.q.weight`), which are
the torch backend's state_dict keys. Neither imports torch: checkpoints are
read with `safetensors.numpy`, and the initialisers are the formulas of
`torch.nn.init` (same distributions, not the same random numbers).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modelspec_onnx.emitter import NUMPY_TYPES

CHECKPOINT_FILE = "model.safetensors"  # what `mspec train` writes into each checkpoint folder
# torch's BatchNorm counter: a state_dict entry that inference never reads.
UNUSED_BUFFERS = ("num_batches_tracked",)


class CheckpointError(ValueError):
    """A checkpoint that cannot give this model its weights; the message names the file and why."""


@dataclass(frozen=True)
class Parameter:
    path: str  # the state_dict key
    param: object  # ir.Param
    node: object  # the ir.Node that owns it


# ---- seeded initialisation ---------------------------------------------------------------------


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """torch.nn.init's fan_in and fan_out: dims 1 and 0 times the receptive field."""
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    fan_in = (shape[1] if len(shape) > 1 else shape[0]) * receptive
    return fan_in, shape[0] * receptive


def _gain(nonlinearity: str, a: float) -> float:
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        return math.sqrt(2.0 / (1 + a * a))
    if nonlinearity == "tanh":
        return 5.0 / 3
    return 1.0  # linear, sigmoid


def initial_value(param, rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
    """A value drawn as `torch.nn.init` would draw it for this parameter's initialiser.
    Floats are drawn in `dtype` and scaled in place: a 2 GB model needs no float64 copy."""
    shape, args, init = tuple(param.shape), dict(param.init_args), param.init
    fan_in, fan_out = _fans(shape) if shape else (1, 1)
    fan_in = args.get("fan_in", fan_in)
    if not np.issubdtype(dtype, np.floating):  # integer buffers (counters) start at zero
        return np.zeros(shape, dtype)

    def uniform(low: float, high: float) -> np.ndarray:
        values = rng.random(shape, dtype=dtype)
        values *= high - low
        values += low
        return values

    def normal(mean: float, std: float) -> np.ndarray:
        values = rng.standard_normal(shape, dtype=dtype)
        values *= std
        values += mean
        return values

    if init in ("zeros", "ones", "constant"):
        return np.full(shape, {"zeros": 0.0, "ones": 1.0}.get(init, args.get("value")), dtype)
    if init == "normal":
        return normal(args.get("mean", 0.0), args["std"])
    if init == "trunc_normal":
        mean, std, low, high = args.get("mean", 0.0), args["std"], args.get("a", -2.0), args.get("b", 2.0)
        values = normal(mean, std)
        outside = (values < low) | (values > high)
        while outside.any():  # redraw what falls outside [a, b]
            values[outside] = mean + std * rng.standard_normal(int(outside.sum()), dtype=dtype)
            outside = (values < low) | (values > high)
        return values
    if init == "uniform":
        return uniform(args["low"], args["high"])
    if init == "uniform_fan_in":  # torch's default bias of Linear and Conv
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        return uniform(-bound, bound)
    if init in ("kaiming_uniform", "kaiming_normal"):
        # Declared by an op without arguments: torch's layer default, kaiming_uniform_(a=sqrt(5)).
        a = args.get("a", math.sqrt(5))
        fan = fan_in if args.get("mode", "fan_in") == "fan_in" else fan_out
        std = _gain(args.get("nonlinearity", "leaky_relu"), a) / math.sqrt(fan)
        if init == "kaiming_normal":
            return normal(0.0, std)
        return uniform(-math.sqrt(3.0) * std, math.sqrt(3.0) * std)
    if init in ("xavier_uniform", "xavier_normal"):
        std = args.get("gain", 1.0) * math.sqrt(2.0 / (fan_in + fan_out))
        if init == "xavier_normal":
            return normal(0.0, std)
        return uniform(-math.sqrt(3.0) * std, math.sqrt(3.0) * std)
    if init == "orthogonal":
        rows, cols = shape[0], math.prod(shape[1:])
        flat = rng.standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(flat)
        q *= np.sign(np.diag(r))
        q = q.T if rows < cols else q
        return (args.get("gain", 1.0) * q.reshape(shape)).astype(dtype)
    raise CheckpointError(
        f"no numpy initialiser for `{init}` (parameter {param.name}); export with weights from a checkpoint"
    )


class SeededWeights:
    """Fresh weights: each parameter from its own stream, seeded by `seed` and its path, so that
    one parameter's values do not depend on which others the model has."""

    def __init__(self, seed: int = 0):
        self.seed = seed

    def value(self, item: Parameter, aliases: dict[str, list[str]]) -> np.ndarray:
        rng = np.random.default_rng([self.seed, zlib.crc32(item.path.encode("utf-8"))])
        array = initial_value(item.param, rng, NUMPY_TYPES[item.param.dtype])
        padding = item.node.attrs.get("padding_idx") if item.node.op == "embedding" else None
        if padding is not None:  # torch keeps the padding row at zero
            array[padding] = 0
        return array

    def check(self, parameters: dict[str, Parameter], aliases: dict[str, list[str]]) -> None:
        return None


# ---- checkpoints ------------------------------------------------------------------------------------


class CheckpointWeights:
    """Weights from a `mspec train` checkpoint folder (its model.safetensors) or a .safetensors file."""

    def __init__(self, path: str | Path):
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        path = Path(path)
        self.file = path / CHECKPOINT_FILE if path.is_dir() else path
        if not self.file.is_file():
            what = f"has no {CHECKPOINT_FILE}" if path.is_dir() else "does not exist"
            raise CheckpointError(f"checkpoint {path} {what}")
        try:
            self.tensors = load_file(str(self.file))
        except (SafetensorError, OSError, TypeError, ValueError) as exc:
            raise CheckpointError(f"cannot read checkpoint {self.file}: {exc}") from None

    def _stored(self, path: str, aliases: dict[str, list[str]]) -> str | None:
        # safetensors stores a tied tensor once, under any of its names.
        for key in [path, *aliases.get(path, [])]:
            if key in self.tensors:
                return key
        return None

    def check(self, parameters: dict[str, Parameter], aliases: dict[str, list[str]]) -> None:
        """Every parameter present with its shape, and nothing else: else one error listing all.
        `aliases` maps a parameter to the paths tied to it (torch's state_dict lists those too)."""
        problems, known = [], set()
        for path, item in parameters.items():
            known |= {path, *aliases.get(path, [])}
            key = self._stored(path, aliases)
            if key is None:
                problems.append(f"`{path}` is missing")
                continue
            shape = tuple(self.tensors[key].shape)
            if shape != tuple(item.param.shape):
                problems.append(f"`{path}` has shape {list(shape)}, the model's is {list(item.param.shape)}")
        extra = sorted(k for k in self.tensors if k not in known and k.rsplit(".", 1)[-1] not in UNUSED_BUFFERS)
        if extra:
            shown = ", ".join(f"`{k}`" for k in extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
            problems.append(f"it holds weights the model does not have: {shown}")
        if problems:
            shown = problems[:6] + ([f"and {len(problems) - 6} more problems"] if len(problems) > 6 else [])
            raise CheckpointError(f"checkpoint {self.file} does not fit the model: " + "; ".join(shown))

    def value(self, item: Parameter, aliases: dict[str, list[str]]) -> np.ndarray:
        array = self.tensors[self._stored(item.path, aliases)]
        wanted = NUMPY_TYPES[item.param.dtype]
        return array if array.dtype == wanted else array.astype(wanted)
