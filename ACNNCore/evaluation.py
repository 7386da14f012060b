"""Evaluating label maps against ground truth: per case, per method, and as ``acnn evaluate``.

One row per case: Dice, mean symmetric surface distance and Hausdorff distance (mm) per structure,
volumes, myocardial mass, and anatomical plausibility. Prediction and ground truth may lie on different
grids (an HR prediction against thick-slice ground truth): the prediction is sampled on the ground
truth's grid in physical space, nearest neighbour.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from .dicom import is_dicom_seg, read_dicom_seg
from .errors import InputError
from .io import SUFFIXES, format_of, is_cine, read_frames, read_labels, read_segmentation
from .labels import LV_BLOOD_POOL, LV_MYOCARDIUM, RV_BLOOD_POOL, SEGMENTS
from .metrics import (agreement, clinical_measures, dice, ed_es_frames, ejection_fraction, on_grid_of,
                      plausibility, surface_distances)
from .progress import counted
from .volume import Volume

SHORT = {LV_BLOOD_POOL: "lv", LV_MYOCARDIUM: "myo", RV_BLOOD_POOL: "rv"}
METRICS = ("dice", "msd_mm", "hd_mm")


def evaluate_case(prediction: Volume, truth: Volume, structures=None) -> dict:
    """Dice, surface distances, volumes and plausibility of one prediction (a flat dict). ``structures``: the
    label values compared; by default the LV blood pool and myocardium, and the RV where the truth has one."""
    if structures is None:
        structures = (LV_BLOOD_POOL, LV_MYOCARDIUM) + ((RV_BLOOD_POOL,) if np.any(truth.array == RV_BLOOD_POOL)
                                                      else ())
    on_truth = on_grid_of(prediction, truth)
    d = dice(on_truth, truth, structures)
    s = surface_distances(on_truth, truth, structures)
    row = {}
    for v in structures:
        name = SHORT.get(v, f"label{v}")
        row[f"dice_{name}"] = d[v]
        row[f"msd_mm_{name}"] = s[v]["msd_mm"]
        row[f"hd_mm_{name}"] = s[v]["hd_mm"]
    rv = RV_BLOOD_POOL in structures
    for key, value in clinical_measures(prediction, rv=rv).items():
        row[f"pred_{key}"] = value
    for key, value in clinical_measures(truth, rv=rv).items():
        row[f"gt_{key}"] = value
    p = plausibility(prediction)
    row["plausible"] = p["plausible"]
    row["problems"] = ";".join(p["problems"])
    return row


def summarize(rows: list[dict]) -> dict:
    """Mean, std and count (finite values) of every numeric column of any row (the RV's only where the truth has
    one: ``n`` says of how many); implausible count."""
    out = {"cases": len(rows), "implausible": sum(not r["plausible"] for r in rows),
           "gt_implausible": sum(not r["gt_plausible"] for r in rows)}
    for key in dict.fromkeys(k for r in rows for k in r):
        values = np.array([r[key] for r in rows if isinstance(r.get(key), (int, float))
                           and not isinstance(r[key], bool)], float)
        if values.size and key not in ("plausible", "frame"):
            finite = values[np.isfinite(values)]
            out[key] = {"mean": float(finite.mean()) if finite.size else float("nan"),
                        "std": float(finite.std()) if finite.size else float("nan"), "n": int(finite.size)}
    return out


def ed_es_pairs(by_case: dict) -> list[tuple]:
    """(ED, ES) of every subject with both an ``*_ED`` and an ``*_ES`` case, from {case name: value}."""
    return [(v, by_case[name[:-3] + "_ES"]) for name, v in by_case.items()
            if name.endswith("_ED") and name[:-3] + "_ES" in by_case]


def ef_agreement(rows: list[dict], chamber: str = "lv") -> dict | None:
    """EF of the ``chamber`` ("lv", or "rv" where the rows have its volumes), predicted against ground truth,
    over the subjects with both an ``*_ED`` and an ``*_ES`` case (an empty ED blood pool, predicted or true,
    has no EF and is left out: the summary's ``n`` says how many count); None under three subjects."""
    pred_key, gt_key = f"pred_{chamber}_volume_ml", f"gt_{chamber}_volume_ml"
    pairs = []
    for r, es in ed_es_pairs({r["case"]: r for r in rows}):
        if all(k in r and k in es for k in (pred_key, gt_key)) and r[pred_key] > 0 and r[gt_key] > 0:
            pairs.append((ejection_fraction(r[pred_key], es[pred_key]), ejection_fraction(r[gt_key], es[gt_key])))
    if len(pairs) < 3:
        return None
    pred, truth = zip(*pairs)
    return agreement(pred, truth)


def ef_summary(rows: list[dict]) -> dict:
    """The summary's EF entries: ``ef`` (the LV's) and, where the RV was compared, ``rv_ef``."""
    out = {"ef": ef_agreement(rows)}
    if any("pred_rv_volume_ml" in r for r in rows):
        out["rv_ef"] = ef_agreement(rows, "rv")
    return out


# --- files ------------------------------------------------------------------------------

_TAGS = re.compile(r"(_hr_gt|_us_gt|_gt|_label|_labels|_seg|_pred|_prediction)$")


def _suffix(path) -> str:
    """A label map file's suffix: an image format's, or ``.dcm`` (a DICOM SEG)."""
    return ".dcm" if str(path).lower().endswith(".dcm") else format_of(path)


def is_label_file(path: Path) -> bool:
    """Named as a label map: ``_gt``, ``_seg``, ``_label(s)``, ``_pred(iction)`` before the suffix (ACDC's
    ``patientNNN_frameXX_gt.nii.gz``, a phantom's ``hr_gt.nii.gz``); a DICOM SEG whatever its name."""
    name = Path(path).name
    if name.lower().endswith(".dcm"):
        return True
    return name.lower().endswith(SUFFIXES) and bool(_TAGS.search("_" + name[: -len(format_of(name))]))


def case_key(path: Path, root: Path) -> str:
    """``root/sub/ED/hr_gt.nii.gz`` -> ``sub_ED``; ``root/p001_ED_pred.nii.gz`` -> ``p001_ED``."""
    rel = path.relative_to(root) if path != root else Path(path.name)
    stem = str(rel)[: -len(_suffix(rel))].replace("\\", "/").replace("/", "_")
    return _TAGS.sub("", "_" + stem if stem.startswith("_") else stem).strip("_") or stem


def acdc_frame(path: Path) -> tuple[str, int] | None:
    """An ACDC ground-truth file's patient and frame (counted from 1, as ACDC names them):
    ``patient001/patient001_frame12_gt.nii.gz`` beside an ``Info.cfg`` -> ("patient001", 12); None for any
    other file."""
    path = Path(path)
    m = re.fullmatch(rf"({re.escape(path.parent.name)})_frame(\d+)_gt\.nii(\.gz)?", path.name)
    return (m[1], int(m[2])) if m and (path.parent / "Info.cfg").is_file() else None


def acdc_names(path: Path) -> tuple[str, ...]:
    """An ACDC ground-truth file's case names, ``patientNNN_ED`` (or ``_ES``, from its patient's Info.cfg)
    first, then ``patientNNN_frameXX``; () for any other file."""
    from .datasets import read_acdc_info

    found = acdc_frame(path)
    if found is None:
        return ()
    patient, frame = found
    frames = read_acdc_info(path.parent / "Info.cfg")
    phases = [f"{patient}_{phase}" for phase in ("ED", "ES") if frames[phase] == frame]
    return (*phases, f"{patient}_frame{frame:02d}")


def _key(path: Path, root: Path, ground_truth: bool) -> str:
    names = acdc_names(path) if ground_truth else ()
    return names[0] if names else case_key(path, root)


def label_files(root: Path, ground_truth: bool) -> dict[str, Path]:
    """Label maps under ``root`` (a file or a folder searched recursively) by case key. In a ground-truth
    folder holding ``*_gt`` files (phantom, ACDC) only those count; ACDC's are keyed ``patientNNN_ED`` /
    ``_ES``, what ``acnn segment`` names its outputs (:func:`match` also takes ``patientNNN_frameXX``)."""
    root = Path(root)
    if root.is_file():
        return {_key(root, root.parent, ground_truth): root}
    if not root.is_dir():
        raise InputError(f"no such file or folder: {root}")
    files = sorted(Path(folder) / name for folder, _, names in os.walk(root, followlinks=True)  # links too
                   for name in names if name.lower().endswith(SUFFIXES)
                   or name.lower().endswith(".dcm") and is_dicom_seg(Path(folder) / name))
    if ground_truth and any(is_label_file(p) for p in files):
        files = [p for p in files if is_label_file(p)]
    found: dict[str, Path] = {}
    for p in files:
        key = _key(p, root, ground_truth)
        if key in found:
            raise InputError(f"two files for case {key!r}: {found[key]} and {p}")
        found[key] = p
    if not found:
        raise InputError(f"no label maps ({', '.join(SUFFIXES)}, DICOM SEG .dcm) under {root}")
    return found


def label_convention(path: Path, convention: str = "auto") -> str:
    """The label values of a file: ``convention`` as given ("ours", "acdc"), or for "auto" ACDC's where an ACDC
    ``Info.cfg`` lies beside the file, ours otherwise."""
    if convention != "auto":
        return convention
    return "acdc" if (Path(path).parent / "Info.cfg").is_file() else "ours"


def read_label_map(path: Path, convention: str = "ours") -> Volume:
    """A label map from any supported file (``.seg.nrrd`` and DICOM SEG included: read by their segments'
    names or codes), in our label values; ``convention``: the file's values, "ours", "acdc", or "auto" (ACDC's
    where an ACDC ``Info.cfg`` lies beside the file)."""
    from .labels import ACDC_TO_OURS, remap

    if is_dicom_seg(path):
        return read_dicom_seg(path)
    convention = label_convention(path, convention)
    if format_of(path) == ".seg.nrrd":
        labels, names = read_segmentation(path)
        by_name = {n: v for v, (n, _) in SEGMENTS.items()}
        mapping = {value: by_name.get(name, 0) for value, name in names.items()}
        return labels.with_array(remap(labels.array, {0: 0, **mapping}))
    labels = read_labels(path, allowed=(0, 1, 2, 3))
    return labels.with_array(remap(labels.array, ACDC_TO_OURS)) if convention == "acdc" else labels


def match(pred: Path, gt: Path) -> list[tuple[str, Path, Path]]:
    """Pairs (case, prediction, ground truth) by case name; a DICOM SEG without a prediction of its name, with
    the prediction SEG of the same images (:func:`_same_images`); an ACDC expert map without one, with the 4-D
    map of its patient's cine (:func:`_pair_cines`); a ground-truth case without a prediction is an error."""
    p, g = label_files(pred, False), label_files(gt, True)
    if Path(pred).is_file() and Path(gt).is_file():
        return [(next(iter(g)), Path(pred), Path(gt))]
    found = {k: next((p[n] for n in (k, *acdc_names(g[k])) if n in p), None) for k in g}
    if any(f is None for f in found.values()):  # ACDC's expert maps: the 4-D map of their patient's cine
        _pair_cines(found, g, p, Path(pred).is_file())
    unnamed = [k for k, f in found.items() if f is None and _suffix(g[k]) == ".dcm"]
    if unnamed:  # SEGs named otherwise: paired by the images they label
        from .dicom import seg_sources

        segs = {f: seg_sources(f) for f in p.values() if _suffix(f) == ".dcm"}
        for k in unnamed:
            found[k] = _same_images(seg_sources(g[k]), segs)
    missing = sorted(k for k, f in found.items() if f is None)
    if missing:
        raise InputError(f"no prediction for {len(missing)} ground-truth case(s): {', '.join(missing[:10])}"
                         f"{' ...' if len(missing) > 10 else ''} (predictions found: {', '.join(sorted(p)[:5])})")
    return [(k, found[k], g[k]) for k in sorted(g)]


def _pair_cines(found: dict, truth: dict[str, Path], predictions: dict[str, Path], one_file: bool) -> None:
    """ACDC expert maps without a prediction (``found``'s None, of ``truth``: {case: file}) paired with the 4-D map
    (of ``predictions``, {case name: file}) of their patient's cine: named after the patient, or as ACDC names the
    cine itself (``patientNNN_4d``); or the one map given as --pred against one patient's expert maps, whatever
    its name. The frame each expert map labels is in its name (:func:`acdc_frame`)."""
    where = {k: acdc_frame(f) for k, f in truth.items()}
    if not any(f is None and where[k] for k, f in found.items()):
        return
    cines = {n: f for n, f in predictions.items() if _suffix(f) != ".dcm" and is_cine(f)}  # headers only
    one_patient = len({w[0] if w else None for w in where.values()}) == 1
    only = next(iter(cines.values())) if one_file and len(cines) == 1 and one_patient else None
    for k, f in found.items():
        if f is None and where[k]:
            found[k] = only or cines.get(where[k][0]) or cines.get(f"{where[k][0]}_4d")


def _same_images(wanted: frozenset, segs: dict[Path, frozenset]) -> Path | None:
    """Of DICOM SEGs ({file: the images it labels, ``dicom.seg_sources``}), the one labelling most of the
    ``wanted`` images (an expert's SEG of a cine's ED frame, named by another tool, and ours of it); None where
    none shares one, or two share as many."""
    shared = sorted(((len(wanted & images), f) for f, images in segs.items()), key=lambda s: -s[0])
    if not shared or not shared[0][0] or len(shared) > 1 and shared[1][0] == shared[0][0]:
        return None
    return shared[0][1]


def read_label_frames(path: Path, convention: str = "ours") -> list[Volume]:
    """A label map's frames, in our label values (``convention`` as :func:`read_label_map`): one for a 3-D map,
    every frame of a cine's 4-D map (time last: what ``acnn segment CINE`` writes)."""
    from .labels import ACDC_TO_OURS, remap

    if _suffix(path) in (".dcm", ".seg.nrrd") or not is_cine(path):
        return [read_label_map(path, convention)]
    acdc = label_convention(path, convention) == "acdc"
    frames = [f.check_labels((0, 1, 2, 3), f"label map {path} frame {t + 1}") for t, f in enumerate(read_frames(path))]
    return [f.with_array(remap(f.array, ACDC_TO_OURS) if acdc else f.array.astype(np.uint8)) for f in frames]


def frame_pairs(key: str, pred: list[Volume], truth: list[Volume], gt_path: Path, frame: int | None = None):
    """(case, prediction, ground truth, frame counted from 1 or None) to compare, of one matched pair of label
    maps read by :func:`read_label_frames`. A cine's 4-D map against a 3-D map (either side): its frame the other
    labels -- ``frame``, or the one an ACDC expert map's name says (:func:`acdc_frame`). Two 4-D maps of one
    cine: frame by frame where the truth labels it (``frame``: that one alone), named ``KEY_ED`` / ``KEY_ES``
    where it labels two (ACDC's and M&Ms' 4-D maps: ED the larger LV blood pool), ``KEY_frameN`` otherwise."""
    if len(pred) == len(truth) == 1:
        if frame is not None:
            raise InputError("--frame names a frame of a cine's 4-D map; the prediction and the ground truth are "
                             "3-D label maps")
        return [(key, pred[0], truth[0], None)]
    if len(pred) > 1 and len(truth) > 1:
        if len(pred) != len(truth):
            raise InputError(f"the prediction is a cine's map of {len(pred)} frames, the ground truth one of "
                             f"{len(truth)}")
        if frame is not None:
            _check_frame(frame, len(truth))
        labelled = [frame] if frame is not None else [t + 1 for t, v in enumerate(truth) if v.array.any()]
        if not labelled:
            raise InputError("the ground truth's 4-D map labels none of its frames")
        names = {n: f"{key}_frame{n}" for n in labelled}
        if len(labelled) == 2 and frame is None:  # an expert's ED and ES: ED the larger LV blood pool
            lv = [np.count_nonzero(v.array == LV_BLOOD_POOL) for v in truth]
            ed, es = ed_es_frames(lv, among=[n - 1 for n in labelled])
            names = {ed + 1: f"{key}_ED", es + 1: f"{key}_ES"}
        return [(names[n], pred[n - 1], truth[n - 1], n) for n in sorted(names)]
    if frame is None:
        frame = (acdc_frame(gt_path) or (None, None))[1]
    if frame is None:
        cine, other = ("prediction", "ground truth") if len(pred) > 1 else ("ground truth", "prediction")
        raise InputError(f"the {cine} is a cine's 4-D map of {max(len(pred), len(truth))} frames, the {other} one "
                         f"3-D map: say which frame it labels with --frame (counted from 1)")
    _check_frame(frame, max(len(pred), len(truth)))
    return [(key, pred[frame - 1 if len(pred) > 1 else 0], truth[frame - 1 if len(truth) > 1 else 0], frame)]


def _check_frame(frame: int, count: int) -> None:
    if not 1 <= frame <= count:
        raise InputError(f"frame {frame} of a cine of {count} frames (counted from 1)")


def evaluate_files(pred: Path, gt: Path, gt_convention: str = "auto", progress: bool = True,
                   pred_convention: str = "auto", frame: int | None = None) -> list[dict]:
    """One row per case (:func:`evaluate_case`, and the ground truth's plausibility by the same checks,
    ``gt_plausible``: they fail some expert maps, ACDC's in 13 of 140), label maps matched by :func:`match`; each
    side's label values in its convention ("ours", "acdc" or "auto" as :func:`read_label_map`; a .seg.nrrd is
    read by its segments' names whatever the convention). A cine's 4-D map is compared frame by frame
    (:func:`frame_pairs`; ``frame``: the one a 3-D map labels, counted from 1), its rows with a ``frame``."""
    from .progress import progress_bar

    pairs = match(pred, gt)
    if frame is not None and len(pairs) > 1:
        raise InputError(f"--frame names the frame of one pair of label maps; {len(pairs)} cases were matched "
                         f"(give one --pred and one --gt file)")
    rows, read = [], {}
    for key, p, g in progress_bar(pairs, desc="evaluate", unit="case", enabled=progress):
        truth = read_label_frames(g, gt_convention)
        read = read if p in read else {p: read_label_frames(p, pred_convention)}  # a cine's map: once for ED and ES
        try:
            for case, on_pred, on_truth, n in frame_pairs(key, read[p], truth, g, frame):
                row = evaluate_case(on_pred, on_truth)
                rows.append({"case": case, **({"frame": n} if n else {}), **row,
                             "gt_plausible": plausibility(on_truth)["plausible"]})
        except InputError as e:
            raise InputError(f"{key}: {e}") from None
    return rows


def write_report(rows: list[dict], out: Path, overwrite: bool = False) -> dict:
    """``out`` (summary JSON) and ``out`` with ``.csv`` (one row per case)."""
    from .io import check_writable, write_table

    out = Path(out)
    csv_path = out.with_suffix(".csv")
    if out.suffix.lower() != ".json":
        raise InputError(f"--out must be a .json file, not {out}")
    check_writable(out, overwrite, image=False)
    check_writable(csv_path, overwrite, image=False)
    summary = {"summary": summarize(rows), **ef_summary(rows), "per_case_csv": csv_path.name}
    write_table(rows, csv_path)  # every column of any case (the RV's only where compared)
    out.write_text(json.dumps(_strict(summary), indent=1, allow_nan=False), encoding="utf-8")
    return summary


def _strict(value):
    """``value`` as strict JSON holds it: NaN (a distance to a structure one side lacks, a mean of none) as
    null, which every JSON reader takes (Python's ``json`` writes NaN, which browsers, jq and pandas refuse)."""
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return None if isinstance(value, float) and not np.isfinite(value) else value


def format_summary(summary: dict) -> str:
    s = summary["summary"]
    lines = [f"{counted(s['cases'], 'case')}, {s['implausible']} anatomically implausible (the ground truth, by "
             f"the same checks: {s['gt_implausible']})"]
    partial = False  # a distance to a structure one side lacks is undefined: its mean is over the other cases
    for v, name in SHORT.items():
        cols = []
        for m in (m for m in METRICS if f"{m}_{name}" in s):
            stat = s[f"{m}_{name}"]
            cols.append(f"{m} undefined" if stat["n"] == 0 else f"{m} {stat['mean']:.3f} ± {stat['std']:.3f}"
                        + (f" ({stat['n']} of {s['cases']})" if stat["n"] < s["cases"] else ""))
            partial |= stat["n"] < s["cases"]
        if cols:
            lines.append(f"  {SEGMENTS[v][0]:14s} " + ", ".join(cols))
    if partial:
        lines.append("  (a distance is undefined where the prediction or the ground truth lacks the structure: "
                     "means over the cases where it is defined)")
    for key, name in (("ef", "EF"), ("rv_ef", "RV EF")):
        ef = summary.get(key)
        if ef:
            lines.append(f"  {name}: r = {ef['r']:.3f}, bias {ef['bias']:+.1f} % (LoA {ef['loa'][0]:+.1f} to "
                         f"{ef['loa'][1]:+.1f}), {ef['n']} subjects")
    return "\n".join(lines)
