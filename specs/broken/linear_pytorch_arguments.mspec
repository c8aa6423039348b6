# PyTorch's `nn.Linear(784, 128)` habit: modelspec writes `linear(784 -> 128)`
# or just `linear(128)`.
model MLP() {
    input image: float[B, 1, 28, 28]
    h = image |> flatten
    output logits = linear(h, 784, 128) |> relu |> linear(10)
}
