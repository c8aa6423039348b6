# The encoder-decoder transformer of "Attention Is All You Need" (2017),
# base configuration: post-norm layers, sinusoidal positions, embeddings
# scaled by sqrt(d), and an output projection tied to the target embedding.
import "std/transformer.mspec"

model Transformer(
    src_vocab: int = 37000,
    tgt_vocab: int = 37000,
    d: int = 512,
    heads: int = 8,
    ff: int = 2048,
    layers: int = 6,
    p: float = 0.1,
    ctx: int = 512,
) {
    input source: int64[B, S]
    input target: int64[B, T]
    assert S <= ctx, "the source is longer than the positional table"
    assert T <= ctx, "the target is longer than the positional table"

    src = (embedding(source, src_vocab, d, name=src_embed) * d ** 0.5)
        |> positional_encoding(max_len=ctx)
        |> dropout(p)
    repeat layers as encoder {
        src = (src + (src |> SelfAttention(heads, p=p, name=attn))) |> layernorm(name=ln_1)
        src = (src + (src |> FeedForward(ff, p=p, name=feed_forward))) |> layernorm(name=ln_2)
    }
    memory = src

    tgt = (embedding(target, tgt_vocab, d, name=tgt_embed) * d ** 0.5)
        |> positional_encoding(max_len=ctx)
        |> dropout(p)
    repeat layers as decoder {
        tgt = (tgt + (tgt |> SelfAttention(heads, causal=true, p=p, name=self_attn)))
            |> layernorm(name=ln_1)
        tgt = (tgt + CrossAttention(tgt, memory, heads, p=p, name=cross_attn))
            |> layernorm(name=ln_2)
        tgt = (tgt + (tgt |> FeedForward(ff, p=p, name=feed_forward))) |> layernorm(name=ln_3)
    }
    output logits = tgt |> linear(tgt_vocab, bias=false, tie=tgt_embed, name=generator)
}
