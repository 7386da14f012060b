"""The paper's baselines: 2D-FCN slice by slice, 3D-UNet on the up-sampled stack, SR-CNN.

3D-Seg-MAug is :class:`~ACNNCore.networks.subpixel.SubPixelNet` trained with
motion augmentation, and AE-Seg the 3D-UNet's label map re-drawn by the autoencoder (its code decoded:
``ACNNCore.benchmark``); linear and B-spline SR are interpolations (``ACNNCore.inference``).
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import conv_bn_relu, upsample_through_plane


class FCN2D(nn.Module):
    """Segment each LR slice with a 2-D U-Net (MONAI), then up-sample the logits through-plane.

    ``context`` > 0 (not the paper's baseline; "2.5-D"): each slice is segmented seeing the ``context`` slices
    on either side of it as further input channels (the stack's end slices repeated beyond its ends)."""

    def __init__(self, in_channels: int = 1, out_channels: int = 3, factor: int = 5,
                 channels=(28, 56, 112, 224), num_res_units: int = 1, context: int = 0):
        from monai.networks.nets import UNet  # here, not at the top: importing MONAI takes seconds

        super().__init__()
        self.factor = factor
        self.context = context
        self.net = UNet(2, in_channels * (2 * context + 1), out_channels, channels,
                        strides=(2,) * (len(channels) - 1), num_res_units=num_res_units)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.context:  # (B, C, X, Y, Z) -> (B, C * (2 context + 1), X, Y, Z): slices z - context ... z + context
            n, z = self.context, x.shape[4]
            padded = nn.functional.pad(x, (n, n, 0, 0, 0, 0), mode="replicate")
            x = torch.cat([padded[..., i:i + z] for i in range(2 * n + 1)], dim=1)
        b, c, nx, ny, nz = x.shape
        slices = x.permute(0, 4, 1, 2, 3).reshape(b * nz, c, nx, ny)
        logits = self.net(slices)
        logits = logits.reshape(b, nz, -1, nx, ny).permute(0, 2, 3, 4, 1)
        return upsample_through_plane(logits, self.factor)


class UNet3D(nn.Module):
    """MONAI's 3-D U-Net on the linearly up-sampled stack (the paper's 3D-UNet baseline)."""

    def __init__(self, in_channels: int = 1, out_channels: int = 3, factor: int = 5,
                 channels=(16, 32, 64, 128), strides=((2, 2, 2), (2, 2, 2), (2, 2, 1)), num_res_units: int = 1):
        from monai.networks.nets import UNet

        super().__init__()
        self.factor = factor
        self.net = UNet(3, in_channels, out_channels, channels, strides=strides, num_res_units=num_res_units)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(upsample_through_plane(x, self.factor))


class SRCNN(nn.Module):
    """SR-CNN with early up-sampling: interpolate to HR, then convolutions (residual)."""

    def __init__(self, in_channels: int = 1, factor: int = 5, features=(32, 16)):
        super().__init__()
        self.factor = factor
        layers, cin = [], in_channels
        for f in features:
            layers.append(conv_bn_relu(cin, f, 3))
            cin = f
        layers.append(nn.Conv3d(cin, 1, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = upsample_through_plane(x, self.factor)
        return up[:, :1] + self.net(up)

