"""Reading and writing volumes with their geometry (SimpleITK does the work).

Formats: NIfTI (.nii, .nii.gz), NRRD (.nrrd), MetaImage (.mha, .mhd) and
Slicer's segmentation files (.seg.nrrd, single layer), and a folder (or a
tree of folders) of DICOM files holding one short-axis stack (read by
:mod:`ACNNCore.dicom`). A 4-D cine file (time as the fourth dimension) or a
DICOM cine reads as a list of 3-D frames with :func:`read_frames`; a cine is
written from one with :func:`write_frames`.
"""

from __future__ import annotations

import os
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import InputError, OutputExists
from .volume import Geometry, Volume

SUFFIXES = (".seg.nrrd", ".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")

# One SimpleITK read at a time in the process, also where reads run in worker threads (the studio's uploads, the
# Slicer modules' background reads): GDCM, which decodes DICOM and which ITK asks whether it can read any file, is
# not thread-safe -- files decoded side by side in threads from a process's start crashed it now and then, or hung
# it at exit (3 of 150 fresh processes decoding a 360-file cine: benchmarks/dicom_threads.py; SimpleITK issue #805).
READ_LOCK = threading.Lock()


def format_of(path) -> str:
    """The recognised suffix of ``path`` (``.nii.gz``, ``.seg.nrrd``...) or an InputError."""
    name = str(path).lower()
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return suffix
    if not Path(path).suffix:  # "--out result": a name, not a file type
        raise InputError(f"{path} has no file type: end its name in one of {', '.join(SUFFIXES)}")
    raise InputError(f"unsupported file format: {path} (use one of {', '.join(SUFFIXES)})")


def strip_suffix(path) -> str:
    """File name without its image suffix: ``case01.nii.gz`` -> ``case01``."""
    name = Path(path).name
    return name[: -len(format_of(name))]


def _read_sitk(path) -> sitk.Image:
    path = Path(path)
    if path.is_file() and not path.name.lower().endswith(SUFFIXES):
        _not_one_dicom_file(path)
    format_of(path)
    if not path.is_file():
        raise InputError(f"no such file: {path}")
    try:
        with READ_LOCK:
            image = sitk.ReadImage(str(path))
    except RuntimeError as e:
        detail = str(e).strip().splitlines()[-1] if str(e).strip() else "unreadable"
        raise InputError(f"cannot read {path}: {detail}") from None
    if format_of(path) in (".nii", ".nii.gz"):
        _check_nifti(path)
    return image


def check_readable(path) -> None:
    """Read an image file once to learn whether it can be: an :class:`InputError` saying what is wrong if not (for
    readers that fail worse: MRML's segmentation reader aborts the process on a NRRD cut short)."""
    _read_sitk(path)


def _not_one_dicom_file(path: Path) -> None:
    """A single DICOM file given where an image is read: say what to give instead (a stack's images are read as
    the folder holding them; a DICOM SEG is a label map)."""
    from .dicom import is_dicom_file, is_dicom_seg

    if is_dicom_seg(path):
        raise InputError(f"{path} is a DICOM SEG, a label map: acnn info and acnn evaluate read it; to segment, give "
                         f"the folder of the images it labels")
    if is_dicom_file(path):
        raise InputError(f"{path} is one DICOM file: give the folder holding the stack's (or cine's) files, which "
                         f"are read together")


def _to_volume(image: sitk.Image, path) -> Volume:
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{path} is a multi-component (e.g. RGB) image; a scalar volume is needed")
    if image.GetDimension() != 3:
        raise InputError(f"{path} is a {image.GetDimension()}-D image; a 3-D volume is needed")
    array = sitk.GetArrayFromImage(image).transpose(2, 1, 0)  # (z, y, x) -> (x, y, z)
    try:
        geometry = Geometry(
            array.shape, image.GetSpacing(), image.GetOrigin(), np.asarray(image.GetDirection()).reshape(3, 3)
        )
    except InputError as e:
        raise InputError(f"{path}: {e}") from None
    return Volume(np.ascontiguousarray(array), geometry).check_finite(str(path))


