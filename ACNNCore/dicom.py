"""DICOM: a folder (or a study's tree of folders) of MR images read as the short-axis stack or cine it holds,
and segmentations written back as DICOM SEG on those images.

pydicom reads the headers (classic files, one image each, or enhanced multi-frame files, each frame with its own
position and time); GDCM (through SimpleITK) decodes the pixels; highdicom writes the segmentation objects.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import SimpleITK as sitk

from .errors import InputError, OutputExists
from .io import READ_LOCK, SUFFIXES
from .progress import counted
from .volume import Geometry, Volume

log = logging.getLogger(__name__)


def is_dicom_file(path: Path) -> bool:
    """A DICOM file, told by its first bytes alone: Part 10 ("DICM" after its 128-byte preamble), or a bare data
    set as older scanners and PACS exports write it (:func:`_bare_data_set`); a CD's index (DICOMDIR) is not
    taken for one."""
    if Path(path).name.upper() == "DICOMDIR":
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return head[128:] == b"DICM" or _bare_data_set(head)


def _bare_data_set(head: bytes) -> bool:
    """A DICOM data set without the Part-10 preamble: its first element one of the file meta (group 0002) or
    identifying (group 0008) group's, little endian, followed by an explicit VR (two capitals) or, in implicit
    VR, a short length -- as pydicom (``force=True``) and GDCM read it."""
    if len(head) < 8:
        return False
    group, element = int.from_bytes(head[:2], "little"), int.from_bytes(head[2:4], "little")
    if group not in (0x0002, 0x0008) or element > 0x0020:
        return False
    vr = head[4:6]
    return (vr.isalpha() and vr.isupper()) or int.from_bytes(head[4:8], "little") < 1024


def is_dicom_folder(path) -> bool:
    """A folder holding DICOM files, or a tree of folders (a study's, a CD's) whose only images are DICOM files:
    :func:`read_dicom` reads either as one. A folder holding images of other formats somewhere below (a data
    set beside its DICOM originals) is not one. A look at the files' names and first bytes, cheap enough to ask
    before every read (GDCM's series scan parses every header, as :func:`read_dicom` does once)."""
    path = Path(path)
    if not path.is_dir():
        return False
    if any(p.is_file() and is_dicom_file(p) for p in path.iterdir()):
        return True
    files = [p for p in path.rglob("*") if p.is_file()]
    return not any(p.name.lower().endswith(SUFFIXES) for p in files) and any(map(is_dicom_file, files))


class _DicomImage(NamedTuple):
    """One 2-D image of a DICOM folder: a classic file, or one frame of a multi-frame (enhanced) file."""
    position: np.ndarray  # 0020,0032: the first voxel's centre (LPS, mm)
    orientation: np.ndarray  # 0020,0037: row and column directions
    order: tuple  # (trigger time, instance number, frame): its place in time at its position
    size: tuple  # (columns, rows)
    spacing: tuple  # (between columns, between rows) mm: along x, then y
    thickness: float  # 0018,0050 (mm)
    file: str
    frame: int  # its frame in the file (0 in a classic file)
    whole: bool  # its file holds all the pixel data its header declares (:func:`_ends_short`)
    rescale: tuple  # (slope, intercept) taking what GDCM reads to this frame's values: (1, 0) but where an
    # enhanced file's frames are scaled differently (GDCM applies the first frame's scaling to all)
    study: str  # 0020,000d: images of two studies (two patients, two visits) never make one stack
    series: str  # 0020,000e
    protocol: str  # 0008,103e as written ("" where absent)
    number: str  # 0020,0011 as written ("" where absent)
    sop: tuple  # (0008,0018, frame number) as a DICOM SEG refers to it: 1 up in a multi-frame file, 0 in a classic
    folder: Path  # where its file lies, from the folder read

    @property
    def description(self) -> str:
        """How a user knows its series: the series description (else UID) and the folder it lies in."""
        return f"{self.protocol or 'series ' + self.series} in {self.folder}"


def _attribute(ds, keyword: str, frame: int | None = None):
    """An attribute of a DICOM image (its value, or None): of frame ``frame`` of an enhanced file, found in that
    frame's functional groups, else in the shared ones (each group a sequence of one item: Plane Position,
    Pixel Measures, Cardiac Synchronization, a converter's Unassigned Attributes ...), else in the data set."""
    groups = []
    if frame is not None:
        groups = [ds.PerFrameFunctionalGroupsSequence[frame], *ds.get("SharedFunctionalGroupsSequence", [])]
    for group in groups:
        for element in group:
            if element.VR == "SQ" and len(element.value) and keyword in element.value[0]:
                return element.value[0][keyword].value
    return ds.get(keyword)


def _numbers(value, n: int) -> np.ndarray:
    """A DICOM multi-value of ``n`` numbers as floats; empty where it is absent or not that."""
    try:
        numbers = np.array([float(v) for v in value], float) if value is not None else np.zeros(0)
    except (TypeError, ValueError):
        return np.zeros(0)
    return numbers if numbers.shape == (n,) else np.zeros(0)


def _header(path):
    """A DICOM file's header (pydicom), a bare data set's too (:func:`is_dicom_file` having told it one); ``path``
    a path, or a file open for reading, then left where the pixel data begins."""
    import pydicom

    return pydicom.dcmread(path, stop_before_pixels=True, force=True)


def _dicom_images(path: Path, where: Path) -> list[_DicomImage]:
    """The 2-D images a DICOM file holds, from its header (pydicom): itself, or each frame of an enhanced
    (multi-frame) file with that frame's position, orientation, pixel spacing and time; none for a file that
    holds no image (a report, a presentation state, a DICOM SEG's labels) or cannot be parsed. An image
    without a position or orientation (a secondary capture) comes back with empty ones, to be left out."""
    return [image._replace(folder=where) for image in _read_file(*_identity(path))[1]]


def _identity(path) -> tuple[str, int, int, int]:
    """A file as :func:`_read_file` knows it: its path, and its inode, modification time and size, which
    change when it is written again."""
    stat = os.stat(path)
    return str(path), stat.st_ino, stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=16384)  # a large study's files; about a kilobyte each
