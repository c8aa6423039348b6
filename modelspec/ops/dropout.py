"""`dropout`: zero elements with probability p while training.

    x |> dropout            # p = 0.5
    x |> dropout(0.1)

Shape: [*] -> [*] (same type)
Parameters: none.
Cost: 0 (the identity in inference; training adds one multiply per element).
"""

from __future__ import annotations

from pydantic import Field

from modelspec.ops.base import Args, Cost, OpSpec, require_float


class DropoutArgs(Args):
    p: float = Field(default=0.5, ge=0.0, lt=1.0)


class Dropout(OpSpec):
    name = "dropout"
    summary = "zero each element with probability p in training, scale the rest by 1/(1-p)"
    shape_rule = "[*] -> [*]"
    Args = DropoutArgs
    positional = ("p",)
    category = "regularisation"

    def infer(self, inputs, args):
        require_float(inputs[0], "`dropout`")
        return inputs[0]

    def cost(self, inputs, args, out):
        return Cost(note="identity in inference")


OPS = [Dropout()]
