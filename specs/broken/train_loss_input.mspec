model MLP(hidden: int = 128, classes: int = 10) {
    input image: float[B, 1, 28, 28]
    output logits = image |> flatten |> linear(hidden) |> relu |> linear(classes)
}

# The model's output is `logits`; `output` is not a name in this regime.
train mlp_sgd {
    model      MLP()
    data       digits(batch=64, size=28)
    loss       cross_entropy(output, label)
    optimizer  sgd(lr=0.05)
    epochs     10
}