def _read_file(path: str, inode: int, mtime_ns: int, size: int) -> tuple[str, tuple[_DicomImage, ...]]:
    """A DICOM file's SOP class and images (:func:`_dicom_images`, their folder left empty), its header parsed
    once while the file stays as it is: a folder is looked through several times as it is loaded (its SEGs,
    its studies, each study's stacks), and its headers are most of that time. A file that cannot be parsed, or an
    image's cut off before its pixels, holds none, saying so (once)."""
    try:
        with open(path, "rb") as file:
            ds = _header(file)
            whole = not _ends_short(file, ds, size)
    except Exception as e:  # pydicom raises many kinds on a broken file: it holds no image we can read
        log.warning("%s: left out, it cannot be parsed as DICOM (cut short or damaged?): %s", path,
                    str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__)
        return "", ()
    sop_class = str(ds.get("SOPClassUID", ""))
    if "Rows" not in ds or "Columns" not in ds or sop_class == SEGMENTATION_STORAGE:
        from pydicom.uid import UID

        declared = sop_class or getattr(ds, "file_meta", {}).get("MediaStorageSOPClassUID", "")
        if not whole and "Image Storage" in UID(declared).name:  # not a SEG, a report ...
            log.warning("%s: left out, an image whose header ends before its pixels (cut short?)", path)
        return sop_class, ()  # no image (a report, a presentation state), or labels (a DICOM SEG beside its images)
    n = int(ds.get("NumberOfFrames") or 1)
    enhanced = "PerFrameFunctionalGroupsSequence" in ds and len(ds.PerFrameFunctionalGroupsSequence) == n
    if n > 1 and not enhanced:
        raise InputError(f"{path}: a multi-frame DICOM file without per-frame positions (functional groups); "
                         f"convert it first (e.g. dcm2niix)")
    frames = range(n) if enhanced else [None]

    def scaling(frame):
        return (float(_attribute(ds, "RescaleSlope", frame) or 1.0),
                float(_attribute(ds, "RescaleIntercept", frame) or 0.0))

    read_as = scaling(0 if enhanced else None)
    images = []
    for frame in frames:
        times = (_attribute(ds, k, frame) for k in ("NominalCardiacTriggerDelayTime", "TriggerTime",
                                                    "TemporalPositionIndex"))  # the first given (0 is one)
        time = next((t for t in times if t not in (None, "")), 0.0)
        spacing = _numbers(_attribute(ds, "PixelSpacing", frame), 2)[::-1]  # (rows apart, columns apart) -> x, y
        slope, intercept = scaling(frame) if enhanced else read_as
        images.append(_DicomImage(
            _numbers(_attribute(ds, "ImagePositionPatient", frame), 3),
            _numbers(_attribute(ds, "ImageOrientationPatient", frame), 6),
            (float(time), int(ds.get("InstanceNumber") or 0), frame or 0), (int(ds.Columns), int(ds.Rows)),
            tuple(spacing) if spacing.size else (1.0, 1.0),
            float(_attribute(ds, "SliceThickness", frame) or 1.0), str(path), frame or 0, whole,
            (slope / read_as[0], intercept - read_as[1] * slope / read_as[0]), str(ds.get("StudyInstanceUID", "")),
            str(ds.get("SeriesInstanceUID", "?")), str(ds.get("SeriesDescription", "")),
            str(ds.get("SeriesNumber", "") or ""), (str(ds.get("SOPInstanceUID", "")), frame + 1 if enhanced else 0),
            Path()))
    return sop_class, tuple(images)


