# PyTorch spells it `Conv2d`; modelspec's op is `conv2d`.
model Net() {
    input image: float[B, 3, 32, 32]
    output y = image |> Conv2d(16, kernel=3) |> relu
}
