"""The T-L network (paper Fig. 3): the autoencoder plus a predictor into its code space."""

from __future__ import annotations

import torch
from torch import nn

from .autoencoder import ConvAutoencoder
from .predictor import Predictor


class TLNetwork(nn.Module):
    def __init__(self, grid_shape=(96, 96, 60), num_classes: int = 3, code_size: int = 64,
                 ae_features=(16, 32, 64), predictor_features=(32, 64, 128, 256)):
        super().__init__()
        self.autoencoder = ConvAutoencoder(grid_shape, num_classes, code_size, ae_features)
        self.predictor = Predictor(grid_shape, 1, code_size, predictor_features)

    def encode(self, onehot: torch.Tensor) -> torch.Tensor:
        return self.autoencoder.encode(onehot)

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        return self.autoencoder.decode(code)

    def predict(self, image: torch.Tensor) -> torch.Tensor:
        """HR intensity image -> code (the path ACNN-SR's prior and image-based encoding use)."""
        return self.predictor(image)

    def forward(self, onehot: torch.Tensor) -> torch.Tensor:
        return self.autoencoder(onehot)
