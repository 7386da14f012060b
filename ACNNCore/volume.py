"""`Volume`: a 3-D array with its place in the world.

Conventions (those of ITK/SimpleITK, which does our file I/O):

- ``array`` is indexed ``[i, j, k]`` (x, y, z: the same order as ``spacing``;
  the order of nibabel, MONAI ``(H, W, D)`` and Slicer's IJK). For a
  short-axis cine stack ``k`` is the slice index.
- physical coordinates are LPS millimetres:
  ``p = origin + direction @ (spacing * ijk)``; the columns of ``direction``
  are the unit vectors of the i, j, k axes. Slicer works in RAS:
  :meth:`Geometry.ijk_to_ras` gives its IJK-to-RAS matrix.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import InputError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class Geometry:
    """Where a 3-D voxel grid lies in physical (LPS, mm) space."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))

    def __post_init__(self):
        shape = tuple(int(s) for s in self.shape)
        spacing = tuple(float(s) for s in self.spacing)
        origin = tuple(float(o) for o in self.origin)
        direction = np.asarray(self.direction, dtype=float).reshape(3, 3)
        if len(shape) != 3 or min(shape) < 1:
            raise InputError(f"a volume needs three positive dimensions, got shape {shape}")
        if len(spacing) != 3 or not all(np.isfinite(spacing)) or min(spacing) <= 0:
            raise InputError(f"voxel spacing must be three positive numbers (mm), got {spacing}")
        if len(origin) != 3 or not all(np.isfinite(origin)):
            raise InputError(f"origin must be three finite numbers, got {origin}")
        if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-4):
            raise InputError("direction matrix is not orthonormal")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "origin", origin)
        object.__setattr__(self, "direction", direction)

    # --- affines -------------------------------------------------------------
    @property
    def affine(self) -> np.ndarray:
        """4x4 matrix mapping (i, j, k, 1) to LPS millimetres."""
        a = np.eye(4)
        a[:3, :3] = self.direction @ np.diag(self.spacing)
        a[:3, 3] = self.origin
        return a

    @property
    def ijk_to_ras(self) -> np.ndarray:
        """4x4 IJK-to-RAS matrix, as Slicer's volume nodes hold it."""
        return LPS_TO_RAS @ self.affine

    def index_to_physical(self, ijk) -> np.ndarray:
        """(..., 3) voxel indices (may be fractional) -> (..., 3) LPS mm."""
        ijk = np.asarray(ijk, dtype=float)
        return ijk @ (self.direction @ np.diag(self.spacing)).T + np.asarray(self.origin)

    def physical_to_index(self, points) -> np.ndarray:
        """(..., 3) LPS mm -> (..., 3) fractional voxel indices."""
        p = np.asarray(points, dtype=float) - np.asarray(self.origin)
        return (p @ self.direction) / np.asarray(self.spacing)

    @property
    def center(self) -> np.ndarray:
        """Physical position of the grid's centre."""
        return self.index_to_physical((np.asarray(self.shape) - 1) / 2.0)

    def in_plane_mm(self, a, b) -> float:
        """Distance between two physical points (LPS mm) along this grid's i and j axes (in-plane, for a
        short-axis stack), ignoring any offset across its slices."""
        return float(np.linalg.norm(self.direction[:, :2].T @ (np.asarray(b, float) - np.asarray(a, float))))

    @property
    def extent_mm(self) -> np.ndarray:
        return np.asarray(self.shape) * np.asarray(self.spacing)

    @property
    def voxel_volume_ml(self) -> float:
        return float(np.prod(self.spacing)) / 1000.0

    def centered_at(self, center, shape=None, spacing=None) -> "Geometry":
        """A grid with this one's direction, the given shape/spacing, centred on a physical point."""
        shape = tuple(shape or self.shape)
        spacing = tuple(spacing or self.spacing)
        half = (np.asarray(shape) - 1) / 2.0 * np.asarray(spacing)
        origin = np.asarray(center, dtype=float) - self.direction @ half
        return Geometry(shape, spacing, tuple(origin), self.direction)

    def turned(self, degrees: float = 0.0, shift_mm=(0.0, 0.0)) -> "Geometry":
        """This grid turned by ``degrees`` about its centre in the plane of its first two axes, and moved by
        ``shift_mm`` along them."""
        t = np.deg2rad(degrees)
        turn = np.array([[np.cos(t), -np.sin(t), 0.0], [np.sin(t), np.cos(t), 0.0], [0.0, 0.0, 1.0]])
        center = self.center + self.direction @ np.array([shift_mm[0], shift_mm[1], 0.0])
        return Geometry(self.shape, self.spacing, self.origin, self.direction @ turn).centered_at(center)

    def same_as(self, other: "Geometry", atol: float = 1e-4) -> bool:
        return (
            self.shape == other.shape
            and np.allclose(self.spacing, other.spacing, atol=atol)
            and np.allclose(self.origin, other.origin, atol=atol)
            and np.allclose(self.direction, other.direction, atol=atol)
        )

    def to_dict(self) -> dict:
        return {
            "shape": list(self.shape),
            "spacing": list(self.spacing),
            "origin": list(self.origin),
            "direction": self.direction.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Geometry":
        return cls(tuple(d["shape"]), tuple(d["spacing"]), tuple(d["origin"]), np.asarray(d["direction"]))


SLICE_RATIO = 1.5  # a stack's slice axis: spacing at least this many times the in-plane spacing


@dataclass(frozen=True)
class Volume:
    """A 3-D image or label map: ``array[i, j, k]`` on ``geometry``."""

    array: np.ndarray
    geometry: Geometry

    def __post_init__(self):
        if self.array.ndim != 3:
            raise InputError(f"expected a 3-D volume, got a {self.array.ndim}-D array of shape {self.array.shape}")
        if tuple(self.array.shape) != self.geometry.shape:
            raise InputError(f"array shape {self.array.shape} does not match geometry shape {self.geometry.shape}")

    @classmethod
    def from_array(cls, array, spacing, origin=(0.0, 0.0, 0.0), direction=None) -> "Volume":
        array = np.asarray(array)
        return cls(array, Geometry(array.shape, spacing, origin, np.eye(3) if direction is None else direction))

    # convenient views of the geometry
    @property
    def spacing(self):
        return self.geometry.spacing

    @property
    def origin(self):
        return self.geometry.origin

    @property
    def direction(self):
        return self.geometry.direction

    @property
    def shape(self):
        return self.geometry.shape

    def with_array(self, array: np.ndarray) -> "Volume":
        """The same geometry with other voxels."""
        return Volume(np.asarray(array), self.geometry)

    def permuted(self, order) -> "Volume":
        """The same voxels at the same places with the array's axes in ``order`` (the geometry follows)."""
        order = tuple(int(o) for o in order)
        if order == (0, 1, 2):
            return self
        g = self.geometry
        return Volume(np.ascontiguousarray(self.array.transpose(order)),
                      Geometry(tuple(g.shape[o] for o in order), tuple(g.spacing[o] for o in order), g.origin,
                               g.direction[:, list(order)]))

    def flipped(self, axis: int) -> "Volume":
        """The same voxels at the same places with the array reversed along ``axis`` (the geometry follows)."""
        g = self.geometry
        last = [0, 0, 0]
        last[axis] = g.shape[axis] - 1
        direction = g.direction.copy()
        direction[:, axis] *= -1
        return Volume(np.ascontiguousarray(np.flip(self.array, axis)),
                      Geometry(g.shape, g.spacing, tuple(g.index_to_physical(last)), direction))

    def slices_last(self) -> tuple["Volume", tuple]:
        """The volume with its slice axis -- a stack's thick slices: the axis whose spacing is at least
        ``SLICE_RATIO`` times the others' -- as the third array axis, where every model and check expects it,
        by a cyclic turn of the axes (the grid's handedness kept: nothing is mirrored); and the order used
        (``permuted(np.argsort(order))`` turns back). A volume without such an axis (near isotropic), or with
        it third already, is returned as it is."""
        spacing = np.asarray(self.spacing)
        thick = int(np.argmax(spacing))
        if thick == 2 or spacing[thick] < SLICE_RATIO * np.delete(spacing, thick).max():
            return self, (0, 1, 2)
        order = (1, 2, 0) if thick == 0 else (2, 0, 1)
        return self.permuted(order), order

    def check_finite(self, name: str = "image") -> "Volume":
        if np.issubdtype(self.array.dtype, np.floating) and not np.all(np.isfinite(self.array)):
            bad = int(np.count_nonzero(~np.isfinite(self.array)))
            raise InputError(f"{name} has {bad} NaN or infinite voxels")
        return self

    def check_whole(self, name: str = "label map") -> "Volume":
        """Whole-number voxels (NaN is none), as a label map has: else it is likely an image."""
        a = self.array
        if np.issubdtype(a.dtype, np.floating) and not np.array_equal(a, np.round(a)):
            raise InputError(f"{name} holds non-integer values; is it an image rather than a label map?")
        return self

    def check_labels(self, allowed, name: str = "label map") -> "Volume":
        values = np.unique(self.check_whole(name).array)
        unexpected = sorted(set(values.astype(int).tolist()) - set(int(a) for a in allowed))
        if unexpected:
            raise InputError(f"{name} holds unexpected label values {unexpected}; expected only {sorted(allowed)}")
        return self
