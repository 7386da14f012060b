"""Model bundles: ``model.safetensors`` (weights) + ``model.json`` (everything else).

``model.json`` holds the format version, the task and architecture with its
config, the input/output grids (spacing, shape, K), intensity normalisation,
label names and colours, latent statistics (shape models), how the model was
trained (data, command, config) and its validation metrics, and the SHA-256 of
the weights file. Loading never unpickles anything: safetensors holds plain
tensors, and a file that does not match its description is refused with a
clear :class:`InputError`.

An ensemble is a folder of such bundles with an ``ensemble.json`` naming them
(networks of one recipe trained with different seeds, whose outputs
``ACNNCore.inference.Segmenter`` averages): :func:`save_ensemble` writes one
(``acnn ensemble``), :func:`members` gives their folders, and :func:`read_meta`
describes it by its first member.
"""

from __future__ import annotations

import hashlib
import json
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .errors import InputError, OutputExists
from .io import atomic_target

if TYPE_CHECKING:  # torch, safetensors and the networks load where weights are read or written, so that
    import torch   # reading a description (acnn models, acnn info MODEL) takes no time

FORMAT = "acnn-bundle"
FORMAT_VERSION = 1
ENSEMBLE_FILE, ENSEMBLE_FORMAT = "ensemble.json", "acnn-ensemble"  # {"format", "name", "members": [folders]}
TASKS = ("seg", "sr", "ae", "tl")
REQUIRED = {"task": str, "architecture": str, "config": dict}  # in every model.json: what for, which network


def _models_dir() -> Path:
    """The bundled models: ``Resources/Models`` beside ACNNCore (a clone, an editable install, the Slicer
    extension), else where a wheel (``pip install .``) put them, ``share/acnn-slicer/Models`` under the
    environment's or the user's data folder."""
    beside = Path(__file__).resolve().parent.parent / "Resources" / "Models"
    installed = [Path(sysconfig.get_path("data", scheme)) / "share" / "acnn-slicer" / "Models"
                 for scheme in (sysconfig.get_default_scheme(), sysconfig.get_preferred_scheme("user"))]
    return next((d for d in (beside, *installed) if d.is_dir()), beside)


MODELS_DIR = _models_dir()
# a training run's model bundles (``ACNNCore.training`` writes them): its best epoch's, its last epoch's
BEST_MODEL, FINAL_MODEL = "model", "model-final"


