"""A population of left ventricles: parameters, and their shapes on a voxel grid.

Each ventricle is a truncated shell between two nested surfaces of the form

    (r / A(theta, w))**2 + |w / C|**p = 1        (w: long-axis coordinate)

in a local frame whose ``w`` axis runs from the base towards the apex and whose
``theta = 0`` points at the septum (towards the right ventricle). ``A`` is the
short-axis radius (with eccentricity, low-order lobes and, for the endocardium,
trabeculation-like roughness), ``C`` the long semi-axis and ``p`` the apex
exponent (``p < 2`` a pointed, ``p > 2`` a bullet-shaped apex). A plane at
``w = -h`` (above the equator) is the base. The epicardium is the endocardium
grown by a wall thickness that varies over the heart: septal hypertrophy in
HCM, regional thinning in some DCM hearts, a thinner apex in all.

Sizes come from the group's physiological ranges (:data:`RANGES`): a subject
draws target LVEDV, myocardial mass and EF, the geometry is solved from them
analytically, and the rendered label maps are measured; a subject whose
measured values leave the ranges is drawn again (rare).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np

from ..labels import LV_BLOOD_POOL, LV_MYOCARDIUM, MYOCARDIUM_DENSITY_G_PER_ML
from ..metrics import clinical_measures
from ..volume import Geometry, Volume

GROUPS = ("NOR", "DCM", "HCM")


@dataclass(frozen=True)
class GroupRanges:
    """Physiological ranges of a group (measured on the rendered ED/ES label maps)."""

    edv_ml: tuple[float, float]
    mass_g: tuple[float, float]
    ef_pct: tuple[float, float]
    sphericity: tuple[float, float]  # long semi-axis / short radius of the ED cavity
    long_shortening: tuple[float, float]  # fractional ED->ES shortening of the cavity's long axis


#: LVEDV (ml), myocardial mass (g, 1.05 g/ml, papillary muscles in the blood pool) and EF (%),
#: in line with cine bSSFP reference values (Kawel-Boehm et al., JCMR 2020) and the ACDC groups.
RANGES = {
    "NOR": GroupRanges((100.0, 180.0), (80.0, 150.0), (55.0, 70.0), (1.9, 2.4), (0.12, 0.18)),
    "DCM": GroupRanges((200.0, 320.0), (130.0, 230.0), (15.0, 40.0), (1.45, 1.8), (0.04, 0.09)),
    "HCM": GroupRanges((80.0, 150.0), (160.0, 300.0), (65.0, 80.0), (1.9, 2.4), (0.08, 0.15)),
}


@dataclass(frozen=True)
class Frame:
    """Where the ventricle sits: centre of the cavity ellipsoid and its axes (LPS mm)."""

    center: tuple[float, float, float]
    long_axis: tuple[float, float, float]  # unit, base -> apex
    septal: tuple[float, float, float]  # unit, perpendicular to long_axis, towards the septum / RV


@dataclass(frozen=True)
class Shape:
    """Geometry of one phase of one ventricle (millimetres)."""

    radius: float  # A: mean short-axis radius of the cavity at the equator
    long_semi_axis: float  # C
    base_height: float  # h: base plane at w = -h
    apex_exponent: float  # p
    eccentricity: float  # relative amplitude of the 2-lobe (elliptic) term
    ellipse_angle: float  # radians
    lobes: tuple[float, float, float, float]  # 3- and 4-lobe amplitudes (cos, sin)
    wall: float  # mean wall thickness t (mm)
    apex_wall_ratio: float  # apical cap thickness / t
    septal_bump: float  # extra relative thickness at the septum (HCM), 0 for none
    septal_angle: float  # radians, centre of the bump
    septal_width: float  # radians (Gaussian sigma)
    septal_level: float  # 0 base .. 1 apex, centre of the bump along the axis
    thinning: float  # relative thinning (<= 0) of one region
    thinning_angle: float
    roughness: float  # trabeculation-like endocardial roughness amplitude (mm)
    rough_seed: int
    frame: Frame


@dataclass(frozen=True)
class Subject:
    """One phantom subject: group, its ED and ES shapes and targets it was drawn for."""

    index: int
    seed: int
    group: str
    ed: Shape
    es: Shape
    targets: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


# --- analytic volumes ----------------------------------------------------------------

def _cap_volume(a: float, c: float, h: float, p: float) -> float:
    """Volume (mm^3) of {(r/a)^2 + |w/c|^p <= 1, w >= -h}."""
    h = min(h, c)
    return np.pi * a * a * ((c + h) - (c ** (p + 1) + h ** (p + 1)) / ((p + 1) * c**p))


def _wall_profile(shape: Shape, theta, wn):
    """Relative local wall thickness m(theta, w_norm); its mean over the heart is about 1 (+ bump)."""
    m = 1.0 + 0.08 * np.cos(theta - 1.0) * (1.0 - wn)  # mild regional variation
    if shape.septal_bump:
        dtheta = np.angle(np.exp(1j * (theta - shape.septal_angle)))
        m = m + shape.septal_bump * np.exp(-0.5 * (dtheta / shape.septal_width) ** 2) * np.exp(
            -0.5 * ((wn - shape.septal_level) / 0.3) ** 2
        )
    if shape.thinning:
        dtheta = np.angle(np.exp(1j * (theta - shape.thinning_angle)))
        m = m + shape.thinning * np.exp(-0.5 * (dtheta / 0.6) ** 2) * np.exp(-0.5 * ((wn - 0.55) / 0.25) ** 2)
    return np.maximum(m, 0.35)


def _mean_wall_factor(shape: Shape) -> float:
    theta, wn = np.meshgrid(np.linspace(-np.pi, np.pi, 72, endpoint=False), np.linspace(0, 1, 25), indexing="ij")
    weight = np.sqrt(np.clip(1 - wn, 0, 1)) + 0.2  # more circumference near the base than at the apex
    return float(np.sum(_wall_profile(shape, theta, wn) * weight) / np.sum(weight))


def cavity_volume_ml(shape: Shape) -> float:
    return _cap_volume(shape.radius, shape.long_semi_axis, shape.base_height, shape.apex_exponent) / 1000.0


def myocardial_volume_ml(shape: Shape) -> float:
    t = shape.wall * _mean_wall_factor(shape)
    outer = _cap_volume(
        shape.radius + t,
        shape.long_semi_axis + shape.wall * shape.apex_wall_ratio,
        shape.base_height,
        shape.apex_exponent,
    )
    return outer / 1000.0 - cavity_volume_ml(shape)


def _solve_wall(shape: Shape, myo_ml: float) -> Shape:
    lo, hi = 0.5, 40.0
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        if myocardial_volume_ml(replace(shape, wall=mid)) < myo_ml:
            lo = mid
        else:
            hi = mid
    return replace(shape, wall=0.5 * (lo + hi))


# --- sampling --------------------------------------------------------------------------

def _unit(v):
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


def sample_subject(index: int, seed: int, group: str | None = None, geometry: Geometry | None = None,
                   position_jitter_mm: float = 4.0, tilt_deg: float = 12.0, attempt: int = 0) -> Subject:
    """Draw subject ``index`` of the population with ``seed`` (deterministic).

    The group cycles NOR, DCM, HCM with the index unless given. The ventricle is
    centred on ``geometry``'s centre (jittered), its long axis along the grid's
    k axis (tilted), apex towards low k.
    """
    rng = np.random.default_rng([seed, index, attempt])
    group = group or GROUPS[index % len(GROUPS)]
    if group not in RANGES:
        raise ValueError(f"unknown group {group!r}; choose from {GROUPS}")
    rr = RANGES[group]
    u = lambda lo_hi: float(rng.uniform(*lo_hi))  # noqa: E731

    edv, mass, ef = u(rr.edv_ml), u(rr.mass_g), u(rr.ef_pct)
    # stay a little inside the ranges so the rendered (measured) values land in them
    edv = float(np.clip(edv, rr.edv_ml[0] + 4, rr.edv_ml[1] - 4))
    mass = float(np.clip(mass, rr.mass_g[0] + 5, rr.mass_g[1] - 5))
    ef = float(np.clip(ef, rr.ef_pct[0] + 1.5, rr.ef_pct[1] - 1.5))

    # frame: centre jitter, tilted long axis, septum direction
    center = geometry.center if geometry is not None else np.zeros(3)
    kdir = geometry.direction[:, 2] if geometry is not None else np.array([0.0, 0.0, 1.0])
    idir = geometry.direction[:, 0] if geometry is not None else np.array([1.0, 0.0, 0.0])
    jdir = np.cross(kdir, idir)
    tilt = np.deg2rad(rng.uniform(0, tilt_deg))
    azimuth = rng.uniform(-np.pi, np.pi)
    long_axis = _unit(-kdir * np.cos(tilt) + np.sin(tilt) * (np.cos(azimuth) * idir + np.sin(azimuth) * jdir))
    spin = np.deg2rad(200.0 + rng.uniform(-15, 15))  # septum towards -i (image left), slightly anterior
    septal = np.cos(spin) * idir + np.sin(spin) * jdir
    septal = _unit(septal - np.dot(septal, long_axis) * long_axis)

    sphericity = u(rr.sphericity)
    p = u((1.8, 2.8))
    beta = u((0.22, 0.38))
    ecc = u((0.0, 0.07))
    k = (1 + beta) - (1 + beta ** (p + 1)) / (p + 1)
    radius = (edv * 1000.0 / (np.pi * sphericity * k)) ** (1 / 3)
    c = sphericity * radius

    bump, bump_angle, bump_width, bump_level = 0.0, 0.0, 0.5, 0.35
    thinning, thinning_angle = 0.0, 0.0
    if group == "HCM":
        if rng.random() < 0.75:  # asymmetric septal hypertrophy
            bump = u((0.6, 1.4))
            bump_angle = u((-0.35, 0.35))
            bump_width = u((0.45, 0.8))
            bump_level = u((0.2, 0.5))
        else:  # concentric
            bump = u((0.0, 0.2))
    elif group == "DCM" and rng.random() < 0.5:
        thinning = -u((0.15, 0.35))
        thinning_angle = u((-np.pi, np.pi))

    ed = Shape(
        radius=radius, long_semi_axis=c, base_height=beta * c, apex_exponent=p,
        eccentricity=ecc, ellipse_angle=u((-np.pi, np.pi)),
        lobes=tuple(float(x) for x in rng.normal(0, 0.015, 4)),
        wall=8.0, apex_wall_ratio=u((0.55, 0.75)),
        septal_bump=bump, septal_angle=bump_angle, septal_width=bump_width, septal_level=bump_level,
        thinning=thinning, thinning_angle=thinning_angle,
        roughness=u((0.4, 1.1)), rough_seed=int(rng.integers(2**31)),
        frame=Frame(tuple(float(x) for x in center), tuple(float(x) for x in long_axis),
                    tuple(float(x) for x in septal)),
    )
    myo_ml = mass / MYOCARDIUM_DENSITY_G_PER_ML
    ed = _solve_wall(ed, myo_ml)
    # centre the ventricle (base plane to outer apex) on the grid, then jitter
    half = 0.5 * (c + ed.wall * ed.apex_wall_ratio - ed.base_height)
    jitter = rng.uniform(-1, 1, 3) * position_jitter_mm
    lateral = -septal * 0.5 * ed.wall * ed.septal_bump  # a thick septum pushes the heart laterally
    origin = center - long_axis * half + lateral + jitter
    ed = replace(ed, frame=replace(ed.frame, center=tuple(float(x) for x in origin)))

    # ES: the apex stays, the base descends (long-axis shortening), the cavity empties to
    # EDV * (1 - EF), the myocardium keeps its volume and thickens.
    shortening = u(rr.long_shortening)
    c_es = c * (1 - shortening)
    esv = edv * (1 - ef / 100.0)
    k_es = (1 + beta) - (1 + beta ** (p + 1)) / (p + 1)
    radius_es = np.sqrt(esv * 1000.0 / (np.pi * c_es * k_es))
    apex_shift = np.asarray(long_axis) * (c - c_es)
    es = replace(ed, radius=radius_es, long_semi_axis=c_es, base_height=beta * c_es,
                 roughness=ed.roughness * 1.2,
                 frame=replace(ed.frame, center=tuple(float(x) for x in np.asarray(ed.frame.center) + apex_shift)))
    es = _solve_wall(es, myo_ml)
    targets = {"edv_ml": edv, "mass_g": mass, "ef_pct": ef, "long_shortening": shortening}
    return Subject(index=index, seed=seed, group=group, ed=ed, es=es, targets=targets)


# --- rendering: signed distances on a grid --------------------------------------------

@dataclass
class LocalCoords:
    """Voxel centres in the ventricle's frame (arrays of the grid's shape)."""

    x: np.ndarray  # towards the septum
    y: np.ndarray
    w: np.ndarray  # base -> apex
    r: np.ndarray
    theta: np.ndarray


def local_coords(geometry: Geometry, frame: Frame) -> LocalCoords:
    axes = [np.arange(n, dtype=np.float32) for n in geometry.shape]
    m = (geometry.direction @ np.diag(geometry.spacing)).astype(np.float32)  # ijk -> LPS
    e1 = np.asarray(frame.septal, dtype=np.float32)
    e3 = np.asarray(frame.long_axis, dtype=np.float32)
    e2 = np.cross(e3, e1)
    off = (np.asarray(geometry.origin) - np.asarray(frame.center)).astype(np.float32)

    def project(e):
        c = e @ m  # coefficient per index axis
        return (axes[0][:, None, None] * c[0] + axes[1][None, :, None] * c[1] + axes[2][None, None, :] * c[2]
                + np.float32(off @ e))

    x, y, w = project(e1), project(e2), project(e3)
    return LocalCoords(x, y, w, np.hypot(x, y), np.arctan2(y, x))


def _roughness(shape: Shape, theta, wn) -> np.ndarray:
    """Smooth random endocardial relief (trabeculation-like), zero mean, amplitude ``roughness`` mm.

    A sum of random angular (5-14 lobes) and axial waves, tabulated on a fine
    (theta, w) table and looked up per voxel.
    """
    rng = np.random.default_rng(shape.rough_seed)
    t_tab = np.linspace(-np.pi, np.pi, 721)[:, None]
    w_tab = np.linspace(0.0, 1.0, 201)[None, :]
    table = np.zeros((721, 201))
    n = 10
    for _ in range(n):
        m = rng.integers(5, 15)
        f = rng.uniform(1.0, 5.0)
        phase = rng.uniform(0, 2 * np.pi, 2)
        table += np.cos(m * t_tab + phase[0]) * np.cos(f * np.pi * w_tab + phase[1])
    table = (table * (shape.roughness * np.sqrt(2.0 / n))).astype(np.float32)
    ti = np.rint((theta + np.pi) * (720 / (2 * np.pi))).astype(np.intp)
    wi = np.rint(wn * 200).astype(np.intp)
    return table[ti, wi]


def _in_plane_radius(shape: Shape, theta) -> np.ndarray:
    l3c, l3s, l4c, l4s = shape.lobes
    return shape.radius * (
        1.0 + shape.eccentricity * np.cos(2 * (theta - shape.ellipse_angle))
        + l3c * np.cos(3 * theta) + l3s * np.sin(3 * theta) + l4c * np.cos(4 * theta) + l4s * np.sin(4 * theta)
    )


def _sdf(level: np.ndarray, spacing) -> np.ndarray:
    """Signed distance (mm, negative inside) of the zero level set of ``level``, to first order."""
    grads = np.gradient(level, *spacing)
    norm = np.sqrt(sum(g * g for g in grads))
    return level / np.maximum(norm, 1e-3)


def _ellipsoid_level(r, w, a, c, p):
    return (r / a) ** 2 + np.abs(w / c) ** p - 1.0


@dataclass
class Fields:
    """Signed distances (mm) of the ventricle's surfaces on a grid, and its local frame."""

    cavity: np.ndarray  # < 0 inside the blood pool
    ventricle: np.ndarray  # < 0 inside blood pool + myocardium
    coords: LocalCoords
    shape: Shape


