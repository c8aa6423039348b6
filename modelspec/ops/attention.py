"""Attention: `attention` (scaled dot product, no parameters) and
`multihead_attention` (with its projections).

    attention(q, k, v)                           # [B, h, T, dk], [B, h, S, dk], [B, h, S, dv]
    attention(q, k, v, causal=true, dropout=0.1)
    attention(q, k, v, mask)                     # mask broadcasts to [B, h, T, S]
    x |> multihead_attention(12, causal=true)    # self attention over [B, T, D]
    multihead_attention(x, memory, 8)            # cross attention: memory is [B, S, E]
    multihead_attention(x, pad_mask, 8)          # a `bool` second input is a mask

Shapes:
    attention: q [*, T, dk], k [*, S, dk], v [*, S, dv] (+ mask [.., T, S])
               -> [*, T, dv]; the leading dims broadcast
    multihead_attention: x [B, T, D] (+ memory [B, S, E]) (+ mask, broadcast
               to [B, heads, T, S]) -> [B, T, D]; D % heads == 0
    softmax(q k^T * scale (+ mask)) v, scale = 1/sqrt(dk) unless given. A
    `bool` mask is True where attending is allowed; a float mask is added.
    With `causal` and a mask both apply.
Parameters (multihead_attention, one nn.Linear each):
    q_proj.weight [D, D], q_proj.bias [D], k_proj.weight [D, E], k_proj.bias [D],
    v_proj.weight [D, E], v_proj.bias [D], out_proj.weight [D, D], out_proj.bias [D]
    (E = D for self attention; no biases with bias=false)
Cost: 2 FLOPs per MAC for q k^T and for the product with v, + 5 per score
(softmax); multihead_attention adds its four projections. With `causal`,
FLOPs are counted in full and the note says half the work is masked.
"""

from __future__ import annotations

from pydantic import Field

from modelspec.ir.dims import Dim
from modelspec.ir.types import TensorType, is_float
from modelspec.ops.base import (
    Args,
    Cost,
    OpSpec,
    ParamSpec,
    PosInt,
    ShapeError,
    broadcast,
    product,
    require_const,
    require_float,
    require_rank,
    require_rank_in,
)

CAUSAL_NOTE = "causal: half of the T×T work is masked"


def _check_mask(what: str, mask: TensorType, target: tuple, index: int) -> None:
    """The mask must broadcast to `target` without growing it."""
    layout = "[" + ", ".join(str(d) for d in target) + "]"
    if mask.dtype != "bool" and not is_float(mask.dtype):
        raise ShapeError(
            f"{what} needs a `bool` or floating-point mask, got `{mask.dtype}`",
            label=f"mask is {mask}",
            inputs=(index,),
            code="E0302",
            help="a `bool` mask is true where attending is allowed; a float mask is added to the scores",
        )
    if mask.rank > len(target):
        raise ShapeError(
            f"{what} mask {mask.shape_text()} has more dims than the scores {layout}",
            label=f"mask is {mask}",
            inputs=(index,),
            code="E0303",
        )
    try:
        shape = broadcast(TensorType(mask.dtype, target), mask, "mask")
    except ShapeError:
        shape = None
    if shape != tuple(target):
        raise ShapeError(
            f"{what} mask {mask.shape_text()} does not broadcast to the scores {layout}",
            label=f"mask is {mask}",
            inputs=(index,),
            help="each mask dim must equal the scores' dim or be 1",
        )


def _same_dtype(what: str, inputs, indices) -> None:
    first = inputs[indices[0]]
    for i in indices[1:]:
        if inputs[i].dtype != first.dtype:
            raise ShapeError(
                f"{what} needs inputs of one dtype, got `{first.dtype}` and `{inputs[i].dtype}`",
                label=f"input is {inputs[i]}",
                inputs=(indices[0], i),
                code="E0302",
            )


class AttentionArgs(Args):
    causal: bool = False  # query t attends to keys 0..t only
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)  # on the attention weights, in training
    scale: float | None = Field(default=None, gt=0.0)  # None: 1/sqrt(dk)


class Attention(OpSpec):
    name = "attention"
    summary = "scaled dot-product attention: softmax(q k^T * scale) v"
    shape_rule = "[*, T, dk], [*, S, dk], [*, S, dv] -> [*, T, dv]"
    Args = AttentionArgs
    min_inputs = 3
    max_inputs = 4
    category = "attention"

    def infer(self, inputs, args):
        q, k, v = inputs[:3]
        for i, t in enumerate(inputs[:3]):
            require_rank(t, 2, "`attention`", i)
            require_float(t, "`attention`", i)
        _same_dtype("`attention`", inputs, (0, 1, 2))
        if q.shape[-1] != k.shape[-1]:
            raise ShapeError(
                f"`attention` query and key widths differ: {q.shape[-1]} and {k.shape[-1]}",
                label=f"q is {q}, k is {k}",
                inputs=(0, 1),
                help="queries and keys must have the same last dim (dk)",
            )
        if k.shape[-2] != v.shape[-2]:
            raise ShapeError(
                f"`attention` has {k.shape[-2]} keys but {v.shape[-2]} values",
                label=f"k is {k}, v is {v}",
                inputs=(1, 2),
            )
        batch = _batch(inputs[:3])
        if len(inputs) == 4:
            _check_mask("`attention`", inputs[3], batch + (q.shape[-2], k.shape[-2]), 3)
        return q.with_shape(batch + (q.shape[-2], v.shape[-1]))

    def cost(self, inputs, args, out):
        q, k, v = inputs[:3]
        scores = product(_batch(inputs[:3])) * q.shape[-2] * k.shape[-2]
        macs = scores * q.shape[-1] + scores * v.shape[-1]
        return Cost(flops=2 * macs + 5 * scores, macs=macs, note=CAUSAL_NOTE if args.causal else "")


