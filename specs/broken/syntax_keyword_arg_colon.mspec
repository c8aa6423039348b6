# A Python habit: `kernel: 3` instead of `kernel=3`.
model Net {
    input image: float[B, 3, 32, 32]
    output y = image |> conv2d(16, kernel: 3) |> relu
}
