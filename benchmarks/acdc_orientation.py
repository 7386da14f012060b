"""What a real-data network makes of images stored turned or mirrored in-plane, and what `--orient` recovers.

    python benchmarks/acdc_orientation.py --models runs/s28/acnn-seg/model-final

A network learns the layout its training arrays had (ACDC's NIfTI files carry an identity orientation, so the
layout is all it has): the same image stored with its rows reversed -- as some DICOM-to-NIfTI converters
write it -- is another picture to it. Each test image of the benchmark's fixed split (every fifth patient, ED
and ES; use a model trained on the other patients) is stored in each of the eight in-plane turns and
mirrorings (`ACNNCore.inference.IN_PLANE_VIEWS`) and segmented as stored and with `Segmenter(orient=True)`
(each of the eight views tried, the surest output kept). Printed per stored layout: mean Dice (LV, myocardium,
RV) both ways, and in how many images `orient` brought the image back to the layout the network learnt.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ACNNCore.progress import progress_bar

ROOT = Path(__file__).resolve().parents[1]


def measure(model: str, patients, max_images: int = 0, layouts=None) -> dict:
    """{stored layout (a view of IN_PLANE_VIEWS, all by default): {"stored": [(lv, myo, rv) Dice per image],
    "orient": [...], "back": images restored}}."""
    from ACNNCore.datasets import read_acdc_patient
    from ACNNCore.evaluation import evaluate_case
    from ACNNCore.inference import IN_PLANE_VIEWS, Segmenter, in_plane_view

    plain, orient = Segmenter(model, "cpu"), Segmenter(model, "cpu", orient=True)
    cases = [c for p in patients for c in read_acdc_patient(p)][: max_images or None]
    table = {view: {"stored": [], "orient": [], "back": 0} for view in layouts or IN_PLANE_VIEWS}
    for case in progress_bar(cases, desc="images", leave=False):
        for view in table:
            image = in_plane_view(case.image, view)
            for key, segmenter in (("stored", plain), ("orient", orient)):
                result = segmenter(image)
                row = evaluate_case(result.labels, case.labels, (1, 2, 3))
                table[view][key].append((row["dice_lv"], row["dice_myo"], row["dice_rv"]))
            # the view kept undoes the stored one exactly where the network's own layout came back
            kept = in_plane_view(image, _kept(result.orientation))
            table[view]["back"] += int(np.array_equal(kept.array, case.image.array))
    return table


def _kept(orientation: str):
    from ACNNCore.inference import IN_PLANE_VIEWS, describe_view

    return next(v for v in IN_PLANE_VIEWS if orientation.startswith(describe_view(v) + " ("))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/acdc")
    parser.add_argument("--models", nargs="+", default=["acnn-seg-acdc"],
                        help="segmentation bundles (names or folders)")
    parser.add_argument("--max-images", type=int, default=0, help="only the first N test images (0: all 28)")
    args = parser.parse_args()
    from ACNNCore.benchmark import fixed_split
    from ACNNCore.datasets import acdc_patients
    from ACNNCore.inference import describe_view

    test = fixed_split(acdc_patients(args.data))[1]
    for model in args.models:
        table = measure(model, test, args.max_images)
        print(f"{model}: mean Dice LV / myocardium / RV of the test images stored in each layout, segmented as "
              f"stored -> with --orient; images brought back to the learnt layout")
        for view, t in table.items():
            stored, orient = (np.mean(t[k], axis=0) for k in ("stored", "orient"))
            print(f"  {describe_view(view):78s} {' / '.join(f'{d:.3f}' for d in stored)} -> "
                  f"{' / '.join(f'{d:.3f}' for d in orient)}; {t['back']} of {len(t['stored'])}")


if __name__ == "__main__":
    main()
