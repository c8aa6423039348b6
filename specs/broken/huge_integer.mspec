# A vocabulary size pasted twice: 50257 followed by 50257 again with no separator.
model LM(vocab: int = 50257502575025750257502575025750257502575025750257, d: int = 768) {
    input tokens: int64[B, T]
    output logits = embedding(tokens, vocab, d) |> linear(vocab)
}
