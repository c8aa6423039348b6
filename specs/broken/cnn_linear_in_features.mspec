# `64*6*6` counts 6×6 maps (unpadded 3×3 convolutions), but padding=1 keeps 32 → 16 → 8.
model CNN(classes: int = 10) {
    input image: float[B, 3, 32, 32]
    features = image
        |> conv2d(32, kernel=3, padding=1) |> relu |> maxpool(2)
        |> conv2d(64, kernel=3, padding=1) |> relu |> maxpool(2)
    output logits = features |> flatten |> linear(64*6*6 -> 128) |> relu |> linear(classes)
}
