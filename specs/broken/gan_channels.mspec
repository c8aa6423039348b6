# The generator makes grey 16×16 images, but the discriminator was copied
# from a colour (RGB) model and expects 3 channels.
model Generator(z: int = 100, width: int = 64) {
    input noise: float[B, z, 1, 1]
    output image = noise
        |> conv_transpose2d(2 * width, kernel=4, stride=1, padding=0, bias=false) |> batchnorm2d |> relu
        |> conv_transpose2d(width, kernel=4, stride=2, padding=1, bias=false) |> batchnorm2d |> relu
        |> conv_transpose2d(1, kernel=4, stride=2, padding=1, bias=false) |> tanh
}

model Discriminator(width: int = 64) {
    input image: float[B, 3, 16, 16]
    output p = image
        |> conv2d(width, kernel=4, stride=2, padding=1, bias=false) |> leaky_relu(0.2)
        |> conv2d(2 * width, kernel=4, stride=2, padding=1, bias=false) |> batchnorm2d |> leaky_relu(0.2)
        |> conv2d(1, kernel=4, stride=1, padding=0, bias=false) |> flatten |> sigmoid
}

gan DCGAN {
    generator      Generator()
    discriminator  Discriminator()
}
