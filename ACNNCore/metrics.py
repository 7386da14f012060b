"""Clinical measures of label maps (volumes, mass, ejection fraction)."""

from __future__ import annotations

import numpy as np

from .errors import InputError
from .labels import LV_BLOOD_POOL, LV_MYOCARDIUM, MYOCARDIUM_DENSITY_G_PER_ML
from .volume import Volume


def clinical_measures(labels: Volume, blood: int = LV_BLOOD_POOL, myocardium: int = LV_MYOCARDIUM) -> dict:
    """LV blood-pool volume (ml), myocardial volume (ml) and mass (g, 1.05 g/ml) of a label map."""
    v = labels.geometry.voxel_volume_ml
    lv = float(np.count_nonzero(labels.array == blood)) * v
    myo = float(np.count_nonzero(labels.array == myocardium)) * v
    return {"lv_volume_ml": lv, "myo_volume_ml": myo, "myo_mass_g": myo * MYOCARDIUM_DENSITY_G_PER_ML}


def ejection_fraction(edv: float, esv: float) -> float:
    """EF (%) from end-diastolic and end-systolic volumes."""
    if edv <= 0:
        raise InputError("end-diastolic volume is zero: cannot compute an ejection fraction")
    return 100.0 * (edv - esv) / edv


def on_grid_of(prediction: Volume, truth: Volume) -> Volume:
    """The prediction sampled on the ground truth's grid in physical space (nearest neighbour)."""
    if prediction.geometry.same_as(truth.geometry):
        return prediction
    from .preprocessing import resample

    return resample(prediction, truth.geometry, "nearest")


def dice(prediction: Volume, truth: Volume, labels=(LV_BLOOD_POOL, LV_MYOCARDIUM)) -> dict:
    """Dice per label (MONAI's implementation), compared on the ground truth's grid."""
    import torch
    from monai.metrics import compute_dice

    prediction = on_grid_of(prediction, truth)
    p = torch.from_numpy(np.stack([prediction.array == v for v in labels]))[None].float()
    t = torch.from_numpy(np.stack([truth.array == v for v in labels]))[None].float()
    scores = compute_dice(p, t, include_background=True, ignore_empty=False)[0]
    return {int(v): float(s) for v, s in zip(labels, scores)}
