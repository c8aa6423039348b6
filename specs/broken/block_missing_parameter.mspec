# `Stage` needs its number of convolutions, and the first call leaves it out.
block Stage(out: int, convs: int) {
    input x: float[B, C, H, W]
    repeat convs {
        x = x |> conv2d(out, kernel=3, padding=1) |> relu
    }
    output y = x |> maxpool(2)
}

model Net() {
    input image: float[B, 3, 32, 32]
    x = Stage(image, 64)
    output y = x |> Stage(128, 2)
}
