# A block called without `name=` is named after the block in lower case: `Forward` gives `forward`.
block Forward(d: int) {
    input x: float[B, D]
    output y = x |> linear(d) |> relu
}

model MLP() {
    input image: float[B, 784]
    output logits = image |> Forward(128) |> Forward(10)
}
