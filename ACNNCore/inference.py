"""Using trained models: a segmenter, a super-resolver and a shape model.

Each takes a :class:`Volume` of any size and orientation: it is normalised and
resampled onto the model's input grid (centred on the heart that a real-data
model's search finds, else on the image), the network runs there, and the
result is resampled onto an HR grid aligned with the input — the input's
in-plane grid, with each acquired slice split into K thin slices — so that it
overlays the input exactly in physical space.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from .bundle import (Bundle, check_ensemble, check_task, label_names, load_bundle, members, prior_of, read_meta,
                     resolve)
from .errors import InputError
from .io import looks_like_labels
from .labels import LV_BLOOD_POOL, LV_MYOCARDIUM
from .losses import one_hot
from .metrics import defects, plausibility
from .networks import in_layout, pick_device, to_device
from .postprocessing import clean_up
from .preprocessing import (BASE_FIRST, labels_center, model_geometry, normalize_intensity, resample,
                            resample_channels, stack_order)
from .volume import Geometry, Volume

log = logging.getLogger(__name__)


def hr_geometry(lr: Geometry, factor: int) -> Geometry:
    """The HR grid of an LR stack: same in-plane grid, each slice split into ``factor`` (the inverse of
    :func:`ACNNCore.phantom.acquisition.lr_geometry`)."""
    sz = lr.spacing[2] / factor
    first = lr.index_to_physical((0.0, 0.0, -(factor - 1) / 2.0 / factor))
    return Geometry((lr.shape[0], lr.shape[1], lr.shape[2] * factor), (lr.spacing[0], lr.spacing[1], sz),
                    tuple(first), lr.direction)


def _slices_last(volume: Volume) -> tuple[Volume, tuple]:
    """A checked input with its slice axis last (:meth:`Volume.slices_last`), and the order that turns a result
    on its grid back to the input's axes."""
    _check_input(volume)
    volume, order = volume.slices_last()
    return volume, tuple(int(i) for i in np.argsort(order))


def _check_input(volume: Volume) -> None:
    if not isinstance(volume, Volume):
        raise InputError("expected an image volume")
    volume.check_finite()
    if min(volume.shape) < 2:
        raise InputError(f"image of shape {volume.shape} has a single slice along one axis: a stack of several "
                         f"slices is needed (a 2-D image is not one)")
    if looks_like_labels(volume):
        raise InputError("the input holds label values 0-3 only: a label map, not an image")


VIEW = (0.0, (0.0, 0.0))  # a model's grid as it is: turned 0 degrees in-plane, moved 0 mm
# test-time augmentation (Segmenter(tta=True), `acnn segment --tta`): the model's grid also turned by +-5 and
# +-10 degrees and moved 3 mm diagonally, within what training augmentation does (ACNNCore.augment: +-10
# degrees, +-4 mm); each view's output mapped back onto the input's grid, the nine averaged
TTA_VIEWS = (VIEW, (-10.0, (0.0, 0.0)), (-5.0, (0.0, 0.0)), (5.0, (0.0, 0.0)), (10.0, (0.0, 0.0)),
             (0.0, (3.0, 3.0)), (0.0, (3.0, -3.0)), (0.0, (-3.0, 3.0)), (0.0, (-3.0, -3.0)))

# the in-plane orientations a network may be shown a stack in (Segmenter(orient=True), `acnn segment --orient`):
# the eight turns and mirrorings of its array's in-plane axes, as (axes swapped, first reversed, second reversed)
IN_PLANE_VIEWS = tuple((t, f0, f1) for t in (False, True) for f0 in (False, True) for f1 in (False, True))


def in_plane_view(volume: Volume, view) -> Volume:
    """``volume`` (slices last) with its array turned or mirrored in-plane by ``view`` (of
    :data:`IN_PLANE_VIEWS`): the same voxels at the same places, laid out otherwise."""
    swapped, first, second = view
    volume = volume.permuted((1, 0, 2)) if swapped else volume
    volume = volume.flipped(0) if first else volume
    return volume.flipped(1) if second else volume


def _from_view(array: np.ndarray, view) -> np.ndarray:
    """An array laid out as :func:`in_plane_view` lays out a volume (its last three axes X, Y, Z) back in the
    volume's own layout."""
    swapped, first, second = view
    array = np.flip(array, -2) if second else array
    array = np.flip(array, -3) if first else array
    return np.ascontiguousarray(np.swapaxes(array, -3, -2) if swapped else array)


def describe_view(view) -> str:
    """How :func:`in_plane_view` lays the array out, in words."""
    swapped, first, second = view
    if not any(view):
        return "as stored"
    return "with its " + ", then ".join(
        [w for w, on in (("in-plane axes swapped", swapped), ("first axis reversed", first),
                         ("second axis reversed", second)) if on])


def _softmax(logits: torch.Tensor) -> torch.Tensor:
    """A segmentation network's logits (N, C, X, Y, Z) -> class probabilities."""
    return torch.softmax(logits, 1)


def sureness(probs: np.ndarray) -> float:
    """How sure a network is of its output: the mean top-class probability over the voxels it labels
    foreground ((C, X, Y, Z) probabilities); 0 where it labels none."""
    foreground = probs.argmax(0) > 0
    return float(probs.max(0)[foreground].mean()) if foreground.any() else 0.0


