"""PNG figures (matplotlib, no display needed): label overlays and latent traversals."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .labels import SEGMENTS


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def label_rgba(labels: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """(X, Y) labels -> (Y, X, 4) RGBA for imshow(origin='lower')."""
    rgba = np.zeros(labels.T.shape + (4,))
    for value, (_, color) in SEGMENTS.items():
        rgba[labels.T == value] = (*color, alpha)
    return rgba


def show(ax, image=None, labels=None, aspect=1.0, title=None):
    if image is not None:
        ax.imshow(image.T, cmap="gray", origin="lower", aspect=aspect, vmin=float(np.percentile(image, 0.5)),
                  vmax=float(np.percentile(image, 99.5)))
    if labels is not None:
        if image is None:
            ax.imshow(np.zeros(labels.T.shape), cmap="gray", origin="lower", aspect=aspect, vmin=0, vmax=1)
        ax.imshow(label_rgba(labels, 0.45 if image is not None else 1.0), origin="lower", aspect=aspect)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def mid_slices(labels: np.ndarray) -> tuple[int, int]:
    """(k, j): the short-axis slice and the long-axis (x-z) plane through the labels' centre."""
    idx = np.argwhere(labels > 0)
    if len(idx) == 0:
        return labels.shape[2] // 2, labels.shape[1] // 2
    c = idx.mean(0).astype(int)
    return int(c[2]), int(c[1])


def cut_through(mask: np.ndarray) -> tuple[int, int, int] | None:
    """The voxel (i, j, k) a figure's cuts go through to show ``mask``: its slice holding most of it, at the
    centre of its part there; None for an empty mask (:func:`seg_figure` then cuts through the labels' centre,
    :func:`mid_slices`)."""
    where = np.argwhere(mask)
    if not len(where):
        return None
    k = int(np.bincount(where[:, 2]).argmax())
    i, j = np.round(where[where[:, 2] == k][:, :2].mean(0)).astype(int)
    return int(i), int(j), k


def exposed_faces(mask: np.ndarray) -> np.ndarray:
    """The faces of a 3-D mask's voxels that no other voxel of it covers: (N, 4, 3) corners, in voxels (voxel
    (i, j, k) spans [i, i + 1] x [j, j + 1] x [k, k + 1])."""
    padded, faces = np.pad(mask.astype(bool), 1), []
    for axis in range(3):
        a, b = (d for d in range(3) if d != axis)
        for side in (0, 1):  # the face toward lower, then higher, indices along the axis
            exposed = padded & ~np.roll(padded, -1 if side else 1, axis=axis)
            corners = np.zeros((4, 3))
            corners[:, axis], corners[[1, 2], a], corners[[2, 3], b] = side, 1, 1
            faces.append(np.argwhere(exposed)[:, None, :] - 1.0 + corners)
    return np.concatenate(faces)


def render_myocardium(ax, labels, value: int = 2, voxel_mm: float = 3.75) -> tuple | None:
    """A 3-D rendering of one structure: its voxels (resampled to about ``voxel_mm``) drawn as one shaded
    surface of their exposed faces (matplotlib's ``voxels`` draws each voxel as its own collection: a phantom's
    myocardium took 3.9 s, now 0.07), in mm, the view fitted to it. Returns its (lowest, highest) corner in mm,
    or None where the structure is absent."""
    ax.view_init(20, -60)
    ax.set_axis_off()
    steps = np.array([max(1, int(round(voxel_mm / s))) for s in labels.spacing])
    mask = labels.array[:: steps[0], :: steps[1], :: steps[2]] == value
    if not mask.any():
        return None
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    faces = exposed_faces(mask) * (steps * np.asarray(labels.spacing))
    ax.add_collection3d(Poly3DCollection(faces, facecolors=(*SEGMENTS[value][1], 1.0), shade=True))
    corners = faces.reshape(-1, 3)
    box = corners.min(0), corners.max(0)
    fit_view(ax, *box)
    return box


def fit_view(ax, low, high) -> None:
    """A 3-D axes' limits set to the box from ``low`` to ``high`` (mm), drawn in its true proportions."""
    ax.set_xlim(low[0], high[0])
    ax.set_ylim(low[1], high[1])
    ax.set_zlim(low[2], high[2])
    ax.set_box_aspect(np.asarray(high) - np.asarray(low))


def traversal_montage(steps, path, title: str = "", render3d: bool = False, base_first: bool = False) -> Path:
    """:func:`traversal_figure` written to ``path``."""
    return save(traversal_figure(steps, title, render3d, base_first), path)


