# Three independent mistakes: each is reported, once.
model MLP(hidden: int = 128, classes: int = 10) {
    input image: float[B, 1, 28, 28]
    h = image |> flatten |> linear(hidden) |> relu
    output logits = h |> linear(classes) |> log_softmax(dim=2)
}

train mlp_sgd {
    model      MLP(hidden=64)
    data       digits(batch=64, size=28)
    loss       cross_entropy(logits, labels)
    optimizer  sgd(lr=-0.1, momentum=0.9)
    epochs     10
}
