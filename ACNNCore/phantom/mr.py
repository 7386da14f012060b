"""bSSFP-cine-like intensities for a phantom ventricle.

Bright blood (LV, RV, left atrium above the base), dark myocardium with
papillary muscles in the LV blood pool (labelled blood pool, as in UK Biobank
and ACDC), patchy epicardial fat, soft tissue and lung with texture, partial
volume at every boundary, a smooth coil bias field, and Rician noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ..volume import Geometry
from .anatomy import Fields, _ellipsoid_level, _sdf


@dataclass(frozen=True)
class MRConfig:
    """Tissue intensities (blood = 1) and imperfections; set ``bias``/``noise`` to 0 to switch them off."""

    blood: float = 1.0
    myocardium: float = 0.28
    tissue: float = 0.34
    fat: float = 0.82
    lung: float = 0.05
    bias: float = 0.2  # peak relative amplitude of the multiplicative coil bias field
    noise: float = 0.03  # Rician noise sigma (relative to blood) of the HR image
    texture: float = 0.08  # relative amplitude of tissue texture


def smooth_noise(shape, rng: np.random.Generator, cells=(5, 5, 4)) -> np.ndarray:
    """Zero-mean, unit-std smooth random field of ``shape``.

    Random values on a coarse lattice of ``cells`` nodes, spread by separable
    Gaussian kernels (one small matrix product per axis: fast at any size).
    """
    field = rng.standard_normal(tuple(cells)).astype(np.float32)
    for axis, (n, c) in enumerate(zip(shape, cells)):
        x = np.linspace(0.0, c - 1.0, n, dtype=np.float32)
        weights = np.exp(-0.5 * ((x[:, None] - np.arange(c, dtype=np.float32)[None, :]) / 0.8) ** 2)
        field = np.moveaxis(np.tensordot(weights, field, axes=([1], [axis])), 0, axis)
    return (field - field.mean()) / (field.std() + 1e-6)


def partial_volume(sdf: np.ndarray, width: float) -> np.ndarray:
    """Fraction of a voxel of size ``width`` (mm) inside the surface ``sdf < 0``."""
    return np.clip(0.5 - sdf / width, 0.0, 1.0)


def rician(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of the image plus complex Gaussian noise of std ``sigma`` per channel."""
    if sigma <= 0:
        return image.astype(np.float32)
    re = image + rng.normal(0.0, sigma, image.shape).astype(np.float32)
    im = rng.normal(0.0, sigma, image.shape).astype(np.float32)
    return np.sqrt(re * re + im * im).astype(np.float32)


