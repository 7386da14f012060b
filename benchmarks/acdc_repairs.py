"""What each repair of an implausible output does, on every ACDC image, for a segmentation model.

    python benchmarks/acdc_repairs.py --model acnn-seg-acdc

`acnn segment --correct --close-myocardium` in one pass per image (`Segmenter(shape_model=True,
close_myocardium=True)`: the clean-up; an output still implausible corrected with the model's own shape prior
within the limit of `--max-change`; what the correction leaves implausible closed by rule). Printed: over the
images (ED and ES of every patient), how many are implausible as the network gives them, after the clean-up,
corrected by the shape model, left by it (no plausible shape found, or the correction refused as too large)
and so closed by rule, and implausible at the end; the images left to the rule, each with why. For a bundled
model trained on these patients (acnn-seg-acdc: all 70) it checks the pipeline, not how the model generalises.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ACNNCore.progress import progress_bar

ROOT = Path(__file__).resolve().parents[1]


def repairs(model: str, patients) -> dict[str, dict]:
    """{image name: {"raw", "final": plausible?, "correction": what the shape model did}}."""
    from ACNNCore.datasets import read_acdc_patient
    from ACNNCore.inference import Segmenter
    from ACNNCore.metrics import plausibility
    from ACNNCore.volume import Volume

    segmenter = Segmenter(model, "cpu", shape_model=True, close_myocardium=True)
    out = {}
    for case in (c for p in progress_bar(patients, desc=Path(model).name, leave=False) for c in read_acdc_patient(p)):
        result = segmenter(case.image)
        raw = Volume(result.probabilities.argmax(0).astype(np.uint8), result.labels.geometry)
        out[case.name] = {"raw": plausibility(raw)["plausible"], "final": plausibility(result.labels)["plausible"],
                          "correction": result.correction}
    return out


def summary(found: dict[str, dict]) -> str:
    from ACNNCore.inference import CLOSED_BY_RULE

    rows = list(found.values())
    left = {name: r["correction"].removesuffix(f"; {CLOSED_BY_RULE}") for name, r in found.items()
            if r["correction"].endswith(CLOSED_BY_RULE)}
    return (f"{len(rows)} images; implausible as the network gives them {sum(not r['raw'] for r in rows)}, after the "
            f"clean-up {sum(r['correction'] != 'plausible' for r in rows)}; corrected by the shape model "
            f"{sum(r['correction'].startswith('corrected') for r in rows)}; left to the rule {len(left)}; "
            f"implausible at the end {sum(not r['final'] for r in rows)}"
            + "".join(f"\n  {name}: {why}" for name, why in left.items()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/acdc")
    parser.add_argument("--model", default="acnn-seg-acdc", help="a segmentation bundle trained with a prior")
    args = parser.parse_args()
    from ACNNCore.datasets import acdc_patients

    print(f"{args.model}: {summary(repairs(args.model, acdc_patients(args.data)))}")


if __name__ == "__main__":
    main()
