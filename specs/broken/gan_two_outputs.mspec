# A gan's generator must have exactly one output: `flat` was left in for debugging.
model Generator(z: int = 100) {
    input noise: float[B, z]
    h = noise |> linear(784) |> tanh
    output image = h |> reshape(B, 1, 28, 28)
    output flat = h
}

model Discriminator() {
    input image: float[B, 1, 28, 28]
    output p = image |> flatten |> linear(1) |> sigmoid
}

gan MnistGan {
    generator      Generator()
    discriminator  Discriminator()
}