# the heart search (_Runner.locate): at most 4 looks over the model's window after the whole image, until the
# centre moves less than 3 mm in-plane; the heart is the part of highest size x sureness ** 20 (heart_part)
LOCATE_WINDOWS, LOCATE_SETTLED_MM, SURENESS_POWER = 4, 3.0, 20
# an ensemble's search (ensemble_center): its first member's, unless that ends farther than this in-plane from
# the median of its members' centres -- off the heart: a search on it ends within about 35 mm of the LV's centre
ENSEMBLE_AGREE_MM = 35.0


# what inference reads of a bundle's model.json (``acnn train`` writes them all): its input and output grids
GRID_KEYS = ("input.shape", "input.spacing", "input.factor", "input.normalization.percentiles", "output.shape",
             "output.spacing")


def _lookup(meta: dict, path: str):
    """``meta``'s value at a dotted path, or None."""
    for key in path.split("."):
        meta = meta.get(key) if isinstance(meta, dict) else None
    return meta


class _Runner:
    """A loaded bundle on a device, with a CPU fallback when CUDA runs out of memory. On the CPU, models and
    images run channels-last (:data:`ACNNCore.networks.LAYOUT`): the same numbers, computed faster."""

    def __init__(self, model, device: str, task):
        self.device = pick_device(device)
        self.bundle: Bundle = load_bundle(model, device=self.device, expect_task=task)
        in_layout(self.bundle.model, self.device)
        self.meta = self.bundle.meta
        missing = [path for path in GRID_KEYS if _lookup(self.meta, path) is None]
        if missing:
            raise InputError(f"{self.bundle.path}/model.json lacks {', '.join(missing)}: the grids the network "
                             f"takes and gives, which inference needs (acnn train records them)")

    @torch.no_grad()
    def run(self, fn, *tensors):
        def on_device():
            return fn(*(to_device(t, self.device) for t in tensors)).cpu().contiguous()

        try:
            return on_device()
        except torch.cuda.OutOfMemoryError:
            log.warning("CUDA out of memory: running on the CPU instead")
            self.device = torch.device("cpu")
            in_layout(self.bundle.model.to(self.device), self.device)
            torch.cuda.empty_cache()
            return on_device()

    def normalised(self, volume: Volume):
        """``volume`` checked and normalised as the model's training data were: (normalised volume, the
        intensity scaling used). Done once per image, whatever grids the network then sees it on."""
        _check_input(volume)
        return normalize_intensity(volume, self.meta["input"]["normalization"]["percentiles"])

    def model_input(self, normalised: Volume, center=None, shape=None, view=VIEW):
        """Resample an image normalised by :meth:`normalised` onto the model's input grid, centred on
        ``center`` (default: the image centre; ``shape`` overrides the model's in-plane shape) and seen from
        ``view`` (degrees turned in-plane, mm moved: :meth:`Geometry.turned`). A model trained on real data
        takes the slices as acquired: its grid keeps the input's slice thickness and count.

        Returns the (1, 1, X, Y, Z) tensor and its grid."""
        spec = self.meta["input"]
        shape, spacing = list(shape or spec["shape"]), list(spec["spacing"])
        if self.as_acquired:  # every acquired slice, padded to a multiple of 16 (what a U-Net's strides need)
            shape[2] = int(np.ceil(max(normalised.shape[2], spec["shape"][2]) / 16.0) * 16)
            spacing[2] = normalised.spacing[2]
        grid = model_geometry(normalised, shape, spacing, center).turned(*view)
        on_grid = resample(normalised, grid, "linear")
        return torch.from_numpy(on_grid.array.astype(np.float32))[None, None], grid

    @property
    def as_acquired(self) -> bool:
        return self.meta["input"].get("slices") == "as acquired"

    def output_geometry(self, volume: Volume) -> Geometry:
        """HR grid aligned with the input: its in-plane grid, slices of the model's output thickness."""
        if self.as_acquired:
            return volume.geometry
        k = max(1, int(round(volume.spacing[2] / self.meta["output"]["spacing"][2])))
        return hr_geometry(volume.geometry, k)

    def locate(self, normalised: Volume, model, near=None) -> np.ndarray | None:
        """Where the heart is (the coarse stage of real-data models). First the network over the whole field
        of view at its own spacing (it is fully convolutional): it was never trained on anything that large
        and also labels other things (round bright structures, parts of the liver), so the heart is the part
        :func:`heart_part` picks. Then over its own window there, re-centred on the heart part it sees in it,
        until the centre moves less than ``LOCATE_SETTLED_MM`` in-plane (at most ``LOCATE_WINDOWS`` windows).
        ``near``: where the heart was found in another frame of the same cine (a physical point): the windows
        start there, without the pass over the whole field of view (the whole search where the first window
        shows no heart). ``normalised``: the image, by :meth:`normalised`. None where the network labels
        nothing."""
        spec = self.meta["input"]
        extent = np.asarray(normalised.geometry.extent_mm[:2]) / np.asarray(spec["spacing"][:2])
        m = max(16, getattr(model, "multiple", 16))  # what the net's in-plane strides need
        whole = [int(min(512 // m * m, np.ceil(e / m) * m)) for e in extent] + [normalised.shape[2]]
        center = None if near is None else np.asarray(near, float)
        for look in range(0 if near is None else 1, 1 + LOCATE_WINDOWS):
            x, grid = self.model_input(normalised, center, shape=whole if look == 0 else None)
            heart = heart_part(self.run(lambda t: _softmax(model(t)), x)[0].numpy())
            if heart is None:
                return center if near is None else self.locate(normalised, model)
            found = grid.index_to_physical(np.argwhere(heart).mean(0))
            settled = center is not None and grid.in_plane_mm(center, found) < LOCATE_SETTLED_MM
            center = found
            if settled:
                break
        return center


def heart_part(probs: np.ndarray) -> np.ndarray | None:
    """Of the connected parts a network labels foreground in ``probs`` ((C, X, Y, Z) class probabilities),
    the heart: the part of highest size x sureness ** ``SURENESS_POWER`` (sureness: its mean top-class
    probability) -- the surest part, unless a larger one is nearly as sure (a part twice the size wins when
    it is within 3.5 % as sure). None where nothing is labelled.

    Chosen on the 140 ACDC images with five networks (``benchmarks/ACDC.md``, "Finding the heart"), where
    the surest of the three largest parts once took a smaller, slightly surer stray part for the heart and
    once missed a heart that was only the fourth-largest part: every power from 9 to 100 picks the same
    parts there, and the search ends within 35 mm of the LV's centre on all 700 (before: 5 beyond, 3 of
    them more than 50 mm away: the heart missed)."""
    from scipy import ndimage

    parts, n = ndimage.label(probs.argmax(0) > 0)
    if n == 0:
        return None
    index = np.arange(1, n + 1)
    sizes = np.bincount(parts.ravel(), minlength=n + 1)[1:]
    sureness = np.asarray(ndimage.mean(probs.max(0), parts, index))
    return parts == index[int(np.argmax(sizes * sureness ** SURENESS_POWER))]


def ensemble_center(centers: list, geometry: Geometry) -> np.ndarray | None:
    """Where an ensemble's window goes, of its members' heart searches (``centers``: physical points in
    member order, None where one found nothing): the first member's (the first that found anything), unless it
    lies more than :data:`ENSEMBLE_AGREE_MM` in-plane (along ``geometry``'s axes) from the median of the
    members' centres -- the others disagree: it missed the heart --; then the centre of the member nearest
    that median. Two members cannot outvote each other: the first is kept. None where none found anything.

    Until 2026-12-05 the first member's search was the ensemble's, whatever the others found: where they
    agree the window is the same. On the benchmark's 28 test images at 0 / 2 / 4 mm with eight low-data
    networks a side (``benchmarks/acdc_ensemble_search.py``, ``benchmarks/ACDC.md``) the first member alone
    ended off the heart in 1-3 of 28 per misalignment, the median of the eight centres in none of 168."""
    found = [np.asarray(c, float) for c in centers if c is not None]
    if not found:
        return None
    median = np.median(found, axis=0)
    if len(found) < 3 or geometry.in_plane_mm(found[0], median) <= ENSEMBLE_AGREE_MM:
        return found[0]
    return min(found, key=lambda c: geometry.in_plane_mm(c, median))


def default_model(volume: Volume) -> str:
    """The bundled segmentation model that suits an image: the phantom model for the phantom's own stacks
    (96 x 96 x 12 of 1.25 x 1.25 x 10 mm), the real-data model (when bundled) for anything else."""
    from .bundle import available

    return "acnn-seg-acdc" if not _phantom_stack(volume) and "acnn-seg-acdc" in available() else "acnn-seg-phantom"


def _phantom_stack(volume: Volume) -> bool:
    """Whether ``volume`` is on the grid of the phantom's LR stacks (96 x 96 x 12 of 1.25 x 1.25 x 10 mm)."""
    axes = sorted(zip(volume.spacing, volume.shape))  # its slices along any axis
    return [n for _, n in axes] == [96, 96, 12] and np.allclose([s for s, _ in axes], (1.25, 1.25, 10.0), atol=1e-3)


@dataclass
class Segmentation:
    labels: Volume  # uint8 on the HR grid aligned with the input
    probabilities: np.ndarray  # (C, X, Y, Z) float32 on the same grid
    label_names: dict  # value -> name
    correction: str = ""  # with a shape model: what ShapeModel.correct did ("plausible", "corrected ...")
    orientation: str = ""  # with Segmenter(orient=True): the in-plane view kept, and why
    view: tuple | None = None  # that view (of IN_PLANE_VIEWS); None without the search
    heart: np.ndarray | None = None  # where the network's window was centred (physical, in that view's layout):
    # where a real-data model found the heart; None for the image centre

    def volumes_ml(self) -> dict:
        v = self.labels.geometry.voxel_volume_ml
        return {name: float(np.count_nonzero(self.labels.array == value)) * v
                for value, name in self.label_names.items()}


class _Model:
    """A model of one task, loaded from a bundle on a device -- or, where ``ENSEMBLE``, several bundles of the
    same task, labels, output spacing and intensity normalisation (e.g. one recipe trained with different
    seeds), whose outputs are averaged on the input's grid."""

    TASK: str | tuple = ""
    PAD: tuple = (0.0,)  # per output channel, the value outside the model's field of view
    ENSEMBLE = False  # whether several bundles may be given
    views = (VIEW,)  # the grids each network sees the input on, their outputs averaged (TTA_VIEWS: augmented)

    def __init__(self, model, device: str = "auto"):
        given = list(model) if isinstance(model, (list, tuple)) else [model]
        models = [m for g in given for m in members(g)]  # a bundled ensemble: its members
        first = {}
        if given:  # the task before the members: a bundled ensemble of another task is that task's model, not four
            folder = resolve(given[0])
            first = read_meta(folder)
            check_task(folder, first, self.TASK)
        self.name = first.get("name", "")  # what the user chose, for messages
        if not models or (len(models) > 1 and not self.ENSEMBLE):
            raise InputError(f"{type(self).__name__} takes {'one model' if models else 'a model'}, "
                             f"not {len(models)}")
        self.runners = [_Runner(m, device, self.TASK) for m in models]
        check_ensemble([r.bundle.path for r in self.runners], [r.meta for r in self.runners])

    @property
    def runner(self) -> _Runner:
        """The (first) bundle: its metadata describe the model, or every member of an ensemble."""
        return self.runners[0]

    @property
    def meta(self) -> dict:
        return self.runner.meta

    def in_learnt_order(self, volume: Volume) -> tuple[Volume, bool]:
        """A stack (slices last) with its slices in the order this model learnt: reversed (the same voxels at the
        same places) where its geometry says it runs one way (:func:`ACNNCore.preprocessing.stack_order`) and the
        bundle that its training maps ran the other (``input.slice_order``); else as it is. Returns (the stack,
        whether it was reversed)."""
        learnt, given = self.meta["input"].get("slice_order"), stack_order(volume.geometry)
        over = learnt is not None and given is not None and learnt != given
        return (volume.flipped(2) if over else volume), over

    def _channels_on_input_grid(self, volume: Volume, output, center=None, progress=None,
                                near=None) -> tuple[np.ndarray, Geometry, object, np.ndarray | None]:
        """Run the network (each network of an ensemble, averaging) and map its (C, X, Y, Z) output,
        ``output(logits)``, onto the HR grid aligned with ``volume``; outside the model's field of view
        each channel takes its ``PAD`` value. The model's window is centred on ``center`` (a physical point;
        default: where a real-data model finds the heart -- an ensemble's members together, each search
        starting ``near`` a point where given (:meth:`_heart`) --, else the image centre). Returns (channels,
        grid, intensity scaling, the window's centre: None for the image centre). ``progress(done, total)`` is
        called after each network's pass over each view."""
        total, passes, done = None, len(self.runners) * len(self.views), 0
        normalised, scaling = self.runner.normalised(volume)  # an ensemble's members share the normalisation
        if center is None:
            center = self._heart(normalised, near)
        for runner in self.runners:
            model = runner.bundle.model
            out = runner.output_geometry(volume)
            for view in self.views:
                x, grid = runner.model_input(normalised, center, view=view)
                channels = runner.run(lambda t: output(model(t)), x)[0].numpy()
                model_hr = grid if runner.as_acquired else hr_geometry(grid, runner.meta["input"]["factor"])
                if not model_hr.same_as(out):
                    pads = [self.PAD[min(i, len(self.PAD) - 1)] for i in range(len(channels))]
                    channels = resample_channels(channels, model_hr, out, pads)
                total = channels.astype(np.float32) if total is None else total + channels
                done += 1
                if progress is not None:
                    progress(done, passes)
        return total / passes, out, scaling, center

    def _heart(self, normalised: Volume, near=None) -> np.ndarray | None:
        """Where a real-data model finds the heart in an image (``normalised``: by :meth:`_Runner.normalised`,
        the same for every member of an ensemble): each network's search (:meth:`_Runner.locate`, starting
        ``near`` a point where given), an ensemble's found together (:func:`ensemble_center`); None for a model
        without one (trained on its own window)."""
        searches = [runner.locate(normalised, runner.bundle.model, near)
                    for runner in self.runners if runner.meta["input"].get("localize")]
        return ensemble_center(searches, normalised.geometry) if searches else None

    def caveats(self, volume: Volume) -> list[str]:
        """Why the output may be worth less than it looks, for the user: 1 mm voxels given to a model of thick-slice
        stacks (what a file whose header lacks the spacing is read with), slices of another thickness than the
        sub-pixel model learnt (resampled to it first: detail lost) or far from those the real-data model learnt
        (taken as acquired: under half or over one and a half times the median of its training images'), an MR
        model trained on phantoms only on an image that is not one of the phantom's stacks."""
        name, spec, notes = self.name, self.meta["input"], []
        volume = _slices_last(volume)[0]
        learnt, slices = float(spec["spacing"][2]), float(volume.spacing[2])
        thick = learnt >= 2 * max(spec["spacing"][:2])  # a model of thick-slice stacks (not the 3-D echo model)
        if thick and np.allclose(volume.spacing, 1.0, rtol=0, atol=1e-6):
            notes.append(f"this image's voxels are 1 x 1 x 1 mm, the spacing an image is given when its file does "
                         f"not say (a NIfTI written without its affine); {name} learnt {learnt:g} mm slices: if the "
                         f"file lacks the spacing, set it (Slicer: Volumes module, Volume Information) and run again")
        elif spec.get("factor", 1) > 1 and abs(slices - learnt) > 0.1 * learnt:
            notes.append(f"{name} learnt {learnt:g} mm slices and this image has {slices:g} mm: it is "
                         f"resampled to {learnt:g} mm first, "
                         + ("so detail is lost (linear interpolation may keep more)" if slices < learnt
                            else "its slices interpolated"))
        elif spec.get("slices") == "as acquired" and not 0.5 * learnt <= slices <= 1.5 * learnt:
            notes.append(f"{name} learnt slices as acquired, {learnt:g} mm thick (the median of its training "
                         f"images), and this image has {slices:g} mm slices: its output may be poor")
        phantom = self.meta.get("training", {}).get("data", {}).get("phantom")
        if phantom and phantom.get("modality", "mr") == "mr" and not _phantom_stack(volume):
            notes.append(f"{name} learnt from phantom images only (real MR has no high-resolution truth to learn "
                         f"from): on a real image, read its output beside the input")
        return notes


CORRECTION_RADII = (3, 6, 12, 24)  # in-plane voxels around an implausible map's defects (then everywhere)
CORRECTION_STEPS = (0.0, 0.25, 0.5, 0.75, 1.0)  # how far the code moves toward the mean code
CORRECTION_WEIGHTS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, np.inf)  # of the decoded shape against p
CORRECTION_MAX_CHANGE = 0.25  # of the LV's voxels: a correction that must change more replaces the output, refused
CORRECTION_REFUSED = "not corrected: the nearest plausible shape found"  # how a refusal over that limit begins
CLOSED_BY_RULE = "the ring closed by rule instead"  # ends a correction's note where close_myocardium took over


def check_max_change(max_change: float | None) -> None:
    """ShapeModel.correct's limit: a share of the LV's voxels above 0, or None / inf for no limit."""
    if max_change is not None and not max_change > 0:
        raise InputError(f"max_change (--max-change) is a share of the LV's voxels, above 0 (inf: no limit), "
                         f"not {max_change}")


class Segmenter(_Model):
    """LR stack -> HR label map, with a ``seg`` bundle (ACNN-Seg, 3D-Seg or a baseline) or a list of them: an
    ensemble, their probabilities averaged. ``tta``: each network's probabilities also averaged over
    :data:`TTA_VIEWS` (test-time augmentation; nine times the work where the network runs)."""

    TASK = "seg"
    ENSEMBLE = True
    PAD = (1.0, 0.0)  # outside the model's field of view: background (channels past the last take the last)

    def __init__(self, model="acnn-seg-phantom", device: str = "auto", cleanup: bool = False,
                 close_myocardium: bool = False, shape_model=None, max_change: float | None = CORRECTION_MAX_CHANGE,
                 tta: bool = False, orient: bool = False):
        check_max_change(max_change)
        super().__init__(model, device)
        if tta:  # test-time augmentation: each network's output averaged over TTA_VIEWS
            self.views = TTA_VIEWS
        # the stack shown in each of IN_PLANE_VIEWS, the output the network is surest of kept: for images stored
        # turned or mirrored against the training images' layout (a converter's flipped rows)
        self.orient = orient
        self.cleanup = cleanup  # clean_up(): each structure's largest connected part, blood pool without holes
        self.close_myocardium = close_myocardium  # the clean-up, then the myocardial ring closed
        # ShapeModel.correct(): the clean-up, then an implausible output corrected with a learnt shape space --
        # a shape model (bundle, name or ShapeModel), or True: the prior the networks were trained with (an
        # ensemble's must share it);
        # with close_myocardium as well, what the correction leaves implausible is then closed by rule
        self.shape_model = None
        self.max_change = max_change  # ShapeModel.correct's limit on how much of the LV a correction changes
        if shape_model is not None and shape_model is not False:
            if shape_model is True:
                shape_model = prior_of([r.bundle.path for r in self.runners])
            self.shape_model = shape_model if isinstance(shape_model, ShapeModel) else ShapeModel(shape_model, device)
            ours, theirs = label_names(self.meta), label_names(self.shape_model.meta)
            if ours != theirs:
                raise InputError(f"shape model {self.shape_model.runner.bundle.path} knows the labels {theirs}, "
                                 f"this segmenter {ours}: they must be the same")

    @property
    def passes(self) -> int:
        """Network passes per image: ensemble members x test-time views (x in-plane orientations)."""
        return len(self.runners) * len(self.views) * (len(IN_PLANE_VIEWS) if self.orient else 1)

    def __call__(self, volume: Volume, progress=None, view=None, near=None, checkpoint=None) -> Segmentation:
        """``progress(done, total)``: after each of the :attr:`passes` network passes (ensembles, TTA);
        ``checkpoint()``: during the shape model's correction (:meth:`ShapeModel.correct`). A stack
        whose slices lie along another array axis is segmented with them last and the result turned back.
        ``view``: with ``orient``, the in-plane layout to use (another frame's :attr:`Segmentation.view`)
        instead of searching for it; ``near``: where to start the heart search (another frame's
        :attr:`Segmentation.heart`, with its view). The clean-up and the shape model's correction work in the
        layout the network saw (the shape model learnt it too); the result is laid out as the input."""
        volume, back = _slices_last(volume)
        volume, over = self.in_learnt_order(volume)  # turned back below
        if self.orient and view is None:
            probs, out, orientation, view, heart = self._oriented(volume, progress)
        else:
            view = view or IN_PLANE_VIEWS[0]
            probs, out, _, heart = self._channels_on_input_grid(in_plane_view(volume, view), _softmax,
                                                                progress=progress, near=near)
            orientation = f"{describe_view(view)} (as given)" if self.orient else ""
        labels, correction = Volume(probs.argmax(0).astype(np.uint8), out), ""
        if self.shape_model is not None:
            labels, correction = self.shape_model.correct(labels, probs, max_change=self.max_change,
                                                          checkpoint=checkpoint)
            # the rule where the model failed, where it can pass the checks (not with a structure missing)
            if self.close_myocardium and correction.startswith("not corrected"):
                closed = clean_up(labels, close_myocardium=True)
                if plausibility(closed)["plausible"]:
                    labels, correction = closed, f"{correction}; {CLOSED_BY_RULE}"
            log.info("shape model: %s", correction)
        elif self.cleanup or self.close_myocardium:
            labels = clean_up(labels, close_myocardium=self.close_myocardium)
        labels = Volume(_from_view(labels.array, view), self.runner.output_geometry(volume))  # the input's layout
        probs = _from_view(probs, view)
        if over:
            labels, probs = labels.flipped(2), np.ascontiguousarray(np.flip(probs, -1))
        probs = probs.astype(np.float32).transpose(0, *(1 + b for b in back))
        return Segmentation(labels.permuted(back), probs, label_names(self.meta), correction, orientation,
                            view if self.orient else None, heart)

    def _oriented(self, volume: Volume, progress=None) -> tuple[np.ndarray, Geometry, str, tuple,
                                                                np.ndarray | None]:
        """The probabilities of the in-plane view (:data:`IN_PLANE_VIEWS`) the network is surest of
        (:func:`sureness`), on that view's output grid: each view segmented as if the image were stored so,
        heart search and all (a network shown a mirrored chest may look for the heart in the wrong place).
        Returns (probabilities, grid, what was found, the view, where its window was centred)."""
        each, tried = len(self.runners) * len(self.views), []
        for k, view in enumerate(IN_PLANE_VIEWS):
            report = None if progress is None else (lambda done, _, k=k: progress(k * each + done, self.passes))
            probs, out, _, heart = self._channels_on_input_grid(in_plane_view(volume, view), _softmax,
                                                                progress=report)
            tried.append((sureness(probs), view, probs, out, heart))
        sure, view, probs, out, heart = max(tried, key=lambda t: t[0])
        why = f"{describe_view(view)} (sureness {sure:.3f}" + (f"; as stored {tried[0][0]:.3f})" if any(view) else ")")
        return probs, out, why, view, heart

    def heart_center(self, volume: Volume) -> np.ndarray | None:
        """Where the heart search ends in ``volume`` (a physical point; an ensemble's: :func:`ensemble_center`),
        or None for a model without one (trained on images of its own window) or where it finds nothing."""
        volume = self.in_learnt_order(_slices_last(volume)[0])[0]  # searched in the order learnt
        return self._heart(self.runner.normalised(volume)[0])


class SuperResolver(_Model):
    """LR stack -> HR intensity image, with an ``sr`` bundle (ACNN-SR, SR or SR-CNN). The network sees its own
    window (120 mm for the bundled models): on an image wider than that it is centred on the heart that
    ``locator``'s search finds (a segmentation model that has one; "auto": the bundled real-data model, for an
    image that is not one of the phantom's stacks), else on the image centre. Beyond the window (a real
    image's chest) the HR image is the input interpolated linearly (:func:`interpolate_stack`): the whole
    extent, the network's output where it looked."""

    TASK = "sr"
    PAD = (np.nan,)  # outside the model's field of view: filled by interpolation

    def __init__(self, model="acnn-sr-phantom", device: str = "auto", locator: str | None = "auto"):
        super().__init__(model, device)
        self.locator, self._device, self._locators = locator, device, {}

    def __call__(self, volume: Volume, center=None) -> Volume:
        """``center``: where to centre the network's window (a physical point; default :meth:`heart_center`)."""
        volume, back = _slices_last(volume)
        if center is None:
            center = self.heart_center(volume)
        hr, out, scaling, _ = self._channels_on_input_grid(volume, lambda image: image, center)
        hr = scaling.invert(hr[0]).astype(np.float32)
        outside = np.isnan(hr)
        if outside.any():
            hr[outside] = resample(volume, out, "linear").array[outside]
        return Volume(hr, out).permuted(back)

    def window_mm(self) -> np.ndarray:
        """The in-plane extent (mm) the network sees."""
        spec = self.meta["input"]
        return np.asarray(spec["shape"][:2], float) * np.asarray(spec["spacing"][:2], float)

    def heart_center(self, volume: Volume) -> np.ndarray | None:
        """The heart that ``locator`` finds, where ``volume`` reaches beyond the network's window; else None
        (the window at the image centre)."""
        volume = _slices_last(volume)[0]
        if np.all(np.asarray(volume.geometry.extent_mm[:2]) <= self.window_mm() + 1e-6):
            return None
        locator = default_model(volume) if self.locator == "auto" else self.locator
        if not locator:
            return None
        if locator not in self._locators:
            self._locators[locator] = Segmenter(locator, self._device)
        return self._locators[locator].heart_center(volume)


def interpolate_stack(volume: Volume, factor: int, method: str = "linear") -> Volume:
    """The SR baselines: linear or B-spline interpolation of a stack onto its HR grid."""
    return resample(volume, hr_geometry(volume.geometry, factor), {"linear": "linear", "bspline": "bspline"}[method])


class ShapeModel(_Model):
    """The learnt shape space of an ``ae`` or ``tl`` bundle: encode, decode, traverse."""

    TASK = ("ae", "tl")

    def __init__(self, model="ae-phantom", device: str = "auto"):
        super().__init__(model, device)
        latent = self.meta.get("latent")
        if not latent:
            raise InputError(f"{self.runner.bundle.path} has no latent statistics; retrain it with `acnn train`")
        self.mean = np.asarray(latent["mean"], np.float32)
        self.std = np.asarray(latent["std"], np.float32)
        self.order = list(latent["order"])
        self.net = self.runner.bundle.model
        out = self.meta["output"]
        # where no image places a shape (the mean shape, a traversal), it lies as the heart does in the patient,
        # apex down: the grid of a model whose maps run base first (ACDC's) is turned half a turn about its first
        # axis, so that its slices run down (a turn, not a mirror: the RV stays on the patient's right of the LV)
        self.base_first = self.meta["input"].get("slice_order") == BASE_FIRST
        self.grid = Geometry(tuple(out["shape"]), tuple(out["spacing"]),
                             direction=np.diag([1.0, -1.0, -1.0]) if self.base_first else np.eye(3)
                             ).centered_at((0.0, 0.0, 0.0))
        self.num_classes = self.net.num_classes if hasattr(self.net, "num_classes") else \
            self.net.autoencoder.num_classes

    @property
    def code_size(self) -> int:
        return len(self.mean)

    def decode(self, code, geometry: Geometry | None = None) -> Volume:
        """A code -> label map on the model's grid, centred on the origin or placed on ``geometry`` (a grid
        of the model's shape, e.g. :meth:`placement` of the encoded label map)."""
        if geometry is not None and tuple(geometry.shape) != tuple(self.grid.shape):
            raise InputError(f"a decoded shape has the model's grid {self.grid.shape}, not {geometry.shape}")
        code = np.asarray(code, np.float32)
        if code.shape != (self.code_size,):
            raise InputError(f"a code of this model has {self.code_size} values, not {code.size}")
        if not np.isfinite(code).all():
            raise InputError(f"the code holds {int(np.count_nonzero(~np.isfinite(code)))} NaN or infinite values")
        return Volume(self.probabilities(code).argmax(0).astype(np.uint8), geometry or self.grid)

    def placement(self, labels: Volume, as_trained: bool = False) -> Geometry:
        """The model's grid centred on a label map's structures, in its orientation (where it is encoded).
        ``as_trained``: for a model trained on real data's slices as acquired, the map's own slice spacing --
        the crop that model saw as a segmentation network's prior -- rather than the model's."""
        spacing = list(self.grid.spacing)
        labels = labels.slices_last()[0]  # the model's grid takes its slices along the map's
        if as_trained and self.runner.as_acquired:
            spacing[2] = labels.spacing[2]
        along = self.in_learnt_order(labels)[0]  # the grid's slices in the order the model learnt
        return model_geometry(along, self.grid.shape, spacing, labels_center(labels))

    def reconstruct(self, labels: Volume, as_trained: bool = False) -> Volume:
        """A label map as the shape space holds it: encoded and decoded where it lies (:meth:`placement`, with
        ``as_trained``), on the model's grid there."""
        grid = self.placement(labels, as_trained)
        return self.decode(self.encode(labels, grid), grid)

    def probabilities(self, code) -> np.ndarray:
        """A code -> (C, X, Y, Z) class probabilities on the model's grid."""
        logits = self.runner.run(self.net.decode, torch.from_numpy(np.asarray(code, np.float32))[None])
        return torch.softmax(logits, 1)[0].numpy()

    def _check_labels(self, labels: Volume) -> None:
        if labels.check_whole().array.max() >= self.num_classes:
            known = ", ".join(f"{v} {n}" for v, n in label_names(self.meta).items())
            raise InputError(f"label map holds values up to {int(labels.array.max())}; "
                             f"{self.runner.bundle.name} knows {known or self.num_classes - 1}")

    def encode(self, labels: Volume, geometry: Geometry | None = None) -> np.ndarray:
        """A label map (any grid) -> code; it is first resampled onto the model grid around its centre (or
        onto ``geometry``, a grid of the model's shape)."""
        self._check_labels(labels)
        on_grid = resample(labels, geometry or self.placement(labels), "nearest").array
        onehot = one_hot(torch.from_numpy(on_grid.astype(np.int64))[None], self.num_classes)
        return self.runner.run(self.net.encode, onehot)[0].numpy()

    def encode_image(self, image: Volume) -> np.ndarray:
        """An HR intensity image -> code through the T-L predictor."""
        if not hasattr(self.net, "predict"):
            raise InputError("encoding an image needs a T-L model (this is an autoencoder)")
        normalised, _ = normalize_intensity(_slices_last(image)[0])
        on_grid = resample(normalised, model_geometry(normalised, self.grid.shape, self.grid.spacing), "linear")
        return self.runner.run(self.net.predict, torch.from_numpy(on_grid.array)[None, None])[0].numpy()

    def correct(self, labels: Volume, probabilities: np.ndarray | None = None, blood: int = LV_BLOOD_POOL,
                myocardium: int = LV_MYOCARDIUM, max_change: float | None = CORRECTION_MAX_CHANGE,
                checkpoint=None) -> tuple[Volume, str]:
        """The plausible label map nearest a segmenter's implausible one that this shape model offers: the
        shape space as a prior at test time (after Painchaud et al., MICCAI 2019, who replace the whole map).

        The map is cleaned up (:func:`clean_up`); if it still fails :func:`ACNNCore.metrics.plausibility`,
        it is encoded, and candidates ``argmax(log p + w log q)`` are tried in order of how much they change:
        within ``r`` voxels in-plane of its defects (:func:`ACNNCore.metrics.defects`) for each r of
        :data:`CORRECTION_RADII`, then everywhere; for each, the code moved toward the mean code by each step
        of :data:`CORRECTION_STEPS`; for each, the prior's weight ``w`` rising through
        :data:`CORRECTION_WEIGHTS` until a cleaned-up candidate passes -- ``p`` the segmenter's probabilities
        ``(C, X, Y, Z)`` on the map's grid (without them, the map itself, near one-hot), ``q`` the decoded
        shape's. Of the candidates that pass in the smallest region where any does, the one that changes the
        fewest voxels is returned, with how it was found; none passing, or that one changing more than
        ``max_change`` times the map's LV voxels (blood pool and myocardium; None: no limit, the whole map may
        be replaced as Painchaud et al. do), the cleaned-up map, with "not corrected" and why. A plausible map
        is returned cleaned up ("plausible"). A map whose slices lie along another axis is corrected with them
        last (:meth:`Volume.slices_last`). ``checkpoint()``, where given, is called as the search starts and
        before each region is searched (a GUI's progress, and its way to cancel by raising: a search takes up to
        seconds)."""
        from scipy import ndimage

        if probabilities is not None and probabilities.shape != (self.num_classes, *labels.shape):
            raise InputError(f"probabilities of shape {probabilities.shape} do not fit a {labels.shape} map of "
                             f"{self.num_classes} classes (this shape model's)")
        turned, order = labels.slices_last()
        if order != (0, 1, 2):
            p = None if probabilities is None else probabilities.transpose(0, *(1 + o for o in order))
            out, how = self.correct(turned, p, blood, myocardium, max_change, checkpoint)
            return out.permuted(np.argsort(order)), how
        check_max_change(max_change)
        self._check_labels(labels)
        labels = clean_up(labels, blood, myocardium)
        if plausibility(labels, blood, myocardium)["plausible"]:
            return labels, "plausible"
        if not (labels.array == blood).any() and not (labels.array == myocardium).any():
            return labels, "not corrected: no LV found"
        checkpoint = checkpoint or (lambda: None)
        checkpoint()
        # all work is done in-plane in the box around the structures that the widest region can reach
        labelled = np.argwhere(labels.array > 0)
        margin = max(CORRECTION_RADII) + 2
        lo = np.append(np.maximum(labelled.min(0)[:2] - margin, 0), 0)
        hi = np.append(np.minimum(labelled.max(0)[:2] + margin + 1, labels.shape[:2]), labels.shape[2])
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        sub = Volume(labels.array[box], Geometry(tuple(hi - lo), labels.spacing,
                                                 tuple(labels.geometry.index_to_physical(lo)), labels.direction))
        if probabilities is None:
            p = one_hot(torch.from_numpy(sub.array.astype(np.int64))[None], self.num_classes)[0].numpy()
        else:
            p = probabilities[(slice(None),) + box]
        log_p = np.log(np.clip(p, 1e-4, 1.0))
        at_fault = defects(labels, blood, myocardium)[box]
        grid = self.placement(labels, as_trained=True)
        code = self.encode(labels, grid)
        pads = [1.0] + [0.0] * (self.num_classes - 1)
        decoded = {}  # each step's decoded shape, log q on the box
        for step in CORRECTION_STEPS:
            q = self.probabilities(code + step * (self.mean - code))
            decoded[step] = np.log(np.clip(resample_channels(q, grid, sub.geometry, pads), 1e-4, 1.0))

        def lightest(step, region):
            """(voxels changed, candidate, step, weight) of the lightest weight whose candidate passes; None."""
            for w in CORRECTION_WEIGHTS:
                fused = decoded[step] if np.isinf(w) else log_p + w * decoded[step]
                candidate = clean_up(sub.with_array(np.where(region, fused.argmax(0), sub.array).astype(np.uint8)),
                                     blood, myocardium)
                if plausibility(candidate, blood, myocardium)["plausible"]:
                    return int(np.count_nonzero(candidate.array != sub.array)), candidate, step, w
            return None

        cross = ndimage.generate_binary_structure(2, 1)
        # the steps' searches side by side (their connected-component work lets other threads run)
        with ThreadPoolExecutor(min(len(CORRECTION_STEPS), os.cpu_count() or 1)) as pool:
            for radius in (CORRECTION_RADII if at_fault.any() else ()) + (None,):  # no defect: a structure missing
                checkpoint()
                region = np.ones(sub.shape, bool) if radius is None else \
                    ndimage.binary_dilation(at_fault, ndimage.iterate_structure(cross, radius)[..., None])
                found = [f for f in pool.map(lightest, CORRECTION_STEPS, [region] * len(CORRECTION_STEPS)) if f]
                if found:
                    break
        if not found:
            return labels, "not corrected: no plausible shape found"
        changed, candidate, step, w = min(found, key=lambda f: f[0])  # of the smallest region where any passes
        where = "everywhere" if radius is None else f"within {radius} voxels of its defects"
        lv = int(np.count_nonzero(np.isin(labels.array, (blood, myocardium))))
        if max_change is not None and changed > max_change * lv:
            return labels, (f"{CORRECTION_REFUSED} ({where}) changes {changed} "
                            f"voxels, {changed / lv:.0%} of the LV's {lv}, more than {max_change:.0%}")
        out = labels.array.copy()
        out[box] = candidate.array
        return labels.with_array(out), (f"corrected {where}: {changed} voxels changed, code {step:.2f} of "
                                         f"the way to the mean, prior weight {w:g}")

    def traverse(self, dim: int, steps: int = 9, k: float = 2.0, base=None,
                 geometry: Geometry | None = None) -> list[tuple[float, Volume]]:
        """Decode ``base`` (default: the mean code) with dimension ``dim`` swept over mean +- k std, on the
        model's grid or placed on ``geometry`` (as :meth:`decode`)."""
        if not 0 <= dim < self.code_size:
            raise InputError(f"dimension {dim} is outside the {self.code_size}-d code")
        base = self.mean.copy() if base is None else np.asarray(base, np.float32).copy()
        out = []
        for z in np.linspace(-k, k, steps):
            code = base.copy()
            code[dim] = self.mean[dim] + z * self.std[dim]
            out.append((float(z), self.decode(code, geometry)))
        return out
