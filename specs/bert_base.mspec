# BERT-base (Devlin et al., 2018): a post-norm transformer encoder with a
# pooler over the first ([CLS]) token.
import "std/transformer.mspec"

model BertBase(
    vocab: int = 30522,
    ctx: int = 512,
    types: int = 2,
    d: int = 768,
    heads: int = 12,
    layers: int = 12,
    ff: int = 3072,
    p: float = 0.1,
) {
    input tokens: int64[B, T]
    input segments: int64[B, T]
    assert T <= ctx, "the sequence is longer than the position table"
    x = embedding(tokens, vocab, d, name=word_embeddings)
        + embedding(positions(T), ctx, d, name=position_embeddings)
        + embedding(segments, types, d, name=token_type_embeddings)
    x = x |> layernorm(eps=1e-12, name=ln) |> dropout(p)
    repeat layers as layer {
        x = (x + (x |> SelfAttention(heads, p=p, name=attention)))
            |> layernorm(eps=1e-12, name=ln_1)
        x = (x + (x |> Mlp(ff, p=p, name=mlp))) |> layernorm(eps=1e-12, name=ln_2)
    }
    output hidden = x
    output pooled = x |> select(1, 0) |> linear(d, name=pooler) |> tanh
}
