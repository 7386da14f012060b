"""ACNN SuperResolve: a thick-slice stack (or a cine) -> an HR intensity volume (K thin slices per acquired slice).

A thin widget over :class:`ACNNSlicerLib.SuperResolveLogic` (GUI-free, tested in Testing/mrml); the network
runs in a worker thread polled by a QTimer, Apply becomes Cancel while it runs.
"""

from typing import Annotated, Union

import slicer
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest)

from ACNNSlicerLib.gui import run_widget_base


class SuperResolve(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "ACNN SuperResolve"
        self.parent.categories = ["Segmentation.ACNN"]
        self.parent.dependencies = []
        self.parent.contributors = ["ACNN for 3D Slicer contributors"]
        self.parent.helpText = ("Super-resolves a thick-slice cine MR stack into a high-resolution volume over "
                                "the same physical extent (ACNN-SR, Oktay et al., IEEE TMI 2018). The network "
                                "sees a 120 mm box, centred on the heart that the real-data segmentation model "
                                "finds on a wider image; beyond it the input is interpolated linearly. The "
                                "bundled models learnt from phantom images of 10 mm slices (real data has no "
                                "high-resolution ground truth to learn from): the status line says when an "
                                "image differs. A cine (a sequence) is super-resolved frame by frame into a "
                                "sequence that plays along with it.")
        self.parent.acknowledgementText = "Method: O. Oktay et al., IEEE TMI 37(2), 2018."


@parameterNodeWrapper
class SuperResolveParameterNode:
    # the node types the input selector lists (the wrapper sets them from this), None while there is none;
    # typing.Union, not "|": the wrapper's Slicer 5.10 recognises only the former
    inputVolume: Union[slicer.vtkMRMLScalarVolumeNode, slicer.vtkMRMLSequenceNode, None]
    model: str = "acnn-sr-phantom"
    device: Annotated[str, Choice(["auto", "cpu", "cuda"])] = "auto"


class SuperResolveWidget(run_widget_base()):
    UI, TITLE = "SuperResolve.ui", "SuperResolve"

    def parameter_node(self, node):
        return SuperResolveParameterNode(node)

    def module_logic(self):
        return SuperResolveModuleLogic()

    def model_names(self):
        from ACNNSlicerLib import SuperResolveLogic

        return SuperResolveLogic.models()

    def _start(self):
        from ACNNSlicerLib import BackgroundTask, SuperResolveLogic

        p = self._parameterNode
        frames = SuperResolveLogic.read_input(p.inputVolume)
        self._input, self._model, self._volume, self._device = p.inputVolume, p.model, frames[0], p.device
        return BackgroundTask(self.logic.resolve.compute, frames, p.model, p.device)

    def _apply(self, hr) -> str:
        from ACNNSlicerLib import SuperResolveLogic

        node = self.logic.resolve.apply(hr, self._input, self._model)
        slicer.util.setSliceViewerLayers(background=SuperResolveLogic.shown(node), fit=True)
        notes = self.logic.resolve.caveats(self._volume, self._model, self._device)
        said = [f"Done: {node.GetName()}" + (f" ({len(hr)} frames)" if len(hr) > 1 else "")]
        return ". ".join(said + [f"Note: {n}" for n in notes]) + "." + SuperResolveLogic.about_input(self._input)


class SuperResolveModuleLogic(ScriptedLoadableModuleLogic):
    """Slicer's module logic (parameter node) around the GUI-free :class:`ACNNSlicerLib.SuperResolveLogic`."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        from ACNNSlicerLib import SuperResolveLogic

        self.resolve = SuperResolveLogic()


class SuperResolveTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_superresolve_phantom()

    def test_superresolve_phantom(self):
        from ACNNCore.phantom.population import PhantomConfig, generate_subject
        from ACNNSlicerLib import SuperResolveLogic, volume_from_node, volume_to_node

        subject = generate_subject(0, 31337, PhantomConfig())
        node = volume_to_node(subject.phases["ED"]["lr"], scene=slicer.mrmlScene, name="phantom ED")
        out = SuperResolveLogic().process(node, "acnn-sr-phantom", "auto")
        hr = volume_from_node(out)
        self.assertEqual(hr.shape, (96, 96, 60))
        self.delayDisplay("Test passed")
