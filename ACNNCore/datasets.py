"""Readers of data sets on disk, all yielding :class:`Case` objects.

- the phantom layout written by ``acnn phantom`` (HR ground truth),
- the ACDC layout (``patientNNN/patientNNN_frameXX[_gt].nii.gz`` + ``Info.cfg``),
- a plain folder of image/label pairs: ``NAME.nii.gz`` + ``NAME_gt.nii.gz``
  side by side, or ``images/NAME.nii.gz`` + ``labels/NAME.nii.gz``.

Labels are always ours (0 background, 1 LV blood pool, 2 LV myocardium,
3 RV blood pool); ACDC's are mapped on read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError
from .dicom import is_dicom_folder
from .io import SUFFIXES, read_labels, read_volume, strip_suffix
from .labels import ACDC_TO_OURS, remap
from .volume import Volume


@dataclass
class Case:
    """One image (and its labels, if known) with what is known about it."""

    name: str
    image: Volume  # the network input: LR stack, US volume, or a real cine frame
    labels: Volume | None = None  # ground truth (HR for phantoms, acquired grid for real data)
    meta: dict = field(default_factory=dict)  # group, phase, subject, ...
    hr_image: Volume | None = None  # HR intensity image (phantom MR only): the SR target

    @property
    def subject(self) -> str:
        """Whom the image is of (a patient's or phantom subject's phases share it; else the case's name)."""
        return self.meta.get("subject", self.name)


# --- phantom -------------------------------------------------------------------------

def is_phantom(root) -> bool:
    return (Path(root) / "dataset.json").is_file()


def phantom_description(root) -> dict:
    """A phantom data set's ``dataset.json`` (how ``acnn phantom`` made it: modality, seed, generator settings,
    subjects), checked: an :class:`InputError` for a folder without one or with one cut short or edited."""
    root = Path(root)
    if not is_phantom(root):
        raise InputError(f"{root} is not a phantom data set (no dataset.json); make one with `acnn phantom`")
    dataset = _json_object(root / "dataset.json", ("modality", "seed", "config", "subjects"),
                           "a phantom data set's description")
    subjects, config = dataset["subjects"], dataset["config"]
    if not (isinstance(subjects, list) and all(isinstance(e, dict) and isinstance(e.get("name"), str)
                                               for e in subjects)) \
            or not isinstance(config, dict) or "motion_mm" not in (config.get("acquisition") or {}):
        raise InputError(f"{root / 'dataset.json'} is not a phantom data set's description as `acnn phantom` "
                         f"writes it (subjects by name, the generator's settings)")
    return dataset


def _json_object(path: Path, keys, what: str) -> dict:
    """A JSON file holding an object with ``keys``; else an :class:`InputError` saying what it should be."""
    try:
        about = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path} is missing: {what}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path} is not valid JSON ({e}): {what}") from None
    missing = [k for k in keys if k not in about] if isinstance(about, dict) else list(keys)
    if missing:
        raise InputError(f"{path} lacks {', '.join(missing)}: not {what} as `acnn phantom` writes it")
    return about


def read_phantom(root, hr_image: bool = False) -> list[Case]:
    """Cases of a phantom data set, subject by subject, ED then ES.

    MR: input = LR stack, labels = HR label map, and with ``hr_image`` the HR
    intensity image (the super-resolution target). US: the echo volume and its
    cavity label.
    """
    root = Path(root)
    dataset = phantom_description(root)
    modality = dataset["modality"]
    cases = []
    for entry in dataset["subjects"]:
        folder = root / entry["name"]
        info = _json_object(folder / "info.json", ("group", "ef_pct"), "a phantom subject's description")
        for phase in ("ED", "ES"):
            d = folder / phase
            meta = {"subject": entry["name"], "group": info["group"], "phase": phase, "modality": modality,
                    "ef_pct": info["ef_pct"], "motion_mm": dataset["config"]["acquisition"]["motion_mm"]}
            hr = None
            if modality == "mr":
                image, labels = read_volume(d / "lr.nii.gz"), read_labels(d / "hr_gt.nii.gz")
                hr = read_volume(d / "hr.nii.gz") if hr_image else None
            else:
                image, labels = read_volume(d / "us.nii.gz"), read_labels(d / "us_gt.nii.gz", (0, 1))
            cases.append(Case(f"{entry['name']}_{phase}", image, labels, meta, hr))
    return cases


# --- ACDC ------------------------------------------------------------------------------

def read_acdc_info(path) -> dict:
    """``Info.cfg`` as a dict (ED and ES frame numbers as int, Group, Height, Weight...)."""
    info = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if ":" in line:
            key, value = (s.strip() for s in line.split(":", 1))
            if key in ("ED", "ES", "NbFrame"):
                if not value.isdigit():
                    raise InputError(f"{path}: {key} is a frame number, not {value!r}")
                value = int(value)
            info[key] = value
    missing = {"ED", "ES", "Group"} - set(info)
    if missing:
        raise InputError(f"{path} lacks {sorted(missing)}")
    return info


