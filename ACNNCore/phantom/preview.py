"""A PNG montage of phantom subjects: what the data looks like, at a glance."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..figures import _plt, save, show


def write_preview(subjects, path, max_subjects: int = 4) -> Path:
    """Montage of the first subjects (rows): LR short-axis slices, HR short axis, LR and HR long axis, labels."""
    plt = _plt()
    subjects = list(subjects)[:max_subjects]
    mr = "lr" in subjects[0].phases["ED"]
    cols = 7 if mr else 4
    fig, axes = plt.subplots(len(subjects), cols, figsize=(2.1 * cols, 2.3 * len(subjects)), squeeze=False)
    for row, ps in zip(axes, subjects):
        ed, es = ps.phases["ED"], ps.phases["ES"]
        title = f"{ps.info['subject']} {ps.info['group']} EF {ps.info['ef_pct']:.0f}%"
        if mr:
            hr, gt, lr = ed["hr"], ed["hr_gt"], ed["lr"]
            k = lr.shape[2]
            j = int(np.argwhere(gt.array > 0)[:, 1].mean())
            sx, sz = hr.spacing[0], hr.spacing[2]
            for c, kk in enumerate((k // 4, k // 2, 3 * k // 4)):
                show(row[c], lr.array[:, :, kk], None, 1)
                row[c].set_title(f"LR slice {kk}", fontsize=7)
            factor = hr.shape[2] // k  # HR slices per LR slice (--factor)
            kk = factor * (k // 2) + factor // 2  # the HR slice amid the middle LR slice
            show(row[3], hr.array[:, :, kk], gt.array[:, :, kk], 1)
            row[3].set_title("HR short axis + labels", fontsize=7)
            show(row[4], lr.array[:, j, :], None, lr.spacing[2] / sx)
            row[4].set_title("LR long axis (motion)", fontsize=7)
            show(row[5], hr.array[:, j, :], None, sz / sx)
            row[5].set_title("HR long axis", fontsize=7)
            show(row[6], es["hr"].array[:, j, :], es["hr_gt"].array[:, j, :], sz / sx)
            row[6].set_title("ES long axis + labels", fontsize=7)
        else:
            us, gt = ed["us"], ed["us_gt"]
            center = np.argwhere(gt.array > 0).mean(0).astype(int)
            show(row[0], us.array[:, :, center[2]], None, 1)
            row[0].set_title("US short axis", fontsize=7)
            show(row[1], us.array[:, center[1], :], None, 1)
            row[1].set_title("US long axis", fontsize=7)
            show(row[2], us.array[:, center[1], :], gt.array[:, center[1], :], 1)
            row[2].set_title("ED cavity label", fontsize=7)
            show(row[3], es["us"].array[:, center[1], :], es["us_gt"].array[:, center[1], :], 1)
            row[3].set_title("ES cavity label", fontsize=7)
        row[0].set_ylabel(title, fontsize=7)
    fig.tight_layout()
    return save(fig, path, dpi=85)
