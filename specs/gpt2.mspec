# GPT-2 small (Radford et al., 2019): a pre-norm decoder-only transformer
# whose output head shares its weight with the token embedding. Weights start
# from normal(0.02); the projections back into the residual stream from
# normal(0.02 / sqrt(2 * layers)), as in the paper.
import "std/transformer.mspec"

model GPT2(
    vocab: int = 50257,
    ctx: int = 1024,
    d: int = 768,
    heads: int = 12,
    layers: int = 12,
    p: float = 0.1,
) {
    input tokens: int64[B, T]
    assert T <= ctx, "the sequence is longer than the context"
    x = embedding(tokens, vocab, d, init=normal(0.02), name=wte)
        + embedding(positions(T), ctx, d, init=normal(0.01), name=wpe)
    x = x |> dropout(p)
    residual_std = 0.02 / (2 * layers) ** 0.5
    repeat layers as h {
        x = x
            + (x |> layernorm(name=ln_1) |> SelfAttention(heads, causal=true, p=p, proj_std=residual_std, name=attn))
        x = x + (x |> layernorm(name=ln_2) |> Mlp(4 * d, p=p, proj_std=residual_std, name=mlp))
    }
    output logits = x |> layernorm(name=ln_f) |> linear(vocab, bias=false, tie=wte, name=lm_head)
}
