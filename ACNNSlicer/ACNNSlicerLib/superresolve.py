"""SuperResolve: a thick-slice stack -> an HR intensity volume over the same physical extent."""

from __future__ import annotations

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
    def read_input(node) -> Volume:
        return mrml.volume_from_node(node)

    def compute(self, volume: Volume, model: str, device: str = "auto", progress: Progress | None = None,
                cancelled=None) -> Volume:
        step(progress, cancelled, 0.0, f"loading {model}")
        resolver = self.resolver(model, device)
        step(progress, cancelled, 0.1, "super-resolving")
        hr = resolver(volume)
        step(progress, cancelled, 1.0, "done")
        return hr

    @staticmethod
    def apply(hr: Volume, input_node, model: str = ""):
        scene = mrml.scene_of(input_node, "super-resolved")
        node = mrml.volume_to_node(hr, scene=scene, name=f"{input_node.GetName()} ACNN SR")
        node.SetAttribute("ACNN.Model", model)
        source = input_node.GetDisplayNode()
        if source is not None and node.GetDisplayNode() is not None:
            node.GetDisplayNode().SetAndObserveColorNodeID(source.GetColorNodeID())
        return node

    def process(self, input_node, model: str = "acnn-sr-phantom", device: str = "auto",
                progress: Progress | None = None, cancelled=None):
        hr = self.compute(self.read_input(input_node), model, device, progress, cancelled)
        return self.apply(hr, input_node, model)