@dataclass
class Bundle:
    """A loaded model and its description."""

    model: torch.nn.Module
    meta: dict
    path: Path | None = None

    @property
    def task(self) -> str:
        return self.meta["task"]

    @property
    def name(self) -> str:
        return self.meta.get("name", self.path.name if self.path else "model")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write_text(path: Path, text: str) -> None:
    with atomic_target(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


def save_bundle(model: torch.nn.Module, folder, meta: dict, overwrite: bool = False) -> Path:
    """Write ``folder/model.safetensors`` and ``folder/model.json`` (each atomically)."""
    folder = Path(folder)
    for key in ("task", "architecture", "config"):
        if key not in meta:
            raise ValueError(f"bundle metadata needs {key!r}")
    if (folder / "model.json").exists() and not overwrite:
        raise OutputExists(folder, f"{folder} already holds a model; pass --overwrite to replace it")
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_target(folder / "model.safetensors", ".safetensors") as tmp:
        save_file(state, tmp)
    full = {"format": FORMAT, "format_version": FORMAT_VERSION, "acnn_version": __version__, **meta,
            "weights_sha256": _sha256(folder / "model.safetensors")}
    _atomic_write_text(folder / "model.json", json.dumps(full, indent=1))
    return folder


def read_meta(folder) -> dict:
    """A bundle's description; an ensemble's is its first member's, named as the ensemble, with ``members``
    (how many)."""
    folder = Path(folder)
    if folder.is_file() and folder.name == "model.json":
        folder = folder.parent
    if (folder / ENSEMBLE_FILE).is_file():
        about = _ensemble(folder)
        listed = _members(folder, about)
        return {**read_meta(listed[0]), "name": about.get("name", folder.name), "members": len(listed),
                **({"about": about["about"]} if isinstance(about.get("about"), str) else {})}
    path = folder / "model.json"
    if not path.is_file():
        raise InputError(f"{folder} is not a model bundle (no model.json)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(f"{path} is not valid JSON: {e.msg} (line {e.lineno})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else f"none: a JSON {type(meta).__name__}"
        raise InputError(f"{path} is not an ACNN model description (format {found!r})")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise InputError(f"{path} has format version {meta['format_version']}; this ACNN reads up to "
                         f"{FORMAT_VERSION}: update acnn")
    missing = [key for key, kind in REQUIRED.items() if not isinstance(meta.get(key), kind)]
    if missing:
        raise InputError(f"{path} lacks {', '.join(missing)} (or holds the wrong kind of value there): not a "
                         f"complete model description; save bundles with acnn train or save_bundle")
    return meta


def resolve(name_or_path) -> Path:
    """A bundle folder from a path (a training run's folder: its best model, ``RUN/model``) or the name of a
    bundled model (``Resources/Models/NAME``)."""
    path = Path(name_or_path)
    if path.is_file() and path.name == "model.json":
        return path.parent
    if path.is_dir():
        run = not (path / "model.json").is_file() and (path / BEST_MODEL / "model.json").is_file()
        return path / BEST_MODEL if run else path
    bundled = MODELS_DIR / str(name_or_path)
    if bundled.is_dir():
        return bundled
    known = ", ".join(available()) or "none"
    raise InputError(f"no model {str(name_or_path)!r}: not a bundle folder, nor a bundled model ({known})")


def available() -> list[str]:
    """Names of the bundled models (ensembles too)."""
    if not MODELS_DIR.is_dir():
        return []
    return sorted(p.name for p in MODELS_DIR.iterdir() if is_bundle(p))


def is_bundle(folder: Path) -> bool:
    """Whether a folder holds a model: a bundle's model.json or an ensemble's ensemble.json."""
    return (folder / "model.json").is_file() or (folder / ENSEMBLE_FILE).is_file()


def _ensemble(folder: Path) -> dict:
    path = folder / ENSEMBLE_FILE
    try:
        about = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(f"{path} is not valid JSON: {e.msg} (line {e.lineno})") from None
    listed = about.get("members") if isinstance(about, dict) else None
    if not (isinstance(listed, list) and listed and all(isinstance(m, str) for m in listed)
            and about.get("format") == ENSEMBLE_FORMAT):
        raise InputError(f"{path} is not an ACNN ensemble (format {ENSEMBLE_FORMAT!r} with a list of members)")
    return about


def members(name_or_path) -> list[Path]:
    """The bundle folders of a model: its own, or an ensemble's members (folders inside it)."""
    folder = resolve(name_or_path)
    return _members(folder, _ensemble(folder)) if (folder / ENSEMBLE_FILE).is_file() else [folder]


def _members(folder: Path, about: dict) -> list[Path]:
    """The member folders an ensemble's description (:func:`_ensemble`) names, each a bundle inside it."""
    out = []
    for m in about["members"]:
        member = (folder / m).resolve()
        if folder.resolve() not in member.parents or not (member / "model.json").is_file():
            raise InputError(f"{folder / ENSEMBLE_FILE} names a member {m!r} that is not a bundle inside {folder}")
        out.append(folder / m)
    return out


def label_names(meta: dict) -> dict:
    """A bundle's labels, value -> name."""
    return {int(k): v["name"] for k, v in meta.get("labels", {}).items()}


def _ensemble_facts(meta: dict) -> dict:
    """What the members of an ensemble must share: task, label names, output spacing, input handling."""
    spec = meta.get("input", {})
    return {"task": meta.get("task"), "labels": label_names(meta),
            "output spacing": meta.get("output", {}).get("spacing"), "normalization": spec.get("normalization"),
            "slices": spec.get("slices"), "slice order": spec.get("slice_order")}


def check_ensemble(folders: list, metas: list) -> None:
    """That bundles (their folders and descriptions) can form an ensemble: each shares the first one's task,
    label names, output spacing and input handling; else one clear error naming what differs."""
    first = _ensemble_facts(metas[0])
    for folder, meta in zip(folders[1:], metas[1:]):
        theirs = _ensemble_facts(meta)
        key = next((k for k in first if theirs[k] != first[k]), None)
        if key:
            raise InputError(f"{folder} cannot join an ensemble with {folders[0]}: {key} differs ({theirs[key]} "
                             f"against {first[key]})")


def save_ensemble(models, folder, name: str | None = None, about: str = "", overwrite: bool = False) -> Path:
    """Segmentation networks of one kind saved as one model, the way ``acnn-seg-acdc`` ships: each bundle
    (``models``: bundle folders, training runs, bundled names; an ensemble's networks each) copied into
    ``folder`` under its training run's name (``seed-0`` for ``runs/seed-0``), and an ``ensemble.json`` naming
    them, which ``Segmenter``, ``acnn segment``, the Slicer modules and the studio run as one model, averaging
    the networks' probabilities. The networks must form an ensemble (:func:`check_ensemble`), and their
    weights be the files their model.json records. A ``folder`` holding anything is replaced only with
    ``overwrite``, and never one that holds a network given. Written beside it and moved in at once: an
    interrupted save leaves what was there. Returns ``folder``."""
    import os
    import shutil

    from .io import check_folder

    folder = Path(folder)
    sources = [m for model in models for m in members(model)]
    if len(sources) < 2:
        raise InputError(f"an ensemble is two or more networks, not {len(sources)}")
    twice = next((s for i, s in enumerate(sources) if s.resolve() in [t.resolve() for t in sources[:i]]), None)
    if twice is not None:
        raise InputError(f"{twice} is given twice: an ensemble's networks are different ones")
    metas = [read_meta(m) for m in sources]
    for source, meta in zip(sources, metas):
        check_task(source, meta, "seg")
        problem = weights_problem(source, meta)
        if problem:
            raise InputError(problem)
    check_ensemble(sources, metas)
    held = next((s for s in sources if folder.resolve() in (s.resolve(), *s.resolve().parents)), None)
    if held is not None:
        raise InputError(f"{folder} holds {held}, a network of the ensemble: save the ensemble elsewhere")
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())) and not overwrite:
        raise OutputExists(folder, f"{folder} exists and is not empty; pass --overwrite to replace it")
    names = []
    for source in sources:
        base = source.parent.name if source.name in (BEST_MODEL, FINAL_MODEL) else source.name
        names.append(next(n for n in (base, *(f"{base}-{i}" for i in range(2, len(sources) + 2)))
                          if n not in names))
    check_folder(folder.parent, folder)
    tmp, old = (folder.parent / f".{what}-{folder.name}-{os.getpid()}" for what in ("tmp", "old"))
    try:
        tmp.mkdir()
        for source, member in zip(sources, names):
            (tmp / member).mkdir()
            for file in ("model.json", "model.safetensors"):
                shutil.copy2(source / file, tmp / member / file)
        description = {"format": ENSEMBLE_FORMAT, "format_version": 1, "name": name or folder.name,
                       "members": names, **({"about": about} if about else {})}
        (tmp / ENSEMBLE_FILE).write_text(json.dumps(description, indent=1) + "\n", encoding="utf-8")
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
    finally:
        for leftover in (tmp, old):
            if leftover.is_dir():
                shutil.rmtree(leftover)
            elif leftover.exists():
                leftover.unlink()
    return folder


