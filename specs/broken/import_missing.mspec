# The standard library is imported as "std/...", not through the package path.
import "modelspec/std/transformer.mspec"

model TinyGPT(vocab: int = 1000, d: int = 64) {
    input tokens: int64[B, T]
    x = embedding(tokens, vocab, d) |> GPTBlock(4)
    output logits = x |> linear(vocab)
}
