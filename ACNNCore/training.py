"""Training of every model: ``acnn train {ae,tl,seg,sr}``.

One loop for all tasks: a config (dataclass, YAML) recorded in the run folder,
deterministic seeds, a tqdm bar with loss and ETA, a CSV log (and TensorBoard
if installed), validation each epoch, ``last.pt`` and the best model (a bundle
in ``RUN/model``; seg and sr runs also their last epoch's, ``RUN/model-final``)
written atomically, ``--resume`` after a kill with no epoch lost, ``--init
MODEL`` to fine-tune a trained model, mixed precision (``--precision bf16``),
and DistributedDataParallel under ``torchrun`` (gloo on CPU, nccl on GPU) with
no change to the command. A step whose loss or gradient is NaN or infinite is
left out and counted (the log's ``skipped``); an epoch with no step taken ends
the run with a :class:`~ACNNCore.errors.TrainingError`.

Tasks:

- ``ae``: denoising autoencoder of HR label maps (label swaps p = 0.1, Gaussian
  input noise);
- ``tl``: T-L network from a trained AE (``--prior``): the predictor learns the
  AE's codes with the AE frozen (``tl_predictor_epochs``), then both train
  jointly, the code loss scaled (detached ratio) to the range of the CE;
- ``seg``: LR stack -> HR labels, cross-entropy; with ``--prior`` (AE or T-L
  bundle) the ACNN-Seg shape prior of Eq. (1);
- ``sr``: LR stack -> HR image, Huber; with ``--prior`` (T-L bundle) the
  ACNN-SR prior of Eq. (2).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import shlex
import shutil
import sys
import time
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from .augment import AugmentConfig, augment
from .bundle import BEST_MODEL, FINAL_MODEL, MODELS_DIR, label_names, load_bundle, save_bundle
from .datasets import Case, is_phantom, phantom_description, read_dataset
from .errors import InputError, TrainingError
from .io import atomic_target
from .labels import SEGMENTS
from .losses import (acnn_seg_loss, acnn_sr_loss, autoencoder_loss, code_loss, decay_groups, freeze, one_hot)
from .networks import build_network, count_parameters, in_layout, pick_device, to_device
from .preprocessing import IntensityScaling, slice_order

TASKS = ("ae", "tl", "seg", "sr")
LR_SCHEDULES = ("constant", "cosine")
PRECISIONS = ("fp32", "bf16")
# what a run folder holds besides config.yaml: the log, the checkpoint to resume from, the best validation epoch
# as a bundle and, for seg and sr, the last epoch's weights as a bundle beside it (on a few validation subjects
# the best epoch is a noisy pick, and an annealed rate ends on settled weights)
LOG, CHECKPOINT = "log.csv", "last.pt"  # and the models, bundle.BEST_MODEL and bundle.FINAL_MODEL
RUN_FILES = (LOG, CHECKPOINT, BEST_MODEL, FINAL_MODEL, "tensorboard")
# the networks that do each task, the default first (the others the paper's baselines)
TASK_ARCHITECTURES = {"seg": ("SubPixelNet", "FCN2D", "UNet3D"), "sr": ("SubPixelNet", "UNet3D", "SRCNN"),
                      "ae": ("ConvAutoencoder",), "tl": ("TLNetwork",)}
DEFAULT_ARCHITECTURE = {task: networks[0] for task, networks in TASK_ARCHITECTURES.items()}
# the settings a resumed run may change: how long it trains, and where and in what precision it runs (bf16's
# advice on NaN gradients is to go on in fp32); any other would mix two recipes in one model
RESUME_MAY_CHANGE = ("epochs", "device", "workers", "precision")


# the least each numeric setting may be (a negative max_cases would drop cases, a batch of 0 train with 1)
_AT_LEAST = {"epochs": 1, "batch_size": 1, "code_size": 1, "tl_predictor_epochs": 0, "lambda1": 0, "lambda2": 0,
             "contact": 0, "contact_start": 0, "input_noise": 0, "max_cases": 0, "seed": 0, "workers": 0}


@dataclass
class TrainConfig:
    """Everything a training run depends on (with the data). Defaults from the paper where it gives them."""

    task: str = "seg"
    architecture: str = ""  # default per task (DEFAULT_ARCHITECTURE); baselines: FCN2D, UNet3D, SRCNN
    network: dict = field(default_factory=dict)  # architecture arguments, over the defaults
    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-3
    lr_schedule: str = "constant"  # constant | cosine (annealed to 0 over the epochs, per epoch)
    lambda1: float = 0.01  # weight of the shape prior
    lambda2: float = 5e-6  # weight decay on convolution weights
    balance_prior: bool = False  # rescale the prior to the data term's range (detached ratio)
    hard_prior: bool = False  # seg: the prior encodes the arg-max, straight-through (not the paper's)
    dice: bool = False  # seg and AE: add a soft Dice term to CE (real data: the heart is a small part of the image)
    contact: float = 0.0  # seg and AE: weight of the blood-pool contact term (losses.contact_loss; not the paper's)
    # epoch from which it applies: it measures the defects of a roughly right segmentation; at initialisation
    # (blood pool everywhere) it is about 20 times the data term and holds back the learning of the heart itself
    contact_start: int = 10
    code_size: int = 64
    swap_p: float = 0.1  # AE label swap probability
    input_noise: float = 0.05  # AE Gaussian input noise
    tl_predictor_epochs: int = 10  # T-L: epochs of predictor-only training before the joint stage
    val_fraction: float = 0.2  # subjects held out for validation (both phases together)
    max_cases: int = 0  # 0 = all
    seed: int = 0
    # the draw of the subjects validation holds out (None: the seed's): one split for an ensemble's members
    split_seed: int | None = None
    device: str = "auto"  # auto | cpu | cuda
    # fp32 | bf16: mixed precision, the networks' forward passes in bfloat16 (torch.autocast), weights, optimiser
    # and losses in float32 -- faster where bfloat16 is native (CPUs with AVX512-BF16 or AMX, recent GPUs)
    precision: str = "fp32"
    workers: int = 0  # DataLoader worker processes preparing (augmenting) batches; 0 = in the training process
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # real data (any field of view and spacing): each case is cut around its ground-truth heart to this
    # {"shape": [X, Y, Z], "spacing": [sx, sy]} (slices as acquired); inference finds the heart itself
    crop: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Settings by name (a config file's, a bundle's recipe): a clear error for an unknown name or a value
        of the wrong kind (``epochs: ten``, ``lr: [0.1]``), before any work."""
        d = _settings(cls, d, "training")
        aug = d.pop("augment", None) or {}
        return cls(**d, augment=AugmentConfig(**_settings(AugmentConfig, aug, "augment")))

    def __post_init__(self):
        for name, low in _AT_LEAST.items():
            if not getattr(self, name) >= low:  # NaN too
                raise InputError(f"training setting {name} must be at least {low}, not {getattr(self, name)}")
        if not self.lr > 0:
            raise InputError(f"training setting lr must be above 0, not {self.lr}")
        if self.split_seed is not None and self.split_seed < 0:
            raise InputError(f"training setting split_seed must be at least 0, not {self.split_seed}")
        for name in ("val_fraction", "swap_p"):
            if not 0 <= getattr(self, name) < 1:
                raise InputError(f"training setting {name} is a share from 0 up to 1 (not included), not "
                                 f"{getattr(self, name)}")
        if self.crop:
            _check_crop(self.crop)
        fit = TASK_ARCHITECTURES.get(self.task, ())
        if self.architecture and fit and self.architecture not in fit:
            raise InputError(f"architecture {self.architecture!r} does not do task {self.task}; those that do: "
                             f"{', '.join(fit)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise InputError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, not {self.lr_schedule!r}")
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")

    def learning_rate(self, epoch: int) -> float:
        """The learning rate of ``epoch`` (0-based): a function of the epoch alone, so a resumed run
        continues the same schedule."""
        if self.lr_schedule == "cosine":
            return self.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / max(self.epochs, 1)))
        return self.lr

    @classmethod
    def from_yaml(cls, path) -> "TrainConfig":
        path = Path(path)
        if not path.is_file():
            raise InputError(f"no such config file: {path}")
        try:
            settings = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise InputError(f"{path} is not a YAML file of training settings: "
                             f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        return cls.from_dict(settings or {})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_KINDS = {int: "a whole number", float: "a number", bool: "true or false", str: "text", dict: "a mapping",
          int | None: "a whole number or nothing"}


def _settings(cls, d, what: str) -> dict:
    """``d``, settings for the dataclass ``cls``, checked against its fields' types (a whole number where a
    float is wanted is taken as one; a bool is not a number); the nested ``augment`` left to its own class."""
    if not isinstance(d, dict):
        raise InputError(f"{what} settings are a mapping of names to values, not {type(d).__name__} {d!r}")
    types = typing.get_type_hints(cls)
    unknown = set(d) - set(types)
    if unknown:
        raise InputError(f"unknown {what} settings: {', '.join(sorted(map(str, unknown)))}")
    out = {}
    for name, value in d.items():
        wanted = types[name]
        if wanted in (int, float, int | None):
            ok = (isinstance(value, (int, float) if wanted is float else int) and not isinstance(value, bool)
                  or value is None and wanted == int | None)
        else:
            ok = wanted is AugmentConfig or isinstance(value, wanted)
        if not ok:
            raise InputError(f"{what} setting {name} takes {_KINDS.get(wanted) or wanted.__name__}, not {value!r}")
        out[name] = float(value) if wanted is float else value
    return out


# --- data ---------------------------------------------------------------------------------

class TrainingSet(Dataset):
    """Cases as tensors: normalised input, HR labels, HR image (SR/T-L); augmented when training."""

    def __init__(self, cases: list[Case], task: str, augment_config: AugmentConfig | None, seed: int):
        self.cases, self.task, self.augment_config, self.seed = cases, task, augment_config, seed
        self.epoch = 0
        self.scalings = []
        for c in cases:
            if c.meta.get("normalized"):  # already normalised on the whole image
                self.scalings.append(IntensityScaling(0.0, 1.0))
                continue
            lo, hi = np.percentile(c.image.array, (1.0, 99.0))
            self.scalings.append(IntensityScaling(float(lo), float(hi if hi > lo else lo + 1)))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self):
        return len(self.cases)

    def __getitem__(self, i):
        c, scaling = self.cases[i], self.scalings[i]
        image = scaling.apply(c.image.array)
        labels = c.labels.array if c.labels is not None else None
        hr = scaling.apply(c.hr_image.array) if c.hr_image is not None and self.task in ("sr", "tl") else None
        if self.augment_config is not None:
            rng = np.random.default_rng([self.seed, self.epoch, i])
            image, labels, hr = augment(rng, self.augment_config, image, c.image.spacing, labels, hr,
                                        c.labels.spacing if c.labels is not None else None)
        item = {"input": torch.from_numpy(np.ascontiguousarray(image, np.float32))[None]}
        if labels is not None:
            item["labels"] = torch.from_numpy(np.ascontiguousarray(labels).astype(np.int64))
        if hr is not None:
            item["hr"] = torch.from_numpy(np.ascontiguousarray(hr, np.float32))[None]
        return item


