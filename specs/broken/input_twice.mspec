# Two inputs with the same name: the second was meant to be a mask.
model Net() {
    input x: float[B, 20]
    input x: float[B, 10]
    output y = x |> linear(10)
}
