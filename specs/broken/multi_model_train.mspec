# A mistake in the model and two in its train block: all three are reported.
model CNN(classes: int = 1, width: int = 32) {
    input image: float[B, 1, 28, 28]
    assert classes >= 2, "cross-entropy needs at least two classes"
    output logits = image
        |> conv2d(width, kernel=3, padding=1) |> relu |> maxpool(2)
        |> flatten |> linear(classes)
}

train cnn_adam {
    model      CNN()
    data       digits(batch=64, size=28)
    loss       cross_entropy(logits, label)
    optimizer  adam(lr=1e-3, betas=0.9)
    epochs     10
    metrics    [acuracy]
}
