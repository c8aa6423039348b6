# A model may not take the name of an op.
model linear(classes: int = 10) {
    input x: float[B, 784]
    output logits = x |> linear(classes)
}
