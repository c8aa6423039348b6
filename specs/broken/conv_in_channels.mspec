# The input is a grey image (1 channel); `3 -> 16` was copied from an RGB model.
model Net() {
    input image: float[B, 1, 28, 28]
    output y = image |> conv2d(3 -> 16, kernel=3) |> relu
}
