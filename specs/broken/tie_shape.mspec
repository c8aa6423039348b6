# A tied output head must map back to the vocabulary: `linear(vocab)`, not `linear(d)`.
model LM(vocab: int = 1000, d: int = 64) {
    input tokens: int64[B, T]
    x = embedding(tokens, vocab, d, name=wte)
    output logits = x |> linear(d, bias=false, tie=wte)
}
