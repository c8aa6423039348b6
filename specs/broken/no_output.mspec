# `logits` is computed but never declared as an output.
model MLP() {
    input image: float[B, 784]
    logits = image |> linear(128) |> relu |> linear(10)
}