def _ends_short(file, ds, size: int) -> bool:
    """Whether the pixel data of a file, read up to it (``ds``, its header: ``file`` stands where the pixel data
    begins), ends before its header says: stored as is, shorter than its length; compressed (encapsulated: items
    of their own lengths, then a sequence delimiter; PS3.5 A.4), an item running past the file's ``size`` bytes or
    no delimiter after the last -- a copy broken off. GDCM reads some such files without a word: before
    SimpleITK 2.5 the missing pixels as zeros, and a compressed multi-frame file's last frame wrong still."""
    import struct

    from pydicom.uid import DeflatedExplicitVRLittleEndian

    if getattr(ds, "file_meta", {}).get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
        return False  # the data set zipped whole: where its pixels lie in the file is unknown; zlib finds a cut
    implicit, little = ds.original_encoding
    order = ">" if little is False else "<"
    head = file.read(8 if implicit else 12)  # tag, length; or tag, VR (OB, OW), two bytes reserved, length
    if len(head) < (8 if implicit else 12):
        return True  # an image without its pixels
    if struct.unpack(order + "HH", head[:4]) != (0x7FE0, 0x0010):
        return False  # float pixel data and the like: GDCM says what it makes of them
    length, start = struct.unpack(order + "I", head[-4:])[0], file.tell()
    if length != 0xFFFFFFFF:
        return start + length > size
    while len(item := file.read(8)) == 8:
        group, element, length = struct.unpack(order + "HHI", item)
        if (group, element) != (0xFFFE, 0xE000):
            return False  # the sequence delimiter (FFFE,E0DD); else not DICOM's encapsulation: left to GDCM
        file.seek(length, os.SEEK_CUR)
        if file.tell() > size:
            return True
    return True


