"""The plausibility checks held against the ACDC expert labels, and a model's outputs read the same way.

    python benchmarks/acdc_plausibility.py                                     # the 140 expert maps (10 s)
    python benchmarks/acdc_plausibility.py --model acnn-seg-acdc --held-out    # and the bundled model (2 min)

`ACNNCore.metrics.plausibility` (what `acnn segment`, the benchmarks and the Slicer module report) calls a
map "fragmented" where its blood pool or its myocardium is in more than one 26-connected part. On slices
5-10 mm thick the apex closes between two slices: the apical slice's myocardium can lie wholly under the
blood pool of the slice above and so touch no other myocardium, though the LV as a whole (blood pool and
myocardium together) is one part. For each map that fails, this prints why, whether its LV is one part
all the same, and what the clean-up (`acnn segment --clean-up`: each structure's largest part, the blood
pool's holes filled) makes of it. ``--model``: also that model's output for each image (``--held-out``:
only the patients its training held out, by ``acnn train``'s split; else every patient, most of them
seen in training).
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np
from scipy import ndimage

from ACNNCore.datasets import acdc_patients, read_acdc_patient
from ACNNCore.labels import LV_BLOOD_POOL, LV_MYOCARDIUM
from ACNNCore.metrics import FULL, plausibility
from ACNNCore.postprocessing import clean_up


def lv_in_one_part(labels) -> bool:
    """Whether a map's blood pool and myocardium together make one 26-connected part."""
    return ndimage.label(np.isin(labels.array, (LV_BLOOD_POOL, LV_MYOCARDIUM)), FULL)[1] == 1


def read(labels) -> tuple[list, bool, list]:
    """A map's problems, whether its LV is one part, and the problems of the map cleaned up."""
    return plausibility(labels)["problems"], lv_in_one_part(labels), plausibility(clean_up(labels))["problems"]


def describe(row) -> str:
    """One map's reading (a row of :func:`main`): its problems, then its LV's parts and its problems cleaned up."""
    _, problems, one_part, cleaned = row
    return (f"{', '.join(problems) or 'plausible'} (LV in one part: {'yes' if one_part else 'no'}; cleaned up: "
            f"{', '.join(cleaned) or 'plausible'})")


def tally(name: str, rows: list) -> str:
    """The summary line of ``rows`` (image, problems, LV in one part, problems cleaned up)."""
    failing = [r for r in rows if r[1]]
    fragmented = [r for r in failing if "fragmented" in r[1]]
    only = [r for r in fragmented if r[1] == ["fragmented"] and r[2]]
    return (f"{name}: {len(failing)} of {len(rows)} implausible ("
            + ", ".join(f"{p} {n}" for p, n in Counter(p for r in failing for p in r[1]).items()) + ")"
            + f"; fragmented alone with the LV in one part: {len(only)}"
            + f"; cleaned up: {sum(bool(r[3]) for r in rows)} implausible ("
            + ", ".join(f"{p} {n}" for p, n in Counter(p for r in rows for p in r[3]).items()) + ")")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/acdc")
    parser.add_argument("--model", help="a segmentation model (bundled name or bundle folder)")
    parser.add_argument("--held-out", action="store_true", help="only the patients the model's training held out")
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
    experts, outputs = [], []
    for patient in patients:
        for case in read_acdc_patient(patient):
            experts.append((case.name, *read(case.labels)))
            line = f"{case.name}  expert: {describe(experts[-1])}"
            if segmenter is not None:
                outputs.append((case.name, *read(segmenter(case.image).labels)))
                line += f"  {args.model}: {describe(outputs[-1])}"
            if experts[-1][1] or (outputs and outputs[-1][1]):
                print(line, flush=True)
    print(tally("expert maps", experts))
    if outputs:
        print(tally(args.model, outputs))


if __name__ == "__main__":
    main()
