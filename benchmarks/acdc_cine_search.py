"""A cine's heart search started where the last frame's ended, against a search afresh in every frame.

    python benchmarks/acdc_cine_search.py --data ../shared/data/acdc --model acnn-seg-acdc

`ACNNCore.cine.segment_frames` searches for the heart over the whole field of view in a cine's first frame
only; each later frame's search starts where the last one's ended, windows only (`_Runner.locate`, ``near``).
ACDC's cines are not here, but each patient's ED and ES frames are: each ES frame is segmented both ways --
afresh, and started from its ED frame's heart -- and compared with the expert labels. Printed: the mean ES
Dice (LV blood pool, myocardium, RV) each way, the largest change on one image, how far apart the two
searches end, and the seconds the ES segmentations took each way. The bundled model trained on all 70
patients: a check of the pipeline, not of generalisation.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ACNNCore.progress import progress_bar


def compare(model: str, patients) -> dict:
    """Per patient: (ES Dice afresh, ES Dice started from ED's heart, mm between the two searches' ends), and
    the seconds each way."""
    from ACNNCore.datasets import read_acdc_patient
    from ACNNCore.inference import Segmenter
    from ACNNCore.metrics import dice

    segmenter = Segmenter(model, "cpu")
    rows, seconds = {}, {"afresh": 0.0, "from ED": 0.0}
    for patient in progress_bar(patients, desc="patients", leave=False):
        ed, es = read_acdc_patient(patient)[:2]
        first = segmenter(ed.image)
        start = time.perf_counter()
        afresh = segmenter(es.image)
        seconds["afresh"] += time.perf_counter() - start
        start = time.perf_counter()
        warm = segmenter(es.image, near=first.heart)
        seconds["from ED"] += time.perf_counter() - start
        scores = [list(dice(r.labels, es.labels, (1, 2, 3)).values()) for r in (afresh, warm)]
        rows[patient.name] = (*scores, float(np.linalg.norm(afresh.heart - warm.heart)))
    return {"rows": rows, "seconds": seconds}


def main(argv=None) -> None:
    from ACNNCore.datasets import acdc_patients

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the ACDC folder (patientNNN/...)")
    parser.add_argument("--model", default="acnn-seg-acdc", help="a real-data segmentation model")
    args = parser.parse_args(argv)
    result = compare(args.model, acdc_patients(args.data))
    rows = result["rows"].values()
    afresh, warm = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
    apart = [r[2] for r in rows]
    print(f"{len(afresh)} ES frames; mean Dice LV / myocardium / RV, searched afresh: "
          f"{' / '.join(f'{v:.4f}' for v in afresh.mean(0))}; started from the ED frame's heart: "
          f"{' / '.join(f'{v:.4f}' for v in warm.mean(0))}")
    print(f"largest change on one image: {' / '.join(f'{v:.3f}' for v in np.abs(warm - afresh).max(0))}; "
          f"the searches end {np.median(apart):.2f} mm apart (median), {max(apart):.2f} at most")
    print(f"seconds for the ES frames: afresh {result['seconds']['afresh']:.1f}, "
          f"from ED {result['seconds']['from ED']:.1f}")


if __name__ == "__main__":
    main()
