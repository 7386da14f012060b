"""Every network of the paper, one file each, built by name from a JSON-able config."""

from __future__ import annotations

import torch
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


# oneDNN's fast layout for 3-D convolutions; on the CPU it computes the same numbers faster (inference of the
# sub-pixel net about 1.6x, an ACNN-Seg training step about 1.5x: `benchmarks/models.py`). CUDA keeps
# PyTorch's default.
LAYOUT = torch.channels_last_3d


def pick_device(device: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else CPU; ``cuda`` without a GPU is an error (inference and training)."""
    from ..errors import InputError

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("no CUDA device available; use --device cpu (or auto)")
    if device not in ("cpu", "cuda"):
        raise InputError(f"unknown device {device!r}; use auto, cpu or cuda")
    return torch.device(device)


def _cpu(device) -> bool:
    return torch.device(device).type == "cpu"


def in_layout(module: nn.Module, device) -> nn.Module:
    """A 3-D network on the CPU put in :data:`LAYOUT`, in place. 2-D networks (the 2D-FCN baseline: PyTorch
    refuses a 3-D layout for 4-D weights) and other devices keep the default layout."""
    if _cpu(device) and all(p.dim() != 4 for p in module.parameters()):
        module.to(memory_format=LAYOUT)
    return module


def to_device(t: torch.Tensor, device) -> torch.Tensor:
    """A tensor moved to ``device``; a 5-D one on the CPU in :data:`LAYOUT`."""
    return t.to(device, memory_format=LAYOUT) if t.dim() == 5 and _cpu(device) else t.to(device)


def build_network(architecture: str, **config) -> nn.Module:
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; known: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[architecture](**config)


__all__ = ["ARCHITECTURES", "LAYOUT", "build_network", "count_parameters", "in_layout", "pick_device", "to_device",
           "ConvAutoencoder", "Predictor", "SubPixelNet", "TLNetwork", "FCN2D", "UNet3D", "SRCNN"]
