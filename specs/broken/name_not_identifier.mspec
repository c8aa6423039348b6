# Layer names become Python attribute names: `fc-1` is not one.
model Net() {
    input x: float[B, 20]
    output y = x |> linear(10, name="fc-1")
}
