# The head ties its weight to `wte`, but the embedding was named `tok_emb`.
model LM(vocab: int = 1000, d: int = 64) {
    input tokens: int64[B, T]
    x = embedding(tokens, vocab, d, name=tok_emb)
    output logits = x |> linear(vocab, bias=false, tie=wte)
}
