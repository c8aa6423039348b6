# `hidden` counts units, so its default must be an int (0.5 was meant for dropout).
model MLP(hidden: int = 0.5, classes: int = 10) {
    input x: float[B, 784]
    output logits = x |> linear(hidden) |> relu |> linear(classes)
}
