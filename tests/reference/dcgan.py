"""DCGAN (Radford et al., 2015) as in the PyTorch DCGAN tutorial, for 16×16 images.

The tutorial's generator has four transposed convolutions for 64×64; for
16×16 it has two fewer doublings: z -> 4×4 -> 8×8 -> 16×16.
"""

from torch import nn


class Generator(nn.Module):
    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 1):
        super().__init__()
        self.main = nn.Sequential(
            # (B, nz, 1, 1) -> (B, ngf*2, 4, 4)
            nn.ConvTranspose2d(nz, ngf * 2, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            # -> (B, ngf, 8, 8)
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            # -> (B, nc, 16, 16)
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),
            nn.Tanh(),
        )

    def forward(self, input):
        return self.main(input)


class Discriminator(nn.Module):
    def __init__(self, ndf: int = 64, nc: int = 1):
        super().__init__()
        self.main = nn.Sequential(
            # (B, nc, 16, 16) -> (B, ndf, 8, 8)
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
            # -> (B, ndf*2, 4, 4)
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            # -> (B, 1, 1, 1)
            nn.Conv2d(ndf * 2, 1, 4, 1, 0, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, input):
        return self.main(input).view(-1, 1)  # (B, 1)
