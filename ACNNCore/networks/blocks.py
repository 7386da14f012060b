"""Small building blocks shared by the networks."""

from __future__ import annotations

import torch
from torch import nn


def conv_bn_relu(cin: int, cout: int, kernel=3, stride=1, dims: int = 3) -> nn.Sequential:
    """Conv (same padding) -> batch norm -> ReLU."""
    conv, bn = (nn.Conv3d, nn.BatchNorm3d) if dims == 3 else (nn.Conv2d, nn.BatchNorm2d)
    kernel = (kernel,) * dims if isinstance(kernel, int) else tuple(kernel)
    padding = tuple(k // 2 for k in kernel)
    return nn.Sequential(conv(cin, cout, kernel, stride, padding, bias=False), bn(cout), nn.ReLU(inplace=True))


def upsample_through_plane(x: torch.Tensor, factor: int, mode: str = "trilinear") -> torch.Tensor:
    """(B, C, X, Y, Z) -> (B, C, X, Y, K*Z): HR slice K*k + (K-1)/2 lands on LR slice k."""
    if factor == 1:
        return x
    if mode == "nearest":
        return torch.repeat_interleave(x, factor, dim=4)
    return nn.functional.interpolate(x, scale_factor=(1, 1, factor), mode="trilinear", align_corners=False)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
