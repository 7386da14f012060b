"""The convolutional autoencoder shape prior (paper Table V).

One-hot HR label map ``(B, C, X, Y, Z)`` -> 64-d code (a linear layer: no
non-linearity on the code) -> label-map logits of the same shape. Batch norm
follows every convolution but the last. Strides as in Table V: (2,2,1), 2, 2,
then 3 at the bottleneck; on the default 96 x 96 x 60 grid the bottleneck is
4 x 4 x 5 = 80 units (the paper's 120 x 120 x 60: 5 x 5 x 5 = 125). Any grid
works: the decoder crops each up-sampled map to the encoder's size.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .blocks import conv_bn_relu


def _down(n: int, s: int) -> int:
    return math.ceil(n / s)


class ConvAutoencoder(nn.Module):
    STRIDES = ((2, 2, 1), (2, 2, 2), (2, 2, 2), (3, 3, 3))

    def __init__(self, grid_shape=(96, 96, 60), num_classes: int = 3, code_size: int = 64,
                 features=(16, 32, 64)):
        super().__init__()
        self.grid_shape = tuple(grid_shape)
        self.num_classes = num_classes
        self.code_size = code_size
        f1, f2, f3 = features
        self.encoder_convs = nn.Sequential(
            conv_bn_relu(num_classes, f1, 3, self.STRIDES[0]), conv_bn_relu(f1, f1),
            conv_bn_relu(f1, f2, 3, self.STRIDES[1]), conv_bn_relu(f2, f2),
            conv_bn_relu(f2, f3, 3, self.STRIDES[2]), conv_bn_relu(f3, f3),
            conv_bn_relu(f3, 1, 3, self.STRIDES[3]),
        )
        sizes = [self.grid_shape]
        for stride in self.STRIDES:
            sizes.append(tuple(_down(n, s) for n, s in zip(sizes[-1], stride)))
        self.sizes = sizes  # grid, S1, S2, S3, S4
        self.bottleneck = int(math.prod(sizes[-1]))
        self.to_code = nn.Linear(self.bottleneck, code_size)
        self.from_code = nn.Sequential(nn.Linear(code_size, self.bottleneck), nn.ReLU(inplace=True))
        self.up4 = nn.Sequential(nn.ConvTranspose3d(1, f3, 7, 3, 2, bias=False), nn.BatchNorm3d(f3), nn.ReLU(True))
        self.conv4 = conv_bn_relu(f3, f3)
        self.up3 = nn.Sequential(nn.ConvTranspose3d(f3, f2, 4, 2, 1, bias=False), nn.BatchNorm3d(f2), nn.ReLU(True))
        self.conv3 = conv_bn_relu(f2, f2)
        self.up2 = nn.Sequential(nn.ConvTranspose3d(f2, f1, 4, 2, 1, bias=False), nn.BatchNorm3d(f1), nn.ReLU(True))
        self.conv2 = conv_bn_relu(f1, f1)
        self.up1 = nn.Sequential(nn.ConvTranspose3d(f1, f1, (4, 4, 1), (2, 2, 1), (1, 1, 0), bias=False),
                                 nn.BatchNorm3d(f1), nn.ReLU(True))
        self.out = nn.Conv3d(f1, num_classes, 3, padding=1)

    def encode(self, onehot: torch.Tensor) -> torch.Tensor:
        """(B, C, X, Y, Z) probabilities or one-hot -> (B, code_size)."""
        if tuple(onehot.shape[2:]) != self.grid_shape:
            raise ValueError(f"autoencoder expects a {self.grid_shape} grid, got {tuple(onehot.shape[2:])}")
        return self.to_code(self.encoder_convs(onehot).flatten(1))

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        """(B, code_size) -> (B, C, X, Y, Z) logits."""
        h = self.from_code(code).view(-1, 1, *self.sizes[4])
        for up, conv, size in ((self.up4, self.conv4, self.sizes[3]), (self.up3, self.conv3, self.sizes[2]),
                               (self.up2, self.conv2, self.sizes[1]), (self.up1, None, self.sizes[0])):
            h = up(h)[..., : size[0], : size[1], : size[2]]
            if conv is not None:
                h = conv(h)
        return self.out(h)

    def forward(self, onehot: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(onehot))
