"""The ACDC shape prior's data term, side by side: an AE trained with CE alone against CE + soft Dice.

    python benchmarks/acdc_ae.py --data ../shared/data/acdc --out runs/acdc-ae [--epochs 40]

Both arms train on the ACDC benchmark's 56 training patients (`acnn benchmark acdc`'s fixed split:
every fifth patient is a test patient) with `Resources/Models/acdc.yaml`, which differs between them
only in `dice`, as two `acnn train ae` processes running at the same time, one CPU thread each. Printed
per arm: the validation Dice of its log (7 of the training patients held out) at a few epochs, and the
reconstruction Dice, decode(encode(map)), of the 14 test patients' expert label maps (ED and ES) with
its best epoch, on the model's grid. A finished arm is reused.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]


def train_arms(split, out: Path, epochs: int, device: str) -> dict[str, Path]:
    base = yaml.safe_load((ROOT / "Resources/Models/acdc.yaml").read_text(encoding="utf-8"))
    runs, jobs = {}, {}
    for arm, use_dice in (("CE", False), ("CE + soft Dice", True)):
        run = runs[arm] = out / ("ae-dice" if use_dice else "ae-ce")
        config = out / f"{run.name}.yaml"
        if epochs_done(run) < epochs:
            config.parent.mkdir(parents=True, exist_ok=True)
            config.write_text(yaml.safe_dump({**base, "dice": use_dice}), encoding="utf-8")
        jobs[run] = ["ae", "--data", str(split.train_dir), "--config", str(config), "--seed", "0", "--device", device]
    train_at_once(jobs, epochs)
    return runs


def train_at_once(jobs: dict[Path, list[str]], epochs: int) -> None:
    """``acnn train ARGS --out RUN --epochs EPOCHS`` for each ``RUN: ARGS`` of ``jobs`` that has not yet
    trained EPOCHS epochs, all at once, one CPU thread each (the way two arms share the 2-core machine); a run
    that left its last epoch resumes from it, a finished one is left as it is; each one's messages go to
    RUN.log beside it."""
    procs = {}
    for run, args in jobs.items():
        if epochs_done(run) >= epochs:
            continue
        run.parent.mkdir(parents=True, exist_ok=True)
        resume = "--resume" if (run / "last.pt").is_file() else "--overwrite"
        cmd = [sys.executable, "-m", "ACNNCore", "train", *args, "--out", str(run), "--epochs", str(epochs), resume]
        print(" ".join(cmd[1:]), flush=True)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        with (run.parent / f"{run.name}.log").open("w", encoding="utf-8") as log:
            procs[run] = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log)
    failed = [run for run, p in procs.items() if p.wait()]  # every one waited for
    if failed:
        raise SystemExit("training failed: see " + ", ".join(f"{r}.log" for r in failed))


def epochs_done(run: Path) -> int:
    """The epochs a run's log.csv holds (0 where it has none yet)."""
    log = run / "log.csv"
    return max(0, len(log.read_text(encoding="utf-8").splitlines()) - 1) if log.is_file() else 0


def _log(run: Path) -> list[dict]:
    return list(csv.DictReader((run / "log.csv").open(encoding="utf-8")))


def validation(run: Path, at=(20, 40, 100, 190)) -> str:
    rows = _log(run)
    best = max(rows, key=lambda r: float(r["val_score"]))
    shown = [r for r in rows if int(r["epoch"]) + 1 in at] + [best]
    return ", ".join(f"epoch {int(r['epoch']) + 1}{' (best)' if r is best else ''}: {float(r['val_dice_1']):.3f} / "
                     f"{float(r['val_dice_2']):.3f} / {float(r['val_dice_3']):.3f}" for r in shown)


def held_out_reconstruction(model, patients) -> dict[int, float]:
    from ACNNCore.datasets import read_acdc_patient
    from ACNNCore.inference import ShapeModel
    from ACNNCore.metrics import dice
    from ACNNCore.preprocessing import resample

    shape, scores = ShapeModel(model, "cpu"), []
    for c in (c for p in patients for c in read_acdc_patient(p)):
        labels = c.labels.with_array(np.where(c.labels.array < shape.num_classes, c.labels.array, 0).astype(np.uint8))
        decoded = shape.reconstruct(labels)
        scores.append(dice(decoded, resample(labels, decoded.geometry, "nearest"), (1, 2, 3)))
    return {k: float(np.mean([s[k] for s in scores])) for k in (1, 2, 3)} | {"maps": len(scores)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/acdc")
    parser.add_argument("--out", type=Path, default=Path("runs/acdc-ae"))
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    args = parser.parse_args()
    from ACNNCore.benchmark import AcdcBenchmark

    split = AcdcBenchmark(args.data, args.out, say=lambda *a: None)  # the benchmark's split; OUT/acdc-train
    runs = train_arms(split, args.out, args.epochs, args.device)
    print(f"\nAE data term, {args.epochs} epochs each (Dice LV / myocardium / RV)")
    for arm, run in runs.items():
        r = held_out_reconstruction(run, split.test)  # a run folder: its best epoch's model
        print(f"{arm:15s} validation {validation(run)}\n{'':15s} test patients' maps ({r['maps']}), best epoch: "
              f"{r[1]:.3f} / {r[2]:.3f} / {r[3]:.3f}")


if __name__ == "__main__":
    main()
