"""The robustness figure, replicated fairly: nets of ONE recipe, with the prior and without, side by side.

The ensembles of four in benchmarks/ACDC.md ("Ensembles of these runs") mixed four recipes, and their
members were trained at different times; this trains, side by side on one machine, ACNN-Seg nets and
nets without the prior that differ only in the seed (--seeds; four a call here): the benchmark's recipe
(`Resources/Models/acdc.yaml`, constant rate), on the benchmark's 56 training patients, ACNN-Seg with one
AE (trained by `acnn train ae` on the same patients). Made for one GPU, where the eight train at once:
100 epochs each in 320-340 s on one H200 with 16 cores (2026-12-04; on the 2-core CPU machine a pair of
such runs takes about 75 minutes).

    # here: the AE, then the training cases, cut as training cuts them, and the AE into a kit that travels
    acnn train ae --data runs/acdc-ae/acdc-train --out runs/acdc-ae/ae-dice --config Resources/Models/acdc.yaml \
        --epochs 100 --seed 0 --device cpu       # (runs/acdc-ae/acdc-train: the split, as acdc_ae.py makes it)
    python benchmarks/acdc_gpu_ensembles.py kit --ae runs/acdc-ae/ae-dice/model --kit runs/kit
    # on the GPU machine (the `device` tool: carry runs/kit and .whl, a MONAI wheel for the soft Dice;
    # pip install it with --target /tmp/site, PYTHONPATH=/tmp/site; $OUT comes back): eight nets at once
    python3 benchmarks/acdc_gpu_ensembles.py train --kit runs/kit --out $OUT --seeds 0 1 2 3 --epochs 100
    # here: the models out of the archives, then the benchmark on the two ensembles
    python benchmarks/acdc_gpu_ensembles.py unpack --from FOLDER_OF_THE_ARCHIVES --to runs/gpu4
    acnn benchmark acdc --data ../shared/data/acdc --out runs/bench-gpu4 --methods seg acnn-seg \
        --models ae=runs/kit/ae seg=runs/gpu4/seg-s0/model,... acnn-seg=runs/gpu4/acnn-seg-s0/model,...

`unpack` prints that benchmark command in full. The bundled ensemble `acnn-seg-acdc` was made the same way
from all 70 patients, one arm, the bundled prior (which travels with the repository, so the kit holds none)
and one validation split for its four networks (2026-12-04: 420 s for the four on one H200):

    python benchmarks/acdc_gpu_ensembles.py kit --all --kit runs/kit70
    python3 benchmarks/acdc_gpu_ensembles.py train --kit runs/kit70 --out $OUT --arms acnn-seg --seeds 0 1 2 3 \
        --epochs 100 --split-seed 0 --prior Resources/Models/ae-acdc          # on the GPU machine

The kit holds the cut cases (float16 images, as the float32 crops to within 5e-4, below the input noise
augmentation of 0.02; lzma-packed: 70 patients in 31 MiB) so that the GPU machine, which has neither
SimpleITK nor the ACDC folder, reads no image file: `member` gives training those cases in place of reading
and cutting them, and a stand-in SimpleITK module that refuses every call. `train` stops
every net still running at --deadline seconds (Ctrl-C, so each keeps its finished epochs and best model)
and packs each arm's runs (best model, log, config) into one archive in --out. The results of seeds 0-7:
benchmarks/ACDC.md, "One recipe, eight seeds each way, side by side".
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import lzma
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import types
from pathlib import Path

import numpy as np

from acdc_ae import epochs_done  # beside this script

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "Resources/Models/acdc.yaml"
ARMS = ("acnn-seg", "seg")  # with the prior, without
KIT_CASES = "cases.npz.xz"  # the cut cases: an uncompressed .npz, lzma-compressed


# --- here: the kit ----------------------------------------------------------------------------------

def make_kit(data: Path, ae: Path | None, kit: Path, max_patients: int = 0, everyone: bool = False) -> None:
    """The benchmark split's training patients (``everyone``: all of ``data``, for a bundle) cut as training
    cuts them, and the AE (None: one that travels with the repository, a bundled model), into ``kit``."""
    import yaml

    from ACNNCore.benchmark import AcdcBenchmark
    from ACNNCore.datasets import read_dataset
    from ACNNCore.training import crop_cases

    if kit.exists():
        raise SystemExit(f"{kit} exists; remove it first")
    if everyone:
        cases = read_dataset(data)
        patients = len({c.subject for c in cases})
    else:
        split = AcdcBenchmark(data, kit.parent / "acdc-split", say=lambda *a: None, max_patients=max_patients)
        cases, patients = read_dataset(split.train_dir), len(split.train)
    cases = crop_cases(cases, yaml.safe_load(RECIPE.read_text(encoding="utf-8"))["crop"])
    kit.mkdir(parents=True)
    arrays, described = {}, []
    for i, c in enumerate(cases):  # the slices the cut filled (it pads a short stack with zeros)
        filled = np.flatnonzero(np.any(c.image.array != 0, axis=(0, 1)) | np.any(c.labels.array != 0, axis=(0, 1)))
        z = slice(int(filled[0]), int(filled[-1]) + 1)
        image = np.ascontiguousarray(c.image.array[:, :, z], np.float16)
        arrays[f"image{i}"] = image.view(np.uint8).reshape(-1, 2).T  # high and low bytes apart: lzma packs more
        arrays[f"labels{i}"] = c.labels.array[:, :, z].astype(np.uint8)
        described.append({"name": c.name, "meta": c.meta, "slices": [z.start, z.stop],
                          "image": c.image.geometry.to_dict(), "labels": c.labels.geometry.to_dict()})
    packed = io.BytesIO()
    np.savez(packed, **arrays)
    (kit / KIT_CASES).write_bytes(lzma.compress(packed.getvalue()))
    (kit / "cases.json").write_text(json.dumps(described, indent=1, default=str), encoding="utf-8")
    if ae is not None:
        shutil.copytree(ae, kit / "ae")
    size = sum(f.stat().st_size for f in kit.rglob("*") if f.is_file())
    print(f"{kit}: {len(cases)} cases of {patients} training patients{', the AE' if ae else ''}; "
          f"{size / 2**20:.1f} MiB")


# --- on the GPU machine ------------------------------------------------------------------------------

def _stand_in_simpleitk() -> None:
    """The GPU machine has no SimpleITK; training from the kit calls none of it (reading and cutting are
    replaced), but ACNNCore imports it. A module whose every function refuses stands in."""
    try:
        importlib.import_module("SimpleITK")
        return
    except ImportError:
        pass

    class Absent(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)

            def refuse(*args, **kwargs):
                raise RuntimeError(f"SimpleITK.{name}: SimpleITK is not installed on this machine")
            return refuse

    sys.modules["SimpleITK"] = Absent("SimpleITK")


def read_kit(kit: Path) -> list:
    from ACNNCore.datasets import Case
    from ACNNCore.volume import Geometry, Volume

    arrays, cases = np.load(io.BytesIO(lzma.decompress((kit / KIT_CASES).read_bytes()))), []
    for i, d in enumerate(json.loads((kit / "cases.json").read_text(encoding="utf-8"))):
        image, labels = np.zeros(d["image"]["shape"], np.float32), np.zeros(d["labels"]["shape"], np.uint8)
        z = slice(*d["slices"])
        kept = arrays[f"labels{i}"]
        image[:, :, z] = np.ascontiguousarray(arrays[f"image{i}"].T).view(np.float16).reshape(kept.shape)
        labels[:, :, z] = kept
        cases.append(Case(name=d["name"], meta=d["meta"], image=Volume(image, Geometry.from_dict(d["image"])),
                          labels=Volume(labels, Geometry.from_dict(d["labels"]))))
    return cases


def member(kit: Path, run: Path, arm: str, seed: int, epochs: int, device: str, split_seed: int | None = None,
           prior: Path | None = None) -> int:
    """One net: `acnn train seg` on the kit's cases (read and cut already)."""
    _stand_in_simpleitk()
    from ACNNCore import cli, training

    cases = read_kit(kit)
    training.read_dataset = lambda data, **kwargs: cases
    training.crop_cases = lambda cases, crop: cases  # cut here as the recipe's crop cuts
    prior = ["--prior", str(prior or kit / "ae")] if arm == "acnn-seg" else []
    args = ["train", "seg", "--data", str(kit), "--out", str(run), "--config", str(RECIPE),
            *prior, "--epochs", str(epochs), "--seed", str(seed), "--device", device, "--workers", "2",
            "--overwrite", *([] if split_seed is None else ["--split-seed", str(split_seed)])]
    sys.argv = ["acnn", *args]  # what the bundle records as its command
    return cli.main(args)


