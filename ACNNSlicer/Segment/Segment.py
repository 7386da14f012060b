"""ACNN Segment: a thick-slice short-axis stack (or a cine sequence) -> HR LV segmentation, volumes, EF.

A thin widget over :class:`ACNNSlicerLib.SegmentLogic`, which runs without any GUI (see Testing/mrml).
The network runs in a worker thread polled by a QTimer: the GUI never freezes, Apply becomes Cancel.
"""

from typing import Annotated, Union

import slicer
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest)

from ACNNSlicerLib.gui import center_3d_views, run_widget_base

HELP = """Segments the left-ventricular blood pool and myocardium (and, with the real-data model acnn-seg-acdc,
the right-ventricular blood pool) of a thick-slice cine MR short-axis stack with an Anatomically Constrained
Neural Network (Oktay et al., IEEE TMI 2018): the phantom model on a high-resolution grid (each acquired slice
split in K thin slices), the real-data model on the slices as acquired, after finding the heart itself. A
cine sequence gives ED and ES (chosen, or detected from the blood-pool volume curve) and the ejection
fractions. Each result is checked for anatomical plausibility; the options clean it up, close the myocardial
ring by rule or correct an implausible result with the learnt shape space (both: the rule closes what the
correction leaves implausible). A network knows the layout of its
training images' rows and columns: for an image stored turned or mirrored (rows reversed by a converter, say),
"Find the in-plane orientation" shows it the stack in all eight in-plane layouts and keeps the surest output.
"Phantom demo" makes an unseen phantom subject (ED, ES and the two as a cine) to segment at once.
"DICOM folder..." reads a folder, or a study's tree of folders, of DICOM files as one stack or cine, also a cine
written one series per slice position, or as enhanced (multi-frame) files; other views and single-frame stacks
beside the cine (late enhancement, T1 maps) are left out, a full study's several cines (perfusion, T1 mapping)
load each, and a folder of several patients' exports loads each. "Save as DICOM SEG..." writes a result on such
an input as DICOM Segmentation objects on its files."""


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
        slicer.app.connect("startupCompleted()", _follow_frames_on_load)


def _follow_frames_on_load():
    """A cine's results in a scene the user loads follow its frame again, as they did before it was saved
    (an observer that no scene file keeps), whether this module was opened or not."""
    from ACNNSlicerLib import mrml

    mrml.follow_frames_on_load(slicer.mrmlScene)


@parameterNodeWrapper
class SegmentParameterNode:
    # the node types the input selector lists (the wrapper sets them from this), None while there is none;
    # typing.Union, not "|": the wrapper's Slicer 5.10 recognises only the former
    inputNode: Union[slicer.vtkMRMLScalarVolumeNode, slicer.vtkMRMLSequenceNode, None]
    model: str = "acnn-seg-phantom"
    device: Annotated[str, Choice(["auto", "cpu", "cuda"])] = "auto"
    detectPhases: bool = True
    cleanUp: bool = False
    closeMyocardium: bool = False
    correct: bool = False
    tta: bool = False
    orient: bool = False
    # a spin box's range comes from its parameter (the wrapper sets it: unbounded without one); frames count
    # from 1, as the Sequences toolbar shows them ("12/30")
    edFrame: Annotated[int, WithinRange(1, 999)] = 1
    esFrame: Annotated[int, WithinRange(1, 999)] = 1