def prior_of(name_or_path) -> Path:
    """The shape model a network was trained with (its ``--prior``), found by the weights' checksum that its
    bundle records: at the path recorded, or among the bundled models. An ensemble's networks (an ensemble
    bundle, or a list of bundles) must have been trained with one shape model; those trained without a prior
    add none."""
    given = name_or_path if isinstance(name_or_path, (list, tuple)) else [name_or_path]
    networks = [(folder, read_meta(folder)) for model in given for folder in members(model)]
    priors = {}  # checksum -> (the first network's folder and description that record it)
    for folder, meta in networks:
        checksum = meta.get("training", {}).get("prior_sha256")
        if checksum:
            priors.setdefault(checksum, (folder, meta))
    if len(priors) > 1:
        named = "; ".join(f"{folder}: {meta['training'].get('prior')} (sha256 {checksum[:12]}...)"
                          for checksum, (folder, meta) in priors.items())
        raise InputError(f"the ensemble's networks were trained with {len(priors)} different shape priors "
                         f"({named}): name the shape model to correct with")
    if not priors:
        raise InputError(f"{networks[0][1].get('name', given[0])} was trained without a shape prior: name a shape "
                         f"model")
    checksum, (_, meta) = next(iter(priors.items()))
    training = meta.get("training", {})
    recorded = Path(training.get("prior") or "")
    candidates = ([recorded] if (recorded / "model.json").is_file() else []) + [MODELS_DIR / n for n in available()]
    for folder in candidates:
        if read_meta(folder).get("weights_sha256") == checksum:
            return folder
    raise InputError(f"the prior {meta.get('name', name_or_path)} was trained with ({training.get('prior')}, "
                     f"sha256 {checksum[:12]}...) is neither there nor bundled: name a shape model")


