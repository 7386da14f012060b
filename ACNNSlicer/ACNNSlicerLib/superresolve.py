"""SuperResolve: a thick-slice stack (or every frame of a cine) -> an HR intensity volume over the same physical
extent."""

from __future__ import annotations

from ACNNCore.cine import superresolve_frames
from ACNNCore.inference import SuperResolver
from ACNNCore.volume import Volume

from . import mrml
from .common import Progress, cached, models_for, step


class SuperResolveLogic:
    """``read_input`` -> ``compute`` (no scene access) -> ``apply``; ``process`` does all three."""

    def __init__(self):
        self._models: dict = {}

    @staticmethod
    def models() -> list[str]:
        return models_for("sr")

    def resolver(self, model: str, device: str = "auto") -> SuperResolver:
        return cached(self._models, SuperResolver, model, device)

    def caveats(self, volume: Volume, model: str, device: str = "auto") -> list[str]:
        """What the user should mind about the result (:meth:`SuperResolver.caveats`: slices of another
        thickness than the model learnt, a phantom-trained model on a real image)."""
        return self.resolver(model, device).caveats(volume)

    @staticmethod
    def read_input(node) -> list[Volume]:
        """The frames of a scalar volume node (one) or of a sequence node of volumes (a cine: all), checked."""
        return mrml.frames_from_node(node)

    def compute(self, frames: list[Volume], model: str, device: str = "auto", progress: Progress | None = None,
                cancelled=None) -> list[Volume]:
        """Each frame super-resolved, a cine's all in one window (``ACNNCore.cine.superresolve_frames``)."""
        step(progress, cancelled, 0.0, f"loading {model}")
        resolver = self.resolver(model, device)
        hr = superresolve_frames(resolver, frames, lambda fraction, message: step(progress, cancelled, fraction,
                                                                                  message))
        step(progress, None, 1.0, "done")
        return hr

    @staticmethod
    def apply(hr: list[Volume], input_node, model: str = ""):
        """A volume node ``NAME ACNN SR``; of a cine, a sequence node of the HR frames, played along with the cine
        (:func:`mrml.play_along`: its frame shown is the cine's). Returns the node."""
        scene = mrml.scene_of(input_node, "super-resolved")
        cine = input_node if input_node.IsA("vtkMRMLSequenceNode") and len(hr) > 1 else None
        node = mrml.frames_to_node(hr, scene, f"{input_node.GetName()} ACNN SR", like=cine)
        node.SetAttribute("ACNN.Model", model)
        shown = mrml.play_along(node, cine) if cine is not None else node
        source = (mrml.proxy_of(cine) if cine is not None else input_node).GetDisplayNode()
        if source is not None and shown.GetDisplayNode() is not None:
            shown.GetDisplayNode().SetAndObserveColorNodeID(source.GetColorNodeID())
        return node

    @staticmethod
    def about_input(input_node) -> str:
        """Where the input is the frame a cine shows (its browser's proxy node): a sentence for the status line
        saying that only this frame was super-resolved and that the cine itself gives every frame; else ""."""
        return mrml.shown_frame_note(input_node, "super-resolved", "super-resolve every frame")

    @staticmethod
    def shown(node):
        """What shows a result of :meth:`apply` in the slice views: the volume node, or a cine's proxy node."""
        return mrml.show_frame(node, mrml.browser_of(node).GetSelectedItemNumber()) \
            if node.IsA("vtkMRMLSequenceNode") else node

    def process(self, input_node, model: str = "acnn-sr-phantom", device: str = "auto",
                progress: Progress | None = None, cancelled=None):
        hr = self.compute(self.read_input(input_node), model, device, progress, cancelled)
        return self.apply(hr, input_node, model)
