# The image was flattened before the convolution that needs its 2-d layout.
model Net() {
    input image: float[B, 3, 32, 32]
    x = image |> flatten
    output y = x |> conv2d(16, kernel=3)
}
