"""ShapeExplorer: the learnt LV shape space of an AE or T-L bundle, decoded live into a segmentation."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ACNNCore.bundle import label_names
from ACNNCore.errors import InputError
from ACNNCore.inference import ShapeModel
from ACNNCore.metrics import plausibility, verdict

from . import mrml
from .common import device_for, models_for


@dataclass
class Slider:
    dim: int  # latent dimension
    mean: float
    std: float
    usage: float  # how often the dimension is used in the training set (order of the sliders)

    @property
    def range(self) -> tuple[float, float]:
        """mean ± 2 std: the range the paper traverses."""
        return self.mean - 2 * self.std, self.mean + 2 * self.std


class ShapeExplorerLogic:
    """Holds a shape model and the current code; ``update`` decodes it into a segmentation node."""

    def __init__(self):
        self.model: ShapeModel | None = None
        self.code: np.ndarray | None = None
        self.placement = None  # grid where the shape is shown (the model grid at the origin by default)
        self.last_update_ms: float = 0.0
        self.last_labels = None  # the label map of the last update
        self.last_verdict = ""  # its plausibility in words ("plausible", "IMPLAUSIBLE: ...")

    @staticmethod
    def models() -> list[str]:
        return models_for("ae", "tl")

    @staticmethod
    def prior_of(seg_model: str | None) -> str | None:
        """The bundled shape model a segmentation model was trained with (its prior, found by checksum; e.g.
        ae-acdc for acnn-seg-acdc): the shape space its outputs are drawn towards. None where it has no prior
        or the prior is not bundled."""
        from ACNNCore.bundle import MODELS_DIR, prior_of

        if not seg_model:
            return None
        try:
            folder = prior_of(seg_model)
        except InputError:
            return None
        return folder.name if folder.resolve().parent == MODELS_DIR.resolve() else None

    def load(self, model: str = "ae-phantom", device: str = "cpu") -> ShapeModel:
        """Load an AE or T-L bundle (a wrong kind of bundle is refused; the current model stays)."""
        self.model = ShapeModel(model, device_for(device))
        self.reset()
        return self.model

    def _need_model(self) -> ShapeModel:
        if self.model is None:
            raise InputError("load a shape model first")
        return self.model

    @property
    def can_encode_images(self) -> bool:
        return self.model is not None and hasattr(self.model.net, "predict")

    def can_encode(self, node) -> bool:
        """Whether ``node`` can be encoded now (what enables the Encode buttons): a segmentation node once a
        model is loaded, an image volume once a T-L model is."""
        if node is None or self.model is None:
            return False
        if node.IsA("vtkMRMLSegmentationNode"):
            return True
        return node.IsA("vtkMRMLScalarVolumeNode") and self.can_encode_images

    def sliders(self, count: int = 8) -> list[Slider]:
        """The ``count`` most used dimensions first, each over mean ± 2 std."""
        m = self._need_model()
        usage = np.asarray(m.meta["latent"].get("usage", np.ones(m.code_size)), float)
        return [Slider(d, float(m.mean[d]), float(m.std[d]), float(usage[d])) for d in m.order[:max(1, count)]]

    def reset(self) -> np.ndarray:
        """The mean shape, where the model shows it (not where an encoded shape was placed)."""
        self.code = self._need_model().mean.copy()
        self.placement = None
        return self.code

    def set_value(self, dim: int, value: float) -> None:
        m = self._need_model()
        if not 0 <= dim < m.code_size:
            raise InputError(f"dimension {dim} is outside the {m.code_size}-d code")
        if not np.isfinite(value):
            raise InputError(f"a latent value is a finite number, not {value}")
        self.code[dim] = value

    def decode(self):
        m = self._need_model()
        return m.decode(self.code, self.placement)

    def update(self, node=None, scene=None, name: str = "ACNN shape"):
        """Decode the current code into ``node`` (created if None) with closed surfaces; the label map is
        kept in ``last_labels``, whether it passes the plausibility checks in ``last_verdict`` (where the
        shape space leaves plausible shapes, as the mean code of ae-acdc does), the time taken in
        ``last_update_ms``."""
        t = time.perf_counter()
        labels = self.last_labels = self.decode()
        self.last_verdict = verdict(plausibility(labels))
        node = mrml.labels_to_segmentation(labels, node=node, scene=scene, name=name, smoothing=0.3, decimation=0.0,
                                           names=self.label_names())
        node.SetAttribute("ACNN.Model", self.model.runner.bundle.name)  # an ACNN result (the studio saves those)
        self.last_update_ms = (time.perf_counter() - t) * 1000
        return node

    def label_names(self) -> dict[int, str]:
        """The structures the shape model decodes: {label value: name}."""
        return label_names(self._need_model().meta) or {1: "LV blood pool", 2: "LV myocardium"}

    def encode_segmentation(self, node) -> np.ndarray:
        """Set the code from a segmentation node (its LV segments); the shape is then shown where it lies."""
        m = self._need_model()
        labels = mrml.labels_from_segmentation(node)
        ours = labels.with_array(np.where(labels.array < m.num_classes, labels.array, 0).astype(np.uint8))
        if not (ours.array > 0).any():
            knows = ", ".join(self.label_names().values())
            raise InputError(f"segmentation {node.GetName()!r} is empty" if not labels.array.any() else
                             f"segmentation {node.GetName()!r} holds none of the structures {m.runner.bundle.name} "
                             f"knows ({knows})")
        self.code = m.encode(ours).astype(np.float32)
        self.placement = m.placement(ours)
        return self.code

    def encode_image(self, node) -> np.ndarray:
        """Set the code from an HR image volume through the T-L predictor."""
        m = self._need_model()
        if not self.can_encode_images:
            raise InputError("encoding an image needs a T-L model; this one is an autoencoder")
        volume = mrml.volume_from_node(node)
        self.code = m.encode_image(volume).astype(np.float32)
        self.placement = None
        return self.code

    @staticmethod
    def save(node, path, overwrite: bool = False) -> str:
        """Save the shown shape (a segmentation node) as .seg.nrrd (or a label map .nii.gz / .nrrd); a file
        there already is replaced only with ``overwrite`` (else ``OutputExists``)."""
        from pathlib import Path

        from ACNNCore.io import check_writable, write_volume

        path = Path(path)
        if str(path).lower().endswith(".seg.nrrd"):
            check_writable(path, overwrite)
            return mrml.save_node(node, path)
        return str(write_volume(mrml.labels_from_segmentation(node), path, overwrite))
