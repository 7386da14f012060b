"""A cine's ED and ES: one stack segmented as it is, or the ED and ES frames of a cine (given, or found as the
frames of largest and smallest LV blood pool, which segments every frame), with their measures and the
ejection fraction; and a cine super-resolved frame by frame. Used by ``acnn segment`` / ``acnn superresolve`` on
a 4-D file and by the Slicer modules on a sequence."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .errors import InputError
from .inference import CLOSED_BY_RULE, Segmenter, SuperResolver
from .labels import RV_BLOOD_POOL
from .metrics import clinical_measures, ed_es_frames, ejection_fraction, plausibility, verdict
from .volume import Volume

Report = Callable[[float, str], None]  # (fraction done 0..1, message); may raise to stop
IMPLAUSIBLE_UNSEARCHED = (" An implausible output can also mean an image stored turned or mirrored in-plane, unlike "
                          "the model's training images: find its in-plane orientation.")


@dataclass
class PhaseResult:
    phase: str  # "ED", "ES", or "" for a single volume
    frame: int  # index in the sequence (0 for a single volume); people count frames from 1 (frame_number)
    labels: Volume  # on the HR grid aligned with the input
    measures: dict  # lv_volume_ml, myo_volume_ml, myo_mass_g; rv_volume_ml where the model segments the RV
    plausibility: dict  # ACNNCore.metrics.plausibility
    correction: str = ""  # with a shape model: what it did (ACNNCore.inference.ShapeModel.correct)
    orientation: str = ""  # with Segmenter(orient=True): the in-plane view kept (Segmentation.orientation; a
    # cine's, searched for in its first frame segmented)

    @property
    def repair(self) -> str:
        """What changed the network's output to make it plausible, for a flag beside it: "corrected by the
        shape model", "ring closed by rule" (the shape model failed and ``close_myocardium`` took over) or ""."""
        if self.correction.startswith("corrected"):
            return "corrected by the shape model"
        return "ring closed by rule" if self.correction.endswith(CLOSED_BY_RULE) else ""

    @property
    def verdict(self) -> str:
        """Plausible or not (and what failed), and what repaired it: "plausible (corrected by the shape model)"."""
        return verdict(self.plausibility) + (f" ({self.repair})" if self.repair else "")


@dataclass
class SegmentResult:
    phases: list[PhaseResult]
    model: str
    device: str
    ef_pct: float | None = None  # the LV's
    rv_ef_pct: float | None = None  # where the model segments the RV
    volume_curve_ml: list[float] = field(default_factory=list)  # per frame (by index), where every frame was segmented
    frames: dict = field(default_factory=dict)  # frame index -> labels, every frame segmented
    label_names: dict = field(default_factory=dict)  # value -> name, the model's
    notes: list[str] = field(default_factory=list)  # the model's caveats on these images (Segmenter.caveats)
    rv_volume_curve_ml: list[float] = field(default_factory=list)  # the RV's, where the model segments it

    def orientation_note(self) -> str:
        """Where the in-plane orientation was searched for (``orient``; a cine's frames share the one found) and
        the image was best seen turned or mirrored: a sentence saying so; where it was not searched for and an
        output is implausible: a sentence naming the search (the front ends' "Find the in-plane orientation");
        else ""."""
        found = self.phases[0].orientation if self.phases else ""
        if not found:
            return IMPLAUSIBLE_UNSEARCHED if any(not p.plausibility["plausible"] for p in self.phases) else ""
        if found.startswith("as stored"):
            return ""
        return f" The network was surest of {'the frames' if len(self.phases) > 1 else 'the image'} {found}."

    def summary(self, also: str = "") -> str:
        """The front ends' status line: the device, the EF, each phase's verdict, the orientation found (or
        where it was not searched for and an output is implausible, the search named), then
        ``also`` (sentences of the caller's, such as the Dice against an expert map) and the model's caveats:
        "Segmented on cpu, EF 61.2 %; ED plausible; ES plausible (corrected by the shape model)."."""
        ef = "" if self.ef_pct is None else f", EF {self.ef_pct:.1f} %"
        flags = "; ".join(f"{p.phase or 'result'} {p.verdict}" for p in self.phases)
        return f"Segmented on {self.device}{ef}; {flags}." + self.orientation_note() + also + self.notes_text()

    def notes_text(self) -> str:
        """The model's caveats as sentences to follow a status line ("" where there are none)."""
        return "".join(f" Note: {n}." for n in self.notes)

    def rows(self) -> list[dict]:
        """The result table: one row per phase (RV columns where the model segments the RV)."""
        rows = []
        for p in self.phases:
            row = {"Phase": p.phase or "-", "Frame": frame_number(p.frame),
                   "LV blood pool (ml)": round(p.measures["lv_volume_ml"], 1),
                   "LV myocardium (ml)": round(p.measures["myo_volume_ml"], 1),
                   "Myocardial mass (g)": round(p.measures["myo_mass_g"], 1),
                   "EF (%)": None if self.ef_pct is None else round(self.ef_pct, 1)}
            if "rv_volume_ml" in p.measures:
                row.update({"RV blood pool (ml)": round(p.measures["rv_volume_ml"], 1),
                            "RV EF (%)": None if self.rv_ef_pct is None else round(self.rv_ef_pct, 1)})
            rows.append({**row, "Plausible": "yes" if p.plausibility["plausible"] else "no",
                         "Problems": ", ".join(p.plausibility["problems"]), "Shape model": p.correction or "-"})
        return rows


