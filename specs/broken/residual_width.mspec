# The shortcut skips a layer that changes the width: 64 + 128 cannot be added.
model Net() {
    input x: float[B, 64]
    h = x |> linear(128) |> relu
    output y = x + h
}
