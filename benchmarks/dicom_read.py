"""Reading a DICOM cine: each file's pixels decoded one after another, against side by side in threads.

    python benchmarks/dicom_read.py [FOLDER] [--frames 30] [--repeats 5]

`ACNNCore.dicom._pixels` decodes a stack's files with GDCM (SimpleITK) in a thread pool: SimpleITK lets other
threads run while it reads. Printed, in one run on the same files: the seconds to decode every file serially
and in threads (the best of the repeats) and their ratio, and the seconds `ACNNCore.dicom.read_dicom` takes
once the headers are parsed (they are parsed once per file and kept: `_read_file`). Without FOLDER, a phantom
cine of ``--frames`` frames (12 slices each) is written as DICOM files by the tests' writer into a temporary
folder.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def phantom_cine_folder(frames: int, folder: Path) -> Path:
    """A phantom's ED and ES stacks repeated to ``frames`` frames, written as one series of DICOM files."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from Testing.conftest import _phantom_cine, _write_dicom  # the DICOM writer the tests use

    cine = _phantom_cine(0, 1)
    return _write_dicom((cine * frames)[:frames], folder / "cine")


def main(argv=None) -> None:
    import SimpleITK as sitk

    from ACNNCore.dicom import dicom_files, read_dicom

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, help="a DICOM cine or stack (default: a phantom cine)")
    parser.add_argument("--frames", type=int, default=30, help="frames of the phantom cine (default 30)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder or phantom_cine_folder(args.frames, Path(tmp))
        files = [str(p) for p in dicom_files(folder)]
        workers = min(len(files), os.cpu_count() or 1)

        def decode(file):
            return sitk.GetArrayFromImage(sitk.ReadImage(file, imageIO="GDCMImageIO"))

        read_dicom(folder)  # the headers parsed and kept, as every later read finds them
        serial, threaded, whole = [], [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            [decode(f) for f in files]
            serial.append(time.perf_counter() - t)
            t = time.perf_counter()
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(decode, files))
            threaded.append(time.perf_counter() - t)
            t = time.perf_counter()
            read_dicom(folder)
            whole.append(time.perf_counter() - t)
    print(f"{len(files)} files, {workers} threads: decoding {min(serial):.3f} s one after another, "
          f"{min(threaded):.3f} s side by side ({min(serial) / min(threaded):.2f}x); "
          f"read_dicom with its headers parsed {min(whole):.3f} s")


if __name__ == "__main__":
    main()
