"""ACNN ShapeExplorer: move through the learnt LV shape space of an AE or T-L model.

Sliders over mean ± 2 std of the most used latent dimensions; each move decodes the code into a
segmentation node with closed surfaces (~150 ms on a CPU at the default grid). A thin widget over
:class:`ACNNSlicerLib.ShapeExplorerLogic` (GUI-free, tested in Testing/mrml).
"""

from typing import Annotated

import ctk
import qt
import slicer
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest)

from ACNNSlicerLib.gui import ModelPicker, center_3d_views, module_widget_base


class ShapeExplorer(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "ACNN ShapeExplorer"
        self.parent.categories = ["Segmentation.ACNN"]
        self.parent.dependencies = []
        self.parent.contributors = ["ACNN for 3D Slicer contributors"]
        self.parent.helpText = ("Explore the left-ventricle shape space learnt by an ACNN autoencoder or T-L "
                                "network: sliders for the most used latent dimensions over mean ± 2 std, "
                                "encoding of a segmentation (or, with T-L, an image), reset, save.")
        self.parent.acknowledgementText = "Method: O. Oktay et al., IEEE TMI 37(2), 2018."


@parameterNodeWrapper
class ShapeExplorerParameterNode:
    model: str = "ae-phantom"
    sliderCount: Annotated[int, WithinRange(1, 64)] = 8  # the spin box's range (the wrapper sets it)
    sourceSegmentation: slicer.vtkMRMLSegmentationNode
    sourceImage: slicer.vtkMRMLScalarVolumeNode
    shapeSegmentation: slicer.vtkMRMLSegmentationNode


class ShapeExplorerWidget(module_widget_base()):
    UI = "ShapeExplorer.ui"

    def __init__(self, parent=None):
        super().__init__(parent)
        self._sliders = {}
        self._pending = qt.QTimer()  # coalesces fast slider drags into one decode per 50 ms
        self._pending.setSingleShot(True)
        self._pending.setInterval(50)
        self._pending.connect("timeout()", self._update)

    def parameter_node(self, node):
        return ShapeExplorerParameterNode(node)

    def module_logic(self):
        return ShapeExplorerModuleLogic()

    def setup(self):
        super().setup()
        for selector in (self.ui.segmentationSelector, self.ui.imageSelector):
            selector.connect("currentNodeChanged(vtkMRMLNode*)", self._updateButtons)
        self.models = ModelPicker(self.parent, self.ui.modelComboBox, self.ui.browseModelButton, lambda text: None)
        self.ui.loadButton.connect("clicked(bool)", self.onLoad)
        self.ui.resetButton.connect("clicked(bool)", self.onReset)
        self.ui.encodeSegmentationButton.connect("clicked(bool)", self.onEncodeSegmentation)
        self.ui.encodeImageButton.connect("clicked(bool)", self.onEncodeImage)
        self.ui.saveButton.connect("clicked(bool)", self.onSave)
        self.initializeParameterNode()
        self._updateButtons()

    def _updateButtons(self, *_):
        """Load waits for the parameter node; Encode, Reset and Save for a loaded model, and Encode for something
        it can encode."""
        explorer = self.logic.explorer if self.logic is not None else None
        loaded = explorer is not None and explorer.model is not None
        self.ui.loadButton.enabled = self._parameterNode is not None
        self.ui.resetButton.enabled = self.ui.saveButton.enabled = loaded
        self.ui.encodeSegmentationButton.enabled = loaded and explorer.can_encode(
            self.ui.segmentationSelector.currentNode())
        self.ui.encodeImageButton.enabled = loaded and explorer.can_encode(self.ui.imageSelector.currentNode())

    def cleanup(self):
        self._pending.stop()
        super().cleanup()

    def setParameterNode(self, node):
        super().setParameterNode(node)
        if node is not None:
            from ACNNSlicerLib import ShapeExplorerLogic

            self.models.fill(ShapeExplorerLogic.models(), node.model)
        self._updateButtons()

    def _run(self, fn, *args):
        from ACNNCore.errors import InputError

        try:
            return fn(*args)
        except InputError as e:
            slicer.util.errorDisplay(str(e))

    def onLoad(self):
        model = self.ui.modelComboBox.currentText
        try:
            with slicer.util.WaitCursor():
                self.logic.explorer.load(model, "cpu")
        except Exception as e:  # a wrong kind of bundle, weights that do not match: the shape shown stays
            slicer.util.errorDisplay(f"Cannot load the shape model {model}: {e}")
            return
        self._parameterNode.model = model
        self._buildSliders()
        self._update()
        self._updateButtons()

    def _buildSliders(self):
        layout = self.ui.slidersCollapsibleButton.layout()
        for slider in self._sliders.values():
            layout.removeWidget(slider)
            slider.deleteLater()
        self._sliders = {}
        for s in self.logic.explorer.sliders(self._parameterNode.sliderCount):
            slider = ctk.ctkSliderWidget()
            lo, hi = s.range
            slider.minimum, slider.maximum = lo, hi
            slider.singleStep = (hi - lo) / 100.0
            slider.decimals = 3
            slider.value = s.mean
            slider.toolTip = f"latent dimension {s.dim}: mean {s.mean:.3f}, std {s.std:.3f}, used {s.usage:.0%}"
            slider.connect("valueChanged(double)", lambda value, dim=s.dim: self._moved(dim, value))
            layout.addRow(f"z{s.dim}", slider)
            self._sliders[s.dim] = slider

    def _moved(self, dim, value):
        self.logic.explorer.set_value(dim, value)
        self._pending.start()

    def _update(self):
        p = self._parameterNode
        if p is None:  # the scene is closing: nothing to decode into
            return
        node = self.logic.explorer.update(p.shapeSegmentation, slicer.mrmlScene)
        if p.shapeSegmentation is None:
            p.shapeSegmentation = node
            node.GetDisplayNode().SetVisibility3D(True)
            center_3d_views()  # the 3-D view centred on the new shape
        self.ui.statusLabel.text = (f"decoded in {self.logic.explorer.last_update_ms:.0f} ms; "
                                    f"{self.logic.explorer.last_verdict}")

    def _syncSliders(self):
        for dim, slider in self._sliders.items():
            blocked = slider.blockSignals(True)
            slider.value = float(self.logic.explorer.code[dim])
            slider.blockSignals(blocked)
        self._update()

    def onReset(self):
        if self._run(self.logic.explorer.reset) is not None:
            self._syncSliders()
            center_3d_views()  # back where the model shows its mean shape

    def onEncodeSegmentation(self):
        if self._run(self.logic.explorer.encode_segmentation, self._parameterNode.sourceSegmentation) is not None:
            self._syncSliders()
            center_3d_views()  # the shape now lies where the segmentation does

    def onEncodeImage(self):
        if self._run(self.logic.explorer.encode_image, self._parameterNode.sourceImage) is not None:
            self._syncSliders()

    def onSave(self):
        node = self._parameterNode.shapeSegmentation
        if node is None:
            return
        path = qt.QFileDialog.getSaveFileName(self.parent, "Save the shape", "shape.seg.nrrd",
                                              "Segmentation (*.seg.nrrd);;Label map (*.nii.gz *.nrrd)")
        if path:  # the file dialog has asked before replacing a file
            self._run(self.logic.explorer.save, node, path, True)


class ShapeExplorerModuleLogic(ScriptedLoadableModuleLogic):
    """Slicer's module logic (parameter node) around the GUI-free :class:`ACNNSlicerLib.ShapeExplorerLogic`."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        from ACNNSlicerLib import ShapeExplorerLogic

        self.explorer = ShapeExplorerLogic()


class ShapeExplorerTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_traverse_first_dimension()

    def test_traverse_first_dimension(self):
        import numpy as np

        from ACNNSlicerLib import ShapeExplorerLogic, labels_from_segmentation

        logic = ShapeExplorerLogic()
        logic.load("ae-phantom", "cpu")
        s = logic.sliders(1)[0]
        node, sizes = None, []
        for value in np.linspace(*s.range, 5):
            logic.set_value(s.dim, value)
            node = logic.update(node, slicer.mrmlScene)
            sizes.append(int(np.count_nonzero(labels_from_segmentation(node).array)))
            self.assertEqual(logic.last_verdict, "plausible")  # ae-phantom's shapes over mean +- 2 std
        self.assertGreater(len(set(sizes)), 1)
        self.delayDisplay(f"Test passed: last update {logic.last_update_ms:.0f} ms")
