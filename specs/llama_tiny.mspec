# A tiny character-level LLaMA (Touvron et al., 2023) at toy sizes: pre-norm
# blocks with RMSNorm, rotary positions on queries and keys (no position
# table), no biases, and the SwiGLU feed-forward of the `swiglu` plugin;
# trained with the Lion optimizer of the `lion` plugin. Parameter names follow
# Meta's checkpoints (`layers.0.attention.wq.weight`, `layers.0.feed_forward.w1.weight`).
use "swiglu"
use "lion"

# Causal self-attention with rotary positions: [B, T, D] -> [B, T, D].
block RotaryAttention(heads: int, base: float = 10000.0) {
    input x: float[B, T, D]
    assert D % heads == 0, "the width must divide evenly into heads"
    q = x |> linear(D, bias=false, name=wq) |> split_heads(heads) |> rotary(base=base)
    k = x |> linear(D, bias=false, name=wk) |> split_heads(heads) |> rotary(base=base)
    v = x |> linear(D, bias=false, name=wv) |> split_heads(heads)
    y = attention(q, k, v, causal=true) |> merge_heads
    output out = y |> linear(D, bias=false, name=wo)
}

model LlamaTiny(
    vocab: int = 96,
    ctx: int = 64,
    d: int = 96,
    heads: int = 4,
    n_layers: int = 3,
    multiple_of: int = 32,
    eps: float = 1e-5,
) {
    input tokens: int64[B, T]
    assert T <= ctx, "the sequence is longer than the context"
    # LLaMA's feed-forward width: 2/3 of 4*d, rounded up to a multiple of `multiple_of`.
    hidden = multiple_of * ((8 * d // 3 + multiple_of - 1) // multiple_of)
    x = embedding(tokens, vocab, d, init=normal(0.02), name=tok_embeddings)
    repeat n_layers as layers {
        x = x
            + (x |> rmsnorm(eps=eps, name=attention_norm) |> RotaryAttention(heads, name=attention))
        x = x + (x |> rmsnorm(eps=eps, name=ffn_norm) |> swiglu(hidden, name=feed_forward))
    }
    output logits = x
        |> rmsnorm(eps=eps, name=norm)
        |> linear(vocab, bias=false, init=normal(0.02), name=output)
}

# Next-character prediction on the source of Python's `json` package, as
# specs/gpt_tiny.mspec does, with Lion. The paper advises a rate 3-10x smaller
# than AdamW's; at this size a short run learned faster with AdamW's own rate
# (loss 2.2 after 150 steps at lr=1e-3, 2.8 at lr=3e-4), and the decay per step
# (lr * weight_decay) equals gpt_tiny's.
train llama_chars {
    model      LlamaTiny()
    data       text(path="stdlib:json", tokenizer=char, block=64, batch=16)
    loss       cross_entropy(logits, target)
    optimizer  lion(lr=1e-3, weight_decay=0.1, no_decay=[norm])
    schedule   cosine(warmup=50)
    steps      1500
    clip_grad  1.0
    metrics    perplexity
    evaluate   every(steps=250)
    seed       0
}