def group_of(path) -> str:
    """The group (pathology) of the subject a file belongs to, where its data set says it: an ACDC patient's
    ``Info.cfg`` beside the file, a phantom subject's ``info.json`` beside it or one folder up (``subjectNNN/ED/``);
    "" otherwise."""
    folder = Path(path).parent
    if (folder / "Info.cfg").is_file():
        return read_acdc_info(folder / "Info.cfg")["Group"]
    for info in (folder / "info.json", folder.parent / "info.json"):
        try:  # another program's info.json (or none) says nothing of a group
            about = json.loads(info.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(about, dict) and "group" in about:
            return str(about["group"])
    return ""


def is_acdc(root) -> bool:
    """An ACDC data folder (patientNNN/Info.cfg) or one patient's folder (Info.cfg beside its frames)."""
    root = Path(root)
    return root.is_dir() and ((root / "Info.cfg").is_file()
                              or any(p.is_dir() and (p / "Info.cfg").is_file() for p in root.glob("patient*")))


def read_acdc_patient(folder) -> list[Case]:
    """The ED and ES cases of one ACDC patient folder, labels mapped to ours."""
    folder = Path(folder)
    info_path = folder / "Info.cfg"
    if not info_path.is_file():
        raise InputError(f"{folder} is not an ACDC patient folder (no Info.cfg)")
    info = read_acdc_info(info_path)
    cases = []
    for phase in ("ED", "ES"):
        stem = f"{folder.name}_frame{info[phase]:02d}"
        image = read_volume(folder / f"{stem}.nii.gz")
        gt_path = folder / f"{stem}_gt.nii.gz"
        labels = None
        if gt_path.is_file():
            raw = read_labels(gt_path, allowed=(0, 1, 2, 3))
            labels = raw.with_array(remap(raw.array, ACDC_TO_OURS))
            if not labels.geometry.same_as(image.geometry, atol=1e-3):
                raise InputError(f"{gt_path} and its image lie on different grids")
        meta = {"subject": folder.name, "group": info["Group"], "phase": phase, "frame": info[phase],
                "modality": "mr", "height_cm": info.get("Height"), "weight_kg": info.get("Weight")}
        cases.append(Case(f"{folder.name}_{phase}", image, labels, meta))
    return cases


def acdc_patients(root) -> list[Path]:
    """The patient folders (patientNNN/Info.cfg) of an ACDC data folder, sorted; a patient's folder itself."""
    root = Path(root)
    if (root / "Info.cfg").is_file():
        return [root]
    patients = sorted(p for p in root.glob("patient*") if (p / "Info.cfg").is_file())
    if not patients:
        raise InputError(f"no ACDC patient folders (patientNNN/Info.cfg) under {root}")
    return patients


def read_acdc(root) -> list[Case]:
    return [case for p in acdc_patients(root) for case in read_acdc_patient(p)]


# --- plain folders --------------------------------------------------------------------

LABEL_SUFFIXES = ("_gt", "_label", "_seg")


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(SUFFIXES))


def subject_of(name: str) -> str:
    """A plain folder's case name without its phase, as ``acnn segment`` names its outputs (``patient1_ED``,
    ``patient1_frame12`` -> ``patient1``): a subject's phases are held out for validation together."""
    return re.sub(r"_(ED|ES|frame\d+)$", "", name, flags=re.IGNORECASE) or name


def folder_images(root) -> dict[str, Path]:
    """A plain folder's images (:func:`read_folder`'s layouts, label maps left out), by case name: what ``acnn
    segment`` reads one at a time, each a stack or a 4-D cine; {} for a phantom or ACDC data set, which
    :func:`read_dataset` reads by its own layout."""
    if is_phantom(root) or is_acdc(root):
        return {}
    return {name: image for name, image, _ in _folder_pairs(root)}


def read_folder(root, labels_required: bool = False) -> list[Case]:
    """Image/label pairs from ``NAME`` + ``NAME_gt`` files or ``images/`` + ``labels/`` folders; the label maps
    read as ``acnn evaluate`` reads them (:func:`~ACNNCore.evaluation.read_label_map`): a Slicer ``.seg.nrrd``
    by its segments' names, whatever values they have in the file."""
    from .evaluation import read_label_map

    cases = []
    for name, image_path, label_path in _folder_pairs(root):
        if label_path is None and labels_required:
            raise InputError(f"{image_path} has no label map (expected {name}_gt or labels/{image_path.name})")
        image = read_volume(image_path)
        labels = read_label_map(label_path, "auto") if label_path else None
        cases.append(Case(name, image, labels, {"subject": subject_of(name)}))
    return cases


def _folder_pairs(root) -> list[tuple[str, Path, Path | None]]:
    """A plain folder's (case name, image, label map or None), from ``NAME`` + ``NAME_gt`` files or ``images/``
    + ``labels/`` folders; none is an error saying what the folder holds instead."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"no such folder: {root}")
    if (root / "images").is_dir():
        pairs = []
        for image in _images_in(root / "images"):
            match = [p for p in _images_in(root / "labels") if strip_suffix(p) == strip_suffix(image)] \
                if (root / "labels").is_dir() else []
            pairs.append((strip_suffix(image), image, match[0] if match else None))
    else:
        files = _images_in(root)
        by_name = {strip_suffix(p): p for p in files}
        pairs = []
        for name, image in by_name.items():
            if name.endswith(LABEL_SUFFIXES):
                continue
            label = next((by_name[name + s] for s in LABEL_SUFFIXES if name + s in by_name), None)
            pairs.append((name, image, label))
    if not pairs:
        dicom = [d for d in sorted(root.iterdir()) if is_dicom_folder(d)]
        if dicom:  # a study's folder of series: one stack at a time
            raise InputError(f"{root} holds folders of DICOM files, not a data set: give one of them (e.g. "
                             f"{dicom[0]})")
        raise InputError(f"no images ({', '.join(SUFFIXES)}) in {root}")
    return pairs


def read_dataset(root, hr_image: bool = False, labels_required: bool = False) -> list[Case]:
    """Any supported layout, recognised from its files."""
    root = Path(root)
    if not root.exists():
        raise InputError(f"no such data folder: {root}")
    if is_phantom(root):
        return read_phantom(root, hr_image=hr_image)
    if is_acdc(root):
        return read_acdc(root)
    return read_folder(root, labels_required=labels_required)
