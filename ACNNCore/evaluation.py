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
from .io import SUFFIXES, format_of, read_labels, read_segmentation
from .labels import LV_BLOOD_POOL, LV_MYOCARDIUM, RV_BLOOD_POOL, SEGMENTS
from .metrics import (agreement, clinical_measures, dice, ejection_fraction, on_grid_of, plausibility,
                      surface_distances)
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
        if values.size and key not in ("plausible",):
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


def acdc_names(path: Path) -> tuple[str, ...]:
    """An ACDC ground-truth file's case names, ``patientNNN_ED`` (or ``_ES``, from its patient's Info.cfg)
    first, then ``patientNNN_frameXX``; () for any other file."""
    from .datasets import read_acdc_info

    info = path.parent / "Info.cfg"
    m = re.fullmatch(rf"({re.escape(path.parent.name)})_frame(\d+)_gt\.nii(\.gz)?", path.name)
    if not m or not info.is_file():
        return ()
    frames = read_acdc_info(info)
    phases = [f"{m[1]}_{phase}" for phase in ("ED", "ES") if frames[phase] == int(m[2])]
    return (*phases, f"{m[1]}_frame{m[2]}")


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
    the prediction SEG of the same images (:func:`_same_images`); a ground-truth case without a prediction is an
    error."""
    p, g = label_files(pred, False), label_files(gt, True)
    if Path(pred).is_file() and Path(gt).is_file():
        return [(next(iter(g)), Path(pred), Path(gt))]
    found = {k: next((p[n] for n in (k, *acdc_names(g[k])) if n in p), None) for k in g}
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


def _same_images(wanted: frozenset, segs: dict[Path, frozenset]) -> Path | None:
    """Of DICOM SEGs ({file: the images it labels, ``dicom.seg_sources``}), the one labelling most of the
    ``wanted`` images (an expert's SEG of a cine's ED frame, named by another tool, and ours of it); None where
    none shares one, or two share as many."""
    shared = sorted(((len(wanted & images), f) for f, images in segs.items()), key=lambda s: -s[0])
    if not shared or not shared[0][0] or len(shared) > 1 and shared[1][0] == shared[0][0]:
        return None
    return shared[0][1]


def evaluate_files(pred: Path, gt: Path, gt_convention: str = "auto", progress: bool = True,
                   pred_convention: str = "auto") -> list[dict]:
    """One row per case (:func:`evaluate_case`, and the ground truth's plausibility by the same checks,
    ``gt_plausible``: they fail some expert maps, ACDC's in 13 of 140), label maps matched by :func:`match`; each
    side's label values in its convention ("ours", "acdc" or "auto" as :func:`read_label_map`; a .seg.nrrd is
    read by its segments' names whatever the convention)."""
    from .progress import progress_bar

    rows = []
    for key, p, g in progress_bar(match(pred, gt), desc="evaluate", unit="case", enabled=progress):
        truth = read_label_map(g, gt_convention)
        try:
            row = evaluate_case(read_label_map(p, pred_convention), truth)
        except InputError as e:
            raise InputError(f"{key}: {e}") from None
        rows.append({"case": key, **row, "gt_plausible": plausibility(truth)["plausible"]})
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