def train_all(kit: Path, out: Path, seeds: list[int], epochs: int, deadline: float, device: str,
              arms: tuple = ARMS, split_seed: int | None = None, prior: Path | None = None) -> None:
    start, runs, procs = time.monotonic(), out / "runs", {}
    path = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])  # the caller's kept
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}
    for arm in arms:
        for seed in seeds:
            name = f"{arm}-s{seed}"
            (runs / name).mkdir(parents=True)
            log = (runs / f"{name}.log").open("w", encoding="utf-8")
            procs[name] = subprocess.Popen(
                [sys.executable, __file__, "member", "--kit", str(kit), "--run", str(runs / name), "--arm", arm,
                 "--seed", str(seed), "--epochs", str(epochs), "--device", device,
                 *([] if split_seed is None else ["--split-seed", str(split_seed)]),
                 *([] if prior is None else ["--prior", str(prior)])],
                env=env, stdout=log, stderr=subprocess.STDOUT,
                # started from a background job (nohup ... &) a net would inherit Ctrl-C ignored, and the
                # deadline could not stop it: each starts with Ctrl-C's default
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    print(f"{len(procs)} nets started: {', '.join(procs)}", flush=True)
    while any(p.poll() is None for p in procs.values()) and time.monotonic() - start < deadline:
        time.sleep(10)
        print(f"{time.monotonic() - start:5.0f} s: " + ", ".join(f"{n} {epochs_done(runs / n)}" for n in procs),
              flush=True)
    for name, p in procs.items():
        if p.poll() is None:  # out of time: Ctrl-C keeps the finished epochs and the best model
            print(f"{name}: stopped at the deadline after {epochs_done(runs / name)} epochs", flush=True)
            p.send_signal(signal.SIGINT)
    for p in procs.values():
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
    summary = {n: {"returncode": p.returncode, "epochs": epochs_done(runs / n)} for n, p in procs.items()}
    summary["seconds"] = round(time.monotonic() - start)
    (runs / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    print(json.dumps(summary), flush=True)
    for arm in arms:  # one archive an arm: the files that come back are few
        with tarfile.open(out / f"{arm}.tar", "w") as tar:
            for seed in seeds:
                name = f"{arm}-s{seed}"
                for f in ("model/model.safetensors", "model/model.json", "log.csv", "config.yaml"):
                    if (runs / name / f).is_file():
                        tar.add(runs / name / f, arcname=f"{name}/{f}")
                tar.add(runs / f"{name}.log", arcname=f"{name}/train.log")
            tar.add(runs / "summary.json", arcname="summary.json")
    shutil.rmtree(runs)


# --- here: the models back ----------------------------------------------------------------------------

def unpack(source: Path, to: Path, kit: Path) -> None:
    if to.exists():
        raise SystemExit(f"{to} exists; remove it first")
    names = {}
    for arm in [a for a in ARMS if (source / f"{a}.tar").is_file()]:
        with tarfile.open(source / f"{arm}.tar") as tar:
            tar.extractall(to, filter="data")
        names[arm] = sorted(d.name for d in to.iterdir() if d.name.startswith(f"{arm}-s") and (d / "model").is_dir())
    print(json.loads((to / "summary.json").read_text(encoding="utf-8")))
    models = " ".join(f"{arm}=" + ",".join(str(to / n / "model") for n in names[arm]) for arm in names)
    # the AE: the one the ACNN-Seg nets record (a bundled prior where the kit holds none), else the kit's
    trained = [json.loads((to / n / "model/model.json").read_text(encoding="utf-8"))["training"]
               for n in names.get("acnn-seg", [])]
    ae = trained[0]["prior"] if trained else kit / "ae"
    print(f"acnn benchmark acdc --data ../shared/data/acdc --out runs/bench-{to.name} --methods {' '.join(names)} "
          f"--models ae={ae} {models}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("kit", help="here: the cut training cases and the AE into --kit")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/acdc")
    p.add_argument("--ae", type=Path, help="the prior, copied into the kit (leave out for a bundled one)")
    p.add_argument("--kit", type=Path, default=Path("runs/kit"))
    p.add_argument("--max-patients", type=int, default=0, help="a spread of this many (quick trials); 0: all 70")
    p.add_argument("--all", action="store_true", help="every patient of --data, not the benchmark's training split")
    p = sub.add_parser("train", help="on the GPU machine: the eight nets at once, archives into --out")
    p.add_argument("--kit", type=Path, default=Path("runs/kit"))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--deadline", type=float, default=470, help="seconds after which every net still running stops")
    p.add_argument("--device", default="cuda", choices=("cpu", "cuda"))
    p.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    p.add_argument("--split-seed", type=int, help="one validation split for every net (default: each its seed's)")
    p.add_argument("--prior", type=Path, help="ACNN-Seg's AE (default: the kit's)")
    p = sub.add_parser("member", help="one net (started by train)")
    p.add_argument("--kit", type=Path, required=True)
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--arm", choices=ARMS, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--split-seed", type=int)
    p.add_argument("--prior", type=Path)
    p = sub.add_parser("unpack", help="here: the archives into --to; prints the benchmark's command")
    p.add_argument("--from", dest="source", type=Path, required=True)
    p.add_argument("--to", type=Path, default=Path("runs/gpu4"))
    p.add_argument("--kit", type=Path, default=Path("runs/kit"))
    args = parser.parse_args()
    if args.step == "kit":
        make_kit(args.data, args.ae, args.kit, args.max_patients, everyone=args.all)
    elif args.step == "train":
        train_all(args.kit, args.out, args.seeds, args.epochs, args.deadline, args.device, tuple(args.arms),
                  args.split_seed, args.prior)
    elif args.step == "member":
        sys.exit(member(args.kit, args.run, args.arm, args.seed, args.epochs, args.device, args.split_seed,
                        args.prior))
    else:
        unpack(args.source, args.to, args.kit)


if __name__ == "__main__":
    main()
