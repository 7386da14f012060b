"""ACNN SuperResolve: a thick-slice stack -> an HR intensity volume (K thin slices per acquired slice).

A thin widget over :class:`ACNNSlicerLib.SuperResolveLogic` (GUI-free, tested in Testing/mrml); the network
runs in a worker thread polled by a QTimer, Apply becomes Cancel while it runs.
"""

import logging
from typing import Annotated

import qt
import slicer
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin


class SuperResolve(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "ACNN SuperResolve"
        self.parent.categories = ["Segmentation.ACNN"]
        self.parent.dependencies = []
        self.parent.contributors = ["ACNN for 3D Slicer contributors"]
        self.parent.helpText = ("Super-resolves a thick-slice cine MR stack into a high-resolution volume over "
                                "the same physical extent (ACNN-SR, Oktay et al., IEEE TMI 2017).")
        self.parent.acknowledgementText = "Method: O. Oktay et al., IEEE TMI 37(2), 2018."


@parameterNodeWrapper
class SuperResolveParameterNode:
    inputVolume: slicer.vtkMRMLScalarVolumeNode
    model: str = "acnn-sr-phantom"
    device: Annotated[str, Choice(["auto", "cpu", "cuda"])] = "auto"


class SuperResolveWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._task = None
        self._timer = qt.QTimer()
        self._timer.setInterval(100)
        self._timer.connect("timeout()", self._poll)

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        self.layout.addWidget(slicer.util.loadUI(self.resourcePath("UI/SuperResolve.ui")))
        self.ui = slicer.util.childWidgetVariables(self.parent)
        self.ui.inputSelector.setMRMLScene(slicer.mrmlScene)
        self.ui.applyButton.connect("clicked(bool)", self.onApply)
        self.ui.browseModelButton.connect("clicked(bool)", self.onBrowseModel)
        self.ui.modelComboBox.connect("currentTextChanged(QString)", self._modelChanged)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, lambda *a: self.initializeParameterNode())
        self.initializeParameterNode()

    def cleanup(self):
        self._cancel()
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def initializeParameterNode(self):
        from ACNNSlicerLib import dependencies

        if not dependencies.ensure(ask=True):
            return
        from ACNNSlicerLib import SuperResolveLogic

        if self.logic is None:
            self.logic = SuperResolveModuleLogic()
        self._parameterNode = SuperResolveParameterNode(self.logic.getParameterNode())
        self._parameterNode.connectGui(self.ui)
        self.ui.modelComboBox.clear()
        self.ui.modelComboBox.addItems(SuperResolveLogic.models())
        self.ui.modelComboBox.setCurrentText(self._parameterNode.model)

    def _modelChanged(self, text):
        if self._parameterNode and text:
            self._parameterNode.model = text

    def onBrowseModel(self):
        folder = qt.QFileDialog.getExistingDirectory(self.parent, "ACNN model bundle (folder with model.json)")
        if folder:
            self.ui.modelComboBox.addItem(folder)
            self.ui.modelComboBox.setCurrentText(folder)

    def onApply(self):
        if self._task is not None:
            self._cancel()
            return
        from ACNNCore.errors import InputError
        from ACNNSlicerLib import BackgroundTask, SuperResolveLogic

        p = self._parameterNode
        try:
            volume = SuperResolveLogic.read_input(p.inputVolume)
        except InputError as e:
            slicer.util.errorDisplay(str(e))
            return
        self._input, self._model = p.inputVolume, p.model
        self._task = BackgroundTask(self.logic.resolve.compute, volume, p.model, p.device)
        self.ui.applyButton.text = "Cancel"
        self._timer.start()

    def _cancel(self):
        if self._task is not None:
            self._task.cancel()
        self._finish("Cancelled.")

    def _poll(self):
        task = self._task
        if task is None:
            return
        fraction, message = task.progress
        self.ui.progressBar.setValue(int(100 * fraction))
        self.ui.statusLabel.text = message
        if not task.done:
            return
        if task.error is not None:
            self._finish("Failed.")
            if not task.cancelled:
                logging.error("ACNN SuperResolve failed: %s", task.error)
                slicer.util.errorDisplay(str(task.error))
            return
        node = self.logic.resolve.apply(task.result, self._input, self._model)
        slicer.util.setSliceViewerLayers(background=node, fit=True)
        self._finish(f"Done: {node.GetName()}")

    def _finish(self, message):
        self._timer.stop()
        self._task = None
        self.ui.applyButton.text = "Apply"
        self.ui.statusLabel.text = message


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
