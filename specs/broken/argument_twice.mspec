# `stride` is given twice: once edited, once left from a copied line.
model Net() {
    input image: float[B, 3, 32, 32]
    output y = image |> conv2d(16, kernel=3, stride=2, padding=1, stride=1)
}
