"""ACNN Segment: a thick-slice short-axis stack (or a cine sequence) -> HR LV segmentation, volumes, EF.

A thin widget over :class:`ACNNSlicerLib.SegmentLogic`, which runs without any GUI (see Testing/mrml).
The network runs in a worker thread polled by a QTimer: the GUI never freezes, Apply becomes Cancel.
"""

import logging
import os

import qt
import slicer
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin
from typing import Annotated

HELP = """Segments the left-ventricular blood pool and myocardium of a thick-slice cine MR short-axis stack
on a high-resolution grid (each acquired slice split in K thin slices) with an Anatomically Constrained
Neural Network (Oktay et al., IEEE TMI 2017). A cine sequence gives ED and ES (chosen, or detected from the
blood-pool volume curve) and the ejection fraction. Each result is checked for anatomical plausibility."""


class Segment(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "ACNN Segment"
        self.parent.categories = ["Segmentation.ACNN"]
        self.parent.dependencies = []
        self.parent.contributors = ["ACNN for 3D Slicer contributors"]
        self.parent.helpText = HELP
        self.parent.acknowledgementText = ("Method: O. Oktay et al., Anatomically Constrained Neural Networks "
                                           "(ACNN), IEEE TMI 37(2), 2018.")


@parameterNodeWrapper
class SegmentParameterNode:
    inputNode: slicer.vtkMRMLNode  # a scalar volume or a sequence of them
    model: str = "acnn-seg-phantom"
    device: Annotated[str, Choice(["auto", "cpu", "cuda"])] = "auto"
    detectPhases: bool = True
    edFrame: int = 0
    esFrame: int = 0


class SegmentWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
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
        self.layout.addWidget(slicer.util.loadUI(self.resourcePath("UI/Segment.ui")))
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
        from ACNNSlicerLib import SegmentLogic

        if self.logic is None:
            self.logic = SegmentModuleLogic()
        self._parameterNode = SegmentParameterNode(self.logic.getParameterNode())
        self._parameterNode.connectGui(self.ui)
        models = SegmentLogic.models()
        self.ui.modelComboBox.clear()
        self.ui.modelComboBox.addItems(models)
        if self._parameterNode.model not in models and os.path.isdir(self._parameterNode.model):
            self.ui.modelComboBox.addItem(self._parameterNode.model)
        self.ui.modelComboBox.setCurrentText(self._parameterNode.model)

    def _modelChanged(self, text):
        if self._parameterNode and text:
            self._parameterNode.model = text

    def onBrowseModel(self):
        folder = qt.QFileDialog.getExistingDirectory(self.parent, "ACNN model bundle (folder with model.json)")
        if folder:
            self.ui.modelComboBox.addItem(folder)
            self.ui.modelComboBox.setCurrentText(folder)

    # --- running -------------------------------------------------------------------

    def onApply(self):
        if self._task is not None:  # the button reads Cancel
            self._cancel()
            return
        from ACNNCore.errors import InputError
        from ACNNSlicerLib import BackgroundTask, SegmentLogic

        p = self._parameterNode
        try:
            frames = SegmentLogic.read_input(p.inputNode)
        except InputError as e:
            slicer.util.errorDisplay(str(e))
            return
        ed, es = (None, None) if p.detectPhases else (p.edFrame, p.esFrame)
        self._input = p.inputNode
        self._task = BackgroundTask(self.logic.segment.compute, frames, p.model, p.device, ed, es)
        self.ui.applyButton.text = "Cancel"
        self.ui.progressBar.setValue(0)
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
            from ACNNCore.errors import InputError

            self._finish("Failed.")
            if isinstance(task.error, InputError):
                slicer.util.errorDisplay(str(task.error))
            elif not task.cancelled:
                logging.exception("ACNN Segment failed", exc_info=task.error)
                slicer.util.errorDisplay(f"Segmentation failed: {task.error}")
            return
        segmentations, table = self.logic.segment.apply(task.result, self._input)
        if not self._input.IsA("vtkMRMLSequenceNode"):
            slicer.util.setSliceViewerLayers(background=self._input, fit=True)
        for node in segmentations[1:]:
            node.GetDisplayNode().SetVisibility(False)
        segmentations[0].GetDisplayNode().SetVisibility3D(True)
        self.ui.resultTable.setMRMLTableNode(table)
        flags = ["plausible" if ph.plausibility["plausible"] else "IMPLAUSIBLE: " + ", ".join(ph.plausibility["problems"])
                 for ph in task.result.phases]
        self._finish(f"Done on {task.result.device}. " + "; ".join(flags))

    def _finish(self, message):
        self._timer.stop()
        self._task = None
        self.ui.applyButton.text = "Apply"
        self.ui.statusLabel.text = message


class SegmentModuleLogic(ScriptedLoadableModuleLogic):
    """Slicer's module logic (it owns the parameter node) around the GUI-free
    :class:`ACNNSlicerLib.SegmentLogic`, which does the work."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        from ACNNSlicerLib import SegmentLogic

        self.segment = SegmentLogic()


class SegmentTest(ScriptedLoadableModuleTest):
    """Self-test inside Slicer: a phantom stack made on the fly, segmented end to end."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_segment_phantom()

    def test_segment_phantom(self):
        from ACNNCore.metrics import dice
        from ACNNCore.phantom.population import PhantomConfig, generate_subject, with_motion
        from ACNNSlicerLib import SegmentLogic, labels_from_segmentation, volume_to_node

        self.delayDisplay("Making a phantom stack")
        subject = generate_subject(0, 31337, with_motion(PhantomConfig(), 2.0))
        node = volume_to_node(subject.phases["ED"]["lr"], scene=slicer.mrmlScene, name="phantom ED")
        self.delayDisplay("Segmenting")
        result, (seg,), table = SegmentLogic().process(node, "acnn-seg-phantom", "auto")
        names = [seg.GetSegmentation().GetNthSegment(i).GetName() for i in range(2)]
        self.assertEqual(names, ["LV blood pool", "LV myocardium"])
        d = dice(labels_from_segmentation(seg), subject.phases["ED"]["hr_gt"])
        self.assertGreater(d[1], 0.85)
        self.assertEqual(table.GetNumberOfRows(), 1)
        self.delayDisplay(f"Test passed: Dice LV {d[1]:.3f}, myocardium {d[2]:.3f}")
