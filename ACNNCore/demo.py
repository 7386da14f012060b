"""``acnn demo``: the whole pipeline on one phantom subject the models never saw."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .figures import _plt, mid_slices, save, show
from .inference import Segmenter, SuperResolver
from .io import write_segmentation, write_volume
from .labels import SEGMENTS
from .metrics import clinical_measures, dice, ejection_fraction, on_grid_of
from .preprocessing import resample
from .phantom.population import PhantomConfig, generate_subject, prepare_output, with_motion

DEMO_SEED = 20260  # never used for training (the bundled models used seed 1)


def demo_subject(subject: int = 0, motion_mm: float = 2.0):
    """The demo's phantom subject (``acnn demo``, the Segment module's "Phantom demo", ``acnn studio --demo``):
    one no model saw, its slices misaligned by up to ``motion_mm``."""
    return generate_subject(subject, DEMO_SEED, with_motion(PhantomConfig(), motion_mm))


def run_demo(out, seg_model="acnn-seg-phantom", sr_model="acnn-sr-phantom", device="auto", overwrite=False,
             subject: int = 0, motion_mm: float = 2.0, say=print) -> dict:
    out = prepare_output(Path(out), overwrite)
    t0 = time.time()
    step = lambda i, text: say(f"[{i}/5 {time.time() - t0:5.1f}s] {text}")  # noqa: E731

    step(1, f"phantom subject {subject} of seed {DEMO_SEED} ({motion_mm} mm slice misalignment)")
    ps = demo_subject(subject, motion_mm)
    for phase, vols in ps.phases.items():
        write_volume(vols["lr"], out / f"{phase}_lr.nii.gz")
        write_volume(vols["hr_gt"], out / f"{phase}_truth.nii.gz")

    step(2, f"segmenting ED and ES with {seg_model}")
    segmenter = Segmenter(seg_model, device)
    segs = {phase: segmenter(vols["lr"]) for phase, vols in ps.phases.items()}
    names = {v: SEGMENTS[v] for v in (1, 2)}
    for phase, seg in segs.items():
        write_volume(seg.labels, out / f"{phase}_seg.nii.gz")
        write_segmentation(seg.labels, out / f"{phase}_seg.seg.nrrd", names)

    step(3, f"super-resolving ED with {sr_model}")
    resolver = SuperResolver(sr_model, device)
    sr = resolver(ps.phases["ED"]["lr"])
    write_volume(sr, out / "ED_sr.nii.gz")

    step(4, "volumes, ejection fraction and Dice against the phantom's truth")
    results = {"subject": ps.info["subject"], "group": ps.info["group"], "seed": DEMO_SEED,
               "models": {"segmentation": seg_model, "super_resolution": sr_model}, "phases": {}}
    for phase, seg in segs.items():
        truth = ps.phases[phase]["hr_gt"]
        d = dice(seg.labels, truth)
        results["phases"][phase] = {
            "predicted": {k: round(v, 2) for k, v in clinical_measures(seg.labels).items()},
            "truth": {k: round(v, 2) for k, v in clinical_measures(truth).items()},
            "dice": {"LV blood pool": round(d[1], 4), "LV myocardium": round(d[2], 4)},
        }
    p, t = results["phases"]["ED"], results["phases"]["ES"]
    results["ef_pct"] = {
        "predicted": round(ejection_fraction(p["predicted"]["lv_volume_ml"], t["predicted"]["lv_volume_ml"]), 2),
        "truth": round(ejection_fraction(p["truth"]["lv_volume_ml"], t["truth"]["lv_volume_ml"]), 2)}
    (out / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")

    step(5, "overlay figure")
    overlay(ps, segs, sr, out / "overlay.png", segmenter.runner.bundle.name,
            resolver.runner.bundle.name)
    say(f"done in {time.time() - t0:.1f}s: {out}")
    return results


def overlay(ps, segs, sr, path, seg_name="ACNN-Seg", sr_name="ACNN-SR") -> Path:
    plt = _plt()
    ed = ps.phases["ED"]
    # everything shown on the truth's HR grid (a model may output another slice thickness)
    lr, truth, seg = ed["lr"], ed["hr_gt"].array, on_grid_of(segs["ED"].labels, ed["hr_gt"]).array
    if not sr.geometry.same_as(ed["hr"].geometry):
        sr = resample(sr, ed["hr"].geometry, "linear")
    k, j = mid_slices(truth)
    a = ed["hr_gt"].spacing[2] / ed["hr_gt"].spacing[0]
    fig, axes = plt.subplots(2, 4, figsize=(10, 5.4))
    show(axes[0, 0], lr.array[:, :, k * lr.shape[2] // truth.shape[2]], title="LR input (short axis)")
    show(axes[0, 1], ed["hr"].array[:, :, k], seg[:, :, k], title=f"{seg_name} (HR short axis)")
    show(axes[0, 2], ed["hr"].array[:, :, k], truth[:, :, k], title="truth")
    show(axes[0, 3], sr.array[:, :, k], title=f"{sr_name} (short axis)")
    show(axes[1, 0], lr.array[:, j, :], aspect=lr.spacing[2] / lr.spacing[0], title="LR input (long axis)")
    show(axes[1, 1], ed["hr"].array[:, j, :], seg[:, j, :], aspect=a, title=f"{seg_name} (long axis)")
    show(axes[1, 2], ed["hr"].array[:, j, :], truth[:, j, :], aspect=a, title="truth")
    show(axes[1, 3], sr.array[:, j, :], aspect=a, title=f"{sr_name} (long axis)")
    fig.tight_layout()
    return save(fig, path)

