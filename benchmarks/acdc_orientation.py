"""What a real-data network makes of images stored turned or mirrored in-plane, and what `--orient` recovers;
with `--slice-order`, of stacks whose slices run from the apex to the base, as a scanner's do.

    python benchmarks/acdc_orientation.py --models runs/s28/acnn-seg/model-final
    python benchmarks/acdc_orientation.py --slice-order            # the bundled acnn-seg-acdc

A network learns the layout its training arrays had (ACDC's NIfTI files carry an identity orientation, so the
layout is all it has): the same image stored with its rows reversed -- as some DICOM-to-NIfTI converters
write it -- is another picture to it. Each test image of the benchmark's fixed split (every fifth patient, ED
and ES; use a model trained on the other patients) is stored in each of the eight in-plane turns and
mirrorings (`ACNNCore.inference.IN_PLANE_VIEWS`) and segmented as stored and with `Segmenter(orient=True)`
(each of the eight views tried, the surest output kept). Printed per stored layout: mean Dice (LV, myocardium,
RV) both ways, and in how many images `orient` brought the image back to the layout the network learnt.

`--slice-order`: ACDC's files run from the base to the apex and carry no orientation, so a network trained on
them learns the base first. A scanner's short-axis stack, read from DICOM by a reader that sorts the slices
along the normal of their rows and columns (ours, Slicer's, ITK's), runs from the apex to the base (the
standard view's normal points to the base). Each test image is segmented three ways (:data:`WAYS`): as ACDC
stores it; its slices reversed with no orientation (a stack whose order nothing tells); and as a scanner's
standard short-axis stack of the same heart (apex first, with its orientation, which inference reads:
`ACNNCore.preprocessing.stack_order`). Printed per way: mean Dice and in how many images the map is the one of
ACDC's own file.
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


def standard_short_axis(volume):
    """A base-first stack (ACDC's layout: identity orientation, its first slice the base) as a scanner's standard
    short-axis stack of the same heart: rows running to the patient's left, columns backwards (the anterior wall
    at the top), the slices along the long axis from the apex to the base -- the order a reader that sorts slices
    along the normal of the rows and columns gives. The same voxels, the slices reversed."""
    from ACNNCore.volume import Geometry, Volume

    up = np.array([-0.5, 0.5, 0.7]) / np.linalg.norm([-0.5, 0.5, 0.7])  # apex -> base: right, back, up (LPS)
    rows = np.array([1.0, 0.0, 0.0]) - up[0] * up
    rows /= np.linalg.norm(rows)
    g = volume.geometry
    return Volume(np.ascontiguousarray(volume.array[:, :, ::-1]),
                  Geometry(g.shape, g.spacing, (10.0, -20.0, 30.0), np.stack([rows, np.cross(up, rows), up], 1)))


WAYS = ("as ACDC stores it (base first, no orientation)",
        "slices reversed, no orientation (apex first, nothing tells)",
        "a scanner's short-axis stack (apex first, its orientation)")


def measure_slice_order(model: str, patients, max_images: int = 0) -> dict:
    """{way (of WAYS): {"dice": [(lv, myo, rv) per image], "same": images whose map is the one of ACDC's file}}."""
    from ACNNCore.datasets import read_acdc_patient
    from ACNNCore.evaluation import evaluate_case
    from ACNNCore.inference import Segmenter
    from ACNNCore.volume import Volume

    segmenter = Segmenter(model, "cpu")
    cases = [c for p in patients for c in read_acdc_patient(p)][: max_images or None]
    table = {way: {"dice": [], "same": 0} for way in WAYS}
    for case in progress_bar(cases, desc="images", leave=False):
        reversed_ = Volume(np.ascontiguousarray(case.image.array[:, :, ::-1]), case.image.geometry)
        stored = segmenter(case.image).labels
        for way, image, undo in ((WAYS[0], case.image, False), (WAYS[1], reversed_, True),
                                 (WAYS[2], standard_short_axis(case.image), True)):
            labels = stored if way == WAYS[0] else segmenter(image).labels
            array = labels.array[:, :, ::-1] if undo else labels.array  # back in ACDC's layout
            row = evaluate_case(Volume(np.ascontiguousarray(array), case.labels.geometry), case.labels, (1, 2, 3))
            table[way]["dice"].append((row["dice_lv"], row["dice_myo"], row["dice_rv"]))
            table[way]["same"] += int(np.array_equal(array, stored.array))
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
    parser.add_argument("--slice-order", action="store_true",
                        help="the slices base first and apex first instead of the in-plane layouts")
    args = parser.parse_args()
    from ACNNCore.benchmark import fixed_split
    from ACNNCore.datasets import acdc_patients
    from ACNNCore.inference import describe_view

    test = fixed_split(acdc_patients(args.data))[1]
    for model in args.models:
        if args.slice_order:
            table = measure_slice_order(model, test, args.max_images)
            print(f"{model}: mean Dice LV / myocardium / RV of the test images given each way; images segmented "
                  f"as ACDC's own file")
            for way, t in table.items():
                print(f"  {way:62s} {' / '.join(f'{d:.3f}' for d in np.mean(t['dice'], axis=0))}; "
                      f"{t['same']} of {len(t['dice'])}")
            continue
        table = measure(model, test, args.max_images)
        print(f"{model}: mean Dice LV / myocardium / RV of the test images stored in each layout, segmented as "
              f"stored -> with --orient; images brought back to the learnt layout")
        for view, t in table.items():
            stored, orient = (np.mean(t[k], axis=0) for k in ("stored", "orient"))
            print(f"  {describe_view(view):78s} {' / '.join(f'{d:.3f}' for d in stored)} -> "
                  f"{' / '.join(f'{d:.3f}' for d in orient)}; {t['back']} of {len(t['stored'])}")


if __name__ == "__main__":
    main()
