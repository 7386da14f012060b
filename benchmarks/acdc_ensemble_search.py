"""Where an ensemble's heart search ends: its first member's (what `Segmenter` uses) or its members' together.

    python benchmarks/acdc_ensemble_search.py --ensemble $(echo runs/s48/seg-s{8..15}/model | tr ' ' ,)

An ensemble finds the heart with its first network's search (`_Runner.locate`; the centre it ends at is
then every member's window centre), so that network's miss is the whole ensemble's. On the benchmark's 28
test images (`acnn benchmark acdc`: the fixed split, each image with its slices moved by the benchmark's own
0 / 2 / 4 mm draws) this runs every member's search and prints, per misalignment, how many searches end
beyond 35 mm (in-plane) of the expert LV's centre -- off the heart: the heart part's centre lies within about
35 mm of it ("Finding the heart" in benchmarks/ACDC.md) -- for each member alone, for the first member (the
ensemble as it is) and for the median of the members' centres (a search of them all), with the median
distance of each.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
MISS_MM = 35.0


def searches(members: list[str], data: Path, patients: int = 0) -> dict:
    """{misalignment mm: ((members, images) in-plane mm from each member's found centre to the expert LV's
    centre, (images,) the same for the median of the members' centres, the images' names)}; inf where
    nothing was found. ``patients``: only the first that many test patients (0: all 14)."""
    from ACNNCore.benchmark import ACDC_MOTIONS, AcdcBenchmark, fixed_split
    from ACNNCore.datasets import acdc_patients, read_acdc_patient
    from ACNNCore.inference import Segmenter
    from ACNNCore.labels import LV_BLOOD_POOL
    from ACNNCore.preprocessing import labels_center

    test = fixed_split(acdc_patients(data))[1]
    cases = [c for p in test[: patients or None] for c in read_acdc_patient(p)]
    runners = [Segmenter(m, "cpu").runner for m in members]
    out = {}
    for motion in ACDC_MOTIONS:
        each, median = np.full((len(runners), len(cases)), np.inf), np.full(len(cases), np.inf)
        for i, case in enumerate(tqdm(cases, desc=f"{motion:.0f} mm", leave=False)):
            image, lv = AcdcBenchmark._moved(i, case, motion), labels_center(case.labels, [LV_BLOOD_POOL])
            found = [r.locate(r.normalised(image)[0], r.bundle.model) for r in runners]
            for m, centre in enumerate(found):
                if centre is not None:
                    each[m, i] = case.labels.geometry.in_plane_mm(centre, lv)
            if any(c is not None for c in found):
                centre = np.median([c for c in found if c is not None], axis=0)
                median[i] = case.labels.geometry.in_plane_mm(centre, lv)
        out[motion] = (each, median, [c.name for c in cases])
    return out


def report(members: list[str], found: dict) -> str:
    """:func:`searches`' counts, a line per misalignment, naming each member's searches that end off the heart."""
    labels = [Path(m).parent.name if Path(m).name.startswith("model") else Path(m).name for m in members]
    lines = []
    for motion, (each, median, names) in found.items():
        missed = [f"{labels[m]} {names[i]}" for m, i in zip(*np.nonzero(each > MISS_MM))]
        lines.append(f"{motion:.0f} mm: members alone beyond {MISS_MM:.0f} mm {len(missed)} of {each.size}"
                     f"{' (' + ', '.join(missed) + ')' if missed else ''}; the ensemble's search (its first member) "
                     f"{int((each[0] > MISS_MM).sum())} of {len(names)}, median {np.median(each[0]):.1f} mm; "
                     f"the median of the members' centres {int((median > MISS_MM).sum())} of {len(names)}, "
                     f"median {np.median(median):.1f} mm")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/acdc")
    parser.add_argument("--ensemble", nargs="+", required=True,
                        help="ensembles, each A,B,... or a bundled ensemble (segmentation bundles, names or folders; "
                             "the first member searches)")
    args = parser.parse_args()
    from ACNNCore.bundle import members as bundle_members

    for ensemble in args.ensemble:  # a bundled ensemble (acnn-seg-acdc) stands for its members
        members = [str(m) for name in ensemble.split(",") for m in bundle_members(name)]
        print(f"{ensemble}:\n{report(members, searches(members, args.data))}")


if __name__ == "__main__":
    main()
