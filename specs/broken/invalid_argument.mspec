# Dropout takes a probability below 1, not a percentage-like 1.5.
model Net() {
    input x: float[B, 20]
    output y = x |> linear(10) |> dropout(1.5)
}
