# `heads = 0` was meant to turn attention off, but the head width divides by it.
model Attention(d: int = 64, heads: int = 0) {
    input x: float[B, T, 64]
    output y = x |> linear(d // heads)
}
