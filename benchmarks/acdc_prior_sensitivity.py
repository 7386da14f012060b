"""What the AE prior sees of slice misalignment, on the ACDC benchmark's test images (or on the phantom).

    python benchmarks/acdc_prior_sensitivity.py --ae runs/s26/ae/model \
        --models runs/s28/acnn-seg/model-final runs/s28/seg/model-final
    python benchmarks/acdc_prior_sensitivity.py --phantom 25 --ae ae-phantom --models acnn-seg-phantom seg3d-phantom
    python benchmarks/acdc_prior_sensitivity.py --train-data runs/s29/phantom-train --ae ae-phantom \
        --models runs/s29/lam0/model runs/s29/lam1/model

ACNN-Seg's prior term is the distance between the AE's codes of the network's output and of the expert's
map (Eq. 1). It can only teach a network not to follow a moved slice if moving slices moves the code. For
each of the 28 test images (the benchmark's fixed split, its misalignment draws) this prints, for the
expert's map with its slices moved as the benchmark moves the image's (up to 2 and 4 mm; a network that
followed the moved slices exactly would output that), and for each model's output on the image with no
added and with 4 mm misalignment: the myocardium Dice against the expert's map, the squared distance of
its code to the expert map's code (Eq. 1 without lambda), and the myocardium Dice of the decoded code
against the expert's map, all on the AE's grid. Each map is encoded on the crop the prior saw in
training: the AE's grid around the expert's map, its slices as acquired. For scale: the median code
distance between two test images. ``--phantom N``: the same in the paper's setting, on N unseen phantom
subjects whose truth is the motion-free HR map (:func:`phantom_sensitivity`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ACNNCore.benchmark import ACDC_MOTIONS, AcdcBenchmark, fixed_split
from ACNNCore.datasets import acdc_patients, read_acdc_patient
from ACNNCore.inference import Segmenter, ShapeModel
from ACNNCore.labels import LV_MYOCARDIUM
from ACNNCore.metrics import dice
from ACNNCore.phantom.acquisition import move_slices
from ACNNCore.preprocessing import resample
from ACNNCore.progress import progress_bar


def against(ae: ShapeModel, truth, grid):
    """The code of a true label map on ``grid`` (the AE's grid around it), and a function measuring another map
    against it there: (its myo Dice vs the truth, the squared distance of its code to the truth's, the myo Dice
    of its decoded code vs the truth)."""
    on_grid = resample(truth, grid, "nearest")
    z_truth = ae.encode(truth, grid)

    def measure(labels) -> tuple[float, float, float]:
        z = ae.encode(labels, grid)
        myo = [dice(m, on_grid, (LV_MYOCARDIUM,))[LV_MYOCARDIUM]
               for m in (resample(labels, grid, "nearest"), ae.decode(z, grid))]
        return myo[0], float(((z - z_truth) ** 2).sum()), myo[1]

    return z_truth, measure


def sensitivity(ae: ShapeModel, cases: list, models=()) -> tuple[dict, np.ndarray]:
    """{map: (myo Dice vs expert, code distance to the expert map's, decoded myo Dice vs expert) per image},
    for the test images ``cases`` (in the benchmark's order: the first of them test image 0); and the codes
    of the expert maps."""
    largest = max(ACDC_MOTIONS)
    maps = {"expert's map (its AE reconstruction)": []}
    maps.update({f"expert's map, slices moved up to {mm:g} mm": [] for mm in ACDC_MOTIONS if mm})
    segmenters = {m: Segmenter(m, "cpu") for m in models}
    for m in models:
        maps.update({f"`{m}`, {mm:g} mm": [] for mm in (0, largest)})
    codes = []
    for i, case in enumerate(progress_bar(cases, desc="test images", leave=False)):
        expert = case.labels
        code, against_expert = against(ae, expert, ae.placement(expert, as_trained=True))
        codes.append(code)

        def measure(labels, key):
            maps[key].append(against_expert(labels))

        measure(expert, "expert's map (its AE reconstruction)")
        for mm in ACDC_MOTIONS:
            if mm:
                shifts = AcdcBenchmark.motion(i, expert.shape[2], mm)
                measure(expert.with_array(move_slices(expert.array, expert.spacing, shifts, order=0)),
                        f"expert's map, slices moved up to {mm:g} mm")
        for m, segmenter in segmenters.items():
            for mm in (0, largest):
                measure(segmenter(AcdcBenchmark._moved(i, case, mm)).labels, f"`{m}`, {mm:g} mm")
    return {k: np.asarray(v) for k, v in maps.items()}, np.asarray(codes)


def phantom_sensitivity(ae: ShapeModel, subjects: int, models=(), motion_mm: float = 4.0) -> tuple[dict, np.ndarray]:
    """The same on the phantom, the paper's setting: the truth is the motion-free HR map; a network that followed
    the moved LR slices would output it with each slice's slab of HR slices moved as that slice was. Unseen
    subjects (seed 1000, the benchmarks' test seed), ED and ES, up to ``motion_mm``; the bundled phantom
    networks' outputs on the same subject's stack with no and with that misalignment."""
    from ACNNCore.phantom.population import PhantomConfig, generate_subject, with_motion

    maps = {"truth (its AE reconstruction)": [], f"truth, slabs moved up to {motion_mm:g} mm": []}
    segmenters = {m: Segmenter(m, "cpu") for m in models}
    for m in models:
        maps.update({f"`{m}`, {mm:g} mm": [] for mm in (0, motion_mm)})
    codes = []
    for i in progress_bar(range(subjects), desc="phantom subjects", leave=False):
        still = generate_subject(i, 1000, with_motion(PhantomConfig(), 0.0, 0.0))
        moving = generate_subject(i, 1000, with_motion(PhantomConfig(), motion_mm, 0.0))
        motion = np.array([[m["tx_mm"], m["ty_mm"], m["rotation_deg"]] for m in moving.info["motion"]["slices"]])
        for phase in ("ED", "ES"):
            truth_hr = still.phases[phase]["hr_gt"]
            code, against_truth = against(ae, truth_hr, ae.placement(truth_hr))
            codes.append(code)

            def measure(labels, key):
                maps[key].append(against_truth(labels))

            measure(truth_hr, "truth (its AE reconstruction)")
            k = truth_hr.shape[2] // len(motion)
            slabs = np.repeat(motion, k, axis=0)
            measure(truth_hr.with_array(move_slices(truth_hr.array, truth_hr.spacing, slabs, order=0)),
                    f"truth, slabs moved up to {motion_mm:g} mm")
            for m, segmenter in segmenters.items():
                for mm, ps in ((0, still), (motion_mm, moving)):
                    measure(segmenter(ps.phases[phase]["lr"]).labels, f"`{m}`, {mm:g} mm")
    return {k: np.asarray(v) for k, v in maps.items()}, np.asarray(codes)


def prior_terms(ae_name, models, data, cases: int = 24) -> dict:
    """{model: (prior term of Eq. 1 with the network's probabilities, as training minimises it; the same with
    its arg-max one-hot, as the sensitivity measures it)}, means over the first ``cases`` cases of a training
    set ``data`` as the training loader gives them (no augmentation): a network trained with the prior could
    lower the first with soft probabilities the AE never saw in training, without changing its arg-max shape."""
    import torch

    from ACNNCore.bundle import load_bundle
    from ACNNCore.datasets import read_dataset
    from ACNNCore.losses import freeze, shape_prior_loss
    from ACNNCore.training import TrainingSet

    ae = freeze(load_bundle(ae_name, expect_task=("ae",)).model)
    loader = TrainingSet(read_dataset(data)[:cases], "seg", None, 0)
    out = {}
    for m in models:
        net = load_bundle(m, expect_task=("seg",)).model.eval()
        terms = []
        with torch.no_grad():
            for batch in loader:
                logits, labels = net(batch["input"][None]), batch["labels"][None].long()
                terms.append([shape_prior_loss(ae.encode, logits, labels, hard).item() for hard in (False, True)])
        out[m] = tuple(np.mean(terms, 0))
    return out


def report(name: str, maps: dict, codes: np.ndarray, images: str) -> None:
    between = ((codes[:, None] - codes[None]) ** 2).sum(-1)[np.triu_indices(len(codes), 1)]
    print(f"AE `{name}`, {images}; median code distance between two of them: {np.median(between):.2f}\n")
    print("| map | myo Dice vs truth | code distance to the truth's, median (mean) | decoded myo Dice vs truth |")
    print("|---|---|---|---|")
    for key, rows in maps.items():
        d, z, dec = rows.T
        print(f"| {key} | {d.mean():.3f} | {np.median(z):.3f} ({z.mean():.3f}) | {dec.mean():.3f} |")
    print()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "acdc")
    ap.add_argument("--ae", required=True, help="the AE prior (bundle name or folder)")
    ap.add_argument("--models", nargs="*", default=[], help="segmentation models whose outputs to encode too")
    ap.add_argument("--phantom", type=int, default=0, metavar="N",
                    help="instead: N unseen phantom subjects, the AE and models given being phantom ones")
    ap.add_argument("--train-data", type=Path, metavar="DIR",
                    help="instead: the prior term of each model on the first 24 cases of its training set DIR, "
                         "with its probabilities (as trained) and with its arg-max")
    args = ap.parse_args(argv)

    if args.train_data:
        print("| model | prior term, probabilities | prior term, arg-max |\n|---|---|---|")
        for m, (soft, hard) in prior_terms(args.ae, args.models, args.train_data).items():
            print(f"| `{m}` | {soft:.4f} | {hard:.4f} |")
        return
    ae = ShapeModel(args.ae, "cpu")
    if args.phantom:
        maps, codes = phantom_sensitivity(ae, args.phantom, args.models)
        report(args.ae, maps, codes, f"{args.phantom} unseen phantom subjects, ED and ES")
        return
    cases = [c for p in fixed_split(acdc_patients(args.data))[1] for c in read_acdc_patient(p)]
    maps, codes = sensitivity(ae, cases, args.models)
    report(args.ae, maps, codes, f"{len(cases)} ACDC test images")


if __name__ == "__main__":
    main()
