# Saved as Latin-1 by an old editor: the µ below is one byte, 0xb5.
model Net(lr_note: str = "step µs") {
    input x: float[B, 10]
    output y = x |> linear(10)
}
