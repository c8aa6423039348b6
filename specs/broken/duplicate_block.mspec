# Two blocks named `Stage`: the second was meant to be `Stage2`.
block Stage(out: int) {
    input x: float[B, C, H, W]
    output y = x |> conv2d(out, kernel=3, padding=1) |> relu
}

block Stage(out: int) {
    input x: float[B, C, H, W]
    output y = x |> conv2d(out, kernel=3, padding=1) |> relu |> maxpool(2)
}

model Net() {
    input image: float[B, 3, 32, 32]
    output features = image |> Stage(16) |> Stage(32)
}
