"""The ACDC shape model fine-tuned with the contact term, side by side with the same fine-tuning without it.

    python benchmarks/acdc_ae_contact.py --data ../shared/data/acdc --out runs/ae-ft

Both arms start from the bundled `ae-acdc` (`acnn train ae --init ae-acdc` with `Resources/Models/acdc.yaml`:
its 7 held-out patients held out again) and train 20 epochs at a rate annealed from 2e-4, one with the contact
term (`--contact 2 --contact-start 0`, the term against LV blood pool meeting anything but LV where the expert's
does not), one without it: the control, what the extra epochs and acdc.yaml's soft-Dice term (the bundled AE
was trained with CE alone) do by themselves. They run at once, one CPU thread each (35 minutes on the 2-core
machine); a finished arm is reused. Printed for `ae-acdc` and each arm: the epoch kept and its validation Dice
(the held-out maps); its reconstructions of the 140 expert maps and of the 14 held out, read by the plausibility
checks as `benchmarks/acdc_plausibility.py` reads them; its mean shape's verdict and the steps of its most used
dimension (mean +- 2 sd, 7 steps) that fail; then `acnn-seg-acdc`'s outputs on the 14 held-out images at 0 / 2
/ 4 mm slice misalignment corrected with each (`acnn segment --correct SHAPE_MODEL`, the default limit): how
many stay implausible, how many corrections the limit refused, the voxels changed and the Dice.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from acdc_ae import train_at_once
from acdc_bundles import held_out_elsewhere, held_out_patients
from acdc_plausibility import read, tally

from ACNNCore.benchmark import ACDC_MOTIONS, AcdcBenchmark
from ACNNCore.datasets import acdc_patients, read_acdc_patient
from ACNNCore.evaluation import evaluate_case
from ACNNCore.inference import CORRECTION_REFUSED, Segmenter, ShapeModel
from ACNNCore.metrics import plausibility, verdict
from ACNNCore.postprocessing import clean_up

ROOT = Path(__file__).resolve().parents[1]
ARMS = {"without the term": 0.0, "--contact 2": 2.0}
EPOCHS = 20


def fine_tune(data: Path, out: Path) -> dict[str, Path]:
    """The two arms' best-epoch bundles, trained where not yet finished."""
    jobs = {out / f"c{weight:g}": ["ae", "--init", "ae-acdc", "--data", str(data), "--config",
                                   str(ROOT / "Resources/Models/acdc.yaml"), "--lr", "2e-4", "--lr-schedule", "cosine",
                                   "--contact", f"{weight:g}", "--contact-start", "0", "--seed", "0", "--device", "cpu",
                                   "--workers", "0"] for weight in ARMS.values()}
    train_at_once(jobs, EPOCHS)
    return {arm: run / "model" for arm, run in zip(ARMS, jobs)}


def shapes(name: str, model: ShapeModel, patients: list[Path], held_out: list[Path]) -> None:
    """What ``model`` reconstructs of the ``patients``' expert maps (of the ``held_out`` among them apart) and
    decodes, read by the plausibility checks."""
    dice = model.meta.get("metrics", {})
    print(f"\n{name}: epoch kept {model.meta['training'].get('epoch')}, validation Dice (held-out maps) LV "
          f"{dice.get('dice_1', float('nan')):.3f} / myocardium {dice.get('dice_2', float('nan')):.3f} / RV "
          f"{dice.get('dice_3', float('nan')):.3f}")
    kept = {p.name for p in held_out}
    readings = {p.name: [read(model.reconstruct(c.labels, as_trained=True)) for c in read_acdc_patient(p)]
                for p in patients}
    print("  " + tally("reconstructions", [r for rs in readings.values() for r in rs]))
    print("  " + tally("held out", [r for p, rs in readings.items() if p in kept for r in rs]))
    steps = model.traverse(model.order[0], 7)
    failing = [f"{z:+.1f}" for z, labels in steps if not plausibility(labels)["plausible"]]
    print(f"  mean shape: {verdict(plausibility(model.decode(model.mean)))}; dimension {model.order[0]} over mean +- 2 "
          f"sd: {len(failing)} of 7 steps fail" + (f" ({', '.join(failing)} sd)" if failing else ""))


def corrections(models: dict[str, ShapeModel], held_out: list[Path], network: str = "acnn-seg-acdc") -> None:
    """``network``'s outputs on the held-out patients' images corrected with each shape model."""
    problem = held_out_elsewhere(network, held_out)
    if problem:
        print(f"note: {problem}")
    segmenter = Segmenter(network, "cpu")
    cases = [c for p in held_out for c in read_acdc_patient(p)]
    rows = {name: [] for name in models}
    for motion in ACDC_MOTIONS:
        for i, case in enumerate(cases):
            result = segmenter(AcdcBenchmark._moved(i, case, motion))
            clean = clean_up(result.labels)
            for name, model in models.items():
                labels, how = model.correct(result.labels, result.probabilities)
                rows[name].append({"motion": motion, "refused": how.startswith(CORRECTION_REFUSED),
                                   "changed": int(np.count_nonzero(labels.array != clean.array)),
                                   **evaluate_case(labels, case.labels, (1, 2, 3))})
    print(f"\n{network} on the {len(cases)} held-out images at {' / '.join(f'{m:g}' for m in ACDC_MOTIONS)} mm, "
          "corrected with each (the default limit):")
    for name, rs in rows.items():
        bad = " / ".join(str(sum(not r["plausible"] for r in rs if r["motion"] == m)) for m in ACDC_MOTIONS)
        print(f"  {name}: implausible {bad}, refused by the limit {sum(r['refused'] for r in rs)}, voxels changed "
              f"from the cleaned-up map {np.mean([r['changed'] for r in rs]):.0f} on average; Dice (all "
              f"{len(rs)}) LV {np.mean([r['dice_lv'] for r in rs]):.4f}, myocardium "
              f"{np.mean([r['dice_myo'] for r in rs]):.4f}, RV {np.mean([r['dice_rv'] for r in rs]):.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/acdc")
    parser.add_argument("--out", type=Path, default=Path("runs/ae-ft"))
    args = parser.parse_args()
    runs = fine_tune(args.data, args.out)
    held_out = held_out_patients(args.data)
    models = {"ae-acdc": ShapeModel("ae-acdc", "cpu")} | {arm: ShapeModel(run, "cpu") for arm, run in runs.items()}
    for name, model in models.items():
        shapes(name, model, acdc_patients(args.data), held_out)
    corrections(models, held_out)


if __name__ == "__main__":
    main()
