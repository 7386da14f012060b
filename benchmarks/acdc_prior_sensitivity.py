"""What the AE prior sees of slice misalignment, on the ACDC benchmark's test images.

    python benchmarks/acdc_prior_sensitivity.py --ae runs/s26/ae/model --models runs/s28/acnn-seg/model-final runs/s28/seg/model-final

ACNN-Seg's prior term is the distance between the AE's codes of the network's output and of the expert's
map (Eq. 1). It can only teach a network not to follow a moved slice if moving slices moves the code. For
each of the 28 test images (the benchmark's fixed split, its misalignment draws) this prints, for the
expert's map with its slices moved as the benchmark moves the image's (up to 2 and 4 mm; a network that
followed the moved slices exactly would output that), and for each model's output on the image with no
added and with 4 mm misalignment: the myocardium Dice against the expert's map, the squared distance of
its code to the expert map's code (Eq. 1 without lambda), and the myocardium Dice of the decoded code
against the expert's map, all on the AE's grid. Each map is encoded on the crop the prior saw in training: the AE's grid around
the expert's map, its slices as acquired. For scale: the median code distance between two test images.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ACNNCore.benchmark import ACDC_MOTIONS, AcdcBenchmark, fixed_split
from ACNNCore.datasets import acdc_patients, read_acdc_patient
from ACNNCore.inference import Segmenter, ShapeModel
from ACNNCore.labels import LV_MYOCARDIUM
from ACNNCore.metrics import dice
from ACNNCore.phantom.acquisition import move_slices
from ACNNCore.preprocessing import resample


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
    for i, case in enumerate(tqdm(cases, desc="test images", leave=False)):
        expert = case.labels
        grid = ae.placement(expert, as_trained=True)
        truth = resample(expert, grid, "nearest")
        z_expert = ae.encode(expert, grid)
        codes.append(z_expert)

        def measure(labels, key):
            z = ae.encode(labels, grid)
            myo = [dice(m, truth, (LV_MYOCARDIUM,))[LV_MYOCARDIUM]
                   for m in (resample(labels, grid, "nearest"), ae.decode(z, grid))]
            maps[key].append((myo[0], float(((z - z_expert) ** 2).sum()), myo[1]))

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


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "acdc")
    ap.add_argument("--ae", required=True, help="the AE prior (bundle name or folder)")
    ap.add_argument("--models", nargs="*", default=[], help="segmentation models whose outputs to encode too")
    args = ap.parse_args(argv)

    cases = [c for p in fixed_split(acdc_patients(args.data))[1] for c in read_acdc_patient(p)]
    maps, codes = sensitivity(ShapeModel(args.ae, "cpu"), cases, args.models)
    between = ((codes[:, None] - codes[None]) ** 2).sum(-1)[np.triu_indices(len(codes), 1)]
    print(f"AE `{args.ae}`, {len(cases)} test images; median code distance between two of them: "
          f"{np.median(between):.2f}\n")
    print("| map | myo Dice vs expert | code distance to the expert map's, median (mean) | "
          "decoded myo Dice vs expert |")
    print("|---|---|---|---|")
    for key, rows in maps.items():
        d, z, dec = rows.T
        print(f"| {key} | {d.mean():.3f} | {np.median(z):.3f} ({z.mean():.3f}) | {dec.mean():.3f} |")


if __name__ == "__main__":
    main()
