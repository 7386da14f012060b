"""Preprocessing, each step with its inverse, so outputs map back onto the input's geometry.

- :func:`normalize_intensity` / :meth:`IntensityScaling.invert`
- :func:`resample` onto any :class:`Geometry` (SimpleITK), among them a model's grid
  (:func:`model_geometry`: shape and spacing centred on a point, the heart or the
  image centre), and back onto the input's.
- the order of a stack's slices, base or apex first: of a network's training label maps
  (:func:`slice_order`), and of an image by its geometry (:func:`stack_order`), so that a
  network is shown its slices in the order it learnt.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from .errors import InputError
from .io import to_sitk
from .volume import Geometry, Volume


@dataclass(frozen=True)
class IntensityScaling:
    """Linear map taking the ``lo``/``hi`` percentiles of an image to 0/1."""

    lo: float
    hi: float

    def apply(self, array: np.ndarray) -> np.ndarray:
        return ((array - self.lo) / (self.hi - self.lo)).astype(np.float32)

    def invert(self, array: np.ndarray) -> np.ndarray:
        return (array * (self.hi - self.lo) + self.lo).astype(np.float32)


def normalize_intensity(volume: Volume, percentiles=(1.0, 99.0)) -> tuple[Volume, IntensityScaling]:
    """The image's ``percentiles`` taken to 0 and 1: a clear error for a mask, NaNs or a constant image."""
    if not np.issubdtype(volume.array.dtype, np.number):  # bool is not a number to numpy
        raise InputError(f"image of {volume.array.dtype} values (a mask?): an intensity image is needed")
    volume.check_finite()
    lo, hi = np.percentile(volume.array, percentiles)
    if not hi > lo:
        raise InputError(f"image is constant: its {percentiles[0]:g} % and {percentiles[1]:g} % percentiles are both "
                         f"{lo:g}; there is nothing in it to work on")
    scaling = IntensityScaling(float(lo), float(hi))
    return volume.with_array(scaling.apply(volume.array)), scaling


_INTERPOLATORS = {"nearest": sitk.sitkNearestNeighbor, "linear": sitk.sitkLinear, "bspline": sitk.sitkBSpline,
                  "label": sitk.sitkLabelGaussian}


def resample(volume: Volume, geometry: Geometry, interpolation: str = "linear", default=0.0) -> Volume:
    """``volume`` sampled on ``geometry`` in physical space (SimpleITK)."""
    if interpolation not in _INTERPOLATORS:
        raise ValueError(f"interpolation must be one of {sorted(_INTERPOLATORS)}")
    if volume.geometry.same_as(geometry, atol=1e-6):
        return Volume(volume.array.copy(), geometry)
    reference = sitk.Image([int(s) for s in geometry.shape], sitk.sitkUInt8)
    reference.SetSpacing(geometry.spacing)
    reference.SetOrigin(geometry.origin)
    reference.SetDirection(tuple(geometry.direction.ravel()))
    image = to_sitk(volume)
    if interpolation in ("nearest", "label"):
        integer = np.issubdtype(volume.array.dtype, np.integer) or volume.array.dtype == np.bool_
        image = sitk.Cast(image, sitk.sitkUInt8) if integer and volume.array.max() < 256 else image
    elif image.GetPixelID() != sitk.sitkFloat32:
        image = sitk.Cast(image, sitk.sitkFloat32)
    out = sitk.Resample(image, reference, sitk.Transform(), _INTERPOLATORS[interpolation], float(default),
                        image.GetPixelID())
    array = sitk.GetArrayFromImage(out).transpose(2, 1, 0)
    return Volume(np.ascontiguousarray(array), geometry)


def resample_channels(channels: np.ndarray, grid: Geometry, geometry: Geometry, pads) -> np.ndarray:
    """(C, X, Y, Z) per-label maps on ``grid`` sampled linearly on ``geometry``, channel ``i`` taking
    ``pads[i]`` outside ``grid`` (how probabilities go back to an input's grid)."""
    return np.stack([resample(Volume(c, grid), geometry, "linear", default=pad).array
                     for c, pad in zip(channels, pads)])


