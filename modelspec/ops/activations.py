"""Elementwise activations and softmax. Shape: [*] -> [*] (same type).

    x |> relu
    x |> gelu                       # exact (erf) form
    x |> gelu(approximate="tanh")   # GPT-2's tanh approximation
    x |> silu                       # x * sigmoid(x), a.k.a. swish
    x |> tanh
    x |> sigmoid
    x |> leaky_relu(0.2)            # negative_slope
    x |> softmax                    # over the last dimension
    x |> softmax(dim=1)
    x |> log_softmax(-1)
    x |> identity

Shape: [*] -> [*]; `softmax`/`log_softmax` check that `dim` exists.
Parameters: none.
Cost (FLOPs per element): relu 1, leaky_relu 2, sigmoid 4, silu 5, tanh 5,
gelu 8, softmax 5, log_softmax 5, identity 0.
"""

from __future__ import annotations

from typing import Literal

from modelspec.ops.base import Args, OpSpec, elementwise_flops, normalize_dim, require_float


class Elementwise(OpSpec):
    """A float -> float elementwise function; subclasses set `flops_per_element`."""

    shape_rule = "[*] -> [*]"
    category = "activations"
    flops_per_element = 1

    def infer(self, inputs, args):
        require_float(inputs[0], f"`{self.name}`")
        return inputs[0]

    def cost(self, inputs, args, out):
        return elementwise_flops(out, self.flops_per_element)


class Relu(Elementwise):
    name = "relu"
    summary = "max(x, 0), elementwise"


class GeluArgs(Args):
    approximate: Literal["none", "tanh"] = "none"


class Gelu(Elementwise):
    name = "gelu"
    summary = "x * Phi(x), elementwise (exact, or the tanh approximation)"
    Args = GeluArgs
    positional = ("approximate",)
    flops_per_element = 8


class Silu(Elementwise):
    name = "silu"
    summary = "x * sigmoid(x), elementwise"
    flops_per_element = 5


class Tanh(Elementwise):
    name = "tanh"
    summary = "tanh(x), elementwise"
    flops_per_element = 5


class Sigmoid(Elementwise):
    name = "sigmoid"
    summary = "1 / (1 + exp(-x)), elementwise"
    flops_per_element = 4


class LeakyReluArgs(Args):
    negative_slope: float = 0.01


class LeakyRelu(Elementwise):
    name = "leaky_relu"
    summary = "x if x > 0 else negative_slope * x, elementwise"
    Args = LeakyReluArgs
    positional = ("negative_slope",)
    flops_per_element = 2


class Identity(OpSpec):
    name = "identity"
    summary = "the input, unchanged"
    shape_rule = "[*] -> [*]"
    category = "activations"

    def infer(self, inputs, args):
        return inputs[0]


class SoftmaxArgs(Args):
    dim: int = -1


class Softmax(Elementwise):
    name = "softmax"
    summary = "exp(x) / sum(exp(x)) along `dim`"
    shape_rule = "[*] -> [*] (normalised along dim)"
    Args = SoftmaxArgs
    positional = ("dim",)
    flops_per_element = 5

    def infer(self, inputs, args):
        (x,) = inputs
        require_float(x, f"`{self.name}`")
        normalize_dim(args.dim, x.rank, f"`{self.name}`")
        return x


class LogSoftmax(Softmax):
    name = "log_softmax"
    summary = "log(softmax(x)) along `dim`, computed stably"


OPS = [Relu(), Gelu(), Silu(), Tanh(), Sigmoid(), LeakyRelu(), Softmax(), LogSoftmax(), Identity()]
