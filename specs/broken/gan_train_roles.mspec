model Generator(z: int = 100) {
    input noise: float[B, z]
    output image = noise |> linear(256) |> relu |> linear(784) |> tanh |> reshape(B, 1, 28, 28)
}

model Discriminator() {
    input image: float[B, 1, 28, 28]
    output p = image |> flatten |> linear(256) |> leaky_relu(0.2) |> linear(1) |> sigmoid
}

gan MnistGan {
    generator      Generator()
    discriminator  Discriminator()
}

# Per-role optimizers are named by role: `discriminator`, not `disc`.
train mnist_gan {
    model      MnistGan
    data       digits(batch=128, size=28)
    loss       bce
    optimizer  generator: adam(lr=2e-4), disc: adam(lr=2e-4)
    epochs     20
}
