"""Training-time augmentation (paper III-B): in-plane affine of input and target together,
per-slice in-plane rigid motion of the input only (the target stays still), additive noise.

Per-slice motion of the input alone teaches a sub-pixel net to undo misalignment: its HR target is the heart
as it is. Labels drawn on the acquired slices (ACDC's) move with them instead; ``motion_labels`` moves the
label slices with the input's, so that the net learns to follow a real shift between slices."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .errors import InputError
from .phantom.acquisition import draw_motion, move_slices


@dataclass
class AugmentConfig:
    enabled: bool = True
    rotation_deg: float = 10.0  # in-plane rotation, uniform in +-
    scale: float = 0.05  # in-plane isotropic scaling, uniform in 1 +- scale
    shift_mm: float = 4.0  # in-plane shift, uniform in +- per axis
    motion_mm: float = 0.0  # per-slice misalignment of the input only (3D-Seg-MAug: 3 mm)
    motion_labels: bool = False  # move the labels' slices with the input's (labels on the acquired slices, K = 1)
    noise: float = 0.02  # additive Gaussian noise on the (normalised) input

    def __post_init__(self):
        for name in ("rotation_deg", "scale", "shift_mm", "motion_mm", "noise"):
            if not getattr(self, name) >= 0:  # NaN too
                raise InputError(f"augment setting {name} must be at least 0, not {getattr(self, name)}")
        if self.scale >= 1:
            raise InputError(f"augment setting scale draws from 1 - scale to 1 + scale: below 1, not {self.scale}")
        if self.motion_labels and not self.motion_mm > 0:
            raise InputError("augment motion_labels moves the label slices with the input's per-slice motion: "
                             "give motion_mm above 0 too")

    def check_labels(self, input_shape, labels_shape) -> None:
        """Refuse labels that ``motion_labels`` cannot move with the input's slices: those off its grid."""
        if self.motion_labels and tuple(labels_shape) != tuple(input_shape):
            raise InputError(f"augment motion_labels moves label slices with the input's: labels on the input's "
                             f"grid {tuple(input_shape)}, not {tuple(labels_shape)} (a sub-pixel model's HR labels "
                             f"stay still)")


def _in_plane_affine(array: np.ndarray, spacing, rotation: float, scale: float, shift_mm, order: int):
    """Rotate/scale about the in-plane centre and shift (mm), the same for every slice."""
    s = np.asarray(spacing[:2], float)
    c = np.cos(rotation) * scale
    sn = np.sin(rotation) * scale
    forward = np.array([[c, -sn], [sn, c]])  # mm -> mm, output = forward @ (input - centre) + centre + shift
    inverse = np.linalg.inv(forward)
    center = (np.asarray(array.shape[:2]) - 1) / 2.0 * s
    m2 = np.diag(1 / s) @ inverse @ np.diag(s)
    off2 = np.diag(1 / s) @ (center - inverse @ (center + np.asarray(shift_mm)))
    matrix = np.eye(3)
    matrix[:2, :2] = m2
    offset = np.array([off2[0], off2[1], 0.0])
    return ndimage.affine_transform(array, matrix, offset, order=order, mode="nearest")


def augment(rng: np.random.Generator, config: AugmentConfig, image: np.ndarray, image_spacing,
            labels: np.ndarray | None = None, target: np.ndarray | None = None, target_spacing=None):
    """Augment one training pair; ``labels`` and/or ``target`` (an HR image) share the in-plane grid of ``image``."""
    if not config.enabled:
        return image, labels, target
    rotation = np.deg2rad(rng.uniform(-config.rotation_deg, config.rotation_deg))
    scale = 1.0 + rng.uniform(-config.scale, config.scale)
    shift = rng.uniform(-config.shift_mm, config.shift_mm, 2)
    image = _in_plane_affine(image, image_spacing, rotation, scale, shift, order=1)
    if labels is not None:
        labels = _in_plane_affine(labels, target_spacing or image_spacing, rotation, scale, shift, order=0)
    if target is not None:
        target = _in_plane_affine(target, target_spacing or image_spacing, rotation, scale, shift, order=1)
    if config.motion_mm > 0:
        motion = draw_motion(image.shape[2], rng, config.motion_mm, config.motion_mm)
        image = move_slices(image, image_spacing, motion)
        if config.motion_labels and labels is not None:
            config.check_labels(image.shape, labels.shape)
            labels = move_slices(labels, image_spacing, motion, order=0)
    if config.noise > 0:
        image = image + rng.normal(0, config.noise, image.shape).astype(np.float32)
    return image.astype(np.float32), labels, target