def traversal_figure(steps, title: str = "", render3d: bool = False, base_first: bool = False):
    """Decoded shapes of a latent traversal (``steps``: (sd, label map) pairs): a short-axis and a long-axis cut
    per step (and, with ``render3d``, the myocardium in 3-D, every step in the same box: sizes compare); a step
    that fails the plausibility checks a segmentation is held to (:func:`ACNNCore.metrics.plausibility`) is
    marked "implausible" in red under its short-axis cut. The apex is drawn down: ``base_first`` (a shape
    model's ``input.slice_order``, as ACDC's maps run) reverses the slices for the drawing; the phantom's maps
    run apex first."""
    from .metrics import plausibility

    plt = _plt()
    if base_first:
        steps = [(z, volume.flipped(2)) for z, volume in steps]
    n = len(steps)
    rows = 3 if render3d else 2
    fig = plt.figure(figsize=(1.5 * n, 1.7 * rows))
    axes = [[fig.add_subplot(rows, n, r * n + c + 1, **({"projection": "3d"} if r == 2 else {}))
             for c in range(n)] for r in range(rows)]
    k, j = mid_slices(steps[n // 2][1].array)
    boxes = []
    for col, (z, volume) in enumerate(steps):
        sp = volume.spacing
        show(axes[0][col], labels=volume.array[:, :, k], title=f"{z:+.1f} sd")
        if not plausibility(volume)["plausible"]:
            axes[0][col].set_xlabel("implausible", fontsize=7, color="tab:red")
        show(axes[1][col], labels=volume.array[:, j, :], aspect=sp[2] / sp[0])
        if render3d:
            boxes.append(render_myocardium(axes[2][col], volume))
    boxes = [b for b in boxes if b is not None]
    if boxes:  # one box holding every step's
        low, high = np.min([b[0] for b in boxes], 0), np.max([b[1] for b in boxes], 0)
        for ax in axes[2]:
            fit_view(ax, low, high)
    axes[0][0].set_ylabel("short axis", fontsize=8)
    axes[1][0].set_ylabel("long axis", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def save(fig, path, dpi: int = 90) -> Path:
    """A figure written to ``path`` (its folder made), and closed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    _plt().close(fig)
    return path


def _on_hr(volume, truth):
    from .metrics import on_grid_of

    return on_grid_of(volume, truth)


def seg_figure(case: dict, predictions: dict, path, titles=("LR input", "HR ground truth"),
               margin: int | None = None, at: tuple | None = None) -> Path:
    """Fig. 6: the LR input, each method's labels and the HR ground truth, short- and long-axis.
    ``margin``: show only the heart (the ground truth's in-plane box, widened by this many voxels); ``at``:
    the voxel (i, j, k) the cuts go through (default: the ground truth's centre), inside the box shown: a
    defect far from the heart widens it."""
    plt = _plt()
    truth = case["hr_gt"]
    lr = _on_hr(case["lr"], truth)  # nearest: shows the thick slices and their misalignment
    columns = [(titles[0], None)] + [(name, _on_hr(p, truth).array) for name, p in predictions.items()] \
        + [(titles[1], truth.array)]
    box = (slice(None), slice(None))
    if margin is not None:
        ij = np.argwhere(truth.array.any(axis=2))
        lo, hi = np.maximum(ij.min(0) - margin, 0), ij.max(0) + margin + 1
        if at is not None:
            lo, hi = np.minimum(lo, np.asarray(at[:2])), np.maximum(hi, np.asarray(at[:2]) + 1)
        box = (slice(lo[0], hi[0]), slice(lo[1], hi[1]))
    image = lr.array[box]
    columns = [(name, None if labels is None else labels[box]) for name, labels in columns]
    k, j = mid_slices(truth.array[box]) if at is None else (int(at[2]), int(at[1]) - (box[1].start or 0))
    sp = truth.spacing
    fig, axes = plt.subplots(2, len(columns), figsize=(2.2 * len(columns), 4.6), squeeze=False)
    for col, (name, labels) in enumerate(columns):
        show(axes[0, col], image[:, :, k], None if labels is None else labels[:, :, k], title=name)
        show(axes[1, col], image[:, j, :], None if labels is None else labels[:, j, :], aspect=sp[2] / sp[0])
    axes[0, 0].set_ylabel("short axis", fontsize=8)
    axes[1, 0].set_ylabel("long axis", fontsize=8)
    fig.tight_layout()
    return save(fig, path)


def sr_figure(case: dict, images: dict, path) -> Path:
    """Fig. 8: long-axis cuts of the LR input, each super-resolved image and the HR image."""
    plt = _plt()
    truth = case["hr"]
    columns = [("LR input", _on_hr(case["lr"], truth))] + list(images.items()) + [("HR image", truth)]
    _, j = mid_slices(case["hr_gt"].array)
    sp = truth.spacing
    fig, axes = plt.subplots(1, len(columns), figsize=(2.0 * len(columns), 2.6), squeeze=False)
    for col, (name, image) in enumerate(columns):
        show(axes[0, col], image.array[:, j, :], aspect=sp[2] / sp[0], title=name)
    fig.tight_layout()
    return save(fig, path)


def latent_histograms(codes: np.ndarray, dims, groups: np.ndarray, path) -> Path:
    """Fig. 9: histograms of code dimensions, one colour per pathology group."""
    plt = _plt()
    n = len(dims)
    cols = 4
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 1.8 * rows), squeeze=False)
    for ax, d in zip(axes.ravel(), dims):
        bins = np.linspace(codes[:, d].min(), codes[:, d].max() + 1e-6, 16)
        for g in sorted(set(groups)):
            ax.hist(codes[groups == g, d], bins=bins, alpha=0.5, label=g)
        ax.set_title(f"dimension {d}", fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=6)
    fig.tight_layout()
    return save(fig, path)
