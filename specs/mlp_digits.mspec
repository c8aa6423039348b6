# A two-layer network on 28×28 digits: 784 -> 128 -> 10.
model MLP(hidden: int = 128, classes: int = 10) {
    input image: float[B, 1, 28, 28]
    output logits = image
        |> flatten
        |> linear(hidden, name=fc1)
        |> relu
        |> linear(classes, name=fc2)
}

# scikit-learn's 8×8 digits, resized to 28×28, trained with SGD and momentum.
train mlp_sgd {
    model      MLP()
    data       digits(batch=64, split=0.8, shuffle=true, size=28)
    loss       cross_entropy(logits, label)
    optimizer  sgd(lr=0.05, momentum=0.9)
    epochs     10
    metrics    [accuracy]
}
