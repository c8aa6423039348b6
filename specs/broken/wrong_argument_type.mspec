# `bias` is a bool: `false`, not the string "no".
model Net() {
    input x: float[B, 20]
    output y = x |> linear(10, bias="no")
}
