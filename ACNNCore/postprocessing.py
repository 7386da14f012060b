"""Post-processing of label maps: the clean-up every segmenter may apply (each structure's largest part, the
LV blood pool without holes) and the rule that closes an open myocardial ring.
"""

from __future__ import annotations

import numpy as np

from .labels import LV_BLOOD_POOL, LV_MYOCARDIUM
from .metrics import in_plane_box, stray_parts
from .volume import Volume


def keep_largest_component(labels: Volume) -> Volume:
    """Each structure reduced to its largest 26-connected part (as MONAI's KeepLargestConnectedComponent,
    without the seconds importing MONAI takes): the usual clean-up of a label map. Stray islands go; holes and
    gaps stay."""
    a = labels.array.copy()
    box = in_plane_box(a > 0, 0)  # the parts lie in the labels' box
    inside = a[box]  # a view: changed in place
    for value in np.unique(inside):
        if value:
            inside[stray_parts(inside == value)] = 0
    return labels.with_array(a)


def clean_up(labels: Volume, blood: int = LV_BLOOD_POOL, myocardium: int = LV_MYOCARDIUM,
             close_myocardium: bool = False) -> Volume:
    """The clean-up of a label map: each structure's largest connected part (:func:`keep_largest_component`),
    then the LV blood pool without holes -- whatever it encloses in a short-axis slice (the third axis) is
    cavity, as ACDC's experts label papillary muscles and trabeculae. Gaps in the myocardium stay, unless
    ``close_myocardium`` (:func:`_close_myocardium`). A map whose slices lie along another axis is cleaned up
    with them last (:meth:`Volume.slices_last`)."""
    turned, order = labels.slices_last()
    if order != (0, 1, 2):
        return clean_up(turned, blood, myocardium, close_myocardium).permuted(np.argsort(order))
    a = keep_largest_component(labels).array.copy()
    _fill_cavity(a, blood)
    cleaned = labels.with_array(a)
    return _close_myocardium(cleaned, blood, myocardium) if close_myocardium else cleaned


#: 4-connectivity within a slice (the third axis), none across slices: a 3-D operation done slice by slice
IN_PLANE = np.pad(np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)[..., None], ((0, 0), (0, 0), (1, 1)))


def _fill_cavity(a: np.ndarray, blood: int) -> None:
    """In place: whatever the blood pool encloses in a short-axis slice (the third axis) becomes blood pool."""
    from scipy import ndimage

    pool = a[in_plane_box(a == blood)]  # a view of the blood pool's box, filled slice by slice (in-plane cross)
    pool[ndimage.binary_fill_holes(pool == blood, IN_PLANE)] = blood


def _close_myocardium(labels: Volume, blood: int, myocardium: int) -> Volume:
    """The myocardial ring closed where a cleaned-up label map leaves it open. Until nothing changes:
    what the LV encloses becomes LV (blood pool where it meets the blood pool, else myocardium) and what the
    blood pool encloses in a slice cavity; blood-pool voxels that meet anything but blood pool and myocardium
    lying outside the basal third (the base is open to the atrium; in-plane, and through-plane where slices
    are thinner than 5 mm, as :func:`ACNNCore.metrics.plausibility` looks) become myocardium -- a wall one voxel
    thick, taken from the cavity; blood pool cut off from the largest part becomes myocardium, and
    myocardium cut off from the largest part goes, with the blood pool it walls in (an apical slice that no
    myocardium reaches). A rule, not a model: it makes the plausibility checks pass, whatever the network's
    output was, short of a missing structure."""
    from scipy import ndimage

    from .metrics import contact_structure, lv_thirds, stray_parts

    whole = labels.array.copy()
    box = in_plane_box((whole == blood) | (whole == myocardium))  # the LV only shrinks or fills what it encloses
    a = whole[box]  # a view: changed in place
    structure = contact_structure(labels.spacing)

    for _ in range(2 * a.shape[2] + 2):
        before = a.copy()
        lv = (a == blood) | (a == myocardium)
        pockets, _ = ndimage.label(ndimage.binary_fill_holes(lv) & ~lv)
        wet = np.unique(pockets[ndimage.binary_dilation(a == blood) & (pockets > 0)])  # those meeting blood
        a[pockets > 0] = myocardium
        a[np.isin(pockets, wet[wet > 0])] = blood
        _fill_cavity(a, blood)
        bp = a == blood
        if not bp.any():
            break
        apical = np.zeros(a.shape, bool)
        apical[..., lv_thirds(bp)[1]] = True  # what blood meets there must be wall (the checks look there)
        a[bp & ndimage.binary_dilation((a != blood) & (a != myocardium) & apical, structure)] = myocardium
        a[stray_parts(a == blood)] = myocardium
        loose = stray_parts(a == myocardium)
        for k in np.flatnonzero(loose.any(axis=(0, 1))):
            a[..., k][ndimage.binary_fill_holes(loose[..., k]) & ((a[..., k] == blood) | loose[..., k])] = 0
        if np.array_equal(a, before):
            break
    return labels.with_array(whole)
