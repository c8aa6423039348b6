# `float32x` is a typo for `float32`.
model Net() {
    input image: float32x[B, 3, 32, 32]
    output y = image |> conv2d(16, kernel=3)
}
