# Trying another optimizer by adding a line instead of changing one.
model MLP(hidden: int = 128, classes: int = 10) {
    input image: float[B, 1, 28, 28]
    output logits = image |> flatten |> linear(hidden) |> relu |> linear(classes)
}

train mlp_sgd {
    model      MLP()
    data       digits(batch=64, size=28)
    loss       cross_entropy(logits, label)
    optimizer  sgd(lr=0.05)
    epochs     10
    optimizer  adam(lr=1e-3)
}
