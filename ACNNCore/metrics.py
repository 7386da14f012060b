"""Metrics of label maps and images: clinical measures (volumes, mass, ejection fraction), Dice and surface
distances in mm (MONAI), SSIM, agreement (Bland-Altman) and Wilcoxon tests, and the anatomical plausibility
checks with the defects they find."""

from __future__ import annotations

import numpy as np

from .errors import InputError
from .labels import LV_BLOOD_POOL, LV_MYOCARDIUM, MYOCARDIUM_DENSITY_G_PER_ML, RV_BLOOD_POOL
from .volume import Volume


def clinical_measures(labels: Volume, blood: int = LV_BLOOD_POOL, myocardium: int = LV_MYOCARDIUM,
                      rv: bool = False) -> dict:
    """LV blood-pool volume (ml), myocardial volume (ml) and mass (g, 1.05 g/ml) of a label map; with ``rv``
    (a model that segments the RV), also the RV blood pool's volume (ml)."""
    v = labels.geometry.voxel_volume_ml
    lv = float(np.count_nonzero(labels.array == blood)) * v
    myo = float(np.count_nonzero(labels.array == myocardium)) * v
    measures = {"lv_volume_ml": lv, "myo_volume_ml": myo, "myo_mass_g": myo * MYOCARDIUM_DENSITY_G_PER_ML}
    if rv:
        measures["rv_volume_ml"] = float(np.count_nonzero(labels.array == RV_BLOOD_POOL)) * v
    return measures


def ejection_fraction(edv: float, esv: float) -> float:
    """EF (%) from end-diastolic and end-systolic volumes."""
    if edv <= 0:
        raise InputError("end-diastolic volume is zero: cannot compute an ejection fraction")
    return 100.0 * (edv - esv) / edv


def ed_es_frames(curve, ed: int | None = None, es: int | None = None, among=None) -> tuple[int, int]:
    """ED and ES (indices) from a cine's LV blood-pool volume per frame: the frames of largest and smallest volume
    among ``among`` (default every frame; an expert's 4-D map: the frames it labels), a phase given kept, and
    never the other phase's frame (on a tie, the first)."""
    among = range(len(curve)) if among is None else among

    def extreme(pick, other):
        return pick((i for i in among if i != other), key=curve.__getitem__)

    ed = ed if ed is not None else extreme(max, es)
    return ed, es if es is not None else extreme(min, ed)


def on_grid_of(prediction: Volume, truth: Volume) -> Volume:
    """The prediction sampled on the ground truth's grid in physical space (nearest neighbour)."""
    if prediction.geometry.same_as(truth.geometry):
        return prediction
    from .preprocessing import resample

    if not _overlap(prediction.geometry, truth.geometry):
        raise InputError("prediction and ground truth do not overlap in physical space "
                         "(different origins or orientations?); cannot compare them")

    return resample(prediction, truth.geometry, "nearest")


def _corners(g) -> np.ndarray:
    idx = np.array([[i, j, k] for i in (-0.5, g.shape[0] - 0.5) for j in (-0.5, g.shape[1] - 0.5)
                    for k in (-0.5, g.shape[2] - 0.5)])
    return g.index_to_physical(idx)


def _overlap(a, b) -> bool:
    """Whether the physical bounding boxes of two grids intersect."""
    pa, pb = _corners(a), _corners(b)
    return bool(np.all(pa.min(0) < pb.max(0)) and np.all(pb.min(0) < pa.max(0)))


def dice(prediction: Volume, truth: Volume, labels=(LV_BLOOD_POOL, LV_MYOCARDIUM)) -> dict:
    """Dice per label (MONAI's implementation), compared on the ground truth's grid."""
    from monai.metrics import compute_dice

    p, t = _masks(on_grid_of(prediction, truth), truth, labels)
    scores = compute_dice(p, t, include_background=True, ignore_empty=False)[0]
    return {int(v): float(s) for v, s in zip(labels, scores)}