def render_mr(geometry: Geometry, fields: Fields, rng: np.random.Generator, config: MRConfig = MRConfig(),
              bias_field: np.ndarray | None = None) -> np.ndarray:
    """Noise-free bSSFP-like image (float32, blood about 1) of a ventricle on ``geometry``.

    ``bias_field`` (multiplicative, same shape) is drawn if not given; pass the same
    field to the ED and ES phases of one subject (the coil does not move).
    """
    s = fields.shape
    lc = fields.coords
    width = float(np.mean(geometry.spacing))
    pv = lambda d: partial_volume(d, width)  # noqa: E731
    shape3 = geometry.shape
    outer = s.radius + s.wall

    # --- background: soft tissue with texture, lungs on the lateral/posterior side ----
    image = config.tissue * (1.0 + config.texture * smooth_noise(shape3, rng, (8, 8, 5)))
    lateral = 0.5 * (1.0 - np.cos(lc.theta))  # 1 opposite the septum
    lung_edge = outer + 9.0 + 22.0 * (1.0 - lateral) + 4.0 * smooth_noise(shape3, rng, (6, 6, 4))
    f_lung = pv(lung_edge - lc.r)
    lung = config.lung * (1.0 + 2.0 * np.abs(smooth_noise(shape3, rng, (14, 14, 8))))
    image = image * (1 - f_lung) + lung * f_lung

    # --- epicardial fat: a patchy 0-4 mm layer outside the ventricle ----------------------
    fat_thickness = np.clip(0.8 + 2.2 * smooth_noise(shape3, rng, (7, 7, 6)), 0.0, 4.5)
    f_fat = pv(fields.ventricle - fat_thickness)
    image = image * (1 - f_fat) + config.fat * f_fat

    # --- right ventricle: a crescent wrapping the septum, free wall 3 mm ---------------
    length = s.long_semi_axis + s.base_height
    rv_level = ((lc.x - 0.45 * outer) / (1.05 * outer + 2.0)) ** 2 + (lc.y / (1.45 * outer)) ** 2 \
        + ((lc.w + s.base_height) / (0.8 * length)) ** 2 - 1.0
    d_rv = np.maximum(_sdf(rv_level, geometry.spacing), -(lc.w + s.base_height + 12.0))
    outside_lv = 1.0 - pv(fields.ventricle - 1.0)
    f_rv_wall = pv(d_rv - 3.0) * outside_lv
    f_rv = pv(d_rv) * outside_lv
    image = image * (1 - f_rv_wall) + config.myocardium * f_rv_wall
    image = image * (1 - f_rv) + config.blood * 0.95 * f_rv

    # --- left atrium above the base plane, behind a 2 mm annulus -------------------------
    a_la = 0.8 * s.radius
    la_center = -s.base_height - 0.6 * a_la - 3.0
    la_level = _ellipsoid_level(lc.r, lc.w - la_center, a_la, 0.9 * a_la, 2.0)
    d_la = np.maximum(_sdf(la_level, geometry.spacing), lc.w + s.base_height + 2.0)
    f_la_wall = pv(d_la - 2.0) * outside_lv
    f_la = pv(d_la) * outside_lv
    image = image * (1 - f_la_wall) + config.myocardium * f_la_wall
    image = image * (1 - f_la) + config.blood * f_la

    # --- left ventricle: myocardium, blood pool with papillary muscles --------------------
    f_lv = pv(fields.ventricle)
    image = image * (1 - f_lv) + config.myocardium * f_lv
    f_cav = pv(fields.cavity)
    c = s.long_semi_axis
    w_lo, w_hi = -s.base_height + 0.35 * length, c - 0.12 * length
    f_pap = np.zeros_like(f_cav)
    for angle in (2.2, 4.0):  # antero-lateral and postero-medial, from the septum
        angle += 0.15 * rng.standard_normal()
        rho = 0.62 * s.radius
        radius = rng.uniform(2.5, 4.0) * (1.0 + 0.3 * (s.wall > 12))
        d = np.hypot(lc.x - rho * np.cos(angle), lc.y - rho * np.sin(angle)) - radius
        d = np.maximum(d, np.maximum(w_lo - lc.w, lc.w - w_hi))
        f_pap = np.maximum(f_pap, pv(d))
    flow = 1.0 + 0.04 * smooth_noise(shape3, rng, (4, 4, 3))
    f_blood = f_cav * (1 - f_pap)
    image = image * (1 - f_blood) + config.blood * flow * f_blood

    if bias_field is None:
        bias_field = coil_bias(shape3, rng, config.bias)
    return (image * bias_field).astype(np.float32)


def coil_bias(shape, rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """Smooth multiplicative field: brighter near a surface coil on one side, in [1-a, 1+a]."""
    if amplitude <= 0:
        return np.ones(shape, np.float32)
    grids = np.meshgrid(*[np.linspace(-1, 1, n, dtype=np.float32) for n in shape], indexing="ij", sparse=True)
    direction = rng.normal(size=3)
    direction[2] *= 0.3
    direction /= np.linalg.norm(direction)
    ramp = sum(d * g for d, g in zip(direction, grids))
    field = np.tanh(ramp + 0.3 * smooth_noise(shape, rng, (3, 3, 3)))
    return (1.0 + amplitude * field).astype(np.float32)
