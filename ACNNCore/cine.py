"""A cine's ED and ES: one stack segmented as it is, or the ED and ES frames of a cine (given, or found as the
frames of largest and smallest LV blood pool, which segments every frame), with their measures and the
ejection fraction. Used by ``acnn segment`` on a 4-D file and by the Slicer Segment module on a sequence."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .errors import InputError
from .inference import Segmenter
from .metrics import clinical_measures, ejection_fraction, plausibility
from .volume import Volume

Report = Callable[[float, str], None]  # (fraction done 0..1, message); may raise to stop


@dataclass
class PhaseResult:
    phase: str  # "ED", "ES", or "" for a single volume
    frame: int  # index in the sequence (0 for a single volume)
    labels: Volume  # on the HR grid aligned with the input
    measures: dict  # lv_volume_ml, myo_volume_ml, myo_mass_g
    plausibility: dict  # ACNNCore.metrics.plausibility
    correction: str = ""  # with a shape model: what it did (ACNNCore.inference.ShapeModel.correct)


@dataclass
class SegmentResult:
    phases: list[PhaseResult]
    model: str
    device: str
    ef_pct: float | None = None
    volume_curve_ml: list[float] = field(default_factory=list)  # per frame, when ED/ES were detected
    frames: dict = field(default_factory=dict)  # frame index -> labels, every frame segmented

    def rows(self) -> list[dict]:
        """The result table: one row per phase."""
        return [{"Phase": p.phase or "-", "Frame": p.frame,
                 "LV blood pool (ml)": round(p.measures["lv_volume_ml"], 1),
                 "LV myocardium (ml)": round(p.measures["myo_volume_ml"], 1),
                 "Myocardial mass (g)": round(p.measures["myo_mass_g"], 1),
                 "EF (%)": None if self.ef_pct is None else round(self.ef_pct, 1),
                 "Plausible": "yes" if p.plausibility["plausible"] else "no",
                 "Problems": ", ".join(p.plausibility["problems"]),
                 "Shape model": p.correction or "-"} for p in self.phases]


def segment_frames(segmenter: Segmenter, frames: list[Volume], ed: int | None = None, es: int | None = None,
                   report: Report | None = None, model: str = "") -> SegmentResult:
    """Segment one volume, or the ED and ES frames of a cine (``ed`` and ``es`` given, or every frame
    segmented and ED / ES taken as the frames of largest / smallest LV blood pool). The segmenter's own
    clean-up or shape-model correction applies to every frame. ``report(fraction, message)`` is called before
    each frame (a GUI's progress, and its way to cancel by raising)."""
    report = report or (lambda fraction, message: None)
    if not frames:
        raise InputError("no frames to segment")
    for name, index in (("ED", ed), ("ES", es)):
        if index is not None and not 0 <= index < len(frames):
            raise InputError(f"{name} frame {index} is outside the sequence's {len(frames)} frames")
    if len(frames) == 1:
        wanted = [("", 0)]
    elif ed is not None and es is not None:
        wanted = [("ED", ed), ("ES", es)]
    else:
        wanted = []
    labels, corrections = {}, {}
    todo = [i for _, i in wanted] if wanted else list(range(len(frames)))
    for n, i in enumerate(todo):
        report(0.05 + 0.9 * n / len(todo), f"segmenting frame {i + 1} of {len(frames)}")
        result = segmenter(frames[i])
        labels[i], corrections[i] = result.labels, result.correction
    curve = []
    if not wanted:
        curve = [clinical_measures(labels[i])["lv_volume_ml"] for i in range(len(frames))]
        wanted = [("ED", int(np.argmax(curve))), ("ES", int(np.argmin(curve)))]
    report(0.95, "measuring")
    phases = [PhaseResult(phase, i, labels[i], clinical_measures(labels[i]), plausibility(labels[i]),
                          corrections[i]) for phase, i in wanted]
    ef = None
    if len(phases) == 2 and phases[0].measures["lv_volume_ml"] > 0:
        ef = ejection_fraction(phases[0].measures["lv_volume_ml"], phases[1].measures["lv_volume_ml"])
    return SegmentResult(phases, str(model), str(segmenter.runner.device), ef, curve, labels)
