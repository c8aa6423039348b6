# Mistakes in two models of one file are all reported.
block Stage(out: int) {
    input x: float[B, C, H, W]
    output y = x |> conv2d(out, kernel=3, padding=1) |> batchnorm2d |> relu
}

model Small() {
    input image: float[B, 3, 32, 32]
    x = Stage(image, 32)
    output y = x |> adaptive_avgpool(1) |> flatten |> linear(32 -> 10)
    output y = x |> linear(5)
}

model Big(width: int = 64) {
    input image: float[B, 3, 32, 32]
    x = Stage(image, widht)
    output y = x |> adaptive_avgpool(1) |> flatten |> linear(10)
}
