# A block cannot contain itself; stack it with `repeat` instead.
block Layer(d: int) {
    input x: float[B, D]
    output y = x |> linear(d) |> relu |> Layer(d)
}

model Net() {
    input x: float[B, 64]
    output y = x |> Layer(64)
}