def _masks(prediction: Volume, truth: Volume, labels):
    """(1, L, X, Y, Z) float masks of each label in the prediction and the truth (on one grid)."""
    import torch

    p = torch.from_numpy(np.stack([prediction.array == v for v in labels]))[None].float()
    t = torch.from_numpy(np.stack([truth.array == v for v in labels]))[None].float()
    return p, t


def surface_distances(prediction: Volume, truth: Volume, labels=(LV_BLOOD_POOL, LV_MYOCARDIUM)) -> dict:
    """Per label: mean symmetric surface distance and Hausdorff distance in mm, compared on the ground truth's
    grid with its voxel spacing: MONAI's edge-to-edge distances, found once for both (what its
    ``compute_average_surface_distance(symmetric=True)`` and ``compute_hausdorff_distance`` each find again:
    the mean and the maximum of both directions' distances). A structure missing from either map gives
    ``nan``."""
    import warnings

    import torch
    from monai.metrics.utils import get_edge_surface_distance

    prediction = on_grid_of(prediction, truth)
    p, t = _masks(prediction, truth, labels)
    spacing = [float(s) for s in truth.spacing]
    out = {}
    for i, v in enumerate(labels):
        if not (p[0, i].any() and t[0, i].any()):
            out[int(v)] = {"msd_mm": float("nan"), "hd_mm": float("nan")}
            continue
        with warnings.catch_warnings():  # MONAI's own use of an argument it deprecated
            warnings.simplefilter("ignore", FutureWarning)
            _, distances, _ = get_edge_surface_distance(p[0, i], t[0, i], spacing=spacing, symmetric=True)
        both = torch.cat(distances)
        out[int(v)] = {"msd_mm": float(both.mean()), "hd_mm": float(max(d.max() for d in distances))}
    return out


def ssim(prediction: Volume, truth: Volume, data_range: float | None = None) -> float:
    """Structural similarity of two intensity images on the same grid (MONAI, 3-D, 7-voxel window)."""
    import torch
    from monai.metrics import SSIMMetric

    if not prediction.geometry.same_as(truth.geometry):
        raise InputError("SSIM needs both images on the same grid")
    t = truth.array.astype(np.float32)
    rng = float(t.max() - t.min()) if data_range is None else data_range
    metric = SSIMMetric(spatial_dims=3, data_range=rng, win_size=7)
    x = torch.from_numpy(prediction.array.astype(np.float32))[None, None]
    return float(metric(x, torch.from_numpy(t)[None, None])[0, 0])


def agreement(measured, reference) -> dict:
    """Pearson correlation, bias and 95 % limits of agreement (Bland–Altman) of paired measurements."""
    from scipy.stats import pearsonr

    a, b = np.asarray(measured, float), np.asarray(reference, float)
    if a.shape != b.shape or a.size < 3:
        raise InputError("agreement needs at least three paired measurements")
    d = a - b
    bias, sd = float(d.mean()), float(d.std(ddof=1))
    r = float(pearsonr(a, b)[0]) if a.std() > 0 and b.std() > 0 else float("nan")  # undefined if constant
    return {"n": int(a.size), "r": r, "bias": bias,
            "loa": (bias - 1.96 * sd, bias + 1.96 * sd)}


