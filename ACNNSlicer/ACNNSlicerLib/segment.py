"""Segment: a short-axis stack (or a cine sequence) -> HR LV segmentation, volumes, mass, EF, plausibility."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ACNNCore.errors import InputError
from ACNNCore.bundle import prior_of
from ACNNCore.inference import Segmenter, ShapeModel, clean_up
from ACNNCore.metrics import clinical_measures, ejection_fraction, plausibility
from ACNNCore.volume import Volume

from . import mrml
from .common import Progress, cached, models_for, step


@dataclass
class PhaseResult:
    phase: str  # "ED", "ES", or "" for a single volume
    frame: int  # index in the sequence (0 for a single volume)
    labels: Volume  # on the HR grid aligned with the input
    measures: dict  # lv_volume_ml, myo_volume_ml, myo_mass_g
    plausibility: dict  # ACNNCore.metrics.plausibility
    correction: str = ""  # with correct=True: what the shape model did (ACNNCore.inference.ShapeModel.correct)


@dataclass
class SegmentResult:
    phases: list[PhaseResult]
    model: str
    device: str
    ef_pct: float | None = None
    volume_curve_ml: list[float] = field(default_factory=list)  # per frame, when ED/ES were detected

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


class SegmentLogic:
    """Usable without any GUI: ``read_input`` -> ``compute`` (no scene access: may run in a worker
    thread) -> ``apply`` (adds nodes). ``process`` does the three in turn."""

    def __init__(self):
        self._models: dict = {}

    @staticmethod
    def models() -> list[str]:
        return models_for("seg")

    @staticmethod
    def suited_model(node) -> str | None:
        """The bundled model that suits a volume or cine node (ACNNCore's choice: the phantom model for the
        phantom's stacks, the real-data model for anything else); None if the node is not a usable image."""
        from ACNNCore.inference import default_model

        if node is not None and node.IsA("vtkMRMLSequenceNode"):
            node = node.GetNthDataNode(0) if node.GetNumberOfDataNodes() else None
        try:
            return default_model(mrml.volume_from_node(node))
        except InputError:
            return None

    def segmenter(self, model: str, device: str = "auto", tta: bool = False) -> Segmenter:
        return cached(self._models, Segmenter, model, device, tta=tta)

    @staticmethod
    def read_input(node) -> list[Volume]:
        """The frames of a scalar volume node (one) or of a sequence node of volumes (all), checked."""
        if node is not None and node.IsA("vtkMRMLSequenceNode"):
            n = node.GetNumberOfDataNodes()
            if n == 0:
                raise InputError(f"sequence {node.GetName()!r} is empty")
            return [mrml.volume_from_node(node.GetNthDataNode(i), f"frame {i} of") for i in range(n)]
        return [mrml.volume_from_node(node)]

    def compute(self, frames: list[Volume], model: str, device: str = "auto", ed: int | None = None,
                es: int | None = None, progress: Progress | None = None, cancelled=None,
                cleanup: bool = False, close_myocardium: bool = False, correct: bool = False,
                tta: bool = False) -> SegmentResult:
        """Segment one volume, or the ED and ES frames of a cine sequence (given, or detected as the frames of
        largest and smallest LV blood-pool volume, which segments every frame). ``cleanup``: each structure's
        largest connected part, the LV blood pool without holes (``ACNNCore.inference.clean_up``);
        ``close_myocardium``: that, and the myocardial ring closed where it is open; ``correct``: the clean-up,
        and an implausible output corrected with the shape model the network was trained with
        (``ACNNCore.inference.ShapeModel.correct``); ``tta``: test-time augmentation, the network's probabilities
        averaged over nine views of each frame (``ACNNCore.inference.TTA_VIEWS``)."""
        if close_myocardium and correct:
            raise InputError("close the myocardium by rule or correct with the shape model, not both")
        step(progress, cancelled, 0.0, f"loading {model}")
        segmenter = self.segmenter(model, device, tta)
        shape = cached(self._models, ShapeModel, prior_of(model), device) if correct else None
        for name, index in (("ED", ed), ("ES", es)):
            if index is not None and not 0 <= index < len(frames):
                raise InputError(f"{name} frame {index} is outside the sequence's {len(frames)} frames")
        if len(frames) == 1:
            wanted = [("", 0)]
        elif ed is not None and es is not None:
            wanted = [("ED", ed), ("ES", es)]
        else:
            wanted = []
        labels, curve, corrections = {}, [], {}
        todo = [i for _, i in wanted] if wanted else list(range(len(frames)))
        for n, i in enumerate(todo):
            step(progress, cancelled, 0.05 + 0.9 * n / len(todo), f"segmenting frame {i + 1} of {len(frames)}")
            result = segmenter(frames[i])
            labels[i] = result.labels
            if shape is not None:
                step(progress, cancelled, 0.05 + 0.9 * (n + 0.5) / len(todo), f"checking frame {i + 1}'s shape")
                labels[i], corrections[i] = shape.correct(labels[i], result.probabilities)
            elif cleanup or close_myocardium:
                labels[i] = clean_up(labels[i], close_myocardium=close_myocardium)
        if not wanted:
            curve = [clinical_measures(labels[i])["lv_volume_ml"] for i in range(len(frames))]
            wanted = [("ED", int(np.argmax(curve))), ("ES", int(np.argmin(curve)))]
        step(progress, cancelled, 0.95, "measuring")
        phases = [PhaseResult(phase, i, labels[i], clinical_measures(labels[i]), plausibility(labels[i]),
                              corrections.get(i, "")) for phase, i in wanted]
        ef = None
        if len(phases) == 2 and phases[0].measures["lv_volume_ml"] > 0:
            ef = ejection_fraction(phases[0].measures["lv_volume_ml"], phases[1].measures["lv_volume_ml"])
        step(progress, None, 1.0, "done")
        return SegmentResult(phases, str(model), str(segmenter.runner.device), ef, curve)

    @staticmethod
    def apply(result: SegmentResult, input_node, surfaces: bool = True) -> tuple[list, object]:
        """Add one segmentation node per phase (segments 'LV blood pool', 'LV myocardium', closed surfaces)
        and a table node of the measures. Returns (segmentation nodes, table node)."""
        scene = input_node.GetScene()
        base = input_node.GetName()
        segmentations = []
        for p in result.phases:
            name = f"{base} {p.phase + ' ' if p.phase else ''}ACNN segmentation"
            node = mrml.labels_to_segmentation(p.labels, scene=scene, name=name, surfaces=surfaces)
            node.SetAttribute("ACNN.Model", result.model)
            node.SetAttribute("ACNN.Plausible", str(p.plausibility["plausible"]).lower())
            segmentations.append(node)
        table = mrml.rows_to_table(result.rows(), scene=scene, name=f"{base} ACNN measures")
        return segmentations, table

    def process(self, input_node, model: str = "acnn-seg-phantom", device: str = "auto", ed=None, es=None,
                progress: Progress | None = None, cancelled=None, surfaces: bool = True,
                cleanup: bool = False, close_myocardium: bool = False, correct: bool = False, tta: bool = False):
        """Blocking: read, compute, apply. Returns (result, segmentation nodes, table node)."""
        result = self.compute(self.read_input(input_node), model, device, ed, es, progress, cancelled,
                              cleanup, close_myocardium, correct, tta)
        segmentations, table = self.apply(result, input_node, surfaces)
        return result, segmentations, table
