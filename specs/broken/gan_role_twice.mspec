# A copy-paste slip: the second role should be `discriminator`.
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
    generator      Discriminator()
}
