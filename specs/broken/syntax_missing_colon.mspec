# An input's name and type are separated by `:`.
model MLP() {
    input image float[B, 784]
    output logits = image |> linear(10)
}
