# Token ids must be integers; `float` was copied from another input.
model LM(vocab: int = 1000, d: int = 64) {
    input tokens: float[B, T]
    output logits = embedding(tokens, vocab, d) |> linear(vocab)
}
