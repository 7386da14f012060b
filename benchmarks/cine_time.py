"""How long a cine takes: its frames segmented as `acnn segment` does (the heart searched for over the whole
field of view in the first frame, each later frame's search starting where the last one's ended), against a
search afresh in every frame, for each model given, side by side on one machine.

    python benchmarks/cine_time.py --models acnn-seg-acdc runs/old/Resources/Models/acnn-seg-acdc

The cine: ACDC patient 001's ED and ES frames, alternating, 30 frames (ACDC's own cines are not here). Printed
per model: the seconds each way (after one warm-up frame) and the ratio.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def seconds(model: str, frames) -> tuple[float, float]:
    """(as acnn segment does, afresh in every frame) for the frames, on the CPU."""
    from ACNNCore.cine import segment_frames
    from ACNNCore.inference import Segmenter

    segmenter = Segmenter(model, "cpu")
    segmenter(frames[0])  # the first call's set-up (threads, allocations) out of the timing
    start = time.perf_counter()
    segment_frames(segmenter, frames)
    cine = time.perf_counter() - start
    start = time.perf_counter()
    for frame in frames:
        segmenter(frame)
    return cine, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/acdc")
    parser.add_argument("--models", nargs="+", default=["acnn-seg-acdc"], help="segmentation models (names or folders)")
    parser.add_argument("--frames", type=int, default=30)
    args = parser.parse_args()
    from ACNNCore.datasets import read_acdc_patient

    phases = [c.image for c in read_acdc_patient(args.data / "patient001")]
    frames = [phases[i % 2] for i in range(args.frames)]
    for model in args.models:
        cine, afresh = seconds(model, frames)
        print(f"{model}: {len(frames)} frames in {cine:.1f} s as a cine, {afresh:.1f} s searched afresh "
              f"({afresh / cine:.1f} times as long)")


if __name__ == "__main__":
    main()