def wilcoxon_p(a, b) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired scores (nan pairs dropped; 1 if all equal)."""
    from scipy.stats import wilcoxon

    a, b = np.asarray(a, float), np.asarray(b, float)
    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < 2 or np.allclose(a[keep], b[keep]):
        return 1.0
    return float(wilcoxon(a[keep], b[keep]).pvalue)


# --- anatomical plausibility --------------------------------------------------------------

PLAUSIBILITY_CHECKS = {
    "holes": "a hole in the blood pool or in the myocardium",
    "fragmented": "more than one connected component in a structure",
    "not_enclosed": "blood pool not enclosed by myocardium in a mid-ventricular slice",
    "touches_background": "blood pool touching the background below the basal third (apex included)",
}
# every problem :func:`plausibility` names, in words
PROBLEM_WORDS = {**PLAUSIBILITY_CHECKS, "missing structure": "no blood pool or no myocardium"}


def lv_thirds(blood_pool: np.ndarray) -> tuple[range, slice]:
    """Of a blood-pool mask (slices along the third axis are short-axis, at least one voxel set): its
    mid-ventricular slices (the middle third of those holding blood pool) and the slices outside its basal
    third -- the base being the end of larger blood-pool area."""
    slices = np.flatnonzero(blood_pool.any(axis=(0, 1)))
    lo, hi = int(slices[0]), int(slices[-1])
    third = (hi - lo + 1) / 3.0
    mid = range(int(np.ceil(lo + third)), int(np.floor(hi - third)) + 1)
    area = blood_pool[..., lo:hi + 1].sum(axis=(0, 1))
    n = max(1, len(area) // 3)
    base_at_top = area[-n:].sum() >= area[:n].sum()
    apical = slice(0, int(hi - third) + 1) if base_at_top else slice(int(np.ceil(lo + third)), blood_pool.shape[2])
    return mid, apical


def contact_structure(spacing) -> np.ndarray:
    """The neighbourhood in which blood pool meets what lies around it: in-plane (4-connected), and
    through-plane too where slices are thinner than 5 mm (thick slices cannot show the apical cap)."""
    from scipy import ndimage

    if spacing[2] < 5.0:
        return ndimage.generate_binary_structure(3, 1)
    return ndimage.generate_binary_structure(2, 1)[:, :, None] * np.array([0, 1, 0], bool)


def plausibility(labels: Volume, blood: int = LV_BLOOD_POOL, myocardium: int = LV_MYOCARDIUM) -> dict:
    """Anatomical plausibility of an LV label map (its slices, along the axis of largest spacing, short-axis).

    Returns ``{"plausible": bool, "problems": [names], <check>: count}`` with counts per check of
    :data:`PLAUSIBILITY_CHECKS`: holes (3-D, in the blood pool, or background enclosed by the LV as a
    whole), connected components beyond one per structure (3-D, 26-connectivity), mid-ventricular slices
    (the middle third of those holding blood pool) whose blood pool has an in-plane neighbour other than
    myocardium, and slices outside the basal third (the base, open to the atrium, is the end of larger
    blood-pool area) where blood pool and background meet: in-plane, and through-plane (an open apex)
    where slices are thinner than 5 mm (thick slices cannot show the apical cap). A map without blood
    pool or myocardium is implausible."""
    labels = labels.slices_last()[0]
    a = labels.array
    counts = {k: 0 for k in PLAUSIBILITY_CHECKS}
    if not (a == blood).any() or not (a == myocardium).any():
        return {"plausible": False, "problems": ["missing structure"], **counts, "missing": 1}
    counts.update({k: n for k, (n, _) in _checks(labels, blood, myocardium).items()})
    problems = [k for k, n in counts.items() if n]
    return {"plausible": not problems, "problems": problems, **counts}


def verdict(checks: dict) -> str:
    """:func:`plausibility`'s verdict in a word, and what failed in words (the table and CSV columns keep the
    checks' names): "plausible", "IMPLAUSIBLE: a hole in the blood pool or in the myocardium"."""
    if checks["plausible"]:
        return "plausible"
    return "IMPLAUSIBLE: " + ", ".join(PROBLEM_WORDS[p] for p in checks["problems"])


def defects(labels: Volume, blood: int = LV_BLOOD_POOL, myocardium: int = LV_MYOCARDIUM) -> np.ndarray:
    """Where an LV label map fails :func:`plausibility`: its holes, the parts of a structure beyond its
    largest, and the voxels next to the blood pool that are not myocardium where they must be (anything
    but myocardium in a mid-ventricular slice, background outside the basal third). A boolean mask on the
    map's grid; empty for a plausible map, and for one without blood pool or myocardium."""
    a = labels.array
    if not (a == blood).any() or not (a == myocardium).any():
        return np.zeros(a.shape, bool)
    turned, order = labels.slices_last()
    mask = np.any([mask for _, mask in _checks(turned, blood, myocardium).values()], axis=0)
    return mask.transpose(np.argsort(order))


