# Positional arguments come before keyword arguments.
model Net() {
    input image: float[B, 3, 32, 32]
    output y = image |> conv2d(kernel=3, 16)
}