def dicom_files(folder) -> list[Path]:
    """The DICOM files in a folder and its subfolders, sorted."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and is_dicom_file(p))


def _images_of(folder: Path) -> list[_DicomImage]:
    """Every image of the DICOM files in a folder and its subfolders."""
    files = dicom_files(folder)
    if not files:
        raise InputError(f"{folder} holds no DICOM files" if Path(folder).is_dir() else f"no such folder: {folder}")
    images = [i for p in files for i in _dicom_images(p, p.parent.relative_to(folder.parent))]
    if not images:
        segs = sum(map(is_dicom_seg, files))
        raise InputError(f"{folder} holds DICOM files but no images" + (
            f" ({counted(segs, 'DICOM SEG')}, label maps: give acnn info or acnn evaluate one of them)"
            if segs else ""))
    return images


class DicomStudy(NamedTuple):
    folder: Path  # the highest folder holding its files and no other study's (else the folder asked about)
    uid: str  # 0020,000d


def dicom_studies(folder) -> dict[str, DicomStudy]:
    """The studies whose images a DICOM folder holds, by name: the highest folder below ``folder`` that holds
    all of a study's files and no other study's ("patient07", "exports_p2" for exports/p2), else the study's
    patient ID, else its number; one study in the whole folder is named by the folder. Read one with
    ``read_dicom(*study)``."""
    folder = Path(folder)
    return _studies(folder, _images_of(folder))


def _studies(folder: Path, images: list[_DicomImage]) -> dict[str, DicomStudy]:
    """:func:`dicom_studies` of images already read from ``folder``."""
    uids = list(dict.fromkeys(i.study for i in images))
    if len(uids) == 1:
        return {folder.name: DicomStudy(folder, uids[0])}
    studies = {}
    for n, uid in enumerate(uids, 1):
        common = Path(os.path.commonpath([Path(i.file).parent for i in images if i.study == uid]))
        others = [Path(i.file) for i in images if i.study != uid]
        parts = common.relative_to(folder).parts
        k = next((k for k in range(1, len(parts) + 1)  # the highest folder of its own
                  if not any(o.is_relative_to(folder.joinpath(*parts[:k])) for o in others)), 0)
        name = "_".join(parts[:k])
        if not name:
            name = str(_header(next(i.file for i in images if i.study == uid)).get("PatientID", "")) or f"study{n}"
        studies[name if name not in studies else f"{name}_{n}"] = DicomStudy(folder.joinpath(*parts[:k]), uid)
    return studies


def read_dicom(folder, study: str | None = None, series: str | None = None) -> list[Volume]:
    """The frames of the short-axis stack in a DICOM folder (its subfolders too): one series, or several series
    that hold one slice position each (how scanners often write a cine), the same orientation and in-plane grid;
    classic files, one image each, or enhanced (multi-frame) files, each frame with its own position and time.
    Slices are ordered along the stack's normal; a position's images in time (trigger time, then instance
    number and frame) make the frames. Images of other orientations or grids beside one stack (long-axis views,
    a localizer's slice), single-frame stacks beside one cine (late enhancement, T1 maps) and images without a
    position (secondary captures) are left out, saying so; several stacks otherwise (two cines, two
    single-frame stacks), uneven slice gaps or positions with different numbers of images are refused, and so
    is a folder holding several studies, unless ``study`` (a study instance UID, see :func:`dicom_studies`)
    picks one. ``series`` reads only the series of that description (any case), number or UID: one of several
    stacks (a full study's cine beside perfusion or T1-mapping series), or its series together where a cine is
    written one series per slice."""
    return _pixels(folder, *_stack(folder, study, series))


def read_dicom_stacks(folder, study: str | None = None) -> dict[str, list[Volume]]:
    """What a viewer shows of a DICOM study's folder: the stack :func:`read_dicom` reads, where it reads one,
    by the folder's name; else -- several cines, as a full study's export holds (the short-axis cine beside
    perfusion, T1 mapping, a second cine) -- every stack, by what ``read_dicom(series=)`` takes to read it
    (:func:`_selector`: its series description, else number), cines first and the one of most slice positions
    first of all (a stack that is not one stack on one grid left out, saying why)."""
    folder = Path(folder)
    stacks, groups, unplaced = _stacks(folder, study, None)
    try:
        return {folder.name: _pixels(folder, *_assemble(folder, _choose(folder, stacks, groups, unplaced)))}
    except InputError:
        if len(stacks) < 2:
            raise
    stacks = sorted(stacks, key=lambda g: (len(g) == len(_positions(g)), -len(_positions(g))))
    read, problems = {}, []
    for images in stacks:
        name = _selector(images, [i for g in stacks if g is not images for i in g])
        try:
            read[name if name not in read else f"{name} {len(read) + 1}"] = _pixels(folder, *_assemble(folder, images))
        except InputError as e:
            problems.append(f"{name}: {e}")
    if problems:
        log.warning("%s: left out %s", folder, "; ".join(problems))
    if not read:
        raise InputError(f"{folder}: none of its {len(stacks)} stacks can be read ({'; '.join(problems)})")
    return read


def _selector(images: list[_DicomImage], others: list[_DicomImage]) -> str:
    """What ``read_dicom(series=)`` takes to read a stack's images apart from the ``others``: their series
    description, else (two stacks of one description: a repeated cine) their series number, else their UID."""
    for field in ("protocol", "number", "series"):
        key = getattr(images[0], field).casefold()
        if key and all(getattr(i, field).casefold() == key for i in images) and \
                not any(getattr(i, field).casefold() == key for i in others):
            return getattr(images[0], field)
    return images[0].protocol or images[0].series  # several series, none of them its own (not to be picked)


def _pixels(folder, stack: list[list[_DicomImage]], geometry: Geometry) -> list[Volume]:
    """The frames of a stack's images, each file's pixels decoded once by GDCM, one file after another (GDCM is
    not thread-safe: :data:`ACNNCore.io.READ_LOCK`)."""
    pixels = {}  # each file's pixel values (frames, rows, columns)
    for file, whole in dict.fromkeys((image.file, image.whole) for column in stack for image in column):
        try:
            if not whole:
                raise RuntimeError
            with READ_LOCK:
                array = sitk.GetArrayFromImage(sitk.ReadImage(file, imageIO="GDCMImageIO"))
        except RuntimeError:  # truncated, or a compression GDCM lacks
            raise InputError(f"{file}: its pixel data cannot be read (a truncated file?)") from None
        pixels[file] = array.reshape(-1, *array.shape[-2:])

    def pixels_of(image: _DicomImage) -> np.ndarray:
        slope, intercept = image.rescale
        array = pixels[image.file][image.frame]
        return array if (slope, intercept) == (1.0, 0.0) else (array * slope + intercept).astype(np.float32)

    frames = []
    for t in range(len(stack[0])):
        array = np.stack([pixels_of(s[t]) for s in stack]).transpose(2, 1, 0)  # (z, y, x) -> (x, y, z)
        frames.append(Volume(np.ascontiguousarray(array), geometry).check_finite(str(folder)))
    return frames


def _stack(folder, study: str | None, series: str | None = None) -> tuple[list[list[_DicomImage]], Geometry]:
    """:func:`read_dicom`'s choice of images, from their headers: the stack's images by slice position (along the
    normal), each position's in time, and the grid they make."""
    return _assemble(folder, _choose(folder, *_stacks(folder, study, series)))


def _stacks(folder, study: str | None, series: str | None) -> tuple[list, list, list]:
    """The images of a DICOM folder (of ``study``, of ``series``) in what may be stacks: (the stacks -- groups
    of several slice positions --, every group of one orientation, grid and series, the images without a
    position)."""
    folder = Path(folder)
    images = _images_of(folder)
    if study is not None:
        images = [i for i in images if i.study == study]
        if not images:
            raise InputError(f"{folder} holds no images of study {study}")
    elif len({i.study for i in images}) > 1:
        names = list(_studies(folder, images))
        raise InputError(f"{folder} holds {len(names)} studies ({', '.join(names[:4])}{' ...' * (len(names) > 4)}), "
                         f"not one stack: give one study's folder (acnn segment takes the folder and segments "
                         f"each)")
    if series is not None:
        chosen = [i for i in images if series.casefold() in (i.protocol.casefold(), i.number, i.series)]
        if not chosen:
            known = sorted({f"{i.protocol or '(no description)'} (number {i.number or '-'})" for i in images})
            raise InputError(f"{folder} holds no series {series!r}; its series: {', '.join(known[:12])}"
                             f"{' ...' if len(known) > 12 else ''}")
        images = chosen
    placed = [i for i in images if i.position.size and i.orientation.size]
    unplaced = [i for i in images if not (i.position.size and i.orientation.size)]
    grids: list[list[_DicomImage]] = []  # by orientation and in-plane grid
    for i in placed:
        grid = next((g for g in grids if _same_grid(g[0], i)), None)
        grid.append(i) if grid else grids.append([i])
    groups = [g for grid in grids for g in _by_series(grid)]  # a stack each, or one position's images
    stacks = [g for g in groups if len(_positions(g)) > 1] if len(groups) > 1 else groups
    if not stacks:
        raise InputError(f"{folder} holds no stack: {len(images)} images of {len(grids)} orientations or grids, "
                         f"each at one slice position" if groups else
                         f"{folder} holds no image with a position and orientation (0020,0032 / 0020,0037): "
                         f"{_describe(unplaced)}")
    return stacks, groups, unplaced


def _choose(folder, stacks: list, groups: list, unplaced: list) -> list[_DicomImage]:
    """The one stack of :func:`_stacks`'s (beside single-frame stacks, the one cine), the rest left out saying
    so; several stacks otherwise refused."""
    cines = [g for g in stacks if len(g) > len(_positions(g))]  # several images a position
    if len(stacks) > 1 and len(cines) != 1:
        raise InputError(f"{folder} holds {len(stacks)} stacks (of different orientations, grids or series): "
                         f"{'; '.join(_describe(g) for g in stacks[:4])}{' ...' if len(stacks) > 4 else ''}; pick "
                         f"the short-axis stack's series by its description or number (acnn segment --series), "
                         f"or put its files in a folder of their own")
    images = cines[0] if len(stacks) > 1 else stacks[0]  # beside single-frame stacks (LGE, T1 maps): the cine
    left_out = [_describe(g) for g in groups if g is not images]
    if left_out:
        log.warning("%s: read %s; left out %s of other orientations, grids or series (%s)", folder,
                    _describe(images), counted(sum(len(g) for g in groups if g is not images), "image"),
                    "; ".join(left_out[:4]))
    if unplaced:
        log.warning("%s: left out %s", folder, _describe(unplaced))
    return images


def _assemble(folder, images: list[_DicomImage]) -> tuple[list[list[_DicomImage]], Geometry]:
    """One stack's images by slice position (along the normal), each position's in time, and the grid they
    make; refused where they are not one stack on one grid."""
    first = images[0]
    row, col = first.orientation[:3], first.orientation[3:]
    normal = np.cross(row, col)
    in_plane = np.array([[(i.position - first.position) @ row, (i.position - first.position) @ col] for i in images])
    if np.abs(in_plane).max() > 0.1:
        raise InputError(f"{folder}: its slices are shifted against each other in their plane (up to "
                         f"{np.abs(in_plane).max():.1f} mm): not one stack on one grid")
    depth = np.round([i.position @ normal for i in images], 2)
    positions = np.unique(depth)  # along the normal
    stack = [sorted((i for i, d in zip(images, depth) if d == p), key=lambda i: i.order) for p in positions]
    counts = sorted({len(s) for s in stack})
    if len(counts) != 1:
        raise InputError(f"{folder}: its {len(positions)} slice positions hold different numbers of images "
                         f"({counts[0]} to {counts[-1]}): not one stack")
    gaps = np.diff(positions)
    if len(gaps) > 1 and np.ptp(gaps) > 0.01 * gaps.mean() + 0.01:
        raise InputError(f"{folder}: the slices are unevenly spaced ({', '.join(f'{g:.2f}' for g in gaps)} mm); "
                         f"resample the stack first")
    spacing = (*first.spacing, float(gaps.mean()) if len(gaps) else first.thickness)
    return stack, Geometry((*first.size, len(stack)), spacing, tuple(stack[0][0].position),
                           np.stack([row, col, normal], 1))


def _by_series(images: list[_DicomImage]) -> list[list[_DicomImage]]:
    """Images of one orientation and grid split into what may be one stack: a series holding several slice
    positions on its own (a cine and a late-enhancement stack planned on the same slices stay apart); series
    holding one position each (a cine written one series per slice) together, where they hold as many images;
    single-frame series on the same positions under one series description (a cine written one series per
    phase) together."""
    series: dict[str, list] = {}
    for i in images:
        series.setdefault(i.series, []).append(i)
    stacks, per_slice = [], {}
    for s in series.values():
        if len(_positions(s)) > 1:
            stacks.append(s)
        else:
            per_slice.setdefault(len(s), []).extend(s)
    phases: dict[tuple, list] = {}  # a cine written one series per phase: single-frame stacks of one description
    for s in stacks:  # on the same positions
        if len(s) == len(_positions(s)) and s[0].protocol:
            phases.setdefault((s[0].protocol, tuple(_positions(s))), []).append(s)
    joined = [g for g in phases.values() if len(g) > 1]
    parts = {id(s) for g in joined for s in g}
    return ([s for s in stacks if id(s) not in parts] + [[i for s in g for i in s] for g in joined]
            + list(per_slice.values()))


def _same_grid(a: _DicomImage, b: _DicomImage) -> bool:
    return (np.allclose(a.orientation, b.orientation, atol=1e-3) and a.size == b.size
            and np.allclose(a.spacing, b.spacing, atol=1e-4))


def _positions(images) -> np.ndarray:
    """The slice positions of images of one orientation, along its normal (mm, rounded to 0.01)."""
    normal = np.cross(images[0].orientation[:3], images[0].orientation[3:])
    return np.unique(np.round([i.position @ normal for i in images], 2))


def _describe(images) -> str:
    """Images of one orientation and grid (or without a position) as a user knows them: how many, where, and
    their series."""
    names = sorted({i.description for i in images})
    where = (f"{counted(len(_positions(images)), 'slice position')}, " if images[0].position.size else "")
    what = counted(len(images), "image") + ("" if images[0].position.size else " without a position")
    return f"{where}{what} ({', '.join(names[:3])}{' ...' if len(names) > 3 else ''})"


SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"  # the SOP class of a DICOM SEG


def is_dicom_seg(path) -> bool:
    """A DICOM Segmentation object (a file, told by its SOP class), such as :func:`write_dicom_seg` writes."""
    path = Path(path)
    if not (path.is_file() and is_dicom_file(path)):
        return False
    try:
        return _read_file(*_identity(path))[0] == SEGMENTATION_STORAGE
    except InputError:  # images it cannot read (a multi-frame file without positions): not a SEG
        return False


def read_dicom_seg(path) -> Volume:
    """A DICOM SEG as a label map in our values, on the grid of its frames (their positions, orientation and
    spacing; slices ordered along the normal of the rows and columns, as :func:`read_dicom` orders a stack's):
    each segment taken as ours by its SNOMED CT property type (``labels.DICOM_CODES``), else by its label
    ("LV blood pool", any case); other segments (a left atrium, say) left out, saying so. Overlapping
    segments, which one label map cannot hold, are refused."""
    import highdicom as hd

    from .labels import DICOM_CODES, SEGMENTS, remap

    try:
        seg = hd.seg.segread(path)
        volume = seg.get_volume(combine_segments=True, dtype=np.uint8)  # voxel = segment number
    except (AttributeError, KeyError, RuntimeError, TypeError, ValueError) as e:
        raise InputError(f"{path}: cannot be read as one label map ({e})") from None
    by_code = {DICOM_CODES[name][0]: value for value, (name, _) in SEGMENTS.items()}
    by_name = {name.casefold(): value for value, (name, _) in SEGMENTS.items()}
    mapping, left_out = {}, []
    for item in seg.SegmentSequence:
        code = item.SegmentedPropertyTypeCodeSequence[0].CodeValue
        value = by_code.get(str(code)) or by_name.get(str(item.SegmentLabel).casefold())
        mapping[int(item.SegmentNumber)] = value or 0
        if not value:
            left_out.append(f"{item.SegmentLabel} ({item.SegmentedPropertyTypeCodeSequence[0].CodeMeaning})")
    if left_out:
        log.warning("%s: left out segments that are none of ours: %s", path, ", ".join(left_out))
    array = remap(np.asarray(volume.array), {0: 0, **mapping}).transpose(2, 1, 0)  # (slice, row, column) -> x, y, z
    affine = np.asarray(volume.affine, float)
    axes = affine[:3, [2, 1, 0]]  # along columns (x), rows (y), slices (z)
    spacing = np.linalg.norm(axes, axis=0)
    direction, origin = axes / spacing, affine[:3, 3]
    if array.shape[2] > 1 and direction[:, 2] @ np.cross(direction[:, 0], direction[:, 1]) < 0:
        array, origin = array[:, :, ::-1], origin + axes[:, 2] * (array.shape[2] - 1)
        direction[:, 2] *= -1
    return Volume(np.ascontiguousarray(array), Geometry(array.shape, spacing, origin, direction))


def seg_sources(path) -> frozenset[tuple[str, int]]:
    """The images a DICOM SEG labels: (SOP instance UID, frame number; 0 for a single-frame image) of each,
    from its frames' derivation references, else from its list of referenced instances."""
    header = _header(path)
    sources = {(str(source.ReferencedSOPInstanceUID), int(source.get("ReferencedFrameNumber") or 0))
               for frame in header.get("PerFrameFunctionalGroupsSequence", [])
               for derivation in frame.get("DerivationImageSequence", [])
               for source in derivation.get("SourceImageSequence", [])}
    return frozenset(sources or {(str(instance.ReferencedSOPInstanceUID), 0)
                                 for series in header.get("ReferencedSeriesSequence", [])
                                 for instance in series.get("ReferencedInstanceSequence", [])})


def seg_frame(path, source, study: str | None = None, series: str | None = None) -> int | None:
    """The frame of a stack or cine (``source``, ``study``, ``series`` as :func:`read_dicom` takes them) whose
    images a DICOM SEG labels (:func:`seg_sources`), or None where it labels none of its frames alone."""
    stack, _ = _stack(source, study, series)
    labelled = seg_sources(path)
    return next((t for t in range(len(stack[0])) if labelled <= {column[t].sop for column in stack}), None)


def read_dicom_segs(folder) -> dict[str, tuple[Path, Volume]]:
    """Every DICOM SEG in a folder and its subfolders, its file and label map (:func:`read_dicom_seg`), by name:
    its series description
    ("ACNN labels"), followed where its series has several (a cine's frames) by its content description ("ACNN
    labels, frame 1 of 30", as ours say it), else its instance number, else its file's name; none in a folder of
    images alone."""
    headers = {p: _header(p) for p in dicom_files(folder) if is_dicom_seg(p)}
    series = [str(h.get("SeriesInstanceUID", "")) for h in headers.values()]
    labels = {}
    for (path, header), uid in zip(headers.items(), series):
        stem = path.name.split(".")[0]
        name = str(header.get("SeriesDescription", "") or stem)
        if series.count(uid) > 1:
            content = header.get("ContentDescription")
            name += f", {content}" if content else f" {header.get('InstanceNumber', '') or stem}"
        if name in labels:  # two series of one description
            name += f" {stem}"
        labels[name] = path, read_dicom_seg(path)
    return labels


# type 2 attributes of the patient and study (present, may be empty) that a SEG copies from its source images
_EMPTY_ALLOWED = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID",
                  "AccessionNumber", "ReferringPhysicianName")


def write_dicom_seg(frames: list[Volume] | dict[int, Volume], source, out, names: dict, study: str | None = None,
                    series: str | None = None, overwrite: bool = False) -> list[Path]:
    """Label maps on a DICOM stack's or cine's own grid -- one per frame, as :func:`read_dicom` read ``source``
    (``study``, ``series``), or some frames' ({frame index: labels}, a cine's ED and ES) -- written as a DICOM
    Segmentation series into the folder ``out``: one object per frame (``SEG_001.dcm`` for the first frame ...;
    a SEG holds one position once, so a cine's frames are instances of one series), each on
    its frame's source images (their study, frame of reference and patient; per-frame references to the image
    each SEG frame labels), every label value in ``names`` ({value: name}) a segment (binary, the structure's
    code from ``labels.DICOM_CODES``). Maps on another grid (a sub-pixel model's HR output) are refused: a SEG
    labels the images themselves. Nothing is written unless every object can be."""
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    from . import __version__
    from .labels import DICOM_CODES

    stack, geometry = _stack(source, study, series)
    if not isinstance(frames, dict):  # every frame's
        if len(frames) != len(stack[0]):
            raise InputError(f"{len(frames)} label maps for {source}'s {len(stack[0])} frames")
        frames = dict(enumerate(frames))
    if not all(0 <= t < len(stack[0]) for t in frames):
        raise InputError(f"frames {sorted(frames)} asked of {source}'s {len(stack[0])} frames")
    frames = dict(sorted(frames.items()))
    for t, labels in frames.items():
        if not labels.geometry.same_as(geometry):
            raise InputError(f"label map {t} lies on {labels.shape} voxels of {labels.spacing} mm, not on the grid "
                             f"of {source}'s images ({geometry.shape}, {geometry.spacing} mm): a DICOM SEG labels "
                             f"the images themselves (a sub-pixel model's HR output cannot be one)")
    out = Path(out)
    targets = [out / f"SEG_{t + 1:03d}.dcm" for t in frames]
    if any(p.exists() for p in targets) and not overwrite:
        raise OutputExists(next(p for p in targets if p.exists()))
    headers = {}
    for image in (i for s in stack for i in s):
        if image.file not in headers:
            ds = headers[image.file] = _header(image.file)
            groups = [*ds.get("SharedFunctionalGroupsSequence", []), *ds.get("PerFrameFunctionalGroupsSequence", [])]
            for item in [ds, *(m for g in groups for m in g.get("PixelMeasuresSequence", []))]:
                if not item.get("SliceThickness"):  # highdicom needs it (DICOM lets it be absent or empty)
                    item.SliceThickness = image.thickness
            if not groups and "PixelSpacing" not in ds:  # read as 1 mm (a secondary capture's)
                ds.PixelSpacing = list(image.spacing[::-1])
            for key in _EMPTY_ALLOWED:  # the SEG copies them; anonymised exports drop some
                if key not in ds:
                    setattr(ds, key, "")
    first = headers[stack[0][0].file]
    for key in ("FrameOfReferenceUID", "SOPInstanceUID", "SOPClassUID", "StudyInstanceUID"):
        if key not in first:
            raise InputError(f"{stack[0][0].file} has no {key}: a DICOM SEG cannot refer to its images")
    algorithm = hd.AlgorithmIdentificationSequence(name="ACNN", version=__version__,
                                                   family=codes.cid7162.ArtificialIntelligence)
    segments = []
    for value in range(1, max(names) + 1):
        name = names.get(value, f"label {value}")
        code, meaning = DICOM_CODES.get(name, ("85756007", "Tissue"))
        segments.append(hd.seg.SegmentDescription(
            value, name, segmented_property_category=codes.SCT.AnatomicalStructure,
            segmented_property_type=hd.sr.CodedConcept(code, "SCT", meaning),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm))
    spacing_xy, normal = geometry.spacing[:2], geometry.direction[:, 2]
    orientation = hd.PlaneOrientationSequence(hd.CoordinateSystemNames.PATIENT,
                                              [float(v) for v in stack[0][0].orientation])
    measures = hd.PixelMeasuresSequence(pixel_spacing=[float(spacing_xy[1]), float(spacing_xy[0])],  # rows, columns
                                        slice_thickness=float(stack[0][0].thickness),
                                        spacing_between_slices=float(geometry.spacing[2]))
    series, objects = hd.UID(), []
    number = int(first.get("SeriesNumber") or 0) + 1000  # numbered after its source, as a scanner's derived series
    for t, labels in frames.items():
        images = [s[t] for s in stack]  # by position along the normal
        sources = [headers[f] for f in dict.fromkeys(i.file for i in images)]
        positions = [hd.PlanePositionSequence(hd.CoordinateSystemNames.PATIENT, [float(v) for v in i.position])
                     for i in images]
        array = labels.array.transpose(2, 1, 0).astype(np.uint8)  # (x, y, z) -> frames of (rows, columns)
        try:
            seg = hd.seg.Segmentation(
                sources[:1], array, hd.seg.SegmentationTypeValues.BINARY, segments, series, number, hd.UID(),
                t + 1, "ACNN for 3D Slicer", "ACNN", __version__, "-", plane_positions=positions,
                plane_orientation=orientation, pixel_measures=measures, further_source_images=sources[1:] or None,
                omit_empty_frames=False, series_description="ACNN labels", content_label="ACNN",
                content_description=f"frame {t + 1} of {len(stack[0])}" if len(stack[0]) > 1 else None)
        except (AttributeError, TypeError, ValueError) as e:  # what highdicom finds missing or wrong in the source
            raise InputError(f"{source}: a DICOM SEG cannot refer to these images: {e}") from None
        # highdicom puts the source's pixel measures in place of ours where the pixel spacing agrees, its slice
        # spacing too, which classic files may state wrongly (1 mm for a 2-D image); a reader filling omitted
        # frames goes by it: ours, as the frames' positions give it
        for group in seg.SharedFunctionalGroupsSequence:
            for item in group.get("PixelMeasuresSequence", []):
                item.SpacingBetweenSlices = measures[0].SpacingBetweenSlices
        by_depth = {round(float(i.position @ normal), 2): i for i in images}
        for item in seg.PerFrameFunctionalGroupsSequence:  # each SEG frame -> the image it labels (highdicom
            image = by_depth[round(float(np.asarray(item.PlanePositionSequence[0].ImagePositionPatient,
                                                    float) @ normal), 2)]  # matches a cine's by position alone)
            reference = pydicom.Dataset()
            reference.ReferencedSOPClassUID = headers[image.file].SOPClassUID
            reference.ReferencedSOPInstanceUID = headers[image.file].SOPInstanceUID
            if "NumberOfFrames" in headers[image.file]:
                reference.ReferencedFrameNumber = image.frame + 1
            reference.PurposeOfReferenceCodeSequence = [hd.sr.CodedConcept(
                "121322", "DCM", "Source image for image processing operation")]
            reference.SpatialLocationsPreserved = "YES"
            derivation = pydicom.Dataset()
            derivation.DerivationCodeSequence = [hd.sr.CodedConcept("113076", "DCM", "Segmentation")]
            derivation.SourceImageSequence = [reference]
            item.DerivationImageSequence = [derivation]
        objects.append(seg)
    out.mkdir(parents=True, exist_ok=True)
    for seg, path in zip(objects, targets):
        seg.save_as(path)
    return targets

