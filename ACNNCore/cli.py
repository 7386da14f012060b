"""The ``acnn`` command line.

Every command reports a user's mistake (missing file, 2-D image, NaN voxels,
an output that exists...) as one line ``acnn: error: ...`` and exit code 2,
never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from . import __version__
from .errors import InputError


def _add_phantom(sub):
    p = sub.add_parser("phantom", help="generate a phantom population (LR stacks, HR images and labels)",
                       description="Generate phantom subjects: NOR/DCM/HCM left ventricles at ED and ES, "
                                   "rendered as bSSFP-like HR images and acquired as thick-slice LR stacks "
                                   "(or as 3-D echo volumes with --modality us).")
    p.add_argument("--out", required=True, type=Path, help="output folder (must be empty or absent)")
    p.add_argument("--subjects", type=int, default=6, help="number of subjects (groups cycle NOR, DCM, HCM)")
    p.add_argument("--seed", type=int, default=0, help="population seed (subject i is the same for any N)")
    p.add_argument("--modality", choices=("mr", "us"), default="mr")
    p.add_argument("--motion", type=float, default=0.0, metavar="MM",
                   help="largest per-slice in-plane shift between breath-holds (0 = none)")
    p.add_argument("--rotation", type=float, default=None, metavar="DEG",
                   help="largest per-slice rotation (default: 1 degree per mm of --motion)")
    p.add_argument("--factor", type=int, default=5, metavar="K", help="HR slices per LR slice")
    p.add_argument("--blur-sigma", type=float, default=4.0, metavar="MM", help="slice profile sigma (0 = off)")
    p.add_argument("--noise", type=float, default=0.03, help="Rician noise sigma, blood = 1 (0 = off)")
    p.add_argument("--bias", type=float, default=0.2, help="coil bias field amplitude (0 = off)")
    p.add_argument("--preview", action="store_true", help="also write DIR/preview.png")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    p.set_defaults(run=run_phantom)


def run_phantom(args) -> int:
    from dataclasses import replace

    from tqdm import tqdm

    from .phantom.population import PhantomConfig, write_population

    if args.factor < 1 or 60 % args.factor:
        raise InputError("--factor must divide the 60 HR slices (1, 2, 3, 4, 5, 6, 10, ...)")
    for name in ("motion", "blur_sigma", "noise", "bias"):
        if getattr(args, name) < 0:
            raise InputError(f"--{name.replace('_', '-')} must not be negative")
    config = PhantomConfig(modality=args.modality)
    config = replace(
        config,
        mr=replace(config.mr, noise=args.noise, bias=args.bias),
        acquisition=replace(config.acquisition, factor=args.factor, blur_sigma_mm=args.blur_sigma,
                            motion_mm=args.motion, rotation_deg=args.rotation, noise=args.noise),
    )
    shown = []  # the first subjects, for the preview

    def on_subject(ps):
        bar.update(1)
        if args.preview and len(shown) < 4:
            shown.append(ps)

    with tqdm(total=args.subjects, desc="phantom", unit="subject", disable=None) as bar:
        infos = write_population(args.out, args.subjects, args.seed, config, overwrite=args.overwrite,
                                 on_subject=on_subject)
    for info in infos:
        ed = info["phases"]["ED"]
        print(f"{info['subject']}  {info['group']}  EDV {ed['lv_volume_ml']:6.1f} ml  "
              f"mass {ed['myo_mass_g']:6.1f} g  EF {info['ef_pct']:5.1f} %")
    if args.preview:
        from .phantom.preview import write_preview

        print(f"preview: {write_preview(shown, args.out / 'preview.png')}")
    print(f"wrote {len(infos)} subjects to {args.out}")
    return 0


def _add_info(sub):
    p = sub.add_parser("info", help="check and describe an image, label map or data folder")
    p.add_argument("path", type=Path)
    p.add_argument("--labels", action="store_true", help="treat a file as a label map (values 0-3)")
    p.set_defaults(run=run_info)


def run_info(args) -> int:
    from .datasets import read_dataset
    from .io import read_labels, read_volume

    path = args.path
    if path.is_dir():
        cases = read_dataset(path)
        groups = sorted({c.meta.get("group", "-") for c in cases})
        print(f"{path}: {len(cases)} cases, groups {', '.join(groups)}")
        for c in cases[:200]:
            print(f"  {c.name:24s} {c.image.shape} spacing {tuple(round(s, 3) for s in c.image.spacing)}"
                  f"{'  labels ' + str(c.labels.shape) if c.labels is not None else ''}")
        return 0
    volume = read_labels(path, allowed=(0, 1, 2, 3)) if args.labels else read_volume(path)
    g = volume.geometry
    summary = {"file": str(path), "shape": g.shape, "spacing_mm": [round(s, 4) for s in g.spacing],
               "origin_lps_mm": [round(o, 4) for o in g.origin], "direction": np.round(g.direction, 4).tolist(),
               "dtype": str(volume.array.dtype),
               "range": [float(volume.array.min()), float(volume.array.max())]}
    if args.labels:
        values, counts = np.unique(volume.array, return_counts=True)
        summary["label_volumes_ml"] = {int(v): round(float(c) * g.voxel_volume_ml, 3) for v, c in zip(values, counts)}
    print(json.dumps(summary, indent=1))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="acnn", description="Anatomically Constrained Neural Networks for cardiac MR and echo.")
    parser.add_argument("--version", action="version", version=f"acnn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_phantom(sub)
    _add_info(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except InputError as e:
        print(f"acnn: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("acnn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
