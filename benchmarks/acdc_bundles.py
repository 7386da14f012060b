"""Real-data bundles side by side on the ACDC patients their training held out.

    python benchmarks/acdc_bundles.py --ae ae-acdc runs/bundle/ae-acdc/model \
                                      --seg acnn-seg-acdc runs/bundle/acnn-seg-acdc/model

The bundles train on all 70 patients but hold 10 % of them out to choose the best epoch (`val_fraction`
0.1, seed 0 in `Resources/Models/acdc.yaml` and `train_acdc.sh`): the only patients on which two bundles
of that recipe can be compared (a network that records holding out others is flagged). Printed per AE:
the reconstruction Dice, decode(encode(map)), of those patients' expert label maps on the model's grid;
per segmentation bundle: the whole pipeline on their images (finding the heart, mapping back), Dice at ED
and over ED and ES, myocardial Hausdorff distance, and how many outputs fail the plausibility checks, raw
and cleaned up; with --tta, each segmentation bundle again with test-time augmentation (`acnn segment
--tta`), side by side, with the seconds each took.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def held_out_patients(data: Path, val_fraction: float = 0.1, seed: int = 0) -> list[Path]:
    """The patients `acnn train` holds out of ``data`` with these settings (whole subjects, as it splits)."""
    from ACNNCore.datasets import Case, acdc_patients
    from ACNNCore.training import split_cases

    stand_ins = [Case(p.name, None, None, {"subject": p.name}) for p in acdc_patients(data)]
    return [data / c.name for c in split_cases(stand_ins, val_fraction, seed)[1]]


def held_out_elsewhere(model: str, patients) -> str | None:
    """Why a segmentation bundle's figures on ``patients`` would not be held-out figures -- a network (an
    ensemble's member) recording that its training held out other patients -- or None (the same patients, or
    a bundle from before training recorded them)."""
    from ACNNCore.bundle import members, read_meta

    names = sorted(p.name for p in patients)
    for folder in (m for name in model.split(",") for m in members(name)):
        data = read_meta(folder).get("training", {}).get("data")
        recorded = data.get("held_out") if isinstance(data, dict) else None
        if recorded is not None and sorted(recorded) != names:
            return (f"{folder}'s training held out {', '.join(recorded) or 'none'}, not these patients: "
                    f"its figures here are not held-out figures")
    return None


def segmentation(model: str, patients, tta: bool = False) -> str:
    from ACNNCore.datasets import read_acdc_patient
    from ACNNCore.evaluation import evaluate_case
    from ACNNCore.inference import Segmenter
    from ACNNCore.metrics import plausibility
    from ACNNCore.postprocessing import clean_up

    members = model.split(",")  # A,B,...: an ensemble
    segment = Segmenter(members if len(members) > 1 else model, "cpu", tta=tta)
    rows, start = [], time.perf_counter()
    for case in (c for p in patients for c in read_acdc_patient(p)):
        labels = segment(case.image).labels
        row = evaluate_case(labels, case.labels, (1, 2, 3))  # with the prediction's plausibility
        rows.append(row | {"ED": case.meta["phase"] == "ED", "raw": not row["plausible"],
                           "cleaned": not plausibility(clean_up(labels))["plausible"]})

    def mean(key, ed_only=False):
        return np.mean([r[key] for r in rows if r["ED"] or not ed_only])

    dice = " / ".join(f"{mean(f'dice_{s}', ed):.3f}" for ed in (True, False) for s in ("lv", "myo", "rv"))
    return (f"Dice LV / myo / RV at ED, then ED and ES: {dice}; myocardial HD {mean('hd_mm_myo'):.1f} mm; "
            f"implausible raw {sum(r['raw'] for r in rows)}, cleaned up {sum(r['cleaned'] for r in rows)} "
            f"of {len(rows)}; {time.perf_counter() - start:.0f} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/acdc")
    parser.add_argument("--ae", nargs="*", default=[], help="AE bundles (names or folders)")
    parser.add_argument("--seg", nargs="*", default=[],
                        help="segmentation bundles (names or folders; A,B,... an ensemble of them)")
    parser.add_argument("--tta", action="store_true", help="each segmentation bundle also with test-time augmentation")
    args = parser.parse_args()
    from acdc_ae import held_out_reconstruction  # beside this script

    patients = held_out_patients(args.data)
    print(f"held out by the bundles' training: {', '.join(p.name for p in patients)}")
    for model in args.ae:
        r = held_out_reconstruction(model, patients)
        print(f"{model}: reconstruction Dice LV / myo / RV {r[1]:.3f} / {r[2]:.3f} / {r[3]:.3f} ({r['maps']} maps)")
    for model in args.seg:
        warning = held_out_elsewhere(model, patients)
        if warning:
            print(f"warning: {warning}")
        print(f"{model}: {segmentation(model, patients)}")
        if args.tta:
            print(f"{model} with --tta: {segmentation(model, patients, tta=True)}")


if __name__ == "__main__":
    main()
