"""The sub-pixel network of the paper's Fig. 2 (3D-Seg / ACNN-Seg, and SR / ACNN-SR).

A thick-slice LR stack goes in, an HR map on a K-times finer slice grid comes
out. Features are extracted on the LR grid over four in-plane scales (strides
(2, 2, 1)); each coarser scale is brought back to the full in-plane resolution
by a transposed convolution and joins the finest one (skip connections); a
transposed convolution of stride and kernel (2, 2, K) — computed as a 1x1x1
convolution and a shuffle of its channels, as in ESPCN — then lays the fused
features out on the HR grid; at most one narrow convolution (``hr_head``, the
default in training) works there: without it each of the (2, 2, K) sub-voxel
positions has weights of its own, and a label map shows single-voxel holes and
islands on that lattice, an SR image a chequered texture. The first scale already works
at half the in-plane resolution (as MONAI's U-Net does). Keeping the heavy
convolutions on the LR grid is what makes the model faster than a U-Net on the
up-sampled stack.

Input ``(B, in_channels, X, Y, Z)`` with X and Y divisible by :attr:`SubPixelNet.multiple` (16 with
the four default scales; ``first_stride=1`` with a fifth scale, ``features=(12, 24, 48, 96, 192)``,
keeps that depth of context and runs the first scale at the input's full resolution); output
``(B, out_channels, X, Y, K*Z)``. For SR (``residual=True``) the output adds to
the linearly up-sampled input.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import conv_bn_relu, upsample_through_plane


class SubPixelNet(nn.Module):
    def __init__(self, in_channels: int = 1, out_channels: int = 3, factor: int = 5,
                 features=(12, 24, 48, 96), skip_features: int = 12, fused_features: int = 24,
                 first_stride: int = 2, hr_head: bool = False, residual: bool = False):
        # hr_head stays False here (a bundle's config is read with these defaults); training sets it
        super().__init__()
        self.factor = factor
        self.first_stride = first_stride
        self.out_channels = out_channels
        self.residual = residual
        self.scales = nn.ModuleList()
        cin = in_channels
        for s, f in enumerate(features):
            stride = (first_stride, first_stride, 1) if s == 0 else (2, 2, 1)
            self.scales.append(nn.Sequential(conv_bn_relu(cin, f, 3, stride), conv_bn_relu(f, f, 3)))
            cin = f
        self.skips = nn.ModuleList(
            nn.Sequential(
                nn.ConvTranspose3d(f, skip_features, kernel_size=(2**s, 2**s, 1), stride=(2**s, 2**s, 1), bias=False),
                nn.BatchNorm3d(skip_features), nn.ReLU(inplace=True))
            for s, f in enumerate(features) if s > 0)
        fused_in = features[0] + skip_features * (len(features) - 1)
        self.fuse = nn.Sequential(conv_bn_relu(fused_in, fused_features, 1),
                                  conv_bn_relu(fused_features, fused_features, 3))
        # sub-pixel up-sampling: a transposed convolution whose kernel equals its stride
        # (s, s, K), computed as a 1x1x1 convolution and a shuffle of its channels
        self.up = nn.Conv3d(fused_features, out_channels * first_stride**2 * factor, 1)
        self.head = nn.Conv3d(out_channels, out_channels, 3, padding=1) if hr_head else nn.Identity()
        self.multiple = first_stride * 2 ** (len(features) - 1)  # what X and Y must be divisible by

    def shuffle(self, h: torch.Tensor) -> torch.Tensor:
        """(B, C*s*s*K, X/s, Y/s, Z) -> (B, C, X, Y, K*Z)."""
        b, _, nx, ny, nz = h.shape
        s, k, c = self.first_stride, self.factor, self.out_channels
        h = h.view(b, c, s, s, k, nx, ny, nz).permute(0, 1, 5, 2, 6, 3, 7, 4)
        return h.reshape(b, c, nx * s, ny * s, nz * k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[2] % self.multiple or x.shape[3] % self.multiple:
            raise ValueError(f"SubPixelNet needs an in-plane size divisible by {self.multiple}, "
                             f"got {tuple(x.shape[2:4])}")
        feats = []
        h = x
        for scale in self.scales:
            h = scale(h)
            feats.append(h)
        fused = torch.cat([feats[0]] + [skip(f) for skip, f in zip(self.skips, feats[1:])], dim=1)
        out = self.head(self.shuffle(self.up(self.fuse(fused))))
        if self.residual:
            out = out + upsample_through_plane(x[:, :1], self.factor)
        return out
