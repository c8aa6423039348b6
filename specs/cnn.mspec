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
