"""Phantom subjects end to end: anatomy -> images -> files.

Layout written by :func:`write_population` (``acnn phantom``)::

    DIR/dataset.json                    generator settings, subject list
    DIR/subjectNNN/info.json            group, volumes, EF, parameters, motion
    DIR/subjectNNN/{ED,ES}/lr.nii.gz    MR: thick-slice LR stack (10 mm)
    DIR/subjectNNN/{ED,ES}/hr.nii.gz    MR: HR intensity (1.25 x 1.25 x 2 mm)
    DIR/subjectNNN/{ED,ES}/hr_gt.nii.gz MR: HR labels (0 bg, 1 LV blood pool, 2 LV myocardium)
    DIR/subjectNNN/{ED,ES}/us.nii.gz    US: 3-D echo image (1 mm isotropic)
    DIR/subjectNNN/{ED,ES}/us_gt.nii.gz US: LV cavity label (1)

Default MR grid: 96 x 96 x 60 voxels of 1.25 x 1.25 x 2 mm = 120 mm cube. The
largest DCM heart (LVEDV 320 ml, wall up to 12 mm) is about 100 mm across and
110 mm long; 120 mm keeps a 10 mm margin with position and axis jitter, and the
in-plane size divides by the networks' strides (96 = 2^5 * 3); 60 HR slices
make 12 LR slices of 10 mm (K = 5). The US grid is 112 x 112 x 120 of 1 mm.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import InputError
from ..io import write_volume
from ..labels import LV_BLOOD_POOL
from ..volume import Geometry, Volume
from .acquisition import AcquisitionConfig, acquire
from .anatomy import GROUPS, Subject, in_ranges, label_map, measure, sample_subject, ventricle_fields
from .mr import MRConfig, coil_bias, render_mr, rician
from .ultrasound import USConfig, render_us

PHASES = ("ED", "ES")


@dataclass(frozen=True)
class PhantomConfig:
    """Everything that decides a phantom population (with the seed)."""

    modality: str = "mr"  # "mr" or "us"
    hr_shape: tuple[int, int, int] = (96, 96, 60)
    hr_spacing: tuple[float, float, float] = (1.25, 1.25, 2.0)
    us_shape: tuple[int, int, int] = (112, 112, 120)
    us_spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    mr: MRConfig = field(default_factory=MRConfig)
    acquisition: AcquisitionConfig = field(default_factory=AcquisitionConfig)
    us: USConfig = field(default_factory=USConfig)
    groups: tuple[str, ...] = GROUPS  # cycled by subject index

    def grid(self) -> Geometry:
        shape, spacing = (self.hr_shape, self.hr_spacing) if self.modality == "mr" else (self.us_shape, self.us_spacing)
        return Geometry(shape, spacing).centered_at((0.0, 0.0, 0.0))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PhantomConfig":
        """The inverse of :meth:`to_dict` (a ``dataset.json``'s ``config``)."""
        d = dict(d)
        parts = {"mr": MRConfig, "acquisition": AcquisitionConfig, "us": USConfig}
        for key, kind in parts.items():
            if key in d:
                d[key] = kind(**d[key])
        for key in ("hr_shape", "hr_spacing", "us_shape", "us_spacing", "groups"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)


@dataclass
class PhantomSubject:
    """A generated subject: per phase its volumes, plus its description (``info``)."""

    subject: Subject
    phases: dict  # phase -> {"lr": Volume, "hr": Volume, "hr_gt": Volume} or {"us": Volume, "us_gt": Volume}
    info: dict


def _draw_anatomy(index: int, seed: int, config: PhantomConfig, grid: Geometry):
    """Draw subject ``index`` until its measured volumes fall in its group's ranges."""
    group = config.groups[index % len(config.groups)]
    for attempt in range(20):
        subject = sample_subject(index, seed, group=group, geometry=grid, attempt=attempt)
        fields = {ph: ventricle_fields(grid, getattr(subject, ph.lower())) for ph in PHASES}
        labels = {ph: label_map(fields[ph]) for ph in PHASES}
        measured = {ph: measure(labels[ph], grid) for ph in PHASES}
        if in_ranges(group, measured["ED"], measured["ES"]):
            return subject, fields, labels, measured
    raise RuntimeError(f"subject {index}: could not draw a {group} heart within its ranges")


def generate_subject(index: int, seed: int, config: PhantomConfig = PhantomConfig(),
                     motion: np.ndarray | None = None) -> PhantomSubject:
    """Subject ``index`` of the population ``seed`` (deterministic; independent of the population size)."""
    if config.modality not in ("mr", "us"):
        raise InputError(f"unknown modality {config.modality!r}; use 'mr' or 'us'")
    grid = config.grid()
    subject, fields, labels, measured = _draw_anatomy(index, seed, config, grid)
    rng = np.random.default_rng([seed, index, 1])
    phases = {}
    if config.modality == "mr":
        bias = coil_bias(grid.shape, rng, config.mr.bias)
        for ph in PHASES:
            clean = render_mr(grid, fields[ph], rng, config.mr, bias_field=bias)
            lr, lr_geom, motion = acquire(clean, grid, config.acquisition, rng, motion)
            phases[ph] = {
                "lr": Volume(lr, lr_geom),
                "hr": Volume(rician(clean, config.mr.noise, rng), grid),
                "hr_gt": Volume(labels[ph], grid),
            }
    else:
        for ph in PHASES:
            image, probe = render_us(grid, fields[ph], rng, config.us)
            cavity = (labels[ph] == LV_BLOOD_POOL).astype(np.uint8)
            phases[ph] = {"us": Volume(image, grid), "us_gt": Volume(cavity, grid)}

    edv, esv = measured["ED"]["lv_volume_ml"], measured["ES"]["lv_volume_ml"]
    info = {
        "acnn_version": __version__,
        "subject": f"subject{index:03d}",
        "index": index,
        "seed": seed,
        "modality": config.modality,
        "group": subject.group,
        "phases": {ph: {k: round(v, 3) for k, v in measured[ph].items()} for ph in PHASES},
        "ef_pct": round(100.0 * (edv - esv) / edv, 3),
        "parameters": subject.to_dict(),
    }
    if config.modality == "mr":
        info["motion"] = {
            "description": "per LR slice: in-plane shift (mm) and rotation (deg) about the slice centre; "
                           "shared by ED and ES",
            "slices": [{"slice": k, "tx_mm": round(float(m[0]), 4), "ty_mm": round(float(m[1]), 4),
                        "rotation_deg": round(float(m[2]), 4)} for k, m in enumerate(motion)],
        }
    return PhantomSubject(subject, phases, info)


def write_subject(ps: PhantomSubject, out: Path) -> Path:
    folder = Path(out) / ps.info["subject"]
    for ph, volumes in ps.phases.items():
        for name, volume in volumes.items():
            write_volume(volume, folder / ph / f"{name}.nii.gz", overwrite=True)
    (folder / "info.json").write_text(json.dumps(ps.info, indent=1), encoding="utf-8")
    return folder


def prepare_output(out: Path, overwrite: bool) -> Path:
    """Refuse a non-empty output folder unless ``overwrite`` (then clear it)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a folder")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise InputError(f"{out} exists and is not empty; pass --overwrite to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_population(out, subjects: int, seed: int, config: PhantomConfig = PhantomConfig(),
                     overwrite: bool = False, on_subject=None) -> list[dict]:
    """Generate and write ``subjects`` subjects; returns their info dicts.

    ``on_subject``: optional callable(PhantomSubject) after each subject is written
    (progress bars, previews).
    """
    if subjects < 1:
        raise InputError("--subjects must be at least 1")
    out = prepare_output(out, overwrite)
    infos = []
    for i in range(subjects):
        ps = generate_subject(i, seed, config)
        write_subject(ps, out)
        infos.append(ps.info)
        if on_subject:
            on_subject(ps)
    dataset = {
        "acnn_version": __version__,
        "kind": "acnn-phantom",
        "modality": config.modality,
        "seed": seed,
        "subjects": [{"name": i["subject"], "group": i["group"], "ef_pct": i["ef_pct"]} for i in infos],
        "config": config.to_dict(),
    }
    (out / "dataset.json").write_text(json.dumps(dataset, indent=1), encoding="utf-8")
    return infos


def with_motion(config: PhantomConfig, motion_mm: float, rotation_deg: float | None = None) -> PhantomConfig:
    return replace(config, acquisition=replace(config.acquisition, motion_mm=motion_mm, rotation_deg=rotation_deg))
