"""The PyTorch quickstart's fully connected classifier: 784 -> hidden -> classes."""

from torch import nn


class NeuralNetwork(nn.Module):
    def __init__(self, in_features: int = 28 * 28, hidden: int = 128, num_classes: int = 10):
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear_relu_stack = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        x = self.flatten(x)  # (B, 784)
        return self.linear_relu_stack(x)  # (B, classes)
