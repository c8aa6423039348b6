# The first and the last layer are written out and the middle ones repeated,
# so `layers` must be at least 2.
model Deep(layers: int = 1) {
    input x: float[B, 64]
    x = x |> linear(64) |> relu
    repeat layers - 2 {
        x = x |> linear(64) |> relu
    }
    output y = x |> linear(10)
}
