"""How far from the heart the search for it ends, on every ACDC image, per segmentation model.

    python benchmarks/acdc_heart_search.py --models acnn-seg-acdc runs/s17/acnn-seg/model runs/s17/seg/model

A real-data model finds the heart itself before segmenting (`_Runner.locate`: a look over the whole field
of view, then over its own window until the centre settles); everything after depends on it. Printed per
model: over the 140 images (70 patients, ED and ES), the in-plane distance from the centre the search ends
at to the centre of the expert's LV blood pool -- median, the largest, how many beyond 35 mm and beyond
50 mm (a 192 mm window centred 50 mm off cuts into the heart; the heart part's centre lies up to about 35 mm
from the LV's where the RV is large) -- the images beyond 35 mm, and the seconds the searches took. Models
trained on these patients (the bundles) find them more easily than unseen images.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ACNNCore.progress import progress_bar

ROOT = Path(__file__).resolve().parents[1]


def distances(model: str, patients) -> tuple[dict, float]:
    """{image name: in-plane mm from the found centre to the expert LV's centre}, and the seconds taken."""
    from ACNNCore.datasets import read_acdc_patient
    from ACNNCore.inference import Segmenter
    from ACNNCore.labels import LV_BLOOD_POOL
    from ACNNCore.preprocessing import labels_center

    runner = Segmenter(model, "cpu").runner
    found, seconds = {}, 0.0
    for case in (c for p in progress_bar(patients, desc=Path(model).parent.name or model, leave=False)
                 for c in read_acdc_patient(p)):
        start = time.perf_counter()
        center = runner.locate(runner.normalised(case.image)[0], runner.bundle.model)
        seconds += time.perf_counter() - start
        lv = labels_center(case.labels, [LV_BLOOD_POOL])
        found[case.name] = np.inf if center is None else case.labels.geometry.in_plane_mm(center, lv)
    return found, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/acdc")
    parser.add_argument("--models", nargs="+", default=["acnn-seg-acdc"],
                        help="segmentation bundles (names or folders)")
    args = parser.parse_args()
    from ACNNCore.datasets import acdc_patients

    patients = acdc_patients(args.data)
    for model in args.models:
        found, seconds = distances(model, patients)
        d = np.array(list(found.values()))
        far = ", ".join(f"{name} {mm:.0f} mm" for name, mm in found.items() if mm > 35) or "none"
        print(f"{model}: {len(d)} images; in-plane distance to the LV's centre median {np.median(d):.1f} mm, "
              f"largest {d.max():.0f} mm; beyond 35 mm {int((d > 35).sum())}, beyond 50 mm {int((d > 50).sum())} "
              f"({far}); {seconds:.0f} s")


if __name__ == "__main__":
    main()