def frame_number(index: int) -> int:
    """A frame's index as people count frames: from 1, as Slicer's Sequences toolbar ("12/30"), the studio's
    slider and ACDC's Info.cfg do. What the front ends show and take; the API's ``frame`` and ``ed`` / ``es``
    are indices (from 0)."""
    return index + 1


def frame_index(number, count: int, name: str) -> int | None:
    """The index of frame ``number`` (counted from 1, as the front ends take it: a whole number, or its text as
    a field holds it) of a cine of ``count`` frames; None stays None (found from the volume curve). Anything else
    is an error naming ``name`` ("ED", "ES")."""
    if number is None:
        return None
    try:
        whole = float(number)
    except (TypeError, ValueError):
        whole = float("nan")
    if isinstance(number, bool) or not whole.is_integer():
        raise InputError(f"the {name} frame is a whole number, counted from 1, not {number!r}")
    if not 1 <= whole <= count:
        raise InputError(f"{name} frame {int(whole)} is outside the cine's frames, 1 to {count} (frames count from "
                         f"1)")
    return int(whole) - 1


def segment_frames(segmenter: Segmenter, frames: list[Volume], ed: int | None = None, es: int | None = None,
                   report: Report | None = None, model: str = "", every: bool = False) -> SegmentResult:
    """Segment one volume, or the ED and ES frames of a cine (``ed`` and ``es`` given, as indices from 0, or
    every frame segmented and ED / ES taken as the frames of largest / smallest LV blood pool, the one not given
    where one is; never the other's frame, and the two given must differ). ``every``: every frame segmented
    even where both are given (a label map of the whole cycle, and its volume curve). The segmenter's own
    clean-up or shape-model correction applies to every frame. ``report(fraction, message)`` is called before
    each frame (a GUI's progress, and its way to cancel by raising)."""
    report = report or (lambda fraction, message: None)
    if not frames:
        raise InputError("no frames to segment")
    for name, index in (("ED", ed), ("ES", es)):
        if index is not None and not 0 <= index < len(frames):
            raise InputError(f"{name} frame index {index} is outside the sequence's {len(frames)} frames (indices "
                             f"0 to {len(frames) - 1})")
    if len(frames) > 1 and ed is not None and ed == es:
        raise InputError("ED and ES are the same frame: an ejection fraction needs two; give two frames, or leave "
                         "them to be found from the LV blood-pool volume curve")
    if len(frames) == 1:
        wanted = [("", 0)]
    elif ed is not None and es is not None and not every:
        wanted = [("ED", ed), ("ES", es)]
    else:
        wanted = []
    labels, corrections, orientations, rv, names, view, found, heart = {}, {}, {}, False, {}, None, "", None
    todo = [i for _, i in wanted] if wanted else list(range(len(frames)))
    for n, i in enumerate(todo):
        message = f"segmenting frame {frame_number(i)} of {len(frames)}"
        report(0.05 + 0.9 * n / len(todo), message)

        def passes(done, total, n=n, message=message):  # an ensemble's or TTA's passes: finer steps, and cancel
            report(0.05 + 0.9 * (n + done / total) / len(todo), f"{message} (pass {done} of {total})")

        def correcting(n=n, message=message):  # the shape model's search: seconds, so cancel is heard in it
            report(0.05 + 0.9 * (n + 1) / len(todo), f"{message} (correcting with the shape model)")

        # a cine's frames share their layout: with the orientation search, it is searched for in the first; and
        # each frame's heart search starts where the last frame's ended (windows only: the heart moves a little)
        result = segmenter(frames[i], progress=passes if segmenter.passes > 1 else None, view=view, near=heart,
                           checkpoint=correcting)
        if n == 0:
            view, found = result.view, result.orientation
        heart = result.heart
        labels[i], corrections[i], orientations[i] = result.labels, result.correction, found
        rv, names = RV_BLOOD_POOL in result.label_names, result.label_names
    curve, rv_curve, measured = [], [], {}
    if not wanted:  # every frame measured: the curves, and ED's and ES's measures among them
        measured = {i: clinical_measures(labels[i], rv=rv) for i in range(len(frames))}
        curve = [measured[i]["lv_volume_ml"] for i in range(len(frames))]
        rv_curve = [measured[i]["rv_volume_ml"] for i in range(len(frames))] if rv else []
        wanted = list(zip(("ED", "ES"), ed_es_frames(curve, ed, es)))
    report(0.95, "measuring")
    phases = [PhaseResult(phase, i, labels[i], measured.get(i) or clinical_measures(labels[i], rv=rv),
                          plausibility(labels[i]), corrections[i], orientations[i]) for phase, i in wanted]
    ef = {}
    for key in ("lv_volume_ml", "rv_volume_ml") if rv else ("lv_volume_ml",):
        if len(phases) == 2 and phases[0].measures[key] > 0:
            ef[key] = ejection_fraction(phases[0].measures[key], phases[1].measures[key])
    notes = segmenter.caveats(frames[0])
    if ef.get("lv_volume_ml", 0) < 0:  # frames given the wrong way round (found ones cannot be)
        notes.append(f"the LV blood pool is larger at ES (frame {frame_number(phases[1].frame)}) than at ED (frame "
                     f"{frame_number(phases[0].frame)}): are the two the wrong way round?")
    return SegmentResult(phases, str(model), str(segmenter.runner.device), ef.get("lv_volume_ml"),
                         ef.get("rv_volume_ml"), curve, labels, names, notes, rv_curve)


def superresolve_frames(resolver: SuperResolver, frames: list[Volume], report: Report | None = None) -> list[Volume]:
    """Each frame of a cine (or one volume) super-resolved, every frame in the same window: the network's
    centred where the heart is found in the first frame (:meth:`SuperResolver.heart_center`), so the HR cine
    shows one place throughout. ``report(fraction, message)`` is called before each frame (a GUI's progress, and
    its way to cancel by raising)."""
    report = report or (lambda fraction, message: None)
    if not frames:
        raise InputError("no frames to super-resolve")
    report(0.02, "finding the heart" if len(frames) > 1 else "super-resolving")
    center = resolver.heart_center(frames[0])
    out = []
    for t, frame in enumerate(frames):
        if len(frames) > 1:
            report(0.05 + 0.9 * t / len(frames), f"super-resolving frame {frame_number(t)} of {len(frames)}")
        out.append(resolver(frame, center=center))
    return out
