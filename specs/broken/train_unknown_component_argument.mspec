# Keras spells it `learning_rate`; modelspec's optimizers take `lr`.
model MLP(hidden: int = 128, classes: int = 10) {
    input image: float[B, 1, 28, 28]
    output logits = image |> flatten |> linear(hidden) |> relu |> linear(classes)
}

train mlp_adam {
    model      MLP()
    data       digits(batch=64, size=28)
    loss       cross_entropy(logits, label)
    optimizer  adam(learning_rate=1e-3)
    epochs     10
}
