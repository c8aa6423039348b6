# `conv2d` needs its kernel size.
model Net() {
    input image: float[B, 3, 32, 32]
    output y = image |> conv2d(16) |> relu
}
