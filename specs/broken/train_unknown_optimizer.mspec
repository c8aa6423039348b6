model MLP(hidden: int = 128, classes: int = 10) {
    input image: float[B, 1, 28, 28]
    output logits = image |> flatten |> linear(hidden) |> relu |> linear(classes)
}

# PyTorch's class name `Adam`; the optimizer is `adam`.
train mlp_adam {
    model      MLP()
    data       digits(batch=64, size=28)
    loss       cross_entropy(logits, label)
    optimizer  Adam(lr=1e-3)
    epochs     10
}
