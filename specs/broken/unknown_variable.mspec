# `hidden` is the name of the binding; `hiden` is a typo.
model MLP() {
    input image: float[B, 1, 28, 28]
    hidden = image |> flatten |> linear(128) |> relu
    output logits = hiden |> linear(10)
}
