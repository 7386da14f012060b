"""What each of ``acnn benchmark``'s experiments trains, and on what budget: plain tables, no torch.

Kept apart from :mod:`ACNNCore.benchmark` so that the command line can name the choices without importing
the models.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    epochs: int  # segmentation / SR networks
    ae_epochs: int
    tl_epochs: int
    tl_predictor_epochs: int
    test_subjects: int
    latent_subjects: int
    batch_size: int


BUDGETS = {
    "tiny": Budget(2, 2, 2, 1, 4, 12, 4),  # minutes on 2 CPU cores, small data: CI
    "cpu": Budget(12, 15, 8, 5, 30, 60, 4),  # about an hour or two on a CPU at the default grid
    "paper": Budget(100, 100, 50, 25, 100, 200, 8),  # the paper's scale: a GPU
}

# key -> (name in the tables, training settings, prior key)
SPECS = {
    "ae": ("AE", {"task": "ae"}, None),
    "tl": ("T-L", {"task": "tl"}, "ae"),
    "fcn2d": ("2D-FCN", {"task": "seg", "architecture": "FCN2D"}, None),
    "seg3d": ("3D-Seg", {"task": "seg"}, None),
    "unet3d": ("3D-UNet", {"task": "seg", "architecture": "UNet3D"}, None),
    "seg3d-maug": ("3D-Seg-MAug", {"task": "seg", "augment": {"motion_mm": 3.0}}, None),
    "acnn-seg": ("ACNN-Seg", {"task": "seg"}, "ae"),
    "srcnn": ("SR-CNN", {"task": "sr", "architecture": "SRCNN"}, None),
    "unet3d-sr": ("3D-UNet", {"task": "sr", "architecture": "UNet3D"}, None),
    "acnn-sr": ("ACNN-SR", {"task": "sr"}, "tl"),
}


# --- real data: ACDC ---

ACDC_METHODS = {  # key -> (name, training settings, prior key)
    "ae": ("AE", {"task": "ae"}, None),
    "fcn2d": ("2D-FCN", {"task": "seg", "architecture": "FCN2D"}, None),
    "unet3d": ("3D-UNet", {"task": "seg", "architecture": "UNet3D"}, None),
    "seg": ("No prior (3D-Seg, K = 1)", {"task": "seg"}, None),
    "acnn-seg": ("ACNN-Seg", {"task": "seg"}, "ae"),
    # the same prior on the 2-D FCN: each slice segmented in 2-D, the stack's labels encoded by the AE in 3-D
    "acnn-fcn2d": ("ACNN-Seg (2D-FCN)", {"task": "seg", "architecture": "FCN2D"}, "ae"),
}
ACDC_SEG_KEYS = ("fcn2d", "unet3d", "seg", "acnn-seg", "acnn-fcn2d")
ACDC_BUDGETS = {"tiny": (1, 1), "cpu": (15, 25), "gpu": (160, 190), "paper": (150, 200)}  # (seg epochs, AE epochs)
