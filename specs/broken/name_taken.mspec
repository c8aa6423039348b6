# Two layers are both named `fc`.
model Net() {
    input x: float[B, 20]
    h = x |> linear(64, name=fc) |> relu
    output y = h |> linear(10, name=fc)
}
