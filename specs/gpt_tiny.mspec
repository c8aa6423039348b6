# A tiny character-level GPT: GPT-2's layout (pre-norm blocks, learned
# positions, an output head tied to the token embedding) at toy sizes, small
# enough to train on a CPU in minutes.
import "std/transformer.mspec"

model GPTTiny(
    vocab: int = 96,
    ctx: int = 64,
    d: int = 96,
    heads: int = 4,
    layers: int = 3,
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

# Next-character prediction on the source of Python's `json` package, read from
# the running interpreter's standard library (`stdlib:json`): no text file to
# ship or download. Its characters (94 of them) fit the vocabulary of 96.
train stdlib_chars {
    model       GPTTiny()
    data        text(path="stdlib:json", tokenizer=char, block=64, batch=16)
    loss        cross_entropy(logits, target)
    optimizer   adamw(lr=1e-3, weight_decay=0.1, no_decay=[bias, norm])
    schedule    cosine(warmup=50)
    steps       1500
    clip_grad   1.0
    metrics     perplexity
    evaluate    every(steps=250)
    checkpoint  every(steps=250)
    keep        2
    seed        0
}