def split_cases(cases: list[Case], val_fraction: float, seed: int) -> tuple[list[Case], list[Case]]:
    """Hold out whole subjects (both phases), chosen with the seed."""
    subjects = sorted({c.subject for c in cases})
    rng = np.random.default_rng(seed)
    rng.shuffle(subjects)
    n_val = max(1, int(round(val_fraction * len(subjects)))) if len(subjects) > 1 and val_fraction > 0 else 0
    val = set(subjects[:n_val])
    return ([c for c in cases if c.subject not in val],
            [c for c in cases if c.subject in val])


def crop_cases(cases: list[Case], crop: dict) -> list[Case]:
    """Real data on one grid: each case normalised and cut around its ground-truth heart (see
    :func:`ACNNCore.preprocessing.crop_around_heart`); ``meta["normalized"]`` says so."""
    from dataclasses import replace as _replace

    from .preprocessing import crop_around_heart

    _check_crop(crop)
    out = []
    for c in cases:
        if c.labels is None:
            raise InputError(f"case {c.name} has no labels: training needs ground truth")
        if not c.labels.array.any():
            raise InputError(f"case {c.name}'s label map is empty: there is no heart to cut the case around")
        image, labels = crop_around_heart(c.image, c.labels, crop["shape"], crop["spacing"])
        out.append(_replace(c, image=image, labels=labels, meta={**c.meta, "normalized": True,
                                                                  "slice_mm": c.image.spacing[2]}))
    return out


