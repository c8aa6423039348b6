# `h = relu` stores the layer, not its result: it should be `h = x |> relu`.
model Net() {
    input x: float[B, 20]
    h = relu
    output y = x |> linear(10)
}
