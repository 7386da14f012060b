"""Figures for the models: accuracy on held-out phantom subjects and speed, printed side by side.

    python benchmarks/models.py [--subjects 60] [--models acnn-seg-phantom seg3d-phantom ...]

Accuracy: held-out subjects (seed 1000, never used in training), a quarter each at
0, 1, 2 and 3 mm slice misalignment; Dice and Hausdorff distance (mm, MONAI) per
structure; Wilcoxon signed-rank test between the first two models. Speed: one LR
stack at the default grid on this machine's CPU threads, the sub-pixel net against
MONAI's 3-D U-Net on the up-sampled stack at a comparable parameter count, measured
in one run, each model's peak memory measured in a process of its own; and one
ACNN-Seg training step in both memory layouts, and in mixed precision (bf16).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch


def held_out(n: int, seed: int = 1000):
    from ACNNCore.phantom.population import PhantomConfig, generate_subject, with_motion

    cases = []
    for i in range(n):
        motion = float(i * 4 // n)  # 0, 1, 2, 3 mm
        ps = generate_subject(i, seed, with_motion(PhantomConfig(), motion))
        for phase, vols in ps.phases.items():
            cases.append((f"{ps.info['subject']}_{phase}", motion, vols["lr"], vols["hr_gt"]))
    return cases


def hausdorff(pred, truth, label, spacing) -> float:
    from monai.metrics import compute_hausdorff_distance

    p = torch.from_numpy(pred == label)[None, None].float()
    t = torch.from_numpy(truth == label)[None, None].float()
    return float(compute_hausdorff_distance(p, t, include_background=True, spacing=list(spacing))[0, 0])


def accuracy(models, n):
    from scipy.stats import wilcoxon

    from ACNNCore.inference import Segmenter
    from ACNNCore.metrics import dice, on_grid_of

    cases = held_out(n)
    rows = {m: [] for m in models}
    for m in models:
        seg = Segmenter(m, "cpu")
        for name, motion, lr, truth in cases:
            pred = on_grid_of(seg(lr).labels, truth)
            d = dice(pred, truth)
            rows[m].append({"case": name, "motion": motion, "dice_lv": d[1], "dice_myo": d[2],
                            "hd_lv": hausdorff(pred.array, truth.array, 1, truth.spacing),
                            "hd_myo": hausdorff(pred.array, truth.array, 2, truth.spacing)})
    print(f"\nAccuracy on {len(cases)} held-out cases ({n} subjects, seed 1000, motion 0-3 mm)")
    print(f"{'model':22s} {'Dice LV':>14s} {'Dice myo':>14s} {'HD LV (mm)':>14s} {'HD myo (mm)':>14s}")
    for m, r in rows.items():
        cols = [f"{np.mean([x[k] for x in r]):.3f}±{np.std([x[k] for x in r]):.3f}"
                for k in ("dice_lv", "dice_myo", "hd_lv", "hd_myo")]
        print(f"{m:22s} " + " ".join(f"{c:>14s}" for c in cols))
    for motion in (0.0, 1.0, 2.0, 3.0):
        print(f"  motion {motion:.0f} mm: " + ", ".join(
            f"{m} myo Dice {np.mean([x['dice_myo'] for x in r if x['motion'] == motion]):.3f}"
            for m, r in rows.items()))
    if len(models) >= 2:
        a, b = rows[models[0]], rows[models[1]]
        for k in ("dice_lv", "dice_myo", "hd_lv", "hd_myo"):
            p = wilcoxon([x[k] for x in a], [x[k] for x in b]).pvalue
            print(f"Wilcoxon {models[0]} vs {models[1]} on {k}: p = {p:.2g}")
    return rows


PROBE = """
import json, resource, sys, time, torch
torch.set_num_threads({threads})
from ACNNCore.networks import LAYOUT, SubPixelNet, UNet3D, count_parameters
net = {{"subpixel": lambda: SubPixelNet(hr_head=True), "unet": UNet3D}}["{which}"]().eval()  # as trained for seg
net = net.to(memory_format=LAYOUT) if {layout} else net  # as ACNNCore.inference runs both on the CPU
x = torch.randn(1, 1, 96, 96, 12).contiguous(memory_format=LAYOUT if {layout} else torch.contiguous_format)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with torch.no_grad():
    net(x)
    times = []
    for _ in range({repeats}):
        t = time.perf_counter(); net(x); times.append(time.perf_counter() - t)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"params": count_parameters(net), "seconds": sorted(times)[len(times) // 2],
                  "peak_mb": peak / 1024, "inference_mb": (peak - before) / 1024}}))