def _check_nifti(path) -> None:
    """ITK's NIfTI reader reads a file cut short without a word (the voxels it lacks as zeros: a download broken
    off, a copy to a full disk) and turns NaN/inf voxels into 0: the stored values read once more (nibabel; a
    few milliseconds for a cine MR stack) to refuse either."""
    import nibabel as nib

    try:
        data = np.asanyarray(nib.load(str(path)).dataobj)
    except Exception as e:  # nibabel, gzip and zlib raise many kinds on a cut or damaged file
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"cannot read {path}, cut short or damaged: {detail}") from None
    if np.issubdtype(data.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(data)))
        if bad:
            raise InputError(f"{path} has {bad} NaN or infinite voxels")


def read_volume(path) -> Volume:
    """Read a 3-D scalar volume (a file, or a folder of DICOM files); a clear :class:`InputError` for anything
    else."""
    from .dicom import is_dicom_folder, read_dicom  # it reads the file formats' suffixes from here

    if is_dicom_folder(path):
        frames = read_dicom(path)
        if len(frames) > 1:
            raise InputError(f"{path} is a DICOM cine of {len(frames)} frames; a 3-D volume is needed here")
        return frames[0]
    image = _read_sitk(path)
    return _to_volume(image, path)


def read_labels(path, allowed=(0, 1, 2)) -> Volume:
    """Read a label map and check its values; returned as uint8."""
    volume = read_volume(path).check_labels(allowed, f"label map {path}")
    return volume.with_array(volume.array.astype(np.uint8))


def looks_like_labels(volume: Volume) -> bool:
    """Whether a volume holds a label map rather than an image: integer voxels, all of them our (or ACDC's)
    label values 0-3, some not 0 -- what ``acnn segment`` writes; no MR image is that."""
    a = volume.array
    return bool(np.issubdtype(a.dtype, np.integer) and a.any() and a.min() >= 0 and a.max() <= 3)


