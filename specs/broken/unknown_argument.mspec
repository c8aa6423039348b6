# PyTorch's keyword is `kernel_size`; modelspec's is `kernel`.
model Net() {
    input image: float[B, 3, 32, 32]
    output y = image |> conv2d(16, kernel_size=3) |> relu
}
