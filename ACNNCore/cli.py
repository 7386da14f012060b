"""The ``acnn`` command line.

Every command reports a user's mistake (missing file, 2-D image, NaN voxels,
an output that exists...) as one line ``acnn: error: ...`` and exit code 2,
never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import warnings
from pathlib import Path

import numpy as np

from . import __version__
from .errors import InputError, OutputExists, TrainingError
from .progress import counted


def _add_phantom(sub):
    p = sub.add_parser("phantom", help="generate a phantom population (LR stacks, HR images and labels)",
                       description="Generate phantom subjects: NOR/DCM/HCM left ventricles at ED and ES, "
                                   "rendered as bSSFP-like HR images and acquired as thick-slice LR stacks "
                                   "(or as 3-D echo volumes with --modality us).")
    p.add_argument("-o", "--out", required=True, type=Path, help="output folder (must be empty or absent)")
    p.add_argument("--subjects", type=int, default=6, help="number of subjects (groups cycle NOR, DCM, HCM)")
    p.add_argument("--seed", type=int, default=0, help="population seed (subject i is the same for any N)")
    p.add_argument("--modality", choices=("mr", "us"), default="mr",
                   help="mr: thick-slice cine MR stacks with HR truth (default); us: 3-D echo volumes")
    p.add_argument("--motion", type=float, default=0.0, metavar="MM",
                   help="largest per-slice in-plane shift between breath-holds (0 = none)")
    p.add_argument("--rotation", type=float, default=None, metavar="DEG",
                   help="largest per-slice rotation (default: 1 degree per mm of --motion)")
    p.add_argument("--factor", type=int, default=5, metavar="K", help="HR slices per LR slice")
    p.add_argument("--blur-sigma", type=float, default=4.0, metavar="MM", help="slice profile sigma (0 = off)")
    p.add_argument("--noise", type=float, default=0.03, help="Rician noise sigma, blood = 1 (0 = off)")
    p.add_argument("--bias", type=float, default=0.2, help="coil bias field amplitude (0 = off)")
    p.add_argument("--us-grid", type=int, nargs=3, metavar=("X", "Y", "Z"),
                   help="echo volume size in voxels (default 112 112 120)")
    p.add_argument("--us-spacing", type=float, nargs=3, metavar=("SX", "SY", "SZ"),
                   help="echo voxel size in mm (default 1 1 1)")
    p.add_argument("--preview", action="store_true", help="also write DIR/preview.png")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    p.set_defaults(run=run_phantom)


def run_phantom(args) -> int:
    from dataclasses import replace

    from .phantom.population import PhantomConfig, write_population
    from .progress import progress_bar

    for name in ("motion", "blur_sigma", "noise", "bias", "seed"):
        if not getattr(args, name) >= 0:  # NaN too
            raise InputError(f"--{name.replace('_', '-')} must not be negative, not {getattr(args, name)}")
    if args.rotation is not None and not 0 <= args.rotation <= 90:
        raise InputError(f"--rotation is the largest per-slice rotation, from 0 to 90 degrees, not {args.rotation}")
    config = PhantomConfig(modality=args.modality)
    if args.us_grid or args.us_spacing:
        if args.modality != "us":
            raise InputError("--us-grid and --us-spacing are for --modality us")
        if min(args.us_grid or [1]) < 8 or min(args.us_spacing or [1]) <= 0:
            raise InputError("--us-grid needs at least 8 voxels per axis and --us-spacing positive sizes")
        config = replace(config, us_shape=tuple(args.us_grid or config.us_shape),
                         us_spacing=tuple(args.us_spacing or config.us_spacing))
    slices = config.hr_shape[2]
    if args.factor < 1 or slices % args.factor:
        raise InputError(f"--factor must divide the {slices} HR slices "
                         f"({', '.join(str(k) for k in range(1, slices + 1) if slices % k == 0)})")
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

    with progress_bar(total=args.subjects, desc="phantom", unit="subject") as bar:
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
    p = sub.add_parser("info", help="check and describe an image, label map, data folder or model")
    p.add_argument("path", type=Path, help="an image (a file, a 4-D cine or a DICOM folder), a label map, a data "
                                            "folder, or a model (a bundle folder, a training run's folder or a "
                                            "bundled model's name)")
    p.add_argument("--labels", action="store_true",
                   help="treat a file as a label map (values 0-3); the default for a .seg.nrrd or a name like "
                        "*_gt.nii.gz")
    _series_arg(p)
    p.set_defaults(run=run_info)


def _series_arg(p):
    p.add_argument("--series", metavar="DESCRIPTION|NUMBER",
                   help="for DICOM input: only the series of this description (any case), number or UID -- the "
                        "short-axis cine of a full study that also holds perfusion, T1 mapping or a second cine "
                        "(a cine written one series per slice: their shared description)")


def _dicom_only(args, path: Path, dicom: bool, what: str = "not a folder of DICOM files") -> None:
    """The DICOM options refused, by name, for input that is not DICOM."""
    for option, value in (("--series", args.series), ("--dicom-seg", getattr(args, "dicom_seg", None))):
        if value is not None and not dicom:
            raise InputError(f"{option} is for DICOM input: {path} is {what}")


def run_info(args) -> int:
    from collections import Counter

    from .datasets import folder_images, read_dataset
    from .evaluation import is_label_file, label_convention, read_label_map
    from .labels import ACDC_TO_OURS, SEGMENTS, remap
    from .metrics import PROBLEM_WORDS, plausibility, verdict
    from .dicom import (dicom_files, dicom_studies, is_dicom_folder, is_dicom_seg, read_dicom, read_dicom_seg,
                        read_dicom_stacks)
    from .io import is_cine, looks_like_labels, read_frames, read_volume

    path = args.path
    if _is_model(path):
        from .bundle import WEIGHTS_FINE, describe

        about = describe(path)
        print(json.dumps(about, indent=1))
        if about["weights"] not in WEIGHTS_FINE:  # described, and said plainly: it would be refused where used
            print(f"acnn: {about['weights']}", file=sys.stderr)
            return 1
        return 0
    if not path.exists():
        raise InputError(f"no such file, folder or bundled model: {path}")
    dicom = is_dicom_folder(path)
    _dicom_only(args, path, dicom)
    studies = dicom_studies(path) if dicom else {}
    segs = [p.relative_to(path).as_posix() for p in dicom_files(path) if is_dicom_seg(p)] if dicom else []

    def line(name, frames):
        return (f"  {name:24s} {counted(len(frames), 'frame')} of {frames[0].shape} spacing "
                f"{tuple(round(s, 3) for s in frames[0].spacing)}")

    def print_segs():  # SEG objects lying among the images (labels: Slicer and the studio load them with them)
        if segs:
            print(f"  DICOM SEG: {', '.join(segs[:5])}{' ...' if len(segs) > 5 else ''}")

    if len(studies) > 1:  # a folder of DICOM studies: each as acnn segment would read it
        print(f"{path}: {len(studies)} DICOM studies")
        for name, study in studies.items():
            try:
                print(line(name, read_dicom(*study, series=args.series)))
            except InputError as e:
                print(f"  {name:24s} not read: {e}")
        print_segs()
        return 0
    stacks = read_dicom_stacks(path) if dicom and args.series is None else {}
    if len(stacks) > 1:  # a full study's several cines: acnn segment reads the one --series names
        print(f"{path}: {len(stacks)} stacks; segment one with --series DESCRIPTION")
        for name, frames in stacks.items():
            print(line(name, frames))
        print_segs()
        return 0
    if path.is_dir() and not dicom:
        images = folder_images(path)
        if any(is_cine(p) for p in images.values()):  # a plain folder of stacks and cines, as acnn segment reads it
            print(f"{path}: {counted(len(images), 'image')}, stacks and 4-D cines")
            for name, image in images.items():
                print(line(name, read_frames(image)))
            return 0
        cases = read_dataset(path)
        groups = sorted({c.meta.get("group", "-") for c in cases})
        print(f"{path}: {counted(len(cases), 'case')}, groups {', '.join(groups)}")
        checked = {c.name: plausibility(c.labels) for c in cases if c.labels is not None}  # in our label values
        for c in cases[:200]:
            print(f"  {c.name:24s} {c.image.shape} spacing {tuple(round(s, 3) for s in c.image.spacing)}"
                  + (f"  labels {c.labels.shape} {verdict(checked[c.name])}" if c.name in checked else ""))
        if checked:
            bad = Counter(p for r in checked.values() for p in r["problems"])
            print(f"label maps implausible by acnn's checks: {sum(not r['plausible'] for r in checked.values())} of "
                  f"{len(checked)}" + "".join(f"; {PROBLEM_WORDS[p]}: {n}" for p, n in bad.items()))
        return 0
    seg = is_dicom_seg(path)  # a DICOM SEG file: its segments as our labels
    seg_nrrd = not dicom and path.name.lower().endswith(".seg.nrrd")  # Slicer's: its layers are no frames
    labels = seg or seg_nrrd or args.labels or not dicom and is_label_file(path)
    frames = ([read_dicom_seg(path)] if seg else [read_volume(path)] if seg_nrrd else
              next(iter(stacks.values())) if stacks else
              read_dicom(path, series=args.series) if dicom else read_frames(path))  # a cine: its frames
    if labels and not seg:  # told, or by its name: its values checked
        frames = [f.check_labels((0, 1, 2, 3), f"label map {path}").with_array(f.array.astype(np.uint8))
                  for f in frames]
    volume = frames[0]
    labels = labels or looks_like_labels(volume)  # integer values 0-3: what acnn segment writes
    g = volume.geometry
    summary = {"file": str(path), **({"frames": len(frames)} if len(frames) > 1 else {}),
               **({"format": "DICOM"} if dicom else {"format": "DICOM SEG"} if seg else {}),
               "shape": g.shape, "spacing_mm": [round(s, 4) for s in g.spacing],
               "origin_lps_mm": [round(o, 4) for o in g.origin], "direction": np.round(g.direction, 4).tolist(),
               "dtype": str(volume.array.dtype),
               "range": [float(min(f.array.min() for f in frames)), float(max(f.array.max() for f in frames))],
               **({"dicom_seg": segs} if segs else {})}
    if labels:  # per label value; per structure, in our values, with the plausibility checks' verdict (each frame's)
        def ml(array, value):
            return round(float(np.count_nonzero(array == value)) * g.voxel_volume_ml, 3)

        if seg or seg_nrrd:  # read by its segments' names or codes
            ours = frames if seg else [read_label_map(path)]
        else:
            acdc = label_convention(path) == "acdc"
            ours = [f.with_array(remap(f.array, ACDC_TO_OURS)) if acdc else f for f in frames]
        for key, values in (("label_volumes_ml", [{int(v): ml(f.array, v) for v in np.unique(f.array)}
                                                  for f in frames]),
                            ("structures_ml", [{name: ml(o.array, v) for v, (name, _) in SEGMENTS.items()}
                                               for o in ours]),
                            ("plausibility", [verdict(plausibility(o)) for o in ours])):
            summary[key] = values[0] if len(values) == 1 else values  # else frame by frame
        if len(ours) > 1:
            summary.update(_cine_ef(summary["structures_ml"]))
    print(json.dumps(summary, indent=1))
    return 0


def _cine_ef(structures: list[dict]) -> dict:
    """A cine's label map's ED and ES (counted from 1) and EF, from its frames' volumes ({structure: ml} each, as
    ``acnn info`` lists them): ED and ES the frames of largest and smallest LV blood pool of those labelled (an
    expert's 4-D map labels ED and ES alone), as ``acnn segment`` finds them; the RV's EF where it is labelled. {}
    where fewer than two frames hold an LV."""
    from .metrics import ed_es_frames, ejection_fraction

    lv = [m["LV blood pool"] for m in structures]
    labelled = [t for t, v in enumerate(lv) if v > 0]
    if len(labelled) < 2:
        return {}
    ed, es = ed_es_frames(lv, among=labelled)
    ef = {"ed_frame": ed + 1, "es_frame": es + 1, "ef_pct": round(ejection_fraction(lv[ed], lv[es]), 1)}
    rv = [m["RV blood pool"] for m in structures]
    if rv[ed] > 0:
        ef["rv_ef_pct"] = round(ejection_fraction(rv[ed], rv[es]), 1)
    return {"ejection_fraction": ef}


def _is_model(path: Path) -> bool:
    """A model bundle (or a training run's folder) or the name of a bundled model: what ``bundle.resolve``
    finds a model.json (or an ensemble.json) for."""
    from .bundle import is_bundle, resolve

    try:
        return is_bundle(resolve(path))
    except InputError:  # neither a folder nor a bundled model's name
        return False


def _add_train(sub):
    p = sub.add_parser("train", help="train a model: ae (shape prior), tl (T-L network), seg, sr",
                       description="Train a model on a data set (phantom, ACDC or image/label folder). "
                                   "Runs unchanged under `torchrun --nproc_per_node N`.")
    p.add_argument("task", choices=("ae", "tl", "seg", "sr"),
                   help="ae: the shape prior (label maps); tl: the T-L network (image -> that shape code); seg: "
                        "a segmentation network (ACNN-Seg with --prior); sr: super-resolution (ACNN-SR with "
                        "--prior)")
    p.add_argument("--data", required=True, type=Path,
                   help="a phantom data set (`acnn phantom`), the ACDC folder (patientNNN/Info.cfg), or a folder "
                        "of image/label pairs (NAME + NAME_gt files, or images/ + labels/ of the same names)")
    p.add_argument("-o", "--out", required=True, type=Path,
                   help="run folder: config.yaml, log.csv, last.pt, model/ (best epoch), model-final/ (seg, sr: "
                        "last epoch)")
    p.add_argument("--prior", type=Path, help="AE/T-L run or bundle: the shape prior (ACNN-Seg, ACNN-SR, T-L)")
    p.add_argument("--config", type=Path, help="YAML file of training settings (see TrainConfig)")
    p.add_argument("--init", metavar="MODEL",
                   help="fine-tune: start from this model's network and weights (a run folder, bundle or bundled "
                        "model's name); without --config, its training settings are the defaults")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch")
    p.add_argument("--overwrite", action="store_true",
                   help="start over in a non-empty --out (the earlier run's log, last.pt and models removed)")
    p.add_argument("--architecture", help="network: SubPixelNet (default seg/sr); the baselines FCN2D, UNet3D (seg), "
                                          "UNet3D, SRCNN (sr)")
    p.add_argument("--epochs", type=int, help="passes over the training cases (default from TrainConfig or "
                                               "--config)")
    p.add_argument("--batch-size", type=int, help="cases per step")
    p.add_argument("--lr", type=float, help="Adam's learning rate")
    p.add_argument("--lr-schedule", choices=("constant", "cosine"),
                   help="constant (default) or cosine annealing to 0 over the epochs")
    p.add_argument("--lambda1", type=float, help="weight of the shape prior (paper: 0.01)")
    p.add_argument("--balance-prior", action="store_true", default=None,
                   help="keep the prior at lambda1 times the data term's size (its weight rescaled each step)")
    p.add_argument("--hard-prior", action="store_true", default=None,
                   help="seg: the prior encodes the output's arg-max, its gradient through the probabilities "
                        "(straight-through; not the paper's, which encodes the probabilities)")
    p.add_argument("--contact", type=float, metavar="W",
                   help="seg and ae: weight of a term against LV blood pool meeting anything but LV where the "
                        "expert's does not (an open myocardial ring; not the paper's; default 0 = off)")
    p.add_argument("--contact-start", type=int, metavar="EPOCH",
                   help="epoch from which the contact term is added (default 10: after the net has found the "
                        "heart; 0 to fine-tune a trained net with it)")
    p.add_argument("--motion-augment", type=float, metavar="MM", help="per-slice motion augmentation (MAug)")
    p.add_argument("--max-cases", type=int, help="use only the first N cases (quick trials)")
    p.add_argument("--seed", type=int, help="weights, split and augmentation draws")
    p.add_argument("--split-seed", type=int, metavar="SEED",
                   help="the validation split's draw alone (default: --seed's): ensemble members trained with "
                        "different --seed hold out the same subjects")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="auto (default): the GPU when there is one")
    p.add_argument("--workers", type=int, help="data-loading processes (augmentation runs there); default 0")
    p.add_argument("--precision", choices=("fp32", "bf16"),
                   help="bf16: mixed precision (forward passes in bfloat16, weights and losses in float32), faster "
                        "where bfloat16 is native (CPUs with AVX512-BF16 or AMX, recent GPUs); default fp32")
    p.set_defaults(run=run_train)


def run_train(args) -> int:
    import dataclasses

    from .bundle import MODELS_DIR, read_meta, resolve
    from .datasets import is_acdc
    from .training import CHECKPOINT, LOG, TrainConfig, describe, train

    recipe = MODELS_DIR / "acdc.yaml"  # real data's, for ACDC given without --config

    if args.config:
        config = TrainConfig.from_yaml(args.config).to_dict()
    elif args.init:  # the model's own recipe (where it ran aside), which the options below change
        known = {f.name for f in dataclasses.fields(TrainConfig)} - {"device", "workers", "precision"}
        trained = read_meta(resolve(args.init)).get("training", {}).get("config", {})
        config = {k: v for k, v in trained.items() if k in known}
    elif is_acdc(args.data) and recipe.is_file():  # real images of every size: the real-data recipe
        config = TrainConfig.from_yaml(recipe).to_dict()
        print(f"ACDC data: the real-data recipe {recipe.name} (each case cut around its heart, CE + soft "
              f"Dice); --config FILE for another", file=sys.stderr)
    else:
        config = {}
    config["task"] = args.task
    for name in ("architecture", "epochs", "batch_size", "lr", "lr_schedule", "lambda1", "balance_prior",
                 "hard_prior", "contact", "contact_start", "max_cases", "seed", "split_seed", "device", "workers",
                 "precision"):
        if getattr(args, name) is not None:
            config[name] = getattr(args, name)
    if args.motion_augment is not None:
        config.setdefault("augment", {})["motion_mm"] = args.motion_augment
    speaks = int(os.environ.get("RANK", "0")) == 0  # under torchrun, the first process alone
    try:
        folder = train(TrainConfig.from_dict(config), args.data, args.out, args.prior, args.resume,
                       args.overwrite, command=shlex.join(["acnn", *args.argv]), init=args.init)
    except KeyboardInterrupt:  # Ctrl-C: the epochs finished are kept; say how to go on
        if speaks and all((args.out / f).is_file() for f in (CHECKPOINT, LOG)):
            done = len(describe(args.out))
            print(f"acnn: the run in {args.out} keeps its {counted(done, 'finished epoch')}; the same "
                  f"command with --resume continues it", file=sys.stderr)
        raise
    if speaks:
        print(f"model: {folder}")
    return 0


def _device_arg(p):
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="auto: the GPU when there is one (falls back to the CPU if it runs out of memory)")


def _add_inference(sub):
    p = sub.add_parser("segment", help="segment an LR stack, a cine or every case of a data folder into label maps")
    p.add_argument("input", type=Path, help="an image (a file, or a folder or a study's tree of folders of DICOM "
                   "files holding one short-axis stack); a 4-D cine, a file or DICOM (every frame segmented into a "
                   "4-D label map, ED and ES found by the LV's volume, the EF printed); or a data folder (phantom, "
                   "ACDC, or a folder of stacks and 4-D cines)")
    p.add_argument("-o", "--out", required=True, type=Path,
                   help="OUT.nii.gz, OUT.nrrd or OUT.seg.nrrd (a cine: a 4-D OUT.nii.gz, .nrrd or .mha); for a "
                   "data folder, a folder of CASE.nii.gz")
    p.add_argument("--model", action="append",
                   help="bundled model name or bundle folder (default: acnn-seg-acdc for real images, "
                        "acnn-seg-phantom for the phantom's stacks); given more than once, an ensemble: the "
                        "models' probabilities are averaged")
    p.add_argument("--clean-up", action="store_true",
                   help="keep each structure's largest connected part (removes stray islands) and fill the LV "
                        "blood pool's holes in each slice (papillary muscles are cavity, as in ACDC)")
    p.add_argument("--close-myocardium", action="store_true",
                   help="the clean-up, then the myocardial ring closed where the LV blood pool meets anything "
                        "else outside the basal third (those blood-pool voxels become myocardium): a rule that "
                        "makes every output pass the plausibility checks; with --correct, applied where the shape "
                        "model finds no plausible shape or its correction is refused")
    p.add_argument("--correct", nargs="?", const=True, metavar="SHAPE_MODEL",
                   help="the clean-up, then an implausible output replaced by the nearest plausible one that a "
                        "learnt shape space offers, changing as little as it can: the AE the model was trained with "
                        "(found by its checksum, e.g. ae-acdc for acnn-seg-acdc), or the AE or T-L bundle named")
    p.add_argument("--max-change", type=float, default=None, metavar="SHARE",
                   help="with --correct: the largest share of the LV's voxels a correction may change (default "
                        "0.25); an output that only a larger change makes plausible is left as it is, saying so "
                        "(inf: no limit, the whole map may be replaced by a decoded shape)")
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation: the network also sees the input turned by +-5 and +-10 degrees "
                        "and moved 3 mm in-plane, its probabilities averaged over the nine views")
    p.add_argument("--orient", action="store_true",
                   help="find the image's in-plane orientation: the network shown the stack in each of the eight "
                        "turns and mirrorings of its rows and columns, the output it is surest of kept (for images "
                        "stored otherwise than the training images, e.g. rows reversed by a converter; about nine "
                        "times the work)")
    p.add_argument("--label-convention", choices=("ours", "acdc"), default="ours",
                   help="label values written: ours (1 LV, 2 myocardium, 3 RV) or acdc (1 RV, 2 myocardium, 3 LV)")
    for phase, found in (("ed", "largest"), ("es", "smallest")):
        p.add_argument(f"--{phase}", type=int, metavar="FRAME",
                       help=f"for a cine: its {phase.upper()} frame, counted from 1 as Slicer's Sequences toolbar "
                            f"and ACDC's Info.cfg count (default: the frame of {found} LV blood pool); every frame "
                            f"is segmented all the same")
    _series_arg(p)
    p.add_argument("--dicom-seg", type=Path, metavar="FOLDER",
                   help="for DICOM input: the labels also written as DICOM Segmentation objects on the input's "
                        "images into FOLDER (SEG_001.dcm ..., one per frame of a cine), for a PACS or a DICOM "
                        "viewer; for a folder of studies, FOLDER/STUDY/; with a model that labels the acquired "
                        "slices (the real-data models)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    _device_arg(p)
    p.set_defaults(run=run_segment)
    p = sub.add_parser("superresolve", help="super-resolve an LR stack (or every frame of a cine) into an HR image",
                       description="The network sees its own window (120 mm for the bundled models): on a wider "
                                   "image it is centred on the heart the real-data segmentation model finds, and "
                                   "the rest is the input interpolated linearly; a cine's frames all in the window "
                                   "its first frame's heart sets. Notes on stderr say when the image's slices "
                                   "differ from the model's or a phantom-trained model meets a real image.")
    p.add_argument("input", type=Path, help="a short-axis stack or a 4-D cine (.nii.gz, .nrrd, .mha, or a folder of "
                                            "DICOM files)")
    p.add_argument("-o", "--out", required=True, type=Path, help="OUT.nii.gz, .nrrd or .mha (a cine: 4-D)")
    p.add_argument("--model", default="acnn-sr-phantom", help="bundled model name or bundle folder")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    _device_arg(p)
    p.set_defaults(run=run_superresolve)
    p = sub.add_parser("explore", help="decode a traversal of one latent dimension over mean +- k std")
    p.add_argument("--model", default="ae-phantom", help="AE or T-L bundle")
    p.add_argument("--dim", type=int, default=None, help="code dimension (default: the most used)")
    p.add_argument("--steps", type=int, default=9, help="shapes decoded along the dimension (default 9)")
    p.add_argument("--range", type=float, default=2.0, dest="k", help="k in mean +- k std")
    p.add_argument("--from", dest="base", type=Path, metavar="LABEL_MAP",
                   help="traverse around this label map's code instead of the mean code (an expert's map or a "
                        "segmentation; ACDC's label values where an ACDC Info.cfg lies beside it), the shapes "
                        "placed where it lies")
    p.add_argument("-o", "--out", required=True, type=Path,
                   help="a .png montage (each step's short-axis and long-axis cuts and its myocardium in 3-D, the "
                        "apex down; the steps that fail the plausibility checks marked), or a folder of .nii.gz "
                        "label maps")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    _device_arg(p)
    p.set_defaults(run=run_explore)
    p = sub.add_parser("encode", help="encode label maps into a shape model's codes, one CSV row per map",
                       description="Each label map (an expert's or a segmentation; files, or folders searched as "
                                   "`acnn evaluate` searches them, ACDC's and the phantom's layouts understood) "
                                   "encoded into the learnt shape space: its code, with the case's group where the "
                                   "data set names it (ACDC's Info.cfg, a phantom's info.json), for analyses of "
                                   "one's own (statistics, classifiers); a cine's 4-D map (what `acnn segment "
                                   "CINE` writes) frame by frame, its path through the shape space over the cardiac "
                                   "cycle. ACDC's label values are read as such where an ACDC Info.cfg lies beside "
                                   "the file.")
    p.add_argument("maps", nargs="+", type=Path, metavar="MAPS", help="label map files or folders of them")
    p.add_argument("--model", default="ae-acdc",
                   help="AE or T-L bundle (default ae-acdc: LV, myocardium and RV; ae-phantom: LV and myocardium)")
    p.add_argument("--convention", choices=("auto", "ours", "acdc"), default="auto",
                   help="label values of the maps (auto: ACDC's where an ACDC Info.cfg lies beside the file)")
    p.add_argument("-o", "--out", required=True, type=Path,
                   help="CODES.csv: case, group, file, then z0, z1, ... (a cine's frames: NAME_frameN, with a frame "
                        "column)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    _device_arg(p)
    p.set_defaults(run=run_encode)
    p = sub.add_parser("models", help="list the bundled models")
    p.set_defaults(run=run_models)
    p = sub.add_parser("ensemble", help="save segmentation networks of one kind as one model (an ensemble)",
                       description="Copies each network's bundle into OUT, named after its training run (seed-0 "
                                   "for runs/seed-0), with an ensemble.json naming them: one model, as "
                                   "acnn-seg-acdc ships, for `acnn segment --model OUT`, the Slicer Segment "
                                   "module's Browse... and `acnn studio --model OUT`, which run the networks and "
                                   "average their probabilities. The networks must share task, labels, output "
                                   "spacing and intensity normalisation (one recipe trained with several seeds).")
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help="a bundle folder or a training run (its best epoch's bundle; RUN/model-final for its last "
                        "epoch's), or a bundled model's name; an ensemble's networks count each")
    p.add_argument("-o", "--out", required=True, type=Path, help="the ensemble's folder")
    p.add_argument("--name", help="its name (default: the folder's)")
    p.add_argument("--about", default="", help="what it is, in a sentence, kept in ensemble.json (acnn info shows "
                                               "it)")
    p.add_argument("--overwrite", action="store_true", help="replace a folder that holds anything")
    p.set_defaults(run=run_ensemble)


def _write_labels(labels, path: Path, names: dict, overwrite: bool) -> Path:
    from .io import write_segmentation, write_volume
    from .labels import SEGMENTS

    if str(path).lower().endswith(".seg.nrrd"):
        colors = dict(SEGMENTS.values())  # name -> colour, whatever the label values
        segments = {v: (n, colors.get(n, (0.5, 0.5, 0.5))) for v, n in names.items()}
        return write_segmentation(labels, path, segments, overwrite=overwrite)
    return write_volume(labels, path, overwrite=overwrite)


def run_segment(args) -> int:
    from .inference import Segmenter, default_model
    from .dicom import dicom_studies, is_dicom_folder, read_dicom
    from .io import check_writable, read_frames
    from .labels import RV_BLOOD_POOL
    from .metrics import clinical_measures, plausibility, verdict

    given = [f"--{k}" for k in ("ed", "es") if getattr(args, k) is not None]
    phases = f"{' and '.join(given)} name{'s' if len(given) == 1 else ''}"
    if args.input.is_dir():  # a data set, or a folder of DICOM studies: each segmented
        studies = dicom_studies(args.input) if is_dicom_folder(args.input) else None
        if studies is None or len(studies) > 1:
            if given:
                raise InputError(f"{phases} frames of one cine; {args.input} is a folder of several cases "
                                 f"(each cine's ED and ES are found from its LV blood-pool volume curve)")
            return _segment_folder(args, studies)
    check_writable(args.out, args.overwrite)
    dicom = is_dicom_folder(args.input)
    _dicom_only(args, args.input, dicom)
    frames = read_dicom(args.input, series=args.series) if dicom else read_frames(args.input)
    if len(frames) > 1 and str(args.out).lower().endswith(".seg.nrrd"):
        raise InputError(f"{args.input} is a cine of {len(frames)} frames: its labels are written as a 4-D "
                         f"label map (.nii.gz, .nrrd or .mha), not {args.out}")
    volume = frames[0]
    model = args.model or default_model(volume)
    segmenter = Segmenter(model, args.device, args.clean_up, args.close_myocardium, args.correct,
                          **_max_change(args), tta=args.tta, orient=args.orient)
    _check_dicom_seg(args, segmenter, args.dicom_seg)
    if len(frames) > 1:
        return _segment_cine(args, segmenter, frames, model)
    if given:
        raise InputError(f"{phases} frames of a cine; {args.input} is one stack")
    result = _segment_with_bar(segmenter, volume)
    _write_labels(_convention(result.labels, args.label_convention), args.out,
                  _convention_names(result.label_names, args.label_convention), args.overwrite)
    m = clinical_measures(result.labels, rv=RV_BLOOD_POOL in result.label_names)
    grid = "HR grid" if result.labels.array.size > volume.array.size else "the input's grid"  # K = 1: as acquired
    checks = plausibility(result.labels)
    print(f"{args.out}: {grid} {result.labels.shape} spacing {tuple(round(s, 3) for s in result.labels.spacing)}; "
          f"LV blood pool {m['lv_volume_ml']:.1f} ml, myocardium {m['myo_mass_g']:.1f} g"
          + (f", RV blood pool {m['rv_volume_ml']:.1f} ml" if "rv_volume_ml" in m else "")
          + f"; {verdict(checks)}"
          + (f"; shape model: {result.correction}" if result.correction else ""))
    _write_dicom_seg(args, [result.labels], result.label_names, args.input, args.dicom_seg)
    if result.orientation:
        print(f"orientation: the network was surest of the image {result.orientation}")
    _print_notes(segmenter.caveats(volume) + _implausible_notes(args, [(checks["plausible"], m["lv_volume_ml"])]))
    if not m["lv_volume_ml"]:
        print(f"acnn: no LV found in {args.input}: is it a short-axis cardiac stack of the kind {model} learnt "
              f"from?", file=sys.stderr)
    return 0


def _segment_with_bar(segmenter, volume):
    """One image; a progress bar over the network passes where there are several (an ensemble, --tta)."""
    if segmenter.passes == 1:
        return segmenter(volume)
    from .progress import progress_bar

    with progress_bar(total=segmenter.passes, desc="segment", unit="pass") as bar:
        return segmenter(volume, progress=lambda done, total: bar.update(done - bar.n))


def _frames_done(bar, count: int):
    """A cine's ``report(fraction, message)`` (``cine.segment_frames``'s, ``cine.superresolve_frames``': 0.05 +
    0.9 x frames done / ``count``) as a progress bar over its frames: an update, not a refresh (a log gets a line
    per interval, not per frame)."""
    def report(fraction, message):
        bar.update(max(0, min(count, int(round((fraction - 0.05) / 0.9 * count)))) - bar.n)

    return report


def _segment_cine(args, segmenter, frames: list, model: str) -> int:
    """A 4-D cine: every frame segmented into a 4-D label map (time last); ED and ES are the frames given
    (--ed, --es: counted from 1) or those of largest and smallest LV blood pool."""
    from .cine import frame_index, frame_number, segment_frames
    from .io import write_frames
    from .progress import progress_bar

    with progress_bar(total=len(frames), desc="segment", unit="frame") as bar:
        result = segment_frames(segmenter, frames, frame_index(args.ed, len(frames), "ED"),
                                frame_index(args.es, len(frames), "ES"), report=_frames_done(bar, len(frames)),
                                model=model, every=True)
        bar.update(len(frames) - bar.n)
    labels = [_convention(result.frames[t], args.label_convention) for t in range(len(frames))]
    write_frames(labels, args.out, overwrite=args.overwrite)
    ed, es = result.phases
    print(f"{args.out}: {len(frames)} frames of {result.frames[0].shape}; ED frame {frame_number(ed.frame)} (LV "
          f"blood pool {ed.measures['lv_volume_ml']:.1f} ml, myocardium {ed.measures['myo_mass_g']:.1f} g), ES "
          f"frame {frame_number(es.frame)} ({es.measures['lv_volume_ml']:.1f} ml); EF "
          + ("-" if result.ef_pct is None else f"{result.ef_pct:.1f} %")
          + ("" if "rv_volume_ml" not in ed.measures else
             f"; RV blood pool {ed.measures['rv_volume_ml']:.1f} / {es.measures['rv_volume_ml']:.1f} ml, RV EF "
             + ("-" if result.rv_ef_pct is None else f"{result.rv_ef_pct:.1f} %"))
          + f"; LV blood pool per frame (ml): {', '.join(f'{v:.1f}' for v in result.volume_curve_ml)}"
          + (f"; RV blood pool per frame (ml): {', '.join(f'{v:.1f}' for v in result.rv_volume_curve_ml)}"
             if result.rv_volume_curve_ml else "")
          + "".join(f"; {p.phase} {p.verdict}" for p in result.phases))
    _write_dicom_seg(args, [result.frames[t] for t in range(len(frames))], result.label_names, args.input,
                     args.dicom_seg)
    if args.orient:  # searched for in the first frame, kept for the others
        print(f"orientation: the network was surest of the cine's frames {result.phases[0].orientation}")
    _print_notes(result.notes + _implausible_notes(
        args, [(p.plausibility["plausible"], p.measures["lv_volume_ml"]) for p in result.phases]))
    return 0


def _implausible_notes(args, outputs) -> list[str]:
    """What to do about implausible outputs, when some of ``outputs`` -- (plausible, LV volume in ml) each --
    have an LV to mend (an output with none is told apart): the post-processing the user did not ask for, and,
    unless it was asked for, the orientation search (an image stored unlike the training images is mended by
    finding its layout, not by post-processing)."""
    if not any(not plausible and lv_ml > 0 for plausible, lv_ml in outputs):
        return []
    notes = []
    if not (args.clean_up or args.close_myocardium or args.correct):
        notes.append("implausible outputs: --clean-up removes stray islands and fills holes, which mends some; "
                     "--correct also replaces what stays implausible by the nearest plausible shape of the model's "
                     "shape space (--close-myocardium as well: the ring closed by rule where no such shape is found)")
    if not args.orient:
        notes.append("implausible outputs can also mean an image stored turned or mirrored in-plane, unlike the "
                     "model's training images: --orient finds the layout the network is surest of (eight tried)")
    return notes


def _print_notes(notes: list[str]) -> None:
    """A model's caveats on an image (``Segmenter.caveats``, ``SuperResolver.caveats``), on stderr."""
    for note in notes:
        print(f"acnn: note: {note}", file=sys.stderr)


def _check_dicom_seg(args, segmenter, folder: Path | None) -> None:
    """Before the work: --dicom-seg's folder must not hold segmentations already (unless --overwrite), and the
    model must label the acquired slices (a SEG labels the images themselves)."""
    if folder is None:
        return
    if not segmenter.runner.as_acquired:
        raise InputError(f"--dicom-seg: {segmenter.name} outputs a finer grid than the input's "
                         f"slices (a sub-pixel model); a DICOM SEG labels the acquired images: use a real-data "
                         f"model (acnn-seg-acdc)")
    if folder.is_dir() and any(folder.glob("SEG_*.dcm")) and not args.overwrite:
        raise OutputExists(folder, f"{folder} holds DICOM segmentations already; pass --overwrite to replace them")


def _write_dicom_seg(args, frames: list, names: dict, source, folder: Path | None, study: str | None = None):
    """--dicom-seg: the labels (our convention, each frame's) as DICOM SEG objects on the source images."""
    if folder is None:
        return
    from .dicom import write_dicom_seg

    paths = write_dicom_seg([_convention(f, args.label_convention) for f in frames], source, folder,
                            _convention_names(names, args.label_convention), study, args.series, args.overwrite)
    print(f"{folder}: {counted(len(paths), 'DICOM segmentation')} on the images of {source}")


def _max_change(args) -> dict:
    """--max-change, given only with --correct: the keyword for Segmenter (its default otherwise)."""
    if args.max_change is None:
        return {}
    if not args.correct:
        raise InputError("--max-change limits the shape model's correction: give it with --correct")
    return {"max_change": args.max_change}


def _convention(labels, convention: str):
    from .labels import OURS_TO_ACDC, remap

    return labels if convention == "ours" else labels.with_array(remap(labels.array, OURS_TO_ACDC))


def _convention_names(names: dict, convention: str) -> dict:
    from .labels import OURS_TO_ACDC

    return names if convention == "ours" else {OURS_TO_ACDC[v]: n for v, n in names.items()}


def _segment_folder(args, studies: dict | None = None) -> int:
    """Every case of a data set (phantom, ACDC, or a plain folder of stacks and 4-D cines), or every study of a
    folder of DICOM studies (``studies``: dicom.dicom_studies's, each a stack or a cine) -> OUT/NAME.nii.gz (a
    cine's: 4-D, every frame), ready for ``acnn evaluate``, and OUT/measures.csv: each case's volumes, mass and
    plausibility (a cine's ED and ES as NAME_ED and NAME_ES), the EFs where a subject has ED and ES; with
    --dicom-seg FOLDER, each study's DICOM SEG objects into FOLDER/NAME. A study that cannot be read is skipped,
    saying why, and the command ends with status 1; so does a study whose labels a SEG cannot be written for
    (files without a frame of reference). A data set's image that cannot be read stops the command before any
    output."""
    from .cine import frame_number, segment_frames
    from .datasets import folder_images, read_dataset
    from .dicom import read_dicom
    from .inference import Segmenter, default_model
    from .io import read_frames, write_frames
    from .progress import progress_bar

    if args.out.suffix:
        what = f"a folder of {len(studies)} DICOM studies" if studies else "a folder"
        raise InputError(f"the input is {what}: --out must be a folder too, not {args.out}")
    if studies is None:
        _dicom_only(args, args.input, False, "a data set")
        paths = folder_images(args.input)  # a plain folder's: each image a stack or a 4-D cine
        if not paths:  # a phantom or ACDC data set
            items = {c.name: (lambda c=c: [c.image]) for c in read_dataset(args.input)}
        else:  # all read first (a bad one fails before any output), then each again at its turn (a folder of
            # cines need not fit in memory)
            for path in paths.values():
                read_frames(path)
            items = {name: (lambda p=p: read_frames(p)) for name, p in paths.items()}
    else:
        items = {name: (lambda s=s: read_dicom(*s, series=args.series)) for name, s in studies.items()}
    targets = {name: args.out / f"{name}.nii.gz" for name in items}
    table = args.out / "measures.csv"
    existing = [t for t in [*targets.values(), table] if t.exists()]
    if existing and not args.overwrite:
        raise OutputExists(existing[0], f"{existing[0]} exists ({len(existing)} of {len(targets) + 1} outputs); pass "
                                        f"--overwrite")
    segmenter, rows, skipped, no_seg, notes = None, {}, [], [], {}
    bar = progress_bar(items.items(), desc="segment", unit="study" if studies else "case")
    for name, read in bar:
        bar.set_postfix_str(name)  # which one a slow step is on
        try:
            frames = read()
        except InputError as e:
            if studies is None:
                raise
            print(f"acnn: skipped {name}: {e}", file=sys.stderr)
            skipped.append(name)
            continue
        if segmenter is None:
            segmenter = Segmenter(args.model or default_model(frames[0]), args.device, args.clean_up,
                                  args.close_myocardium, args.correct, **_max_change(args), tta=args.tta,
                                  orient=args.orient)
            for other in studies or {}:
                _check_dicom_seg(args, segmenter, args.dicom_seg and args.dicom_seg / other)
        result = segment_frames(segmenter, frames)
        notes.update(dict.fromkeys(result.notes))  # each said once, after the batch
        if len(frames) > 1:
            write_frames([_convention(result.frames[t], args.label_convention) for t in range(len(frames))],
                         targets[name], overwrite=args.overwrite)
        else:
            _write_labels(_convention(result.phases[0].labels, args.label_convention), targets[name],
                          _convention_names(result.label_names, args.label_convention), args.overwrite)
        if studies:
            try:
                _write_dicom_seg(args, [result.frames[t] for t in range(len(frames))], result.label_names,
                                 studies[name].folder, args.dicom_seg and args.dicom_seg / name, studies[name].uid)
            except InputError as e:  # its labels are written; a study whose files a SEG cannot refer to
                print(f"acnn: no DICOM SEG for {name}: {e}", file=sys.stderr)
                no_seg.append(name)
        for p in result.phases:
            case = f"{name}_{p.phase}" if p.phase else name
            rows[case] = {"case": case, **({"frame": frame_number(p.frame)} if p.phase else {}),
                          **{k: round(v, 2) for k, v in p.measures.items()},
                          "plausible": p.plausibility["plausible"], "problems": ";".join(p.plausibility["problems"]),
                          "shape_model": p.correction, **({"orientation": p.orientation} if args.orient else {})}
        _write_measures(rows, table)  # after each: a long batch stopped keeps what it measured
    corrected = sum(r["shape_model"].startswith("corrected") for r in rows.values())
    implausible = sum(not r["plausible"] for r in rows.values())
    done = f"{len(items) - len(skipped)} of {len(items)} studies" if studies else counted(len(items), "case")
    print(f"segmented {done} into {args.out} ({implausible} of {len(rows)} outputs implausible"
          + (f", the shape model corrected {corrected}" if args.correct else "")
          + (f"); measures: {table}" if rows else ")"))
    empty = [name for name, r in rows.items() if not r["lv_volume_ml"]]
    if empty:
        print(f"acnn: no LV found in {len(empty)} of {len(rows)} outputs ({', '.join(empty[:5])}"
              f"{', ...' if len(empty) > 5 else ''})", file=sys.stderr)
    _print_notes(list(notes) + _implausible_notes(args, [(r["plausible"], r["lv_volume_ml"]) for r in rows.values()]))
    if skipped:
        print(f"acnn: {len(skipped)} of {len(items)} studies could not be read: {', '.join(skipped)}",
              file=sys.stderr)
    if no_seg:
        print(f"acnn: no DICOM SEG for {len(no_seg)} of {len(items)} studies: {', '.join(no_seg)}", file=sys.stderr)
    return 1 if skipped or no_seg else 0


def _write_measures(rows: dict, table: Path) -> None:
    """measures.csv: the rows, with each subject's EFs on its ED and ES rows."""
    from .evaluation import ed_es_pairs
    from .io import write_table
    from .metrics import ejection_fraction

    for ed, es in ed_es_pairs(rows):
        for chamber in ("lv", "rv"):
            key = f"{chamber}_volume_ml"
            if key in ed and ed[key] > 0:
                ed[f"{chamber}_ef_pct"] = es[f"{chamber}_ef_pct"] = round(ejection_fraction(ed[key], es[key]), 1)
    table.parent.mkdir(parents=True, exist_ok=True)
    write_table(rows.values(), table)


def run_superresolve(args) -> int:
    from .cine import superresolve_frames
    from .inference import SuperResolver
    from .io import check_writable, read_frames, write_frames
    from .progress import progress_bar

    check_writable(args.out, args.overwrite)
    if str(args.out).lower().endswith(".seg.nrrd"):  # was refused once the network had run
        raise InputError(f"--out {args.out}: an HR image is written as .nii.gz, .nrrd or .mha (a .seg.nrrd holds "
                         f"segmentations)")
    frames = read_frames(args.input)  # a cine: every frame
    resolver = SuperResolver(args.model, args.device)
    with progress_bar(total=len(frames), desc="superresolve", unit="frame", enabled=len(frames) > 1) as bar:
        hr = superresolve_frames(resolver, frames, _frames_done(bar, len(frames)))
        bar.update(len(frames) - bar.n)
    write_frames(hr, args.out, overwrite=args.overwrite)
    print(f"{args.out}: {f'{len(hr)} frames of ' if len(hr) > 1 else ''}HR grid {hr[0].shape} spacing "
          f"{tuple(round(s, 3) for s in hr[0].spacing)}")
    _print_notes(resolver.caveats(frames[0]))
    return 0


def run_explore(args) -> int:
    from .inference import ShapeModel
    from .io import write_volume
    from .metrics import plausibility

    model = ShapeModel(args.model, args.device)
    dim = model.order[0] if args.dim is None else args.dim
    if args.steps < 2:
        raise InputError("--steps must be at least 2")
    if not 0 < args.k < float("inf"):
        raise InputError(f"--range is k in mean +- k std, above 0, not {args.k:g}")
    if args.out.suffix.lower() in (".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".bmp", ".pdf", ".svg"):
        raise InputError(f"--out {args.out}: the montage is written as .png (or give a folder for label maps)")
    base = geometry = None
    if args.base is not None:
        from .evaluation import read_label_map

        labels = read_label_map(args.base, "auto")
        base, geometry = model.encode(labels), model.placement(labels)
    steps = model.traverse(dim, args.steps, args.k, base, geometry)
    if args.out.suffix.lower() == ".png":
        if args.out.exists() and not args.overwrite:
            raise OutputExists(args.out)
        from .figures import traversal_montage

        traversal_montage(steps, args.out, title=f"{model.runner.bundle.name}: dimension {dim}"
                                                 + (f" around {args.base.name}" if args.base else ""),
                          render3d=True, base_first=model.base_first)
    else:
        for i, (z, labels) in enumerate(steps):
            write_volume(labels, args.out / f"dim{dim:02d}_step{i:02d}_{z:+.2f}sd.nii.gz", overwrite=args.overwrite)
    print(f"dimension {dim} over mean +- {args.k} std in {args.steps} steps"
          + (f", the other {model.code_size - 1} as {args.base.name} has them" if args.base else "") + f": {args.out}")
    failing = [f"{z:+.1f}" for z, labels in steps if not plausibility(labels)["plausible"]]
    print(f"failing the plausibility checks: the steps at {', '.join(failing)} sd" if failing else
          "every step passes the plausibility checks")
    return 0


def run_encode(args) -> int:
    from .datasets import group_of
    from .evaluation import label_files, read_label_frames
    from .inference import ShapeModel
    from .io import check_writable, write_table
    from .progress import progress_bar

    if args.out.suffix.lower() != ".csv":
        raise InputError(f"--out {args.out}: the codes are written as a .csv file")
    check_writable(args.out, args.overwrite, image=False)
    maps: dict[str, Path] = {}
    for root in args.maps:
        for key, path in label_files(root, ground_truth=True).items():
            if key in maps:
                raise InputError(f"two label maps for case {key!r}: {maps[key]} and {path}")
            maps[key] = path
    model = ShapeModel(args.model, args.device)
    rows = []
    for key, path in progress_bar(maps.items(), desc="encode", unit="map"):
        frames = read_label_frames(path, args.convention)  # a cine's 4-D map: each frame, counted from 1
        empty = [t + 1 for t, labels in enumerate(frames) if len(frames) > 1 and not labels.array.any()]
        if empty:  # an expert's 4-D map labels ED and ES alone
            print(f"acnn: note: {path}: {counted(len(empty), 'frame')} without labels left out "
                  f"({', '.join(map(str, empty))})", file=sys.stderr)
        for t, labels in enumerate(frames):
            if t + 1 in empty:
                continue
            try:
                code = model.encode(labels)
            except InputError as e:
                raise InputError(f"{path}{f' frame {t + 1}' if len(frames) > 1 else ''}: {e}") from None
            rows.append({"case": f"{key}_frame{t + 1}" if len(frames) > 1 else key, "group": group_of(path),
                         "file": str(path), **({"frame": t + 1} if len(frames) > 1 else {}),
                         **{f"z{d}": f"{z:.6g}" for d, z in enumerate(code)}})
    write_table(rows, args.out)  # never empty: label_files finds at least one map or refuses
    groups = sorted({r["group"] for r in rows} - {""})
    print(f"{args.out}: {counted(len(rows), 'label map')} encoded by {model.runner.bundle.name} "
          f"({model.code_size}-d codes; dimensions by use: {', '.join(map(str, model.order[:5]))}, ...)"
          + (f"; groups {', '.join(groups)}" if groups else ""))
    return 0


def run_models(args) -> int:
    from .bundle import available, read_meta, resolve

    short = {"LV blood pool": "LV", "LV myocardium": "myo", "RV blood pool": "RV"}
    for name in available():
        meta = read_meta(resolve(name))
        labels = {k: short.get(v["name"], v["name"]) for k, v in meta.get("labels", {}).items()}
        metrics = [f"dice {labels.get(k[5:], k[5:])} {v:.3f}" if k.startswith("dice_") else
                   f"PSNR {v:.1f} dB" if k == "psnr" else f"{k} {v:.3f}"
                   for k, v in meta.get("metrics", {}).items() if k != "score"]
        if meta["task"] == "sr":  # an image out, not labels
            labels = {"": "image"}
        cases = meta.get("training", {}).get("data", {}).get("cases")
        n = meta.get("members")  # an ensemble: its networks' size, its first network's validation
        print(f"{name:18s} {meta['task']:4s} {meta['architecture']:16s} {meta.get('parameters', 0):>8,d} params"
              f"{f' x {n}' if n else '  '} {', '.join(labels.values()):12s} {f'{cases} cases' if cases else '':10s} "
              f"validation{f' (first of {n})' if n else ''}: {', '.join(metrics) or '-'}")
    print("(acnn info NAME: how a model was trained, the grid it takes and gives, its prior)")
    return 0


def run_ensemble(args) -> int:
    from .bundle import members, save_ensemble

    folder = save_ensemble(args.models, args.out, args.name, args.about, args.overwrite)
    names = [m.name for m in members(folder)]
    print(f"{folder}: an ensemble of {len(names)} networks ({', '.join(names)})")
    return 0


def _add_demo(sub):
    p = sub.add_parser("demo", help="the whole pipeline on a phantom subject: segment ED/ES, super-resolve, EF, Dice")
    p.add_argument("-o", "--out", type=Path, default=Path("acnn-demo"), help="output folder (default acnn-demo)")
    p.add_argument("--seg-model", default="acnn-seg-phantom", help="segmentation model (name or bundle folder)")
    p.add_argument("--sr-model", default="acnn-sr-phantom", help="super-resolution model (name or bundle folder)")
    p.add_argument("--overwrite", action="store_true", help="replace the files of an earlier demo in --out")
    _device_arg(p)
    p.set_defaults(run=run_demo)


def run_demo(args) -> int:
    from .demo import run_demo as demo

    r = demo(args.out, args.seg_model, args.sr_model, args.device, args.overwrite)
    for phase, v in r["phases"].items():
        print(f"{phase}: LV {v['predicted']['lv_volume_ml']:.1f} ml (truth {v['truth']['lv_volume_ml']:.1f}), "
              f"Dice LV {v['dice']['LV blood pool']:.3f}, myocardium {v['dice']['LV myocardium']:.3f}")
    print(f"EF {r['ef_pct']['predicted']:.1f} % (truth {r['ef_pct']['truth']:.1f} %)")
    return 0


def _add_evaluate(sub):
    p = sub.add_parser("evaluate",
                       help="compare predicted label maps with ground truth (Dice, distances, plausibility)",
                       description="Compare label maps, files or folders matched by case name (phantom and ACDC "
                                   "layouts understood; a cine's 4-D map with the expert maps of its frames). A "
                                   "prediction on another grid is sampled on the ground truth's grid in physical "
                                   "space (nearest neighbour).")
    p.add_argument("--pred", required=True, type=Path, help="a label map or a folder of them")
    p.add_argument("--gt", required=True, type=Path, help="a label map or a folder of them")
    p.add_argument("--gt-convention", choices=("auto", "ours", "acdc"), default="auto",
                   help="label values of the ground truth (acdc: 1 RV, 2 myocardium, 3 LV; ours: 1 LV, 2 "
                        "myocardium, 3 RV; auto: ACDC's where an ACDC Info.cfg lies beside the file, ours otherwise)")
    p.add_argument("--pred-convention", choices=("auto", "ours", "acdc"), default="auto",
                   help="label values of the predictions (what `acnn segment --label-convention` wrote; auto as "
                        "for the ground truth)")
    p.add_argument("--frame", type=int, metavar="N",
                   help="a cine's 4-D map (what `acnn segment CINE` writes) against one 3-D map: the frame the "
                        "3-D map labels, counted from 1 as Slicer's Sequences toolbar (ACDC's expert maps name "
                        "theirs: patientNNN_frameXX_gt; two 4-D maps are compared frame by frame)")
    p.add_argument("-o", "--out", type=Path, help="summary JSON (per-case CSV written beside it)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(run=run_evaluate)


def run_evaluate(args) -> int:
    from .evaluation import ef_summary, evaluate_files, format_summary, summarize, write_report

    if args.out is not None:
        from .io import check_writable

        check_writable(args.out, args.overwrite, image=False)
    rows = evaluate_files(args.pred, args.gt, args.gt_convention, pred_convention=args.pred_convention,
                          frame=args.frame)
    if args.out is not None:
        summary = write_report(rows, args.out, args.overwrite)
        print(f"report: {args.out} and {args.out.with_suffix('.csv')}")
    else:
        summary = {"summary": summarize(rows), **ef_summary(rows)}
    print(format_summary(summary))
    s = summary["summary"]
    if all(f"dice_{k}" in s for k in ("lv", "myo", "rv")) and s["dice_myo"]["mean"] > 0.5 \
            and max(s["dice_lv"]["mean"], s["dice_rv"]["mean"]) < 0.2:  # the LV and RV swapped
        print("acnn: the LV and RV hardly overlap the truth's while the myocardium does: are the predictions and the "
              "truth in different label values (ours: 1 LV, 3 RV; ACDC's: 1 RV, 3 LV)? Then say which with "
              "--pred-convention or --gt-convention", file=sys.stderr)
    return 0


def _add_benchmark(sub):
    from .experiments import ACDC_BUDGETS, ACDC_METHODS, ACDC_SEG_KEYS, BUDGETS, SPECS

    p = sub.add_parser("benchmark", help="the paper's experiments: seg (Table I), sr (III), us (II), "
                                         "latent (III-F), acdc (real MR)",
                       description="Train what an experiment needs (into OUT/runs, reused and resumable), evaluate "
                                   "on held-out subjects (phantoms, or ACDC patients) and write OUT/EXPERIMENT.md "
                                   "with tables and figures.")
    p.add_argument("experiment", choices=("seg", "sr", "us", "latent", "acdc"),
                   help="seg: Table I; sr: Table III; us: Table II (3-D echo); latent: Section III-F; acdc: real "
                        "cine MR")
    p.add_argument("--data", required=True, type=Path,
                   help="a phantom data set (`acnn phantom`; --modality us for us); for acdc, the ACDC folder")
    p.add_argument("-o", "--out", required=True, type=Path, help="report folder")
    p.add_argument("--budget", choices=tuple(dict.fromkeys([*BUDGETS, *ACDC_BUDGETS])), default="cpu",
                   help="tiny: minutes (CI); cpu: about an hour or two; paper: the paper's sizes, for a GPU; "
                        "gpu (acdc): what one GPU trains in about ten minutes")
    p.add_argument("--models", nargs="*", metavar="KEY=BUNDLE",
                   help=f"trained models to use instead of training (keys: {', '.join(SPECS)}; acdc: "
                        f"{', '.join(ACDC_METHODS)}; a segmentation method may take an ensemble, KEY=A,B,...)")
    p.add_argument("--test-subjects", type=int, help="held-out subjects (default from the budget)")
    p.add_argument("--seeds", type=int, default=1,
                   help="seg: also train 3D-Seg and ACNN-Seg with seeds 1..N-1 and compare them over the N seeds "
                        "(the prior's effect beside the spread between training runs)")
    p.add_argument("--workers", type=int, default=0, help="data-loading processes per training (acdc)")
    p.add_argument("--methods", nargs="+", metavar="KEY", default=list(ACDC_SEG_KEYS),
                   help="acdc: the segmentation methods to train (or take from --models) and evaluate "
                        f"(default: {' '.join(ACDC_SEG_KEYS)})")
    p.add_argument("--correct", action="store_true",
                   help="acdc: also evaluate each output corrected with the AE's shape space (as "
                        "`acnn segment --correct AE`)")
    p.add_argument("--max-change", type=float, default=None, metavar="SHARE",
                   help="acdc, with --correct: the largest share of the LV's voxels a correction may change "
                        "(default 0.25, as acnn segment; those refused are also reported as corrected without it)")
    p.add_argument("--tta", action="store_true",
                   help="acdc: each method with test-time augmentation (as `acnn segment --tta`)")
    _device_arg(p)
    p.set_defaults(run=run_benchmark)


def run_benchmark(args) -> int:
    from .benchmark import Benchmark, parse_models

    if args.experiment == "acdc":
        from .benchmark import AcdcBenchmark

        if args.test_subjects is not None or args.seeds != 1:
            raise InputError("--test-subjects and --seeds are options of the phantom benchmarks (acdc tests a "
                             "fixed split of the patients)")

        path = AcdcBenchmark(args.data, args.out, args.budget, args.device, workers=args.workers,
                             models=parse_models(args.models), methods=args.methods, correct=args.correct,
                             **_max_change(args), tta=args.tta).run()
    else:
        if args.correct or args.tta:
            raise InputError("--correct and --tta are options of the acdc benchmark")
        bench = Benchmark(args.data, args.out, args.budget, parse_models(args.models), args.device,
                          args.test_subjects, seeds=args.seeds)
        path = bench.run(args.experiment)
    print(path.read_text(encoding="utf-8"))
    return 0


def _add_plugins(sub):
    """Commands of installed front ends (``acnn studio``), from the ``acnn.commands`` entry points."""
    from importlib.metadata import entry_points

    for ep in entry_points(group="acnn.commands"):
        try:
            ep.load()(sub)
        except Exception as e:  # a broken front end must not break the command line
            print(f"acnn: warning: command {ep.name!r} unavailable: {e}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="acnn", description="Anatomically Constrained Neural Networks for cardiac MR and echo.")
    parser.add_argument("--version", action="version", version=f"acnn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_phantom(sub)
    _add_info(sub)
    _add_train(sub)
    _add_inference(sub)
    _add_evaluate(sub)
    _add_benchmark(sub)
    _add_demo(sub)
    _add_plugins(sub)
    for command in sub.choices.values():  # for errors in a command's own words (main)
        command.set_defaults(command_parser=command)
    return parser


def _os_error(e: OSError) -> int:
    where = f": {e.filename}" if e.filename else ""
    print(f"acnn: error: {e.strerror or e}{where}", file=sys.stderr)
    return 2


def _stdout_gone() -> bool:
    """Whether standard output is a pipe whose reader has gone (`acnn info DATA | head`): poll says POLLERR."""
    import select

    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poll.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), no file descriptor
        return False


def _report_crashes() -> None:
    """A crash in native code (ITK, GDCM, torch: a segmentation fault, an abort) prints where Python was, for a
    bug report, as ``python -X faulthandler`` would."""
    import faulthandler

    try:
        faulthandler.enable()
    except (AttributeError, OSError, RuntimeError, ValueError):  # no stderr, or no file descriptor behind it
        pass


def _printable_output() -> None:
    """Standard output that writes what its encoding lacks (a report's "±" on a terminal or into a file of an
    ASCII or Windows code page) as an escape, rather than failing the command at its last line."""
    try:
        sys.stdout.reconfigure(errors="backslashreplace")
    except (AttributeError, ValueError):  # not a text stream of its own (replaced), or closed
        pass


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"acnn: warning: {message}", file=sys.stderr if file is None else file)


def main(argv=None) -> int:
    _report_crashes()
    _printable_output()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command as given, which a trained model records
    if extra:  # said with the command's usage, not acnn's; several paths (a shell's glob): where they go instead
        paths = [e for e in extra if not e.startswith("-") and Path(e).exists()]
        one_path = any(isinstance(getattr(args, name, None), Path) for name in ("input", "path"))
        args.command_parser.error(f"unrecognized arguments: {' '.join(extra)}" + (
            f" (acnn {args.command} takes one path: for several images, give the folder that holds them)"
            if paths and one_path else ""))
    try:
        if isinstance(getattr(args, "input", None), Path) and not args.input.exists():  # before loading models
            raise InputError(f"no such file or folder: {args.input}")
        with warnings.catch_warnings():  # what the library warns of, one line like the errors
            warnings.showwarning = _one_line_warning
            code = args.run(args)
        sys.stdout.flush()  # a reader gone (`acnn info DATA | head`) is met here, not at the interpreter's exit
        return code
    except BrokenPipeError as e:
        if not _stdout_gone():  # another pipe broke (a worker process's): an error like any other
            return _os_error(e)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more goes to the pipe
        return 141  # quietly, as a tool killed by SIGPIPE
    except (InputError, TrainingError) as e:
        print(f"acnn: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # what the system refused (an output folder that cannot be made, a full disk): one line
        return _os_error(e)
    except KeyboardInterrupt:
        print("acnn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
