# `eps` meant 1e-5; `1e400` is not a finite number.
model Net(eps: float = 1e400) {
    input x: float[B, 10]
    output y = x |> layernorm(eps=eps)
}
