# Two outputs named `y`: the second was meant to be `aux`.
model Net() {
    input x: float[B, 20]
    output y = x |> linear(10)
    output y = x |> linear(5)
}
