# Doubling the width at each stage: `width` is a constant and cannot change
# inside `repeat`.
model Net(width: int = 64) {
    input x: float[B, 64]
    repeat 3 {
        width = width * 2
        x = x |> linear(width) |> relu
    }
    output y = x
}
