# A block's input declares a negative size.
block Mix() {
    input x: float[B, -64]
    output y = x |> linear(64)
}

model Net() {
    input x: float[B, 64]
    output y = Mix(x)
}
