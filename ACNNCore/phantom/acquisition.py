"""The paper's MR acquisition model: HR volume -> thick-slice LR stack.

1. Gaussian blur through-plane (sigma = 4 mm: the slice profile),
2. decimation by K (= 5: 2 mm -> 10 mm slices), slice ``k`` centred on HR
   slices ``K*k .. K*k+K-1``,
3. per-slice in-plane rigid motion (respiratory misalignment between
   breath-holds: each slice is shifted and rotated about the slice centre),
4. Rician noise.

Each step can be switched off (sigma 0, K 1, motion 0, noise 0). The HR target
never moves. Since the motion is in-plane and the blur through-plane, moving the
thick slice is the same as moving the anatomy before blurring.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..volume import Geometry
from .mr import rician


@dataclass(frozen=True)
class AcquisitionConfig:
    factor: int = 5  # K: HR slices per LR slice
    blur_sigma_mm: float = 4.0  # through-plane Gaussian slice profile; 0 = off
    motion_mm: float = 0.0  # largest per-slice in-plane translation; 0 = no motion
    rotation_deg: float | None = None  # largest per-slice rotation; default: 1 degree per mm of motion
    noise: float = 0.03  # Rician sigma (blood = 1); 0 = off

    @property
    def max_rotation_deg(self) -> float:
        return self.motion_mm * 1.0 if self.rotation_deg is None else self.rotation_deg


def lr_geometry(hr: Geometry, factor: int) -> Geometry:
    """Geometry of the LR stack acquired from ``hr`` with K = ``factor`` (same in-plane grid)."""
    if hr.shape[2] % factor:
        raise ValueError(f"HR slices ({hr.shape[2]}) must be a multiple of K = {factor}")
    first = hr.index_to_physical((0.0, 0.0, (factor - 1) / 2.0))
    return Geometry((hr.shape[0], hr.shape[1], hr.shape[2] // factor),
                    (hr.spacing[0], hr.spacing[1], hr.spacing[2] * factor), tuple(first), hr.direction)


def blur_through_plane(array: np.ndarray, spacing_mm: float, sigma_mm: float) -> np.ndarray:
    if sigma_mm <= 0:
        return array.astype(np.float32)
    return ndimage.gaussian_filter1d(array.astype(np.float32), sigma_mm / spacing_mm, axis=2, mode="nearest")


def decimate(array: np.ndarray, factor: int) -> np.ndarray:
    """Sample slice centres K*k + (K-1)/2 (linear interpolation between two HR slices when K is even)."""
    n = array.shape[2] // factor
    centers = factor * np.arange(n) + (factor - 1) / 2.0
    lo = np.floor(centers).astype(int)
    frac = (centers - lo).astype(np.float32)
    hi = np.minimum(lo + 1, array.shape[2] - 1)
    return array[:, :, lo] * (1 - frac) + array[:, :, hi] * frac


def draw_motion(n_slices: int, rng: np.random.Generator, translation_mm: float, rotation_deg: float) -> np.ndarray:
    """Per-slice (tx mm, ty mm, rotation deg): uniform direction, magnitude up to the amplitudes."""
    motion = np.zeros((n_slices, 3))
    if translation_mm > 0:
        angle = rng.uniform(0, 2 * np.pi, n_slices)
        magnitude = rng.uniform(0, translation_mm, n_slices)
        motion[:, 0], motion[:, 1] = magnitude * np.cos(angle), magnitude * np.sin(angle)
    if rotation_deg > 0:
        motion[:, 2] = rng.uniform(-rotation_deg, rotation_deg, n_slices)
    return motion


def move_slices(array: np.ndarray, spacing, motion: np.ndarray, order: int = 1) -> np.ndarray:
    """Shift slice k of ``array`` by (tx, ty) mm and rotate it by ``rot`` degrees about its centre.

    A feature at in-plane position ``p`` (mm) ends up at ``R (p - c) + c + t``. ``order`` 1: linear
    interpolation of an image (float32 out); 0: nearest neighbour, for a label map (its dtype kept).
    """
    out = np.empty_like(array, dtype=array.dtype if order == 0 else np.float32)
    s = np.diag(spacing[:2]).astype(float)
    s_inv = np.linalg.inv(s)
    center = (np.asarray(array.shape[:2]) - 1) / 2.0 * np.asarray(spacing[:2])
    for k in range(array.shape[2]):
        tx, ty, rot = motion[k]
        if tx == 0 and ty == 0 and rot == 0:
            out[:, :, k] = array[:, :, k]
            continue
        a = np.deg2rad(rot)
        r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        matrix = s_inv @ r.T @ s  # output index -> input index
        offset = s_inv @ (center - r.T @ (center + np.array([tx, ty])))
        out[:, :, k] = ndimage.affine_transform(array[:, :, k], matrix, offset, order=order, mode="nearest")
    return out


def acquire(hr_clean: np.ndarray, hr: Geometry, config: AcquisitionConfig, rng: np.random.Generator,
            motion: np.ndarray | None = None) -> tuple[np.ndarray, Geometry, np.ndarray]:
    """LR stack (float32), its geometry and the per-slice motion used.

    Pass ``motion`` to reuse one subject's slice misalignment for all its phases
    (each slice of a cine is acquired in one breath-hold).
    """
    geometry = lr_geometry(hr, config.factor)
    blurred = blur_through_plane(hr_clean, hr.spacing[2], config.blur_sigma_mm)
    lr = decimate(blurred, config.factor)
    if motion is None:
        motion = draw_motion(geometry.shape[2], rng, config.motion_mm, config.max_rotation_deg)
    lr = move_slices(lr, geometry.spacing, motion)
    return rician(lr, config.noise, rng), geometry, motion
