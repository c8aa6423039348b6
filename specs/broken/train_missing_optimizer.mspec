# The optimizer setting was forgotten.
model MLP(hidden: int = 128, classes: int = 10) {
    input image: float[B, 1, 28, 28]
    output logits = image |> flatten |> linear(hidden) |> relu |> linear(classes)
}

train mlp {
    model      MLP()
    data       digits(batch=64, size=28)
    loss       cross_entropy(logits, label)
    epochs     10
}
