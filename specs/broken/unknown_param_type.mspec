# Parameter types are spelled `int`, `float`, `bool`, `str`, `tuple`, `list`.
model Net(width: integer = 64) {
    input x: float[B, 20]
    output y = x |> linear(width)
}
