# 12 heads do not divide a width of 512: the assertion in `SelfAttention` fails.
import "std/transformer.mspec"

# 12 heads do not divide a width of 512.
model Encoder(d: int = 512, heads: int = 12) {
    input tokens: int64[B, T]
    x = embedding(tokens, 1000, d)
    output y = x |> SelfAttention(heads)
}