def _check_crop(crop: dict) -> None:
    """``crop``: {"shape": [X, Y, Z] voxels, "spacing": [sx, sy] mm}, or a clear error."""
    def positive(values, n, kind):
        return (isinstance(values, (list, tuple)) and len(values) == n
                and all(isinstance(v, kind) and not isinstance(v, bool) and v > 0 for v in values))

    if set(crop) != {"shape", "spacing"} or not positive(crop["shape"], 3, int) \
            or not positive(crop["spacing"], 2, (int, float)):
        raise InputError(f'crop needs {{"shape": [X, Y, Z] (voxels, whole numbers), "spacing": [sx, sy] (mm, in-plane)'
                         f'}}, all above 0; not {crop}')


def _grid_of(cases: list[Case]) -> dict:
    """The grid every case shares (input and target), or a clear error. Cut real data (``normalized``)
    may differ in slice thickness: the grid's is then the median, ``slices`` says "as acquired", and
    ``slice_order`` which way the slices run (base or apex first: inference shows an image's slices so)."""
    first = cases[0]
    if first.meta.get("normalized"):
        for c in cases:
            if c.image.shape != first.image.shape or not np.allclose(c.image.spacing[:2], first.image.spacing[:2]):
                raise InputError(f"case {c.name} lies on another grid than {first.name}")
        z = float(np.median([c.image.spacing[2] for c in cases]))
        spacing = [float(first.image.spacing[0]), float(first.image.spacing[1]), z]
        classes = int(max(int(c.labels.array.max()) for c in cases)) + 1
        order = slice_order(c.labels for c in cases)
        return {"input_shape": list(first.image.shape), "input_spacing": spacing,
                "output_shape": list(first.labels.shape), "output_spacing": spacing, "factor": 1,
                "num_classes": max(classes, 2), "slices": "as acquired", "localize": True,
                **({"slice_order": order} if order else {})}
    if first.labels is None:
        raise InputError(f"case {first.name} has no labels: training needs ground truth")
    for c in cases:
        if c.labels is None:
            raise InputError(f"case {c.name} has no labels: training needs ground truth")
        if c.image.shape != first.image.shape or not np.allclose(c.image.spacing, first.image.spacing) \
                or c.labels.shape != first.labels.shape:
            raise InputError(f"case {c.name} lies on another grid than {first.name}; training needs one grid "
                             f"(input {first.image.shape}, labels {first.labels.shape}); for real images of "
                             f"varying size, cut each around its heart: `crop:` in a --config (as in "
                             f"{MODELS_DIR / 'acdc.yaml'})")
    nz_in, nz_out = first.image.shape[2], first.labels.shape[2]
    if nz_out % nz_in:
        raise InputError(f"label slices ({nz_out}) are not a multiple of image slices ({nz_in})")
    classes = int(max(int(c.labels.array.max()) for c in cases)) + 1
    return {"input_shape": list(first.image.shape), "input_spacing": list(first.image.spacing),
            "output_shape": list(first.labels.shape), "output_spacing": list(first.labels.spacing),
            "factor": nz_out // nz_in, "num_classes": max(classes, 2)}


# --- model and prior -------------------------------------------------------------------------

def build_model(config: TrainConfig, grid: dict, prior_meta: dict | None = None) -> tuple[str, dict, torch.nn.Module]:
    arch = config.architecture or DEFAULT_ARCHITECTURE[config.task]
    c, k = grid["num_classes"], grid["factor"]
    defaults = {
        # a narrow 3x3x3 convolution on the HR grid (hr_head) mends the sub-pixel layout's phase artefacts
        # (seg: single-voxel holes and islands on a (2, 2, K) lattice; SR: a chequered texture)
        "SubPixelNet": ({"out_channels": 1, "residual": True} if config.task == "sr"
                        else {"out_channels": c}) | {"factor": k, "hr_head": True},
        "FCN2D": {"out_channels": c, "factor": k},
        "UNet3D": {"out_channels": 1 if config.task == "sr" else c, "factor": k},
        "SRCNN": {"factor": k},
        "ConvAutoencoder": {"grid_shape": grid["output_shape"], "num_classes": c, "code_size": config.code_size},
        "TLNetwork": {"grid_shape": grid["output_shape"], "num_classes": c, "code_size": config.code_size,
                      "predictor_features": [16, 32, 64, 128]},
    }.get(arch, {})
    if arch == "TLNetwork" and prior_meta is not None:
        defaults["ae_features"] = prior_meta["config"].get("features", [16, 32, 64])
        defaults["code_size"] = prior_meta["config"].get("code_size", config.code_size)
    # what the data (and a T-L network's prior) set: a network setting may not say otherwise
    fixed = {k: v for k, v in defaults.items() if k in ("out_channels", "num_classes", "factor", "grid_shape")}
    if arch == "TLNetwork" and prior_meta is not None:
        fixed |= {"ae_features": defaults["ae_features"], "code_size": defaults["code_size"]}
    _check_network(arch, config.network, {**fixed, "in_channels": 1})
    net_config = {**defaults, **config.network}
    net_config = {k: list(v) if isinstance(v, tuple) else v for k, v in net_config.items()}
    return arch, net_config, build_network(arch, **net_config)


def _same_kind(value, default) -> bool:
    """Whether a network setting's value is of its default's kind (a whole number above 0 in a list of them)."""
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float) if isinstance(default, float) else int) and not isinstance(value, bool)
    if isinstance(default, (tuple, list)):
        return isinstance(value, (list, tuple)) and len(value) > 0 and all(
            _same_kind(v, default[0]) and (not isinstance(v, int) or v > 0) for v in value)
    return True


