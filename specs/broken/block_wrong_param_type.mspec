# A width declared as a float is passed to a block that counts channels in ints.
block Stage(out: int) {
    input x: float[B, C, H, W]
    output y = x |> conv2d(out, kernel=3, padding=1) |> relu
}

model Net(width: float = 32.0) {
    input image: float[B, 3, 32, 32]
    output y = image |> Stage(width)
}
