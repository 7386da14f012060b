"""The plausibility checks held against the ACDC expert labels, and a model's outputs read the same way.

    python benchmarks/acdc_plausibility.py                                     # the 140 expert maps (10 s)
    python benchmarks/acdc_plausibility.py --model acnn-seg-acdc --held-out    # and the bundled model (2 min)
    python benchmarks/acdc_plausibility.py --shape-model ae-acdc               # and its prior's reconstructions

`ACNNCore.metrics.plausibility` (what `acnn segment`, the benchmarks and the Slicer module report) calls a
map "fragmented" where its blood pool or its myocardium is in more than one 26-connected part. On slices
5-10 mm thick the apex closes between two slices: the apical slice's myocardium can lie wholly under the
blood pool of the slice above and so touch no other myocardium, though the LV as a whole (blood pool and
myocardium together) is one part. For each map that fails, this prints why, whether its LV is one part
all the same, and what the clean-up (`acnn segment --clean-up`: each structure's largest part, the blood
pool's holes filled) makes of it. The summary lines also count a variant, not ACNNCore's, that takes the
LV as one part: "fragmented" only where blood pool and myocardium together are in several parts, and a
clean-up that keeps the LV's largest part (the apical cap with it). ``--model``: also that model's output
for each image (``--held-out``: only the patients its training held out, by ``acnn train``'s split; else
every patient, most of them seen in training). ``--shape-model``: also each expert map as that shape model
reconstructs it (encoded and decoded where it lies, on the crop a network's prior sees: the map's own slices),
what the shape space can hold of a real heart.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from ACNNCore.datasets import acdc_patients, read_acdc_patient
from ACNNCore.labels import LV_BLOOD_POOL, LV_MYOCARDIUM, RV_BLOOD_POOL
from ACNNCore.metrics import FULL, plausibility, stray_parts
from ACNNCore.postprocessing import IN_PLANE, clean_up


class Reading(NamedTuple):
    """A map read by the checks: its problems, whether its LV (blood pool and myocardium together) is one
    26-connected part, its problems cleaned up; and by the variant that takes the LV as one part (see
    :func:`as_one_part`), its problems as it is and cleaned up that way."""

    problems: list
    one_part: bool
    cleaned: list
    as_one: list
    as_one_cleaned: list


def lv_in_one_part(labels) -> bool:
    """Whether a map's blood pool and myocardium together make one 26-connected part."""
    return ndimage.label(np.isin(labels.array, (LV_BLOOD_POOL, LV_MYOCARDIUM)), FULL)[1] == 1


def as_one_part(problems: list, one_part: bool) -> list:
    """A map's problems by ACNNCore's checks read by a variant of them, not ACNNCore's: "fragmented" only where
    the LV as a whole (blood pool and myocardium together) is in more than one part (not ``one_part``)."""
    return [p for p in problems if p != "fragmented" or not one_part]


def clean_up_as_one_part(labels):
    """A variant of the clean-up, not ACNNCore's: the LV's largest part (blood pool and myocardium together;
    an apical cap under the cavity kept) and the RV's, then the blood pool's holes filled in each slice."""
    a = labels.array.copy()
    a[stray_parts(np.isin(a, (LV_BLOOD_POOL, LV_MYOCARDIUM)))] = 0
    a[stray_parts(a == RV_BLOOD_POOL)] = 0
    a[ndimage.binary_fill_holes(a == LV_BLOOD_POOL, IN_PLANE)] = LV_BLOOD_POOL
    return labels.with_array(a)


def read(labels) -> Reading:
    """A map read both ways (:class:`Reading`)."""
    problems, one_part, cleaned = plausibility(labels)["problems"], lv_in_one_part(labels), clean_up_as_one_part(labels)
    return Reading(problems, one_part, plausibility(clean_up(labels))["problems"], as_one_part(problems, one_part),
                   as_one_part(plausibility(cleaned)["problems"], lv_in_one_part(cleaned)))


def describe(reading: Reading) -> str:
    """One map's reading: its problems, then its LV's parts and its problems cleaned up."""
    return (f"{', '.join(reading.problems) or 'plausible'} (LV in one part: {'yes' if reading.one_part else 'no'}; "
            f"cleaned up: {', '.join(reading.cleaned) or 'plausible'})")


def _count(lists: list) -> str:
    """How many of ``lists`` of problems are not empty, and each problem's count."""
    each = Counter(p for problems in lists for p in problems)
    return f"{sum(map(bool, lists))} implausible" + (f" ({', '.join(f'{p} {n}' for p, n in each.items())})"
                                                     if each else "")


def tally(name: str, readings: list[Reading]) -> str:
    """The summary line of ``readings``."""
    only = [r for r in readings if r.problems == ["fragmented"] and r.one_part]
    return (f"{name}, of {len(readings)}: {_count([r.problems for r in readings])}; fragmented alone with the LV in "
            f"one part: {len(only)}; cleaned up: {_count([r.cleaned for r in readings])}. Taking the LV as one part "
            f"(check and clean-up): {_count([r.as_one for r in readings])}; cleaned up: "
            f"{_count([r.as_one_cleaned for r in readings])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/acdc")
    parser.add_argument("--model", help="a segmentation model (bundled name or bundle folder)")
    parser.add_argument("--shape-model", help="a shape model (AE or T-L) whose reconstructions are read too")
    parser.add_argument("--held-out", action="store_true",
                        help="only the patients the models' training held out (acnn train's split, seed 0)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    patients = acdc_patients(args.data)
    if args.held_out:
        from acdc_bundles import held_out_patients

        patients = held_out_patients(args.data)
    segmenter = None
    if args.model:
        from ACNNCore.inference import Segmenter

        segmenter = Segmenter(args.model, args.device)
    shapes = None
    if args.shape_model:
        from ACNNCore.inference import ShapeModel

        shapes = ShapeModel(args.shape_model, args.device)
    experts, outputs, reconstructions = [], [], []
    for patient in patients:
        for case in read_acdc_patient(patient):
            experts.append(read(case.labels))
            line = f"{case.name}  expert: {describe(experts[-1])}"
            if segmenter is not None:
                outputs.append(read(segmenter(case.image).labels))
                line += f"  {args.model}: {describe(outputs[-1])}"
            if shapes is not None:
                # on the crop a network's prior sees (the map's own slices)
                reconstructions.append(read(shapes.reconstruct(case.labels, as_trained=True)))
                line += f"  {args.shape_model}'s reconstruction: {describe(reconstructions[-1])}"
            if any(r[-1].problems for r in (experts, outputs, reconstructions) if r):
                print(line, flush=True)
    print(tally("expert maps", experts))
    if outputs:
        print(tally(args.model, outputs))
    if reconstructions:
        print(tally(f"{args.shape_model}'s reconstructions", reconstructions))


if __name__ == "__main__":
    main()
