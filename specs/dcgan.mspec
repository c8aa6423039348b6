# A DCGAN pair for 16×16 grey images (the digits, resized).

# noise [B, z, 1, 1] -> image [B, 1, 16, 16] in [-1, 1]
model Generator(z: int = 100, width: int = 64) {
    input noise: float[B, z, 1, 1]
    output image = noise
        |> conv_transpose2d(2 * width, kernel=4, stride=1, padding=0, bias=false)
        |> batchnorm2d
        |> relu
        |> conv_transpose2d(width, kernel=4, stride=2, padding=1, bias=false)
        |> batchnorm2d
        |> relu
        |> conv_transpose2d(1, kernel=4, stride=2, padding=1, bias=false)
        |> tanh
}

# image [B, 1, 16, 16] -> probability that it is real, [B, 1]
model Discriminator(width: int = 64) {
    input image: float[B, 1, 16, 16]
    output p = image
        |> conv2d(width, kernel=4, stride=2, padding=1, bias=false)
        |> leaky_relu(0.2)
        |> conv2d(2 * width, kernel=4, stride=2, padding=1, bias=false)
        |> batchnorm2d
        |> leaky_relu(0.2)
        |> conv2d(1, kernel=4, stride=1, padding=0, bias=false)
        |> flatten
        |> sigmoid
}

gan DCGAN {
    generator      Generator()
    discriminator  Discriminator()
}

train dcgan_digits {
    model      DCGAN
    data       digits(batch=128, size=16, scale=signed)
    loss       bce
    optimizer  generator: adam(lr=2e-4, betas=(0.5, 0.999)),
               discriminator: adam(lr=2e-4, betas=(0.5, 0.999))
    epochs     20
    samples    grid(8, 8, every=1)
}