def describe(name_or_path) -> dict:
    """What a user asks of a bundle before using it (``acnn info MODEL``): task, network, labels, the grid it
    takes and gives, how it was trained, its prior, its validation metrics and, for a shape model, its latent
    statistics, and whether its weights are the file model.json records (checked by checksum, not loaded)."""
    folder = resolve(name_or_path)
    meta = read_meta(folder)
    each = {m: meta if m == folder else read_meta(m) for m in members(folder)}  # itself, or an ensemble's members
    problem = next(filter(None, (weights_problem(m, d) for m, d in each.items())), None)
    spec, training = meta.get("input", {}), meta.get("training", {})
    out = {"bundle": str(folder), "name": meta.get("name"), "task": meta.get("task"),
           "architecture": meta.get("architecture"), "parameters": meta.get("parameters"),
           "labels": label_names(meta),
           "input": {k: spec[k] for k in ("shape", "spacing", "factor", "slices", "slice_order", "localize")
                     if k in spec},
           "output_spacing": meta.get("output", {}).get("spacing"),
           "trained": {"data": training.get("data"),  # path, cases; a phantom's seed and subjects where recorded
                       "epochs": training.get("config", {}).get("epochs"), "kept_epoch": training.get("epoch"),
                       "command": training.get("command")},
           "metrics": meta.get("metrics", {}),
           "weights": problem or (WEIGHTS_FINE[0] if meta.get("weights_sha256") else WEIGHTS_FINE[1])}
    if meta.get("members"):  # an ensemble: described by its first member above; each member's own run
        if meta.get("about"):
            out["about"] = meta["about"]
        out["members"] = [{"bundle": str(m), "kept_epoch": d.get("training", {}).get("epoch"),
                           "metrics": d.get("metrics", {})} for m, d in each.items()]
    if training.get("prior_sha256"):
        try:
            out["prior"] = str(prior_of(folder))
        except InputError as e:
            out["prior"] = str(e)
    latent = meta.get("latent")
    if latent:
        out["latent"] = {"codes": latent.get("n"), "code_size": len(latent.get("mean", [])),
                         "most_used_dimensions": latent.get("order", [])[:5]}
    return out


WEIGHTS_FINE = ("as recorded (SHA-256)", "no checksum recorded")  # describe()'s "weights" where nothing is wrong


def weights_problem(folder: Path, meta: dict) -> str | None:
    """What is wrong with a bundle's weights file before it is loaded -- missing, or not the file its model.json
    records (by SHA-256: modified or corrupted) -- or None."""
    weights = folder / "model.safetensors"
    if not weights.is_file():
        return f"{folder} has no model.safetensors"
    if meta.get("weights_sha256") and _sha256(weights) != meta["weights_sha256"]:
        return f"{weights} does not match the checksum in model.json (modified or corrupted)"
    return None


TASK_NAMES = {"seg": "a segmentation model", "sr": "a super-resolution model", "ae": "a shape model",
              "tl": "a T-L shape model"}


def check_task(folder, meta: dict, expect_task) -> None:
    """An :class:`InputError` saying what the bundle is and what is needed, unless its task is ``expect_task``
    (a task or several)."""
    tasks = (expect_task,) if isinstance(expect_task, str) else tuple(expect_task)
    if meta.get("task") not in tasks:
        needs = " or ".join(f"{TASK_NAMES.get(t, 'a model')} (task {t})" for t in tasks)
        raise InputError(f"{folder} is {TASK_NAMES.get(meta.get('task'), 'a model')} (task {meta.get('task')}); "
                         f"this needs {needs}")


def load_bundle(name_or_path, device="cpu", expect_task=None) -> Bundle:
    """Load a bundle: check the description, the checksum and that the weights fit the architecture."""
    folder = resolve(name_or_path)
    meta = read_meta(folder)
    if meta.get("members"):
        listed = members(folder)
        raise InputError(f"{folder} is an ensemble of {len(listed)} networks ({', '.join(m.name for m in listed)}): "
                         f"where one network is wanted (--init, load_bundle), name one of them, e.g. {listed[0]}")
    if expect_task is not None:
        check_task(folder, meta, expect_task)
    weights = folder / "model.safetensors"
    problem = weights_problem(folder, meta)
    if problem:
        raise InputError(problem)
    from safetensors.torch import load_file

    from .networks import build_network

    try:
        state = load_file(str(weights), device="cpu")
    except Exception as e:  # safetensors raises its own error types for a wrong file
        raise InputError(f"{weights} is not a safetensors file: {e}") from None
    try:
        model = build_network(meta["architecture"], **meta["config"])
    except (TypeError, ValueError) as e:
        raise InputError(f"{folder}: cannot build {meta.get('architecture')}: {e}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        detail = "; ".join(line.strip() for line in first[1:3]) or first[0]
        raise InputError(f"{folder}: weights do not match {meta['architecture']}: {detail}") from None
    model.to(device).eval()
    return Bundle(model, meta, folder)
