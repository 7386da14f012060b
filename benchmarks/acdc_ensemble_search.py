"""Where an ensemble's heart search ends: its members' searches alone, the ensemble's (`ensemble_center`), the
median of its members' centres.

    python benchmarks/acdc_ensemble_search.py --ensemble $(echo runs/s48/seg-s{8..15}/model | tr ' ' ,)

An ensemble finds the heart with its first network's search (`_Runner.locate`; the centre it ends at is then
every member's window centre) unless that ends more than 35 mm from the median of its members' centres: then
with the search of the member nearest that median (`ACNNCore.inference.ensemble_center`; until 2026-12-05 the
first network's search was the ensemble's whatever the others found, so its miss was the whole ensemble's). On
the benchmark's 28 test images (`acnn benchmark acdc`: the fixed split, each image with its slices moved by
the benchmark's own 0 / 2 / 4 mm draws) this runs every member's search and prints, per misalignment, how many
searches end beyond 35 mm (in-plane) of the expert LV's centre -- off the heart: the heart part's centre lies
within about 35 mm of it ("Finding the heart" in benchmarks/ACDC.md) -- for each member alone, for the first
member alone (the ensemble before 2026-12-05), for the ensemble and for the median of the members' centres,
with the median distance of each, and the largest in-plane distance from the first member's centre to that
median (what `ensemble_center` compares with 35 mm).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ACNNCore.progress import progress_bar

ROOT = Path(__file__).resolve().parents[1]
MISS_MM = 35.0


def searches(members: list[str], data: Path, patients: int = 0) -> dict:
    """{misalignment mm: {"each": (members, images) in-plane mm from each member's found centre to the expert
    LV's centre, "ensemble" / "median": (images,) the same for :func:`ensemble_center`'s centre and for the
    median of the members' centres, "spread": (images,) from the first member's centre to that median,
    "names": the images' names}}; inf where nothing was found. ``patients``: only the first that many test
    patients (0: all 14)."""
    from ACNNCore.benchmark import ACDC_MOTIONS, AcdcBenchmark, fixed_split
    from ACNNCore.datasets import acdc_patients, read_acdc_patient
    from ACNNCore.inference import Segmenter, ensemble_center
    from ACNNCore.labels import LV_BLOOD_POOL
    from ACNNCore.preprocessing import labels_center

    test = fixed_split(acdc_patients(data))[1]
    cases = [c for p in test[: patients or None] for c in read_acdc_patient(p)]
    runners = [Segmenter(m, "cpu").runner for m in members]
    out = {}
    for motion in ACDC_MOTIONS:
        found = {key: np.full(len(cases), np.inf) for key in ("ensemble", "median", "spread")}
        found["each"], found["names"] = np.full((len(runners), len(cases)), np.inf), [c.name for c in cases]
        for i, case in enumerate(progress_bar(cases, desc=f"{motion:.0f} mm", leave=False)):
            image, lv = AcdcBenchmark._moved(i, case, motion), labels_center(case.labels, [LV_BLOOD_POOL])
            centres = [r.locate(r.normalised(image)[0], r.bundle.model) for r in runners]
            mm = image.geometry.in_plane_mm
            for m, centre in enumerate(centres):
                if centre is not None:
                    found["each"][m, i] = mm(centre, lv)
            if any(c is not None for c in centres):
                median = np.median([c for c in centres if c is not None], axis=0)
                found["median"][i] = mm(median, lv)
                found["ensemble"][i] = mm(ensemble_center(centres, image.geometry), lv)
                if centres[0] is not None:
                    found["spread"][i] = mm(centres[0], median)
        out[motion] = found
    return out


def report(members: list[str], found: dict) -> str:
    """:func:`searches`' counts, a line per misalignment, naming each member's searches that end off the heart."""
    labels = [Path(m).parent.name if Path(m).name.startswith("model") else Path(m).name for m in members]
    lines = []
    for motion, f in found.items():
        each, n = f["each"], len(f["names"])
        missed = [f"{labels[m]} {f['names'][i]}" for m, i in zip(*np.nonzero(each > MISS_MM))]

        def score(d):
            return f"{int((d > MISS_MM).sum())} of {n}, median {np.median(d):.1f} mm"

        lines.append(f"{motion:.0f} mm: members alone beyond {MISS_MM:.0f} mm {len(missed)} of {each.size}"
                     f"{' (' + ', '.join(missed) + ')' if missed else ''}; the first member alone {score(each[0])}; "
                     f"the ensemble {score(f['ensemble'])}; the median of the members' centres {score(f['median'])}; "
                     f"the first member's centre from that median at most {np.max(f['spread']):.1f} mm")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/acdc")
    parser.add_argument("--ensemble", nargs="+", required=True,
                        help="ensembles, each A,B,... or a bundled ensemble (segmentation bundles, names or folders; "
                             "the first member first)")
    args = parser.parse_args()
    from ACNNCore.bundle import members as bundle_members

    for ensemble in args.ensemble:  # a bundled ensemble (acnn-seg-acdc) stands for its members
        members = [str(m) for name in ensemble.split(",") for m in bundle_members(name)]
        print(f"{ensemble}:\n{report(members, searches(members, args.data))}")


if __name__ == "__main__":
    main()
