# Each iteration of the repeat is a module whose only input is `h` ([B, 16]): it cannot read `T` off it.
model Net() {
    input tokens: int[B, T]
    input features: float[B, 16]
    h = features
    repeat 2 {
        p = positions(T)
        h = h |> linear(16) |> relu
    }
    output y = h
}