def ventricle_fields(geometry: Geometry, shape: Shape) -> Fields:
    """Signed distance fields of the cavity and the whole ventricle on ``geometry``.

    Distances are computed in the grid's index frame assuming an axis-aligned
    direction matrix (the phantom's own grids); they are only used near surfaces.
    """
    lc = local_coords(geometry, shape.frame)
    c, h = shape.long_semi_axis, shape.base_height
    wn = np.clip((lc.w + h) / (c + h), 0.0, 1.0)
    a_smooth = _in_plane_radius(shape, lc.theta)
    a_endo = np.maximum(a_smooth + _roughness(shape, lc.theta, wn), 1.0)
    a_epi = a_smooth + shape.wall * _wall_profile(shape, lc.theta, wn)
    c_epi = c + shape.wall * shape.apex_wall_ratio
    base = -(lc.w + h)  # exact signed distance to the base plane, < 0 on the apex side
    spacing = geometry.spacing
    d_endo = _sdf(_ellipsoid_level(lc.r, lc.w, a_endo, c, shape.apex_exponent), spacing)
    d_epi = _sdf(_ellipsoid_level(lc.r, lc.w, a_epi, c_epi, shape.apex_exponent), spacing)
    return Fields(np.maximum(d_endo, base), np.maximum(d_epi, base), lc, shape)


def label_map(fields: Fields) -> np.ndarray:
    """HR labels: 0 background, 1 LV blood pool, 2 LV myocardium."""
    labels = np.zeros(fields.cavity.shape, np.uint8)
    labels[fields.ventricle < 0] = LV_MYOCARDIUM
    labels[fields.cavity < 0] = LV_BLOOD_POOL
    return labels


def measure(labels: np.ndarray, geometry: Geometry) -> dict:
    """Blood-pool volume (ml), myocardial volume (ml) and mass (g) of a label map."""
    return clinical_measures(Volume(labels, geometry))


def in_ranges(group: str, ed: dict, es: dict) -> bool:
    rr = RANGES[group]
    ef = 100.0 * (1 - es["lv_volume_ml"] / ed["lv_volume_ml"])
    return (rr.edv_ml[0] <= ed["lv_volume_ml"] <= rr.edv_ml[1] and rr.mass_g[0] <= ed["myo_mass_g"] <= rr.mass_g[1]
            and rr.ef_pct[0] <= ef <= rr.ef_pct[1])