def _batch(tensors) -> tuple[Dim, ...]:
    batch = TensorType("float", ())
    for i, t in enumerate(tensors):
        lead = TensorType(t.dtype, t.shape[:-2])
        try:
            batch = TensorType("float", broadcast(batch, lead, "attention"))
        except ShapeError as error:
            raise ShapeError(
                f"`attention` cannot broadcast the leading dims {batch.shape_text()} and {lead.shape_text()}",
                label=error.label,
                inputs=tuple(range(i + 1)),
            ) from None
    return batch.shape


class MultiheadAttentionArgs(Args):
    heads: PosInt
    causal: bool = False
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    bias: bool = True


def _roles(inputs) -> tuple[TensorType, TensorType | None, TensorType | None, int | None]:
    """(x, memory, mask, mask index): a `bool` second input is the mask."""
    x = inputs[0]
    if len(inputs) == 3:
        return x, inputs[1], inputs[2], 2
    if len(inputs) == 2:
        if inputs[1].dtype == "bool":
            return x, None, inputs[1], 1
        return x, inputs[1], None, None
    return x, None, None, None


class MultiheadAttention(OpSpec):
    name = "multihead_attention"
    summary = "multi-head attention with q/k/v and output projections (self, or cross with memory)"
    shape_rule = "[B, T, D] (, [B, S, E]) -> [B, T, D]"
    Args = MultiheadAttentionArgs
    positional = ("heads",)
    min_inputs = 1
    max_inputs = 3
    category = "attention"

    def infer(self, inputs, args):
        what = "`multihead_attention`"
        x, memory, mask, mask_index = _roles(inputs)
        require_rank_in(x, (3,), what, "3-d [B, T, D]")
        require_float(x, what)
        width = require_const(x.shape[-1], what, label=f"input is {x}")
        if width % args.heads:
            raise ShapeError(
                f"{what} cannot split {width} features into {args.heads} heads",
                label=f"{width} is not a multiple of {args.heads}",
                arg="heads",
                inputs=(0,),
                help="the model width must be a multiple of the number of heads",
            )
        length = x.shape[1]
        if memory is not None:
            require_rank_in(memory, (3,), what, "3-d [B, S, E] memory", 1)
            require_float(memory, what, 1)
            _same_dtype(what, inputs, (0, 1))
            require_const(memory.shape[-1], what, label=f"memory is {memory}", index=1)
            if memory.shape[0] != x.shape[0]:
                raise ShapeError(
                    f"{what} batch sizes differ: {x.shape[0]} queries and {memory.shape[0]} memories",
                    label=f"x is {x}, memory is {memory}",
                    inputs=(0, 1),
                )
            keys = memory.shape[1]
        else:
            keys = length
        if mask is not None:
            _check_mask(what, mask, (x.shape[0], Dim.const(args.heads), length, keys), mask_index)
        return x

    def params(self, inputs, args, out):
        x, memory, _, _ = _roles(inputs)
        width = x.shape[-1].value
        kv_width = memory.shape[-1].value if memory is not None else width
        params = []
        for proj, fan_in in (("q_proj", width), ("k_proj", kv_width), ("v_proj", kv_width), ("out_proj", width)):
            params.append(
                ParamSpec(f"{proj}.weight", (width, fan_in), init="kaiming_uniform", init_args={"fan_in": fan_in})
            )
            if args.bias:
                params.append(ParamSpec(f"{proj}.bias", (width,), init="uniform_fan_in", init_args={"fan_in": fan_in}))
        return params

    def cost(self, inputs, args, out):
        x, memory, _, _ = _roles(inputs)
        batch, length, width = x.shape
        keys, kv_width = (memory.shape[1], memory.shape[2]) if memory is not None else (length, width)
        projections = batch * length * width * width * 2 + batch * keys * kv_width * width * 2
        scores = batch * args.heads * length * keys
        attention = 2 * batch * length * keys * width  # q k^T and the product with v, over all heads
        macs = projections + attention
        flops = 2 * macs + 5 * scores
        if args.bias:
            flops = flops + 2 * batch * length * width + 2 * batch * keys * width
        return Cost(flops=flops, macs=macs, note=CAUSAL_NOTE if args.causal else "")


OPS = [Attention(), MultiheadAttention()]
