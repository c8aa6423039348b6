# The standard library of transformer blocks.
#
#   import "std/transformer.mspec"
#
# Attention uses separate q, k and v projections (the parameter count equals
# a fused qkv projection's: 4*(D*D + D) per attention). Weights start from
# normal(std) and biases from zero, as in GPT-2 and BERT; `proj_std` sets the
# output projection's, which GPT-2 scales down by the depth.

# Multi-head self-attention over a sequence: [B, T, D] -> [B, T, D].
block SelfAttention(
    heads: int,
    causal: bool = false,
    p: float = 0.0,
    std: float = 0.02,
    proj_std: float = 0.02,
) {
    input x: float[B, T, D]
    assert D % heads == 0, "the width must divide evenly into heads"
    q = x |> linear(D, init=normal(std)) |> split_heads(heads)
    k = x |> linear(D, init=normal(std)) |> split_heads(heads)
    v = x |> linear(D, init=normal(std)) |> split_heads(heads)
    y = attention(q, k, v, causal=causal, dropout=p) |> merge_heads
    output out = y |> linear(D, init=normal(proj_std), name=proj) |> dropout(p)
}

# Multi-head attention from a sequence to a memory: queries from x, keys and
# values from memory ([B, S, E]); output [B, T, D].
block CrossAttention(heads: int, p: float = 0.0, std: float = 0.02, proj_std: float = 0.02) {
    input x: float[B, T, D]
    input memory: float[B, S, E]
    assert D % heads == 0, "the width must divide evenly into heads"
    q = x |> linear(D, init=normal(std)) |> split_heads(heads)
    k = memory |> linear(D, init=normal(std)) |> split_heads(heads)
    v = memory |> linear(D, init=normal(std)) |> split_heads(heads)
    y = attention(q, k, v, dropout=p) |> merge_heads
    output out = y |> linear(D, init=normal(proj_std), name=proj) |> dropout(p)
}

# The position-wise feed-forward network with GELU (GPT-2, BERT).
block Mlp(hidden: int, p: float = 0.0, std: float = 0.02, proj_std: float = 0.02) {
    input x: float[B, T, D]
    h = x |> linear(hidden, init=normal(std), name=fc) |> gelu
    output out = h |> linear(D, init=normal(proj_std), name=proj) |> dropout(p)
}

# The position-wise feed-forward network with ReLU (the 2017 transformer).
block FeedForward(hidden: int, p: float = 0.0, std: float = 0.02, proj_std: float = 0.02) {
    input x: float[B, T, D]
    h = x |> linear(hidden, init=normal(std), name=fc) |> relu |> dropout(p)
    output out = h |> linear(D, init=normal(proj_std), name=proj) |> dropout(p)
}

# A pre-norm decoder block (GPT-2): attention and MLP on normalised inputs,
# each added back to the residual stream.
block GPTBlock(heads: int, p: float = 0.0) {
    input x: float[B, T, D]
    x = x + (x |> layernorm(name=ln_1) |> SelfAttention(heads, causal=true, p=p, name=attn))
    x = x + (x |> layernorm(name=ln_2) |> Mlp(4 * D, p=p, name=mlp))
    output y = x
}