def is_cine(path) -> bool:
    """Whether an image file holds a 4-D cine (time last), from its header alone (a file that cannot be read is
    not: reading it says what is wrong)."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        with READ_LOCK:
            reader.ReadImageInformation()
    except RuntimeError:
        return False
    return reader.GetDimension() == 4


def read_frames(path) -> list[Volume]:
    """Read a 3-D volume or a 4-D cine (time last; a file or a DICOM folder) as a list of 3-D frames."""
    from .dicom import is_dicom_folder, read_dicom

    if is_dicom_folder(path):
        return read_dicom(path)
    image = _read_sitk(path)
    if image.GetDimension() != 4:
        return [_to_volume(image, path)]
    size = list(image.GetSize())
    frames = []
    for t in range(size[3]):
        frames.append(_to_volume(sitk.Extract(image, size[:3] + [0], [0, 0, 0, t]), f"{path} frame {t + 1}"))
    return frames


def to_sitk(volume: Volume) -> sitk.Image:
    array = volume.array
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    image.SetSpacing(volume.spacing)
    image.SetOrigin(volume.origin)
    image.SetDirection(tuple(volume.direction.ravel()))
    return image


def check_writable(path, overwrite: bool = False, image: bool = True) -> Path:
    """Refuse to overwrite an existing file unless asked to; make the parent folder, and refuse one that cannot
    be written into (read-only, not a folder): before the work, not after it. With ``image``, the suffix must
    be an image format."""
    path = Path(path)
    if image:
        format_of(path)
    if path.exists() and not overwrite:
        raise OutputExists(path)
    check_folder(path.parent, path)
    return path


def check_folder(folder, writing=None) -> Path:
    """Make ``folder`` where it is missing and refuse one that cannot be written into (read-only, a file on
    its path): before the work, not after it. ``writing``: what is to be written there, for the message."""
    folder = Path(folder)
    existing = next((f for f in (folder, *folder.parents) if f.exists()), None)
    if existing is not None and not existing.is_dir():
        raise InputError(f"cannot write {writing or folder}: {existing} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as e:
        raise InputError(f"cannot write into the folder {folder} ({e.strerror or e})") from None
    return folder


_UMASK = os.umask(0o022)  # read once, at import (setting it is process-wide: not from a worker thread later)
os.umask(_UMASK)


@contextmanager
def atomic_target(path, suffix: str = ""):
    """A temporary file's name beside ``path`` to write to; when the block ends without an error the file
    replaces ``path`` at once (a reader never sees half a file; an interrupted write leaves what was there), with
    the permissions a plain ``open(path, "w")`` would give it (a temporary file is the owner's only)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _write_atomic(image: sitk.Image, path: Path) -> None:
    suffix = format_of(path)
    if suffix == ".mhd":  # header + raw data file: write in place
        sitk.WriteImage(image, str(path), True)
        return
    with atomic_target(path, suffix) as tmp:
        sitk.WriteImage(image, tmp, True)


def write_table(rows, path) -> Path:
    """Rows (dicts) as a CSV file in UTF-8: a column for every key any row has, in the order first met."""
    import csv

    rows = list(rows)
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
    return Path(path)


def write_volume(volume: Volume, path, overwrite: bool = False) -> Path:
    """Write a volume (NIfTI/NRRD/MetaImage) keeping its geometry exactly."""
    path = check_writable(path, overwrite)
    if format_of(path) == ".seg.nrrd":
        raise InputError(f"{path}: use write_segmentation for .seg.nrrd files")
    _write_atomic(to_sitk(volume), path)
    return path


def write_frames(frames: list[Volume], path, overwrite: bool = False) -> Path:
    """Write 3-D frames on one grid as a 4-D cine file (time last, as :func:`read_frames` reads it); a single
    frame as a 3-D file."""
    path = check_writable(path, overwrite)
    if format_of(path) == ".seg.nrrd":
        raise InputError(f"{path}: a .seg.nrrd holds one 3-D segmentation; write a cine as .nii.gz, .nrrd or .mha")
    if not frames:
        raise InputError("no frames to write")
    for t, frame in enumerate(frames[1:], 1):
        if not frame.geometry.same_as(frames[0].geometry):
            raise InputError(f"frame {t + 1} lies on another grid than frame 1: a cine's frames share one grid")
    image = to_sitk(frames[0]) if len(frames) == 1 else sitk.JoinSeries([to_sitk(f) for f in frames])
    _write_atomic(image, path)
    return path


# --- Slicer segmentation files ---------------------------------------------------

def write_segmentation(labels: Volume, path, segments: dict, overwrite: bool = False) -> Path:
    """Write a label map as a Slicer ``.seg.nrrd`` (one layer).

    ``segments`` maps label value -> (name, (r, g, b) in 0..1).
    """
    path = check_writable(path, overwrite)
    array = labels.array.astype(np.uint8)
    image = to_sitk(labels.with_array(array))
    image.SetMetaData("Segmentation_MasterRepresentation", "Binary labelmap")
    image.SetMetaData("Segmentation_ContainedRepresentationNames", "Binary labelmap|")
    image.SetMetaData("Segmentation_ReferenceImageExtentOffset", "0 0 0")
    extent = f"0 {array.shape[0] - 1} 0 {array.shape[1] - 1} 0 {array.shape[2] - 1}"
    for n, (value, (name, color)) in enumerate(sorted(segments.items())):
        key = f"Segment{n}_"
        image.SetMetaData(key + "ID", f"Segment_{value}")
        image.SetMetaData(key + "Name", name)
        image.SetMetaData(key + "Color", " ".join(f"{c:.4f}" for c in color))
        image.SetMetaData(key + "LabelValue", str(int(value)))
        image.SetMetaData(key + "Layer", "0")
        image.SetMetaData(key + "Extent", extent)
        image.SetMetaData(key + "NameAutoGenerated", "0")
        image.SetMetaData(key + "ColorAutoGenerated", "0")
    _write_atomic(image, path)
    return path


def read_segmentation(path) -> tuple[Volume, dict]:
    """Read a single-layer ``.seg.nrrd``: (label map, {label value: segment name})."""
    image = _read_sitk(path)
    keys = set(image.GetMetaDataKeys())
    if image.GetDimension() == 4 or image.GetNumberOfComponentsPerPixel() > 1:
        raise InputError(f"{path} has overlapping segments (several layers); export it as a label map")
    names = {}
    n = 0
    while f"Segment{n}_Name" in keys:
        value = int(image.GetMetaData(f"Segment{n}_LabelValue")) if f"Segment{n}_LabelValue" in keys else n + 1
        names[value] = image.GetMetaData(f"Segment{n}_Name")
        n += 1
    volume = _to_volume(image, path)
    return volume.with_array(volume.array.astype(np.uint8)), names
