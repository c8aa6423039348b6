# Squaring a tensor with `**`: tensor arithmetic has `+`, `-`, `*` and `/`.
model Net() {
    input x: float[B, 20]
    output y = x ** 2
}
