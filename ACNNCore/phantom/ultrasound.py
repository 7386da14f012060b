"""3-D echocardiography-like rendering of a phantom ventricle (the paper's US experiment).

An apical probe (beyond the apex, looking along the long axis) sees a conical
sector: dark blood, bright speckled myocardium, a specular epicardial border,
patches of signal drop-out and shadowed sectors (ribs), depth attenuation and
log compression. Isotropic 1 mm voxels; the label map holds the LV cavity only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..volume import Geometry
from .anatomy import Fields
from .mr import partial_volume, smooth_noise


@dataclass(frozen=True)
class USConfig:
    blood: float = 0.02
    myocardium: float = 0.7
    tissue: float = 0.35
    sector_half_angle_deg: float = 40.0
    speckle: bool = True
    dropout: float = 0.35  # fraction of the myocardium in drop-out patches (about); 0 = off
    shadows: int = 2  # number of shadowed sectors
    noise: float = 0.02


def render_us(geometry: Geometry, fields: Fields, rng: np.random.Generator, config: USConfig = USConfig()):
    """(image float32 in [0, 1], probe position LPS mm) for one phase."""
    s = fields.shape
    lc = fields.coords
    shape3 = geometry.shape
    pv = lambda d: partial_volume(d, float(np.mean(geometry.spacing)))  # noqa: E731

    f_lv, f_cav = pv(fields.ventricle), pv(fields.cavity)
    echo = config.tissue * (1.0 + 0.25 * smooth_noise(shape3, rng, (8, 8, 8)))
    echo = echo * (1 - f_lv) + config.myocardium * (1.0 + 0.15 * smooth_noise(shape3, rng, (10, 10, 10))) * f_lv
    echo = echo * (1 - f_cav) + config.blood * f_cav
    border = np.exp(-0.5 * (fields.ventricle / 1.2) ** 2)  # specular epicardium / pericardium
    echo = np.maximum(echo, 0.9 * border)

    if config.dropout > 0:  # patches where the wall runs along the beam and echoes are lost
        patches = smooth_noise(shape3, rng, (6, 6, 6))
        threshold = np.quantile(patches, 1 - config.dropout)
        loss = np.clip((patches - threshold) / 0.3, 0, 1)
        echo = echo * (1 - 0.85 * loss)

    # probe geometry: beyond the apex on the long axis, looking towards the base
    apex_w = s.long_semi_axis + s.wall * s.apex_wall_ratio
    depth_axis = lc.w - (apex_w + 14.0)  # < 0 in front of the probe
    depth = -depth_axis
    lateral = lc.r
    polar = np.arctan2(lateral, np.maximum(depth, 1e-3))
    azimuth = lc.theta
    in_sector = (depth > 0) & (polar < np.deg2rad(config.sector_half_angle_deg))
    gain = np.where(in_sector, np.exp(-np.maximum(depth, 0) / 250.0), 0.0)
    for _ in range(config.shadows):
        center = rng.uniform(-np.pi, np.pi)
        half = np.deg2rad(rng.uniform(8, 16))
        d_az = np.abs(np.angle(np.exp(1j * (azimuth - center))))
        shadow = (d_az < half) & (polar > np.deg2rad(12)) & (depth > 25)
        gain = np.where(shadow, gain * 0.12, gain)
    echo = echo * gain

    if config.speckle:  # fully developed speckle: magnitude of smoothed complex Gaussian
        re = ndimage.gaussian_filter(rng.standard_normal(shape3).astype(np.float32), (1.2, 1.2, 0.6))
        im = ndimage.gaussian_filter(rng.standard_normal(shape3).astype(np.float32), (1.2, 1.2, 0.6))
        speckle = np.sqrt(re * re + im * im)
        echo = echo * speckle / speckle.mean()
    echo = echo + config.noise * np.abs(rng.standard_normal(shape3)).astype(np.float32) * in_sector
    image = np.log1p(30.0 * np.clip(echo, 0, None)) / np.log1p(30.0)
    probe = np.asarray(s.frame.center) + np.asarray(s.frame.long_axis) * (apex_w + 14.0)
    return np.clip(image, 0, 1).astype(np.float32), probe
