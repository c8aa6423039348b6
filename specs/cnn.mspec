# Two conv + relu + maxpool stages on 3×32×32 images, then 128, then 10.
model CNN(classes: int = 10) {
    input image: float[B, 3, 32, 32]
    features = image
        |> conv2d(32, kernel=3, padding=1, name=conv1)
        |> relu
        |> maxpool(2)
        |> conv2d(64, kernel=3, padding=1, name=conv2)
        |> relu
        |> maxpool(2)
    output logits = features
        |> flatten
        |> linear(128, name=fc1)
        |> relu
        |> linear(classes, name=fc2)
}

# scikit-learn's 8×8 digits (bundled: no download), resized to 32×32 and
# repeated into the 3 channels the CNN takes; about 97% validation accuracy.
train cnn_digits {
    model      CNN()
    data       digits(batch=64, split=0.8, shuffle=true, size=32, channels=3)
    loss       cross_entropy(logits, label)
    optimizer  adam(lr=1e-3)
    epochs     5
    metrics    [accuracy]
}
