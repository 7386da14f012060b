"""Every network of the paper, one file each, built by name from a JSON-able config."""

from __future__ import annotations

from torch import nn

from .autoencoder import ConvAutoencoder
from .baselines import FCN2D, SRCNN, UNet3D
from .blocks import count_parameters
from .predictor import Predictor
from .subpixel import SubPixelNet
from .tl import TLNetwork

ARCHITECTURES = {
    "SubPixelNet": SubPixelNet,
    "ConvAutoencoder": ConvAutoencoder,
    "Predictor": Predictor,
    "TLNetwork": TLNetwork,
    "FCN2D": FCN2D,
    "UNet3D": UNet3D,
    "SRCNN": SRCNN,
}


def build_network(architecture: str, **config) -> nn.Module:
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; known: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[architecture](**config)


__all__ = ["ARCHITECTURES", "build_network", "count_parameters", "ConvAutoencoder", "Predictor", "SubPixelNet",
           "TLNetwork", "FCN2D", "UNet3D", "SRCNN"]