"""


TRAIN_PROBE = """
import json, time, torch
torch.set_num_threads({threads})
from ACNNCore.losses import acnn_seg_loss, decay_groups, freeze
from ACNNCore.networks import LAYOUT, ConvAutoencoder, SubPixelNet
fmt = LAYOUT if {layout} else torch.contiguous_format
torch.manual_seed(0)
net = SubPixelNet(hr_head=True).to(memory_format=fmt)  # ACNN-Seg with its AE prior, batch 4, as trained
ae = freeze(ConvAutoencoder(grid_shape=(96, 96, 60), num_classes=3)).to(memory_format=fmt)
optimizer = torch.optim.Adam(decay_groups(net, 5e-6), lr=1e-3)
x = torch.randn(4, 1, 96, 96, 12).contiguous(memory_format=fmt)
y = torch.randint(0, 3, (4, 96, 96, 60))
times = []
for i in range({repeats} + 2):
    t = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled={bf16}):  # as ACNNCore.training's precision bf16
        loss = acnn_seg_loss(net(x), y, ae.encode)["loss"]
    optimizer.zero_grad(); loss.backward(); optimizer.step()
    times.append(time.perf_counter() - t)
print(json.dumps({{"seconds": sorted(times[2:])[{repeats} // 2]}}))
"""


def _probe(source: str, **fields) -> dict:
    """Run a probe in a fresh Python process (no warm caches, its own peak memory); its JSON line."""
    run = subprocess.run([sys.executable, "-c", source.format(**fields)], capture_output=True, text=True, check=True)
    return json.loads(run.stdout)


def training_speed(threads: int, repeats: int):
    out = {}
    kinds = (("fast", True, False), ("plain", False, False), ("bf16", True, True))
    for name, layout, bf16 in kinds + kinds:  # interleaved, each twice: machines are noisy
        seconds = _probe(TRAIN_PROBE, threads=threads, repeats=repeats, layout=layout, bf16=bf16)["seconds"]
        out[name] = min(seconds, out.get(name, seconds))
    print(f"\nTraining, one ACNN-Seg step (batch 4, AE prior), {threads} CPU threads (median of {repeats}): "
          f"channels-last, as ACNNCore.training runs it on the CPU, {out['fast'] * 1000:.0f} ms; contiguous (NCDHW) "
          f"{out['plain'] * 1000:.0f} ms; {out['plain'] / out['fast']:.2f}x faster. Mixed precision (--precision "
          f"bf16), channels-last: {out['bf16'] * 1000:.0f} ms, {out['fast'] / out['bf16']:.2f}x faster than float32")
    return out


def speed(threads: int, repeats: int):
    out = {}
    for layout in (True, False, True, False):  # interleaved, each twice: machines are noisy
        for which in ("subpixel", "unet"):
            r = _probe(PROBE, threads=threads, which=which, repeats=repeats, layout=layout)
            best = out.get((which, layout))
            out[which, layout] = r if best is None or r["seconds"] < best["seconds"] else best
    print(f"\nSpeed, one LR stack 96x96x12 -> 96x96x60, {threads} CPU threads (median of {repeats})")
    for layout, name in ((True, "channels-last, as ACNNCore.inference runs them on the CPU"),
                         (False, "contiguous (NCDHW)")):
        s, u = out["subpixel", layout], out["unet", layout]
        print(f" {name}:")
        print(f"  sub-pixel 3D-Seg/ACNN-Seg: {s['seconds'] * 1000:6.1f} ms, {s['params']:,} parameters, "
              f"peak memory {s['peak_mb']:.0f} MB (+{s['inference_mb']:.0f} MB for inference)")
        print(f"  MONAI 3D-UNet (up-sampled): {u['seconds'] * 1000:6.1f} ms, {u['params']:,} parameters, "
              f"peak memory {u['peak_mb']:.0f} MB (+{u['inference_mb']:.0f} MB for inference)")
        print(f"  time ratio ACNN-Seg / 3D-UNet = {s['seconds'] / u['seconds']:.2f}")
    best = {w: min(out[w, True]["seconds"], out[w, False]["seconds"]) for w in ("subpixel", "unet")}
    print(f" each in its faster layout: time ratio ACNN-Seg / 3D-UNet = {best['subpixel'] / best['unet']:.2f}")
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=60)
    parser.add_argument("--models", nargs="*", default=["acnn-seg-phantom", "seg3d-phantom"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--skip-accuracy", action="store_true")
    args = parser.parse_args()
    t0 = time.time()
    speed(args.threads, args.repeats)
    training_speed(args.threads, max(4, args.repeats // 4))
    if not args.skip_accuracy:
        accuracy(args.models, args.subjects)
    print(f"\n({time.time() - t0:.0f} s; max RSS of this process "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)")


if __name__ == "__main__":
    main()
