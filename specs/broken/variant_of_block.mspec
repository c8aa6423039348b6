# A variant (`model X = Y(...)`) is based on a model, and `Stage` is a block.
block Stage(out: int) {
    input x: float[B, C, H, W]
    output y = x |> conv2d(out, kernel=3, padding=1) |> relu
}

model Wide = Stage(out=128)
