"""The predictor of the T-L network (paper Table IV): HR intensity image -> 64-d code.

Four scales of two 3x3x3 convolutions (stride 2 at the start of scales 2-4),
a one-channel convolution and a linear layer to the code. Batch norm after
every convolution but the last (supplementary material).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .blocks import conv_bn_relu


class Predictor(nn.Module):
    def __init__(self, grid_shape=(96, 96, 60), in_channels: int = 1, code_size: int = 64,
                 features=(32, 64, 128, 256)):
        super().__init__()
        self.grid_shape = tuple(grid_shape)
        layers, cin = [], in_channels
        size = self.grid_shape
        for s, f in enumerate(features):
            stride = 1 if s == 0 else 2
            layers += [conv_bn_relu(cin, f, 3, stride)]
            size = tuple(math.ceil(n / stride) for n in size)
            if s < len(features) - 1:
                layers += [conv_bn_relu(f, f)]
            cin = f
        layers += [nn.Conv3d(cin, 1, 3, padding=1), nn.ReLU(inplace=True)]
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Linear(int(math.prod(size)), code_size)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if tuple(image.shape[2:]) != self.grid_shape:
            raise ValueError(f"predictor expects a {self.grid_shape} grid, got {tuple(image.shape[2:])}")
        return self.fc(self.convs(image).flatten(1))
