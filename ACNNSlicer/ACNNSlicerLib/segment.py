"""Segment: a short-axis stack (or a cine sequence) -> HR LV segmentation, volumes, mass, EF, plausibility."""

from __future__ import annotations

from ACNNCore.cine import SegmentResult, frame_index, frame_number, segment_frames
from ACNNCore.errors import InputError
from ACNNCore.inference import Segmenter, default_model
from ACNNCore.labels import SEGMENTS
from ACNNCore.volume import Volume

from . import mrml
from .common import Progress, cached, models_for, step


class SegmentLogic:
    """Usable without any GUI: ``read_input`` -> ``compute`` (no scene access: may run in a worker
    thread) -> ``apply`` (adds nodes). ``process`` does the three in turn."""

    def __init__(self):
        self._models: dict = {}

    @staticmethod
    def models() -> list[str]:
        return models_for("seg")

    @staticmethod
    def suited_model(node) -> str | None:
        """The bundled model that suits a volume or cine node (ACNNCore's choice: the phantom model for the
        phantom's stacks, the real-data model for anything else); None if the node is not a usable image."""
        if node is not None and node.IsA("vtkMRMLSequenceNode"):
            node = node.GetNthDataNode(0) if node.GetNumberOfDataNodes() else None
        try:
            return default_model(mrml.volume_from_node(node))
        except InputError:
            return None

    def segmenter(self, model: str, device: str = "auto", tta: bool = False, cleanup: bool = False,
                  close_myocardium: bool = False, correct: bool = False, orient: bool = False) -> Segmenter:
        """The model loaded once per device and options (``correct``: with the shape model it was trained with)."""
        return cached(self._models, Segmenter, model, device, tta=tta, cleanup=cleanup,
                      close_myocardium=close_myocardium, shape_model=True if correct else None, orient=orient)

    @staticmethod
    def load_demo(scene) -> tuple:
        """Something to segment at once: a phantom subject no model saw (2 mm slice misalignment), its ED and
        ES stacks as volume nodes and the two as a cine sequence node. Returns (ED node, ES node, cine node)."""
        from ACNNCore.demo import demo_subject

        subject = demo_subject()
        nodes = [mrml.volume_to_node(subject.phases[phase]["lr"], scene=scene, name=f"phantom {phase}")
                 for phase in ("ED", "ES")]
        cine = scene.AddNewNodeByClass("vtkMRMLSequenceNode", scene.GenerateUniqueName("phantom cine"))
        for t, node in enumerate(nodes):
            cine.SetDataNodeAtValue(node, str(t))
        return (*nodes, cine)

    @staticmethod
    def read_input(node) -> list[Volume]:
        """The frames of a scalar volume node (one) or of a sequence node of volumes (all), checked."""
        return mrml.frames_from_node(node)

    @staticmethod
    def frames_asked(count: int, detect: bool, ed, es) -> tuple[int | None, int | None]:
        """The ED / ES frames a front end asks for (the module's spin boxes, the studio's fields: counted from 1,
        as the Sequences toolbar) as the indices :meth:`compute` takes, for an input of ``count`` frames: None,
        None where they are to be detected or the input is a single volume; anything but a frame of the cine is
        an error (:func:`ACNNCore.cine.frame_index`)."""
        if detect or count == 1:
            return None, None
        return frame_index(ed, count, "ED"), frame_index(es, count, "ES")

    def compute(self, frames: list[Volume], model: str | None = None, device: str = "auto",
                ed: int | None = None, es: int | None = None, progress: Progress | None = None, cancelled=None,
                cleanup: bool = False, close_myocardium: bool = False, correct: bool = False,
                tta: bool = False, orient: bool = False) -> SegmentResult:
        """Segment one volume, or the ED and ES frames of a cine sequence (given as indices from 0, or detected
        as the frames of largest and smallest LV blood-pool volume, which segments every frame). ``cleanup``:
        each structure's largest connected part, the LV blood pool without holes
        (``ACNNCore.postprocessing.clean_up``);
        ``close_myocardium``: that, and the myocardial ring closed where it is open; ``correct``: the clean-up,
        and an implausible output corrected with the shape model the network was trained with
        (``ACNNCore.inference.ShapeModel.correct``; with ``close_myocardium``, the ring is closed by rule where
        the correction fails); ``tta``: test-time augmentation, the network's probabilities
        averaged over nine views of each frame (``ACNNCore.inference.TTA_VIEWS``); ``orient``: each frame shown
        in the eight in-plane turns and mirrorings of its array, the output the network is surest of kept
        (``ACNNCore.inference.IN_PLANE_VIEWS``; for images stored otherwise than the training images).
        ``model``: a bundled model's name or a bundle folder; None, the bundled model that suits the first frame
        (``ACNNCore.inference.default_model``, as ``acnn segment`` chooses)."""
        model = model or default_model(frames[0])
        step(progress, cancelled, 0.0, f"loading {model}")
        segmenter = self.segmenter(model, device, tta, cleanup, close_myocardium, correct, orient)
        result = segment_frames(segmenter, frames, ed, es, lambda f, m: step(progress, cancelled, f, m), model)
        step(progress, None, 1.0, "done")
        return result

    @staticmethod
    def apply(result: SegmentResult, input_node, surfaces: bool = True) -> tuple[list, object]:
        """Add one segmentation node per phase (segments 'LV blood pool', 'LV myocardium' and, from a model that
        segments it, 'RV blood pool'; closed surfaces) and a table node of the measures; where every frame of a
        cine was segmented, also a table of the LV's volume per frame (and the RV's, from a model that segments
        it) and a plot chart of it, and a sequence of every frame's segmentation, ``NAME ACNN segmentation``,
        played along with the cine (:func:`mrml.play_along`: the heart beats in the 3-D view as the Sequences
        toolbar plays), all three referenced from the measures table (``ACNN.VolumeCurve``,
        ``ACNN.VolumeCurveChart``, ``ACNN.EveryFrame``); ED's and ES's own nodes are then hidden (the sequence
        shows their frames). Otherwise a cine's results follow the frame its sequence browser shows
        (:func:`mrml.follow_frames`). Returns (segmentation nodes, measures table node)."""
        scene = mrml.scene_of(input_node, "segmented")
        base = input_node.GetName()
        segmentations = []
        for p in result.phases:
            name = f"{base} {p.phase + ' ' if p.phase else ''}ACNN segmentation"
            node = mrml.labels_to_segmentation(p.labels, scene=scene, name=name, surfaces=surfaces)
            node.SetAttribute("ACNN.Model", result.model)
            node.SetAttribute("ACNN.Plausible", str(p.plausibility["plausible"]).lower())
            node.SetAttribute("ACNN.Frame", str(p.frame))  # of the input, for DICOM SEG
            node.SetNodeReferenceID("ACNN.Input", input_node.GetID())
            segmentations.append(node)
        table = mrml.rows_to_table(result.rows(), scene=scene, name=f"{base} ACNN measures")
        table.SetAttribute("ACNN.Model", result.model)
        if result.volume_curve_ml:  # every frame of a cine segmented: the LV's volume over the cycle, its plot,
            # and every frame's segmentation, to play in 3-D
            rows = [{"Frame": frame_number(t), "LV blood pool (ml)": round(v, 2)}
                    for t, v in enumerate(result.volume_curve_ml)]
            for row, v in zip(rows, result.rv_volume_curve_ml):  # a model that segments the RV: its curve too
                row["RV blood pool (ml)"] = round(v, 2)
            curve = mrml.rows_to_table(rows, scene=scene, name=f"{base} ACNN volume curve")
            curve.SetAttribute("ACNN.Model", result.model)
            chart = mrml.plot_columns(curve, "Frame", list(rows[0])[1:], scene, f"{base} ACNN volume curve")
            table.SetNodeReferenceID("ACNN.VolumeCurve", curve.GetID())
            table.SetNodeReferenceID("ACNN.VolumeCurveChart", chart.GetID())
            names = {v: name for v, (name, _) in SEGMENTS.items() if v in result.label_names}  # in every frame
            every = mrml.frames_to_node([result.frames[t] for t in range(len(result.frames))], scene,
                                        f"{base} ACNN segmentation", like=input_node, labels=names, surfaces=surfaces)
            every.SetAttribute("ACNN.Model", result.model)
            every.SetNodeReferenceID("ACNN.Input", input_node.GetID())
            mrml.play_along(every, input_node)
            table.SetNodeReferenceID("ACNN.EveryFrame", every.GetID())
            for node in segmentations:
                node.GetDisplayNode().SetVisibility(False)
        if input_node.IsA("vtkMRMLSequenceNode"):  # ED's result never left over the ES image
            mrml.follow_frames(input_node)
        return segmentations, table

    @staticmethod
    def write_dicom_seg(segmentations: list, folder, overwrite: bool = False) -> list:
        """Results of :meth:`apply` on one input loaded from DICOM files (:func:`mrml.load_dicom`) as DICOM SEG
        objects on those files, into ``folder``: each result on its frame's images (a cine's ED and ES:
        ``SEG_NNN.dcm``, NNN its frame); the result as the node holds it now (edited, if it was). Refused for
        results of several inputs (their SEG objects would share names: a folder each), an input not loaded
        from DICOM, or a sub-pixel model's result (its grid is not the images')."""
        from ACNNCore.dicom import write_dicom_seg

        if not segmentations:
            return []
        sources = {}
        for node in segmentations:
            if node.GetScene() is None:
                raise InputError(f"{node.GetName()!r} was removed from the scene: there is no result to write")
            source = node.GetNodeReference("ACNN.Input")
            if source is None or node.GetAttribute("ACNN.Frame") is None:
                raise InputError(f"{node.GetName()!r} is not an ACNN result: no input to refer to")
            sources[source.GetID()] = source
        if len(sources) != 1:
            raise InputError(f"results of {len(sources)} inputs: write each input's into a folder of its own")
        (source,) = sources.values()
        where = [source.GetAttribute(key) for key in mrml.DICOM_SOURCE]
        if where[0] is None:
            raise InputError(f"{source.GetName()!r} was not loaded from DICOM files: a DICOM SEG refers to the "
                             f"images it labels")
        frames, labels = SegmentLogic.read_input(source), {}
        for node in segmentations:
            t = int(node.GetAttribute("ACNN.Frame"))
            labels[t] = mrml.labels_from_segmentation(node)  # on its own grid
            if not labels[t].geometry.same_as(frames[t].geometry):
                raise InputError(f"{node.GetName()!r} lies on a finer grid than {source.GetName()!r} (a sub-pixel "
                                 f"model's): a DICOM SEG labels the acquired images; use a real-data model "
                                 f"(acnn-seg-acdc)")
        held = {mrml.structure_of(n.GetSegmentation().GetNthSegment(i))  # by name, or renamed: by terminology
                for n in segmentations for i in range(n.GetSegmentation().GetNumberOfSegments())}
        names = {v: name for v, (name, _) in SEGMENTS.items() if v in held}
        return write_dicom_seg(labels, where[0], folder, names, where[1], where[2] or None, overwrite)

    @staticmethod
    def against_expert(result: SegmentResult, input_node) -> str:
        """Where the image's expert label map is in the scene as a segmentation named as in ACDC (``NAME_gt``
        for the image ``NAME``, as :func:`mrml.load_labels` loads it): the result's Dice against it, a sentence
        for the status line; else ""."""
        scene = input_node.GetScene()
        expert = scene.GetFirstNodeByName(f"{input_node.GetName()}_gt") if scene is not None else None
        if expert is None or not expert.IsA("vtkMRMLSegmentationNode") or len(result.phases) != 1:
            return ""
        scores = SegmentLogic.agreement(result.phases[0].labels, expert)
        if not scores:  # an empty map
            return ""
        return f" Dice against {expert.GetName()}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()) + "."

    @staticmethod
    def about_input(input_node) -> str:
        """Where the input is the frame a cine shows (its browser's proxy node, which Slicer lists among the
        volumes beside the cine itself): a sentence for the status line saying that only this frame was
        segmented and which node gives ED, ES and the EF; else ""."""
        return mrml.shown_frame_note(input_node, "segmented", "segment its ED and ES and measure the EF")

    @staticmethod
    def agreement(labels: Volume, reference_node) -> dict[str, float]:
        """Dice of a result against a reference segmentation node (an expert's label map, loaded with
        :func:`mrml.load_labels`), per structure the reference holds, compared on the reference's grid (an HR
        result sampled at its slices): {segment name: Dice}; {} for a reference with none of our structures."""
        import numpy as np

        from ACNNCore.metrics import dice

        try:
            reference = mrml.labels_from_segmentation(reference_node)
        except InputError:  # none of our segments in it
            return {}
        values = [int(v) for v in np.unique(reference.array) if v in SEGMENTS]
        return {SEGMENTS[v][0]: d for v, d in dice(labels, reference, values).items()} if values else {}

    def process(self, input_node, model: str | None = None, device: str = "auto", ed=None, es=None,
                progress: Progress | None = None, cancelled=None, surfaces: bool = True,
                cleanup: bool = False, close_myocardium: bool = False, correct: bool = False, tta: bool = False,
                orient: bool = False):
        """Blocking: read, compute, apply. Returns (result, segmentation nodes, table node)."""
        result = self.compute(self.read_input(input_node), model, device, ed, es, progress, cancelled,
                              cleanup, close_myocardium, correct, tta, orient)
        segmentations, table = self.apply(result, input_node, surfaces)
        return result, segmentations, table