def _check_network(arch: str, given: dict, fixed: dict) -> None:
    """A config's ``network`` settings: names the architecture takes, values of their defaults' kinds, and none
    contradicting ``fixed``, what the data set (classes, K, the AE's grid) -- a clear error, not a traceback at
    the first step or a network that trains on the wrong thing."""
    import inspect

    from .networks import ARCHITECTURES

    params = inspect.signature(ARCHITECTURES[arch]).parameters
    unknown = sorted(set(given) - set(params))
    if unknown:
        raise InputError(f"unknown network settings for {arch}: {', '.join(unknown)}; it takes {', '.join(params)}")
    for name, value in given.items():
        default = params[name].default
        if not _same_kind(value, default):
            raise InputError(f"network setting {name} takes values like its default {default!r}"
                             + (" (a list of whole numbers above 0)" if isinstance(default, (list, tuple)) else "")
                             + f", not {value!r}")
        if name in fixed and _plain(value) != _plain(fixed[name]):
            raise InputError(f"network setting {name} {value} does not fit the data's {fixed[name]}; leave it out, "
                             f"the data sets it")


def _plain(value):
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def load_prior(path, task: str, grid: dict, device):
    """The frozen prior network for ACNN-Seg (AE/T-L encoder), ACNN-SR (T-L predictor) or T-L (the AE)."""
    need = {"seg": ("ae", "tl"), "sr": ("tl",), "tl": ("ae",)}.get(task)
    if need is None:
        raise InputError(f"task {task} trains without a prior: leave out --prior")
    bundle = load_bundle(path, device=device, expect_task=need)
    model = in_layout(bundle.model, device)
    shape = list(getattr(model, "grid_shape", None) or model.autoencoder.grid_shape)
    if shape != list(grid["output_shape"]):
        raise InputError(f"prior {bundle.path} works on a {shape} grid; the data's HR grid is {grid['output_shape']}")
    classes = (model if hasattr(model, "num_classes") else model.autoencoder).num_classes
    if task != "sr" and classes != grid["num_classes"]:  # ACNN-SR's prior sees intensities, not label maps
        names = ", ".join(["background", *label_names(bundle.meta).values()])
        raise InputError(f"prior {bundle.path} knows {classes} classes ({names}); the data's "
                         f"labels have {grid['num_classes']} (values 0 to {grid['num_classes'] - 1}): a prior of "
                         f"the same structures is needed")
    return bundle


def load_init(path, config: TrainConfig, grid: dict, device):
    """The model whose weights start a run (fine-tuning): its network, checked against the data (grid
    spacing, classes, K) and against any network settings the config names."""
    bundle = load_bundle(path, device=device, expect_task=config.task)
    meta, arch = bundle.meta, bundle.meta["architecture"]
    asked = {k: list(v) if isinstance(v, tuple) else v for k, v in config.network.items()}
    if config.architecture not in ("", arch) or any(meta["config"].get(k) != v for k, v in asked.items()):
        raise InputError(f"{bundle.path} is a {arch} with {meta['config']}; the training settings ask for "
                         f"{config.architecture or arch} with {asked}")
    ours, theirs = grid["input_spacing"], meta["input"]["spacing"]
    if grid.get("slices") == "as acquired":  # real data: the slice thickness is the scan's
        ours, theirs = ours[:2], theirs[:2]
    classes = meta["config"].get("out_channels", meta["config"].get("num_classes"))
    for what, data, model in (("input spacing", [round(float(v), 4) for v in ours],
                               [round(float(v), 4) for v in theirs]),
                              ("K (slices per input slice)", grid["factor"], meta["input"]["factor"]),
                              ("number of classes", grid["num_classes"], classes if config.task != "sr" else None)):
        if model is not None and data != model:
            raise InputError(f"{bundle.path} does not match the data: {what} {model} against the data's {data}")
    bundle.model.train()
    return bundle