FULL = np.ones((3, 3, 3), bool)  # 26-connectivity: the parts of a structure


def stray_parts(mask: np.ndarray) -> np.ndarray:
    """All of a mask but its largest 26-connected part (empty where it has one part or none)."""
    from scipy import ndimage

    parts, n = ndimage.label(mask, FULL)
    if n < 2:
        return np.zeros(mask.shape, bool)
    return (parts > 0) & (parts != 1 + int(np.argmax(np.bincount(parts.ravel())[1:])))


def in_plane_box(mask: np.ndarray, margin: int = 1) -> tuple[slice, slice, slice]:
    """The in-plane box around a mask's voxels, ``margin`` voxels wider on each side (within the array), every
    slice: where holes, connected parts and in-plane contact of what the mask holds can be found as in the whole
    array -- a margin of one voxel of what it does not hold joins all that lies outside."""
    where = np.flatnonzero(mask.any(axis=(1, 2))), np.flatnonzero(mask.any(axis=(0, 2)))
    if not where[0].size:
        return slice(0, 0), slice(0, 0), slice(None)
    return (*(slice(max(int(w[0]) - margin, 0), int(w[-1]) + margin + 1) for w in where), slice(None))


def _checks(labels: Volume, blood: int, myocardium: int) -> dict:
    """{check of PLAUSIBILITY_CHECKS: (count, mask of the voxels at fault)} of a map holding both
    structures; worked out in the LV's in-plane box (:func:`in_plane_box`), the masks on the whole map."""
    box = in_plane_box(np.isin(labels.array, (blood, myocardium)))
    checks = _checks_in(labels.array[box], labels.spacing, blood, myocardium)
    for name, (count, mask) in checks.items():
        whole = np.zeros(labels.shape, bool)
        whole[box] = mask
        checks[name] = count, whole
    return checks


def _checks_in(a: np.ndarray, spacing, blood: int, myocardium: int) -> dict:
    """:func:`_checks` of an array."""
    from scipy import ndimage

    bp, myo = a == blood, a == myocardium
    lv = bp | myo
    pool_holes, lv_holes = ndimage.binary_fill_holes(bp) & ~bp, ndimage.binary_fill_holes(lv) & ~lv
    pieces = sum(n - 1 for n in (ndimage.label(bp, FULL)[1], ndimage.label(myo, FULL)[1]))
    stray = stray_parts(bp) | stray_parts(myo)
    bp = ndimage.binary_fill_holes(bp)  # holes are counted once, above, not as contact
    cross = ndimage.generate_binary_structure(2, 1)
    mid, apical = lv_thirds(bp)
    open_ring = np.zeros(a.shape, bool)
    for k in mid:
        open_ring[..., k] = ndimage.binary_dilation(bp[..., k], cross) & ~bp[..., k] & (a[..., k] != myocardium)
    # The base is open to the atrium; elsewhere, the apex included, blood must not meet the background,
    # in-plane or through-plane (an open apex) where slices are thin enough to see the apical cap.
    contact = ndimage.binary_dilation(bp, contact_structure(spacing)) & ~bp & (a == 0)
    contact[..., :apical.start] = False
    contact[..., apical.stop:] = False
    return {"holes": (ndimage.label(pool_holes)[1] + ndimage.label(lv_holes)[1], pool_holes | lv_holes),
            "fragmented": (pieces, stray),
            "not_enclosed": (int(np.count_nonzero(open_ring.any(axis=(0, 1)))), open_ring),
            "touches_background": (int(np.count_nonzero(contact.any(axis=(0, 1)))), contact)}
