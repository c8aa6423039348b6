# `forward` is the method nn.Module calls: a submodule of that name would shadow it.
model MLP() {
    input image: float[B, 784]
    h = image |> linear(128, name=forward) |> relu
    output logits = h |> linear(10, name=head)
}