# --- distributed -------------------------------------------------------------------------------

def _setup_distributed(device_name: str):
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device_name = pick_device(device_name).type
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device_name == "cuda" else "gloo")
    rank = dist.get_rank() if world > 1 else 0
    if device_name == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    return world, rank, device


def _atomic_torch_save(obj, path: Path) -> None:
    with atomic_target(path, ".pt") as tmp:
        torch.save(obj, tmp)


def _unwrap(model):
    return model.module if hasattr(model, "module") else model


# --- the loop --------------------------------------------------------------------------------

def _dice(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list[float]:
    """Mean Dice per foreground class over a batch (MONAI's implementation)."""
    from monai.metrics import compute_dice

    d = compute_dice(one_hot(pred, num_classes), one_hot(labels, num_classes), include_background=False)
    return torch.nan_to_num(d, nan=1.0).mean(0).tolist()


class Trainer:
    def __init__(self, config: TrainConfig, data, out, prior=None, resume: bool = False, overwrite: bool = False,
                 command: str | None = None, progress: bool = True, init=None):
        if config.task not in TASKS:
            raise InputError(f"unknown task {config.task!r}; choose from {', '.join(TASKS)}")
        self.config, self.out, self.resume = config, Path(out), resume
        self.command = command or " ".join(["acnn"] + [shlex.quote(a) for a in sys.argv[1:]])
        self.world, self.rank, self.device = _setup_distributed(config.device)
        self.main = self.rank == 0
        if config.precision == "bf16" and self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise InputError(f"precision bf16: this GPU ({torch.cuda.get_device_name(self.device)}) has no "
                             f"bfloat16; train with precision fp32")
        self.progress = progress and self.main
        torch.manual_seed(config.seed)

        if self.out.exists() and any(self.out.iterdir()) and not resume and not overwrite:
            raise InputError(f"{self.out} holds a run; pass --resume to continue it or --overwrite to start over")
        if resume and not self.out.is_dir():
            raise InputError(f"there is no run in {self.out} to resume: no such folder")
        if resume and not (self.out / CHECKPOINT).is_file():
            raise InputError(f"{self.out} has no {CHECKPOINT} to resume from (no epoch of a run there finished): "
                             f"start it again with --overwrite")

        cases = read_dataset(data, hr_image=config.task in ("sr", "tl"))
        if config.max_cases:
            cases = cases[: config.max_cases]
        if config.crop:
            cases = crop_cases(cases, config.crop)
        if config.task in ("sr", "tl") and any(c.hr_image is None for c in cases):
            raise InputError(f"task {config.task} needs HR intensity images (a phantom data set)")
        self.grid = _grid_of(cases)
        config.augment.check_labels(self.grid["input_shape"], self.grid["output_shape"])  # before a run folder
        self.data_description = {"path": str(data), "cases": len(cases)}
        if is_phantom(data):  # a phantom: how to make it again
            d = phantom_description(data)
            self.data_description["phantom"] = {"seed": d["seed"], "subjects": len(d["subjects"]),
                                                "modality": d["modality"],
                                                "motion_mm": d["config"]["acquisition"]["motion_mm"]}
        split_seed = config.seed if config.split_seed is None else config.split_seed
        train_cases, val_cases = split_cases(cases, config.val_fraction, split_seed)
        self.data_description["held_out"] = sorted({c.subject for c in val_cases})
        if not train_cases:
            raise InputError("no training cases left after the validation split")
        if not val_cases and self.main:
            warnings.warn(f"no subjects held out for validation (val_fraction {config.val_fraction}, "
                          f"{len({c.subject for c in cases})} subjects): the model is the last epoch's, not "
                          f"the best validation epoch's", RuntimeWarning, stacklevel=2)
        self.train_set = TrainingSet(train_cases, config.task, config.augment, config.seed)
        self.val_set = TrainingSet(val_cases, config.task, None, config.seed)

        if config.task == "tl" and prior is None:
            raise InputError("T-L training starts from a trained AE: pass --prior AE_RUN_OR_BUNDLE")
        self.prior = load_prior(prior, config.task, self.grid, self.device) if prior else None
        self.init = load_init(init, config, self.grid, self.device) if init else None
        if self.init is not None:  # fine-tuning: the given model's network and weights
            self.arch, self.net_config = self.init.meta["architecture"], self.init.meta["config"]
            model = self.init.model
        else:
            self.arch, self.net_config, model = build_model(config, self.grid, self.prior.meta if self.prior else None)
        if config.task == "tl" and self.init is None:
            model.autoencoder.load_state_dict(self.prior.model.state_dict())
        elif self.prior is not None:
            freeze(self.prior.model)
        self.model = in_layout(model.to(self.device), self.device)  # channels-last on the CPU: same numbers, faster
        self.optimizer = torch.optim.Adam(decay_groups(self.model, config.lambda2), lr=config.lr)
        if self.world > 1:
            self.model = torch.nn.parallel.DistributedDataParallel(self.model)
        self.start_epoch, self.best = 0, -float("inf")
        if resume:
            self._load_checkpoint()

    # -- checkpoints
    def _recipe(self) -> dict:
        """What a resumed run must share with the run it continues: :func:`recipe`, and the data's split."""
        return {**recipe(self.config.to_dict(), self.prior.meta.get("weights_sha256") if self.prior else None,
                         self.init.meta.get("weights_sha256") if self.init else None),
                "cases": self.data_description["cases"], "held_out": self.data_description["held_out"]}

    def _check_resume(self, recorded: str | None) -> None:
        """A clear error where ``--resume`` is given other settings, prior, starting model or data than the
        run had (a forgotten ``--prior`` trained on without it); a checkpoint from before recipes were
        recorded is trusted."""
        if recorded is None:
            return
        differ = recipe_differences(json.loads(recorded), self._recipe())
        if differ:
            raise InputError(f"{self.out} was trained otherwise than this command asks: {'; '.join(differ)}. "
                             f"Resume it with the command that started it ({self.out / BEST_MODEL / 'model.json'}"
                             f" records it; only {', '.join(RESUME_MAY_CHANGE)} may change) or start over with "
                             f"--overwrite")

    def _load_checkpoint(self):
        state = torch.load(self.out / CHECKPOINT, map_location="cpu", weights_only=True)
        self._check_resume(state.get("recipe"))
        _unwrap(self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.start_epoch, self.best = int(state["epoch"]) + 1, float(state["best"])
        torch.set_rng_state(state["torch_rng"])

    def _save_checkpoint(self, epoch: int):
        _atomic_torch_save({"model": _unwrap(self.model).state_dict(), "optimizer": self.optimizer.state_dict(),
                            "epoch": epoch, "best": self.best, "torch_rng": torch.get_rng_state(),
                            "recipe": json.dumps(self._recipe(), sort_keys=True)},
                           self.out / CHECKPOINT)

    # -- one batch
    def autocast(self):
        """The context of a training step's forward passes: bfloat16 autocast where ``precision`` is bf16."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.precision == "bf16")

    def _losses(self, batch, epoch: int) -> dict:
        cfg, task, model = self.config, self.config.task, self.model
        x = to_device(batch["input"], self.device)
        labels = batch["labels"].to(self.device)
        c = self.grid["num_classes"]
        contact = None  # off; else logged from the start, added (weighted) from contact_start on
        if cfg.contact:
            contact = cfg.contact if epoch >= cfg.contact_start else 0.0
        if task == "seg":
            encoder = self.prior.model.encode if self.prior else None
            return acnn_seg_loss(model(x), labels, encoder, cfg.lambda1, cfg.balance_prior, cfg.dice, contact,
                                 cfg.hard_prior)
        if task == "sr":
            predictor = self.prior.model.predict if self.prior else None
            return acnn_sr_loss(model(x), to_device(batch["hr"], self.device), predictor, cfg.lambda1,
                                cfg.balance_prior)
        if task == "ae":
            return autoencoder_loss(model, labels, c, cfg.swap_p, cfg.input_noise, dice=cfg.dice, contact=contact)
        # tl
        tl = _unwrap(model)
        hr = to_device(batch["hr"], self.device)
        if epoch < cfg.tl_predictor_epochs:  # stage 1b: the predictor learns the frozen AE's codes
            tl.autoencoder.eval()
            with torch.no_grad():
                codes = tl.autoencoder.encode(one_hot(labels, c))
            lh = code_loss(tl.predictor(hr), codes)
            return {"loss": lh, "code": lh}
        ae = autoencoder_loss(tl.autoencoder, labels, c, cfg.swap_p, cfg.input_noise)
        lh = code_loss(tl.predictor(hr), tl.autoencoder.encode(one_hot(labels, c)))
        scale = (ae["ce"] / lh.clamp_min(1e-8)).detach()  # match ranges; the ratio carries no gradient
        return {"loss": ae["ce"] + scale * lh, "ce": ae["ce"], "code": lh}

    # -- validation
    @torch.no_grad()
    def validate(self) -> dict:
        """Validation Dice per class (PSNR for sr) and their ``score``; nothing without validation cases."""
        if len(self.val_set) == 0:
            return {}
        model = _unwrap(self.model)
        model.eval()
        task, c = self.config.task, self.grid["num_classes"]
        sums, n = {}, 0
        for item in DataLoader(self.val_set, batch_size=2):
            x, labels = to_device(item["input"], self.device), item["labels"].to(self.device)
            if task == "seg":
                d = _dice(model(x).argmax(1), labels, c)
            elif task == "ae":
                d = _dice(model(one_hot(labels, c)).argmax(1), labels, c)
            elif task == "tl":
                hr = to_device(item["hr"], self.device)
                code = model.predict(hr)
                d = _dice(model.decode(code).argmax(1), labels, c)
                sums["code_l2"] = sums.get("code_l2", 0.0) + float(
                    code_loss(code, model.encode(one_hot(labels, c)))) * len(x)
            else:
                pred, hr = model(x), to_device(item["hr"], self.device)
                mse = torch.mean((pred - hr) ** 2, dim=(1, 2, 3, 4))
                psnr = (10 * torch.log10(1.0 / mse.clamp_min(1e-10))).sum()
                sums["psnr"] = sums.get("psnr", 0.0) + float(psnr)
                d = None
            if d is not None:
                for i, v in enumerate(d, start=1):
                    sums[f"dice_{i}"] = sums.get(f"dice_{i}", 0.0) + v * len(x)
            n += len(x)
        metrics = {k: v / max(n, 1) for k, v in sums.items()}
        dices = [v for k, v in metrics.items() if k.startswith("dice_")]
        metrics["score"] = float(np.mean(dices)) if dices else metrics.get("psnr", 0.0)
        model.train()
        return metrics

    # -- bundle
    def _latent_statistics(self) -> dict:
        model = _unwrap(self.model)
        model.eval()
        c = self.grid["num_classes"]
        with torch.no_grad():
            codes = torch.cat([model.encode(one_hot(item["labels"].to(self.device), c)).cpu()
                               for item in DataLoader(TrainingSet(self.train_set.cases, "ae", None, 0),
                                                      batch_size=4)]).numpy()
        std = codes.astype(np.float64).std(0)
        total = float((std**2).sum())
        share = std**2 / total if total > 0 else np.full(len(std), 1.0 / len(std))
        return {"mean": codes.mean(0).round(6).tolist(), "std": std.round(6).tolist(),
                "variance_share": share.round(6).tolist(), "order": np.argsort(-share).tolist(),
                "n": int(len(codes)),
                "description": "per-dimension mean/std of the codes of the training label maps; dimensions "
                               "ordered by their share of the code variance (how much each is used)"}

    def _bundle_meta(self, metrics: dict, epoch: int) -> dict:
        g, task = self.grid, self.config.task
        labels = {str(v): {"name": SEGMENTS[v][0], "color": list(SEGMENTS[v][1])}
                  for v in range(1, g["num_classes"]) if v in SEGMENTS}
        meta = {
            "name": self.out.name, "task": task, "architecture": self.arch, "config": self.net_config,
            "parameters": count_parameters(_unwrap(self.model)),
            "input": {"shape": g["input_shape"], "spacing": g["input_spacing"], "factor": g["factor"],
                      "normalization": {"kind": "percentile", "percentiles": [1.0, 99.0]},
                      **{k: g[k] for k in ("slices", "localize", "slice_order") if k in g}},
            "output": {"shape": g["output_shape"], "spacing": g["output_spacing"]},
            "labels": labels,
            "training": {"data": self.data_description, "command": self.command, "config": self.config.to_dict(),
                         "epoch": epoch, "prior": str(self.prior.path) if self.prior else None,
                         "prior_sha256": self.prior.meta.get("weights_sha256") if self.prior else None,
                         "init": str(self.init.path) if self.init else None,
                         "init_sha256": self.init.meta.get("weights_sha256") if self.init else None},
            "metrics": {k: round(float(v), 5) for k, v in metrics.items()},
        }
        return meta

    # -- run
    def fit(self) -> Path:
        cfg = self.config
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
            if self.start_epoch == 0:  # a fresh start (into a used folder only with --overwrite): no log,
                for name in RUN_FILES:  # checkpoint or model of an earlier run left to mix with this one's
                    path = self.out / name
                    if path.is_dir():
                        shutil.rmtree(path)
                    else:
                        path.unlink(missing_ok=True)
            (self.out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")
        sampler = DistributedSampler(self.train_set, shuffle=True, seed=cfg.seed) if self.world > 1 else None
        per_rank = max(1, cfg.batch_size // self.world)
        log_path = self.out / LOG
        writer = _tensorboard(self.out) if self.main else None
        self.model.train()
        if self.prior is not None and cfg.task != "tl":
            self.prior.model.eval()
        if self.start_epoch >= cfg.epochs and self.main:
            warnings.warn(f"{self.out} has finished {self.start_epoch} epochs, {cfg.epochs} asked: nothing to train "
                          f"(a larger --epochs trains on)", RuntimeWarning, stacklevel=2)
        for epoch in range(self.start_epoch, cfg.epochs):
            self.train_set.set_epoch(epoch)
            lr = cfg.learning_rate(epoch)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            if sampler is not None:
                sampler.set_epoch(epoch)
            generator = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
            loader = DataLoader(self.train_set, batch_size=per_rank, shuffle=sampler is None, sampler=sampler,
                                generator=generator, drop_last=len(self.train_set) >= 2 * per_rank,
                                num_workers=cfg.workers, pin_memory=self.device.type == "cuda")
            totals, steps, skipped, t0 = {}, 0, 0, time.time()
            bar = _bar(loader, epoch, cfg.epochs, self.progress)
            for batch in bar:
                with self.autocast():
                    losses = self._losses(batch, epoch)
                self.optimizer.zero_grad(set_to_none=True)
                losses["loss"].backward()
                if _finite(losses["loss"], self.model.parameters()):
                    self.optimizer.step()
                else:  # one NaN or infinite gradient would spoil every weight at once: the step is left out
                    skipped += 1
                steps += 1
                for k, v in losses.items():
                    totals[k] = totals.get(k, 0.0) + float(v.detach())
                if hasattr(bar, "set_postfix"):
                    bar.set_postfix(loss=f"{totals['loss'] / steps:.4f}")
            train = {f"train_{k}": v / max(steps, 1) for k, v in totals.items()}
            if skipped:
                self._skipped(epoch, skipped, steps)
            if self.world > 1:
                dist.barrier()
            metrics = self.validate()
            if self.main:
                improved = "score" not in metrics or metrics["score"] > self.best  # no validation: the last
                if improved:
                    self.best = metrics.get("score", self.best)
                    save_bundle(_unwrap(self.model), self.out / BEST_MODEL, self._bundle_meta(metrics, epoch),
                                overwrite=True)
                if epoch == cfg.epochs - 1 and cfg.task in ("seg", "sr"):  # the end of the (annealed) run too
                    save_bundle(_unwrap(self.model), self.out / FINAL_MODEL, self._bundle_meta(metrics, epoch),
                                overwrite=True)
                self._save_checkpoint(epoch)
                row = {"epoch": epoch, "lr": lr, **train, **{f"val_{k}": v for k, v in metrics.items()},
                       "skipped": skipped, "seconds": round(time.time() - t0, 2), "best": int(improved)}
                _append_csv(log_path, row)
                if writer is not None:
                    for k, v in row.items():
                        writer.add_scalar(k, v, epoch)
                if self.progress:
                    shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()) or "no validation cases"
                    print(f"epoch {epoch + 1}/{cfg.epochs}: {shown}", file=sys.stderr, flush=True)
            if self.world > 1:
                dist.barrier()
        if self.main and cfg.task in ("ae", "tl"):
            self._finish_shape_model()
        if self.world > 1:
            dist.barrier()
        return self.out / BEST_MODEL

    def _skipped(self, epoch: int, skipped: int, steps: int) -> None:
        """Steps left out for a non-finite gradient: a warning, or the end of the run if none was taken.
        On the CPU, oneDNN's bfloat16 weight gradient of a 3x3x3 convolution is now and then NaN where the
        feature map is smaller than the kernel (seen at 2 x 2 in-plane with torch 2.13)."""
        what = f"epoch {epoch + 1}: {skipped} of {steps} training steps had a NaN or infinite loss or gradient"
        fix = ("train with --precision fp32" if self.config.precision == "bf16"
               else "lower the learning rate or look for extreme values in the data")
        if skipped == steps:  # on every rank: their gradients are the same all-reduced ones
            raise TrainingError(f"{what}, none was taken; {fix}")
        if self.main:
            warnings.warn(f"{what}, left out (the log's column 'skipped'); if this recurs, {fix}",
                          RuntimeWarning, stacklevel=2)

    def _finish_shape_model(self):
        """Add latent statistics (of the best weights) to the shape model's bundle."""
        best = load_bundle(self.out / BEST_MODEL, device=self.device)
        _unwrap(self.model).load_state_dict(best.model.state_dict())
        meta = dict(best.meta)
        meta["latent"] = self._latent_statistics()
        for key in ("format", "format_version", "acnn_version", "weights_sha256"):
            meta.pop(key, None)
        save_bundle(_unwrap(self.model), self.out / BEST_MODEL, meta, overwrite=True)


def recipe(config: dict, prior_sha256: str | None = None, init_sha256: str | None = None,
           may_change=RESUME_MAY_CHANGE) -> dict:
    """What two runs must share for one to continue the other (``--resume``) or to stand for it (a benchmark's
    run, reused): the training settings ``config`` but ``may_change`` (a setting it lacks, as a model of an
    earlier version may, at its default), and the prior's and the starting model's weights, by checksum."""
    settings = TrainConfig.from_dict(config).to_dict()
    return json.loads(json.dumps({**{k: v for k, v in settings.items() if k not in may_change},
                                  "prior": prior_sha256, "init": init_sha256}))


def recipe_of(meta: dict, may_change=RESUME_MAY_CHANGE) -> dict:
    """The :func:`recipe` a trained model's metadata records (settings this version no longer knows left out)."""
    t = meta.get("training") or {}
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    augment = {f.name for f in dataclasses.fields(AugmentConfig)}
    config = {k: v for k, v in (t.get("config") or {}).items() if k in known}
    if isinstance(config.get("augment"), dict):
        config["augment"] = {k: v for k, v in config["augment"].items() if k in augment}
    return recipe(config, t.get("prior_sha256"), t.get("init_sha256"), may_change)


def recipe_differences(then: dict, now: dict) -> list[str]:
    """What differs between two recipes, one phrase each ("lambda1 0.01 in the run, 0.1 now")."""
    names = {"prior": "the prior (weights sha256)", "init": "the starting model (weights sha256)",
             "cases": "the number of cases", "held_out": "the validation subjects"}
    return [f"{names.get(k, k)} {_short(then.get(k))} in the run, {_short(now.get(k))} now"
            for k in sorted(set(then) | set(now)) if then.get(k) != now.get(k)]


def _short(value) -> str:
    """A setting's value for a message: a checksum cut to 12 characters, nothing as "none"."""
    if value is None:
        return "none"
    if isinstance(value, str) and len(value) == 64:
        return value[:12] + "..."
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def _finite(loss: torch.Tensor, parameters) -> bool:
    """Whether a step's loss and every gradient are finite (one synchronisation with the device)."""
    checks = [torch.isfinite(loss).all()] + [torch.isfinite(p.grad).all() for p in parameters if p.grad is not None]
    return bool(torch.stack(checks).all())


def _bar(loader, epoch, epochs, enabled):
    if not enabled:
        return loader
    from .progress import progress_bar

    return progress_bar(loader, desc=f"epoch {epoch + 1}/{epochs}", unit="batch", leave=False)


def _append_csv(path: Path, row: dict) -> None:
    new = not path.exists()
    if not new:
        with open(path, encoding="utf-8") as f:
            header = next(csv.reader(f), [])
        if set(header) != set(row):
            row = {k: row.get(k, "") for k in header}
    with open(path, "a", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard not installed: CSV only
        return None
    return SummaryWriter(str(out / "tensorboard"))


def train(config: TrainConfig, data, out, prior=None, resume=False, overwrite=False, command=None,
          progress=True, init=None) -> Path:
    """Train and return the best model's bundle folder (``out/model``); ``init``: a model (run, bundle or
    bundled model's name) whose network and weights the run starts from (fine-tuning)."""
    trainer = Trainer(config, data, out, prior, resume, overwrite, command, progress, init)
    try:
        return trainer.fit()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def describe(path) -> list[dict]:
    """The log of a run folder as a list of dicts (for tests and reports)."""
    with open(Path(path) / LOG, encoding="utf-8") as f:
        return list(csv.DictReader(f))

