"""Why ACNNCore decodes DICOM files one at a time: GDCM (through SimpleITK) in threads crashes now and then.

    python benchmarks/dicom_threads.py [--runs 200]

Each run is a fresh Python process that decodes every file of a 360-file phantom cine (written by the tests'
DICOM writer into a temporary folder) with ``sitk.ReadImage(..., imageIO="GDCMImageIO")``, in one of three ways:
two threads at once from the start; two threads after one file decoded alone first; or by ACNNCore's own reader,
``ACNNCore.dicom.read_dicom``, one file after another (every SimpleITK read behind ``ACNNCore.io.READ_LOCK``).
Printed: how many runs of each crashed (a segmentation fault, an abort, or a hang at exit: a minute without
ending) out of ``--runs``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

DECODE = """
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import SimpleITK as sitk

files = sorted(str(p) for p in Path(sys.argv[1]).iterdir())


def decode(file):
    return sitk.GetArrayFromImage(sitk.ReadImage(file, imageIO="GDCMImageIO"))


if sys.argv[2] == "acnn":  # ACNNCore's own reader
    from ACNNCore.dicom import read_dicom

    read_dicom(sys.argv[1])
else:
    if sys.argv[2] == "warm":
        decode(files[0])
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(decode, files))
"""

MODES = {"cold": "two threads from the start", "warm": "two threads after one file alone",
         "acnn": "ACNNCore.dicom.read_dicom, one file after another"}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="fresh processes per way of decoding (default 200)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from Testing.conftest import _phantom_cine, _write_dicom  # the DICOM writer the tests use

    with tempfile.TemporaryDirectory() as tmp:
        folder = _write_dicom((_phantom_cine(0, 1) * 30)[:30], Path(tmp) / "cine")
        files = len(list(folder.iterdir()))
        for mode, words in MODES.items():
            crashed = sum(not _decodes(folder, mode) for _ in range(args.runs))
            print(f"{words}: {crashed} of {args.runs} fresh processes crashed decoding {files} files", flush=True)


def _decodes(folder: Path, mode: str) -> bool:
    """Whether a fresh process decodes the folder's files and ends: not where it crashes, nor where it hangs (a
    crashed decode can leave GDCM's state such that the process spins at exit, in SimpleITK's exit handlers)."""
    try:
        return subprocess.run([sys.executable, "-c", DECODE, str(folder), mode], capture_output=True,
                              timeout=60).returncode == 0
    except subprocess.TimeoutExpired:
        return False


if __name__ == "__main__":
    main()
