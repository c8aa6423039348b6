# Strings take double quotes.
import 'std/transformer.mspec'

model Tiny() {
    input tokens: int64[B, T]
    output y = embedding(tokens, 1000, 64) |> GPTBlock(4)
}
