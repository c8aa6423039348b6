# A mistake in each model of a gan: both are reported, and the broken pair
# adds no error of its own.
model Generator(z: int = 100) {
    input noise: float[B, z]
    output image = noise |> linear(784) |> tanh |> reshape(B, 1, 32, 32)
}

model Discriminator() {
    input image: float[B, 1, 28, 28]
    h = image |> flatten |> linear(256)
    output p = h |> leaky_relu(slope=0.2) |> linear(1) |> sigmoid
}

gan MnistGan {
    generator      Generator()
    discriminator  Discriminator()
}
