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


def traversal_montage(steps, path, title: str = "") -> Path:
    """Decoded shapes of a latent traversal: a short-axis and a long-axis cut per step."""
    plt = _plt()
    n = len(steps)
    fig, axes = plt.subplots(2, n, figsize=(1.5 * n, 3.4), squeeze=False)
    k, j = mid_slices(steps[n // 2][1].array)
    for col, (z, volume) in enumerate(steps):
        sp = volume.spacing
        show(axes[0, col], labels=volume.array[:, :, k], title=f"{z:+.1f} sd")
        show(axes[1, col], labels=volume.array[:, j, :], aspect=sp[2] / sp[0])
    axes[0, 0].set_ylabel("short axis", fontsize=8)
    axes[1, 0].set_ylabel("long axis", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