def labels_center(labels: Volume, values=None) -> np.ndarray:
    """Physical centroid of the labelled voxels (of ``values`` if given)."""
    mask = labels.array > 0 if values is None else np.isin(labels.array, list(values))
    if not mask.any():
        raise InputError("label map is empty")
    return labels.geometry.index_to_physical(np.argwhere(mask).mean(0))


def model_geometry(volume: Volume, shape, spacing, center=None) -> Geometry:
    """A model's grid with ``volume``'s orientation, centred on ``center`` (default: the image centre).

    Along axes where the model's spacing equals the input's, the grid is snapped to
    the input's voxel lattice, so resampling there moves no voxel (an exact crop).
    """
    g = volume.geometry
    target = g.centered_at(g.center if center is None else center, shape, spacing)
    start = g.physical_to_index(target.origin)
    same = np.isclose(target.spacing, g.spacing, rtol=1e-6)
    start = np.where(same, np.round(start), start)
    return Geometry(target.shape, target.spacing, tuple(g.index_to_physical(start)), g.direction)


def crop_around_heart(image: Volume, labels: Volume | None, shape, spacing_xy, center=None,
                      percentiles=(1.0, 99.0)) -> tuple[Volume, Volume | None]:
    """Real data: the image normalised (percentiles of the whole image, as at inference) and cut, with its
    labels, to ``shape`` at the in-plane ``spacing_xy`` around ``center`` (default: the labels' centre),
    the slices as acquired (no through-plane resampling; missing slices padded with 0)."""
    normalised, _ = normalize_intensity(image, percentiles)
    if center is None:
        if labels is None:
            raise InputError("cropping around the heart needs its labels or a centre")
        center = labels_center(labels)
    grid = model_geometry(image, shape, (spacing_xy[0], spacing_xy[1], image.spacing[2]), center)
    cropped = resample(normalised, grid, "linear")
    return cropped, (resample(labels, grid, "nearest") if labels is not None else None)


BASE_FIRST, APEX_FIRST = "base first", "apex first"


def slice_order(label_maps) -> str | None:
    """The order of the slices of label maps (slices last; any of our structures), as a network trained on them
    learns it: "base first" where, in most maps, the first half of the slices holding heart holds more of it than
    the second (the ventricles narrow towards the apex), "apex first" where the second does; None for no maps
    with heart in them, or a tie."""
    votes = 0
    for labels in label_maps:
        area = np.count_nonzero(np.asarray(labels.array) > 0, axis=(0, 1))
        held = np.flatnonzero(area)
        if held.size < 2:
            continue
        first, last = held[0], held[-1] + 1
        half = (first + last) / 2.0
        weights = np.arange(first, last) + 0.5  # each slice's centre, against the middle of the heart's slices
        votes += int(np.sign(np.sum(area[first:last] * (half - weights))))
    return BASE_FIRST if votes > 0 else APEX_FIRST if votes < 0 else None


def stack_order(geometry: Geometry) -> str | None:
    """The order of a short-axis stack's slices (slices last) by its geometry: the base of the heart lies above
    its apex in the patient (the apex points down, forwards and to the left), so slices that go up -- towards
    the head, DICOM's +z -- go from the apex to the base: "apex first"; down, "base first". None where the
    geometry cannot tell: axes along the patient's (an identity orientation, as a file that lost its
    orientation has -- ACDC's here -- or an axial stack) or slices that go nearly level."""
    direction = np.asarray(geometry.direction, float)
    if np.allclose(np.abs(direction), np.round(np.abs(direction)), atol=1e-3):
        return None
    up = direction[2, 2]  # the slice axis's component towards the head (LPS)
    if abs(up) < 0.2:
        return None
    return APEX_FIRST if up > 0 else BASE_FIRST
