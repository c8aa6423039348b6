"""Elementwise activations: `relu`, ... Shape: [*] -> [*] (same type).

    x |> relu
"""

from __future__ import annotations

from modelspec.ops.base import OpSpec, elementwise_flops, require_float


class Relu(OpSpec):
    name = "relu"
    summary = "max(x, 0), elementwise"
    shape_rule = "[*] -> [*]"
    category = "activations"

    def infer(self, inputs, args):
        require_float(inputs[0], "`relu`")
        return inputs[0]

    def cost(self, inputs, args, out):
        return elementwise_flops(out, 1)


OPS = [Relu()]
