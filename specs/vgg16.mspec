# VGG-16 (Simonyan & Zisserman, 2014) for 1000 classes on 3×224×224 images.

# `convs` 3×3 convolutions with ReLU, then a 2×2 max-pool.
block ConvStage(channels: int, convs: int) {
    input x: float[B, C, H, W]
    repeat convs as conv {
        x = x |> conv2d(channels, kernel=3, padding=1) |> relu
    }
    output y = x |> maxpool(2)
}

model VGG16(classes: int = 1000, p: float = 0.5) {
    input image: float[B, 3, 224, 224]
    features = image
        |> ConvStage(64, 2)
        |> ConvStage(128, 2)
        |> ConvStage(256, 3)
        |> ConvStage(512, 3)
        |> ConvStage(512, 3)
    output logits = features
        |> adaptive_avgpool(7)
        |> flatten
        |> linear(4096, name=fc1)
        |> relu
        |> dropout(p)
        |> linear(4096, name=fc2)
        |> relu
        |> dropout(p)
        |> linear(classes, name=fc3)
}
