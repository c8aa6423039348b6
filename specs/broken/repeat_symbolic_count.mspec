# The depth must be a number known before the inputs: `T` is the sequence length.
model Net() {
    input x: float[B, T, 64]
    repeat T {
        x = x |> linear(64) |> relu
    }
    output y = x
}