class SegmentWidget(run_widget_base()):
    UI, TITLE = "Segment.ui", "Segment"

    def parameter_node(self, node):
        return SegmentParameterNode(node)

    def module_logic(self):
        return SegmentModuleLogic()

    def model_names(self):
        from ACNNSlicerLib import SegmentLogic

        return SegmentLogic.models()

    def setup(self):
        super().setup()
        self.ui.inputSelector.connect("currentNodeChanged(vtkMRMLNode*)", self._inputChanged)
        self.ui.loadDicomButton.connect("clicked(bool)", self._loadDicom)
        self.ui.loadDemoButton.connect("clicked(bool)", self._loadDemo)
        self.ui.saveDicomSegButton.connect("clicked(bool)", self._saveDicomSeg)
        self._segmentations = []

    def onSceneStartClose(self, caller=None, event=None):
        self._segmentations = []  # the results go with the scene: nothing to save as DICOM SEG
        self.ui.saveDicomSegButton.enabled = False
        super().onSceneStartClose(caller, event)

    def _saveDicomSeg(self):
        """The last result as DICOM SEG objects on the DICOM files its input was read from, into a folder."""
        import qt

        from ACNNCore.errors import InputError, OutputExists
        from ACNNCore.progress import counted
        from ACNNSlicerLib import SegmentLogic

        folder = qt.QFileDialog.getExistingDirectory(self.parent, "Folder for the DICOM SEG objects")
        if not folder:
            return
        overwrite = False
        while True:
            try:
                with slicer.util.WaitCursor():
                    paths = SegmentLogic.write_dicom_seg(self._segmentations, folder, overwrite)
                break
            except OutputExists as e:  # asked once: the second try replaces
                if overwrite or not slicer.util.confirmYesNoDisplay(
                        f"{folder} holds DICOM SEG objects already ({e.path.name}). Replace them?"):
                    return
                overwrite = True
            except InputError as e:
                slicer.util.errorDisplay(str(e))
                return
        slicer.util.infoDisplay(f"Wrote {counted(len(paths), 'DICOM SEG object')} to {folder}.")

    def _loadDicom(self):
        """A folder, or a study's tree of folders, of DICOM files read by ACNNCore as one stack or cine (a
        cine written one series per slice position comes in whole), shown and chosen as the input; a folder
        of several studies loads each, and a full study's several cines (perfusion, T1 mapping) each, the
        first chosen (the cine of most slices). DICOM SEG objects among them load as segmentations. What was
        left out (long-axis views, screenshots, files that cannot be parsed) is said in the status line."""
        from pathlib import Path

        import qt

        from ACNNCore.errors import InputError
        from ACNNSlicerLib import mrml
        from ACNNSlicerLib.common import LoggedWarnings
        from ACNNSlicerLib.gui import read_in_background

        folder = qt.QFileDialog.getExistingDirectory(self.parent, "DICOM folder of a short-axis stack or cine")
        if not folder:
            return
        try:  # read in a worker thread (a study of thousands of files takes a while), the nodes made here
            with LoggedWarnings() as told:
                makers = read_in_background(lambda: mrml.read_dicom_nodes(folder),
                                            f"Reading the DICOM files of {folder}")
        except InputError as e:
            slicer.util.errorDisplay(str(e))
            return
        if makers is None:  # cancelled
            return
        nodes = [make(scene=slicer.mrmlScene) for make in makers]
        self.ui.statusLabel.text = " ".join([f"Loaded {Path(folder).name}.", *(m + "." for m in told.messages)])
        node = next((n for n in nodes if not n.IsA("vtkMRMLSegmentationNode")), None)
        if node is None:  # DICOM SEG alone: shown on whatever image is
            return
        shown = mrml.show_frame(node, 0) if node.IsA("vtkMRMLSequenceNode") else node
        slicer.util.setSliceViewerLayers(background=shown, fit=True)
        self.ui.inputSelector.setCurrentNode(node)

    def _loadDemo(self):
        """A phantom cine made on the spot (the Logic's ``load_demo``), shown and chosen as the input."""
        from ACNNSlicerLib import SegmentLogic

        with slicer.util.WaitCursor():
            ed, _, cine = SegmentLogic.load_demo(slicer.mrmlScene)
        slicer.util.setSliceViewerLayers(background=ed, fit=True)
        self.ui.inputSelector.setCurrentNode(cine)

    def _inputChanged(self, node):
        """A new input: offer the bundled model that suits it (phantom stacks: the phantom model; else the real
        one). A bundle folder of the user's own stays chosen."""
        from ACNNSlicerLib import SegmentLogic

        name = SegmentLogic.suited_model(node)
        if name and self._parameterNode and self._parameterNode.model in self.model_names():
            self._parameterNode.model = name
            self.models.fill(self.model_names(), name)

    def _start(self):
        """The network on the input's frames in a worker thread (read and checked here, on the main one)."""
        from ACNNSlicerLib import BackgroundTask, SegmentLogic

        p = self._parameterNode
        frames = SegmentLogic.read_input(p.inputNode)
        ed, es = SegmentLogic.frames_asked(len(frames), p.detectPhases, p.edFrame, p.esFrame)
        self._input = p.inputNode
        return BackgroundTask(self.logic.segment.compute, frames, p.model, p.device, ed, es,
                              cleanup=p.cleanUp, close_myocardium=p.closeMyocardium, correct=p.correct,
                              tta=p.tta, orient=p.orient)

    def _apply(self, result) -> str:
        from ACNNSlicerLib import mrml

        segmentations, table = self.logic.segment.apply(result, self._input)
        self._segmentations = segmentations  # for "Save as DICOM SEG...", where the input came from DICOM files
        self.ui.saveDicomSegButton.enabled = bool(self._input.GetAttribute(mrml.DICOM_SOURCE[0]))
        background = self._input  # a cine: its browser set to the first result's frame (ED), under it
        if self._input.IsA("vtkMRMLSequenceNode"):
            background = mrml.show_frame(self._input, result.phases[0].frame)
        slicer.util.setSliceViewerLayers(background=background, fit=True)
        for node in segmentations[1:]:
            node.GetDisplayNode().SetVisibility(False)
        segmentations[0].GetDisplayNode().SetVisibility3D(True)
        center_3d_views()
        self.ui.resultTable.setMRMLTableNode(table)
        chart = table.GetNodeReference("ACNN.VolumeCurveChart")  # a cine: the LV's volume over the cycle
        if chart is not None:
            slicer.modules.plots.logic().ShowChartInLayout(chart)
        return result.summary(self.logic.segment.against_expert(result, self._input)
                              + self.logic.segment.about_input(self._input))


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
