"""MRML nodes <-> ACNNCore volumes, with their geometry (IJK-to-RAS <-> LPS grids).

The one way data crosses between Slicer and ACNNCore: a volume node becomes a
:class:`~ACNNCore.volume.Volume` (array ``[i, j, k]``, LPS geometry), results come
back as volume, segmentation and table nodes. Nothing here touches ``qt`` or the
application object.
"""

from __future__ import annotations

import logging
import re

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from ACNNCore.errors import InputError
from ACNNCore.labels import DICOM_CODES, SEGMENTS
from ACNNCore.volume import LPS_TO_RAS, Geometry, Volume

log = logging.getLogger(__name__)


# A segmentations logic registers the converter rules (binary labelmap -> closed surface...) with the
# factory when it is given a scene, and a segmentation copies the factory's rules when it is created: so
# this is done once on import, before any segmentation node exists (the Slicer application does the same).
_RULES = slicer.vtkSlicerSegmentationsModuleLogic()
_RULES.SetMRMLScene(slicer.vtkMRMLScene())


def new_scene():
    """A fresh MRML scene, also set as ``slicer.mrmlScene`` (``slicer.util`` helpers use it)."""
    scene = slicer.vtkMRMLScene()
    slicer.mrmlScene = scene
    return scene


def scene_of(node, done: str = ""):
    """The scene a node is in; an InputError where it is in none. ``done``: what a run did with it (its
    results go to its scene), said where the node was removed while the run went on in its worker thread:
    nothing is added then."""
    scene = node.GetScene()
    if scene is None:
        raise InputError(f"{node.GetName()} was removed from the scene while it was {done}: nothing was added"
                         if done else f"node {node.GetName()!r} is not in a scene")
    return scene


def segmentations_logic(scene):
    """The segmentations logic bound to ``scene`` (one per scene, kept on it)."""
    return _logic(scene, slicer.vtkSlicerSegmentationsModuleLogic)


def sequences_logic(scene):
    """The sequences logic bound to ``scene`` (one per scene, kept on it): it registers the sequence browser
    node's class in a scene without Slicer's Sequences module."""
    return _logic(scene, slicer.vtkSlicerSequencesLogic)


def _logic(scene, kind):
    attribute = f"_acnn_{kind.__name__}"
    logic = getattr(scene, attribute, None)
    if logic is None:
        logic = kind()
        logic.SetMRMLScene(scene)
        setattr(scene, attribute, logic)
    return logic


# --- geometry ---------------------------------------------------------------------------

def _matrix(array: np.ndarray) -> vtk.vtkMatrix4x4:
    m = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            m.SetElement(r, c, float(array[r, c]))
    return m


def _array(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def geometry_from_ijk_to_ras(ijk_to_ras: np.ndarray, shape) -> Geometry:
    lps = np.linalg.inv(LPS_TO_RAS) @ ijk_to_ras
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    return Geometry(tuple(int(s) for s in shape), tuple(spacing), tuple(lps[:3, 3]), lps[:3, :3] / spacing)


def node_geometry(node) -> Geometry:
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return geometry_from_ijk_to_ras(_array(m), node.GetImageData().GetDimensions())


# --- volumes ----------------------------------------------------------------------------

def check_volume_node(node, what: str = "input") -> None:
    """A clear error unless ``node`` is a 3-D scalar volume with finite voxels."""
    if node is None:
        raise InputError(f"no {what} volume selected")
    if not node.IsA("vtkMRMLScalarVolumeNode") or node.IsA("vtkMRMLLabelMapVolumeNode"):
        raise InputError(f"{what} {node.GetName()!r} is a {node.GetClassName()}, not a scalar volume")
    image = node.GetImageData()
    if image is None:
        raise InputError(f"{what} volume {node.GetName()!r} holds no image")
    if image.GetNumberOfScalarComponents() != 1:
        raise InputError(f"{what} volume {node.GetName()!r} has {image.GetNumberOfScalarComponents()} components "
                         "(RGB or vector); a scalar short-axis stack is needed")
    dims = image.GetDimensions()
    if min(dims) < 2:
        raise InputError(f"{what} volume {node.GetName()!r} is {dims[0]}x{dims[1]}x{dims[2]}: a 3-D stack of "
                         "short-axis slices is needed, not a single slice")


def volume_from_node(node, what: str = "input") -> Volume:
    """A scalar volume node as a :class:`Volume` (a copy; checked: 3-D, one component, finite).

    A parent transform is hardened into the geometry when it is linear; a non-linear one is refused."""
    check_volume_node(node, what)
    array = slicer.util.arrayFromVolume(node).transpose(2, 1, 0).copy()  # (k, j, i) -> (i, j, k)
    return Volume(array, _in_world(node, node_geometry(node))).check_finite(f"volume {node.GetName()!r}")


def frames_from_node(node) -> list[Volume]:
    """The frames of a scalar volume node (one) or of a sequence node of volumes (a cine: all), checked."""
    from ACNNCore.cine import frame_number

    if node is not None and node.IsA("vtkMRMLSequenceNode"):
        n = node.GetNumberOfDataNodes()
        if n == 0:
            raise InputError(f"sequence {node.GetName()!r} is empty")
        if holds_segmentations(node):
            raise InputError(f"sequence {node.GetName()!r} holds segmentations, not images: choose the cine of "
                             f"images it labels")
        return [volume_from_node(node.GetNthDataNode(i), f"frame {frame_number(i)} of") for i in range(n)]
    return [volume_from_node(node)]


def _in_world(node, geometry: Geometry) -> Geometry:
    """``geometry``, a grid in ``node``'s own coordinates, with the node's parent transform hardened into it:
    where the views show it. A non-linear transform is refused."""
    transform = node.GetParentTransformNode()
    if transform is None:
        return geometry
    if not transform.IsTransformToWorldLinear():
        raise InputError(f"{node.GetName()!r} is under a non-linear transform; harden it first")
    to_world = vtk.vtkMatrix4x4()
    transform.GetMatrixTransformToWorld(to_world)
    return geometry_from_ijk_to_ras(_array(to_world) @ geometry.ijk_to_ras, geometry.shape)


def _grey(node) -> None:
    """Grey, window/level over the 0.5-99.5th percentiles: how Slicer shows a loaded volume."""
    display = node.GetDisplayNode()
    if display is None or node.GetImageData() is None:
        return
    if node.GetScene().GetNodeByID("vtkMRMLColorTableNodeGrey") is not None:
        display.SetAndObserveColorNodeID("vtkMRMLColorTableNodeGrey")
    lo, hi = np.percentile(slicer.util.arrayFromVolume(node), (0.5, 99.5))
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(float(lo), float(hi if hi > lo else lo + 1))


def volume_to_node(volume: Volume, node=None, scene=None, name: str = "Volume", label: bool = False):
    """Write a :class:`Volume` into ``node`` (or a new scalar / labelmap volume node in ``scene``)."""
    if node is None:
        cls = "vtkMRMLLabelMapVolumeNode" if label else "vtkMRMLScalarVolumeNode"
        node = scene.AddNewNodeByClass(cls, scene.GenerateUniqueName(name))
        node.CreateDefaultDisplayNodes()
        created = True
    else:
        created = False
    node.SetIJKToRASMatrix(_matrix(volume.geometry.ijk_to_ras))
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(volume.array.transpose(2, 1, 0)))
    if created and not label:
        _grey(node)
    return node


# --- segmentations ----------------------------------------------------------------------

def _oriented_image(mask: np.ndarray, geometry: Geometry):
    image = slicer.vtkOrientedImageData()
    image.SetDimensions(*mask.shape)
    flat = np.ascontiguousarray(mask.transpose(2, 1, 0).astype(np.uint8)).ravel()
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(flat, deep=True, array_type=vtk.VTK_UNSIGNED_CHAR))
    image.SetImageToWorldMatrix(_matrix(geometry.ijk_to_ras))
    return image


# Slicer's terminology context holding the LV and RV (its "Anatomical Structure" category's SNOMED CT code)
TERMINOLOGY_CONTEXT = "Segmentation category and type - DICOM master list"
ANATOMICAL_STRUCTURE = ("123037004", "Anatomical Structure")


def terminology(name: str) -> str:
    """A segment's terminology entry as Slicer stores it (serialised): the structure's SNOMED CT code, the
    same as in the DICOM SEG objects ACNNCore writes (:data:`ACNNCore.labels.DICOM_CODES`), so that the
    Segment Editor and Slicer's own DICOM export name it; "" for a segment of no known structure."""
    if name not in DICOM_CODES:
        return ""
    entry = slicer.vtkSlicerTerminologyEntry()
    entry.SetTerminologyContextName(TERMINOLOGY_CONTEXT)
    for code, (value, meaning) in ((entry.GetCategoryObject(), ANATOMICAL_STRUCTURE),
                                   (entry.GetTypeObject(), DICOM_CODES[name])):
        code.SetCodingSchemeDesignator("SCT")
        code.SetCodeValue(value)
        code.SetCodeMeaning(meaning)
    return slicer.vtkSlicerTerminologiesModuleLogic.SerializeTerminologyEntry(entry)


def labels_to_segmentation(labels: Volume, node=None, scene=None, name: str = "Segmentation",
                           names: dict | None = None, surfaces: bool = True, smoothing: float | None = None,
                           decimation: float | None = None):
    """A label map into a segmentation node: one segment per label (named and coloured as in
    :data:`ACNNCore.labels.SEGMENTS`, in that order, its structure's code as its :func:`terminology`), on the
    label map's grid. An existing node's segments of the same names are replaced in place (their IDs, and so
    their display settings, are kept).
    ``smoothing`` and ``decimation``: the closed surfaces' factors (Slicer's defaults 0.5 and 0.3; smoothing
    0.3 without decimation takes about half the time: live updates)."""
    names = names or {v: SEGMENTS[v][0] for v in SEGMENTS if v in np.unique(labels.array)}
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", scene.GenerateUniqueName(name))
        node.CreateDefaultDisplayNodes()
    scene = scene_of(node)
    segmentation = node.GetSegmentation()
    reference = _oriented_image(np.zeros(labels.shape, np.uint8), labels.geometry)
    segmentation.SetConversionParameter(slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName(),
                                        slicer.vtkSegmentationConverter.SerializeImageGeometry(reference))
    if smoothing is not None:
        segmentation.SetConversionParameter("Smoothing factor", str(float(smoothing)))
    if decimation is not None:
        segmentation.SetConversionParameter("Decimation factor", str(float(decimation)))
    logic = segmentations_logic(scene)
    was = node.StartModify()
    try:
        for value, segment_name in names.items():
            image = _oriented_image(labels.array == value, labels.geometry)
            segment_id = segmentation.GetSegmentIdBySegmentName(segment_name)
            if segment_id:
                logic.SetBinaryLabelmapToSegment(image, node, segment_id, logic.MODE_REPLACE, image.GetExtent())
            else:
                color = SEGMENTS.get(value, (segment_name, (0.5, 0.5, 0.5)))[1]
                segment_id = segmentation.AddEmptySegment(segment_name, segment_name, color)
                logic.SetBinaryLabelmapToSegment(image, node, segment_id, logic.MODE_REPLACE, image.GetExtent())
                segment, entry = segmentation.GetSegment(segment_id), terminology(segment_name)
                segment.SetTag("ACNN.LabelValue", str(int(value)))
                if entry:
                    segment.SetTerminology(entry)
    finally:
        node.EndModify(was)
    if surfaces and not node.CreateClosedSurfaceRepresentation():
        raise RuntimeError("Slicer could not make closed surfaces for the segmentation")
    return node


# our label values by segment name, and by the SNOMED CT code of the structure a segment's terminology names
_BY_NAME = {name: value for value, (name, _) in SEGMENTS.items()}
_BY_CODE = {("SCT", code): _BY_NAME[name] for name, (code, _) in DICOM_CODES.items()}


def structure_of(segment) -> int | None:
    """Which of our label values a segment holds: by its name (``LV blood pool`` -> 1 ...), else by its
    terminology's type, a structure's SNOMED CT code (a segment named in the Segment Editor by choosing "Left
    ventricle"), as ACNNCore reads a DICOM SEG; None for anything else."""
    if segment.GetName() in _BY_NAME:
        return _BY_NAME[segment.GetName()]
    entry = slicer.vtkSlicerTerminologyEntry()
    if not slicer.vtkSlicerTerminologiesModuleLogic.DeserializeTerminologyEntry(segment.GetTerminology(), entry):
        return None
    code = entry.GetTypeObject()
    return _BY_CODE.get((code.GetCodingSchemeDesignator(), code.GetCodeValue()))


def labels_from_segmentation(node, geometry: Geometry | None = None) -> Volume:
    """A segmentation node as one label map in our values (segments recognised by their names, ``LV blood
    pool`` -> 1 ..., or by the structure their terminology names: :func:`structure_of`). On ``geometry`` if
    given, else on the segmentation's reference grid; where the views show it, a parent transform applied (as
    :func:`volume_from_node` applies an image's)."""
    if node is None:
        raise InputError("no segmentation selected")
    if not node.IsA("vtkMRMLSegmentationNode"):
        raise InputError(f"{node.GetName()!r} is a {node.GetClassName()}, not a segmentation")
    segmentation = node.GetSegmentation()
    ids = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
    known = [(i, value) for i in ids if (value := structure_of(segmentation.GetSegment(i))) is not None]
    if not known:
        raise InputError(f"segmentation {node.GetName()!r} has none of the segments "
                         f"{', '.join(n for n, _ in SEGMENTS.values())}, by name or by terminology (left "
                         f"ventricle, myocardium, right ventricle)")
    scene = scene_of(node)
    logic = segmentations_logic(scene)
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__acnn_export")
    reference = None
    try:
        if geometry is not None:
            reference = volume_to_node(Volume(np.zeros(geometry.shape, np.uint8), geometry), scene=scene,
                                       name="__acnn_reference")
        array = vtk.vtkStringArray()
        for segment_id, _ in known:
            array.InsertNextValue(segment_id)
        if not logic.ExportSegmentsToLabelmapNode(node, array, labelmap, reference,
                                                  slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY):
            raise InputError(f"cannot export segmentation {node.GetName()!r} to a label map")
        exported = volume_from_node_any(labelmap)
        if reference is None:  # the export is on the segmentation's own grid, in its own coordinates
            exported = Volume(exported.array, _in_world(node, exported.geometry))
    finally:
        scene.RemoveNode(labelmap)
        if reference is not None:
            scene.RemoveNode(reference)
    lut = np.zeros(len(known) + 1, np.uint8)
    for index, (_, value) in enumerate(known, start=1):
        lut[index] = value
    return exported.with_array(lut[exported.array.astype(np.int64)])


def volume_from_node_any(node) -> Volume:
    """Any volume node (labelmaps included) as a :class:`Volume`, without the input checks."""
    array = slicer.util.arrayFromVolume(node).transpose(2, 1, 0).copy()
    return Volume(array, node_geometry(node))


# --- tables -----------------------------------------------------------------------------

def rows_to_table(rows: list[dict], node=None, scene=None, name: str = "Table"):
    """A list of dicts (same keys) into a table node: numbers as double columns, the rest as text."""
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(name))
    table = node.GetTable()
    was = node.StartModify()
    node.RemoveAllColumns()
    for key in rows[0]:
        values = [r.get(key) for r in rows]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) or v is None for v in values)
        column = vtk.vtkDoubleArray() if numeric else vtk.vtkStringArray()
        column.SetName(key)
        for v in values:
            if numeric:
                column.InsertNextValue(float("nan") if v is None else float(v))
            else:
                column.InsertNextValue("" if v is None else str(v))
        table.AddColumn(column)
    node.EndModify(was)
    node.Modified()
    return node


def plot_columns(table, x: str, ys: list[str], scene, name: str):
    """A line chart of columns of a table node against its column ``x`` (a plot series each, in one plot chart
    node, in Slicer's colours for segments where a column is named after one), for Slicer's plot views. Returns
    the chart node."""
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", scene.GenerateUniqueName(name))
    for y in ys:
        series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", scene.GenerateUniqueName(f"{name} {y}"))
        series.SetAndObserveTableNodeID(table.GetID())
        series.SetXColumnName(x)
        series.SetYColumnName(y)
        series.SetPlotType(series.PlotTypeScatter)
        series.SetMarkerStyle(series.MarkerStyleCircle)
        color = next((c for n, c in SEGMENTS.values() if y.startswith(n)), None)
        if color is not None:
            series.SetColor(*color)
        chart.AddAndObservePlotSeriesNodeID(series.GetID())
    chart.SetTitle(name)
    chart.SetXAxisTitle(x)
    chart.SetYAxisTitle(ys[0] if len(ys) == 1 else "Blood pool (ml)")
    return chart


def table_rows(node) -> list[dict]:
    table = node.GetTable()
    cols = [table.GetColumn(c) for c in range(table.GetNumberOfColumns())]
    return [{c.GetName(): c.GetValue(r) for c in cols} for r in range(table.GetNumberOfRows())]


# --- files ------------------------------------------------------------------------------

def save_node(node, path) -> str:
    """Write a volume or segmentation node with a fresh storage node (.nrrd, .nii.gz, .seg.nrrd); a sequence of
    volumes (a cine) as one 4-D image (.nii.gz, .nrrd, .mha: ``ACNNCore.io.write_frames``), a sequence of
    segmentations (a cine's, frame by frame) as one 4-D label map in our values, as ``acnn segment`` writes
    a cine's."""
    from pathlib import Path

    path = Path(path)
    if node.IsA("vtkMRMLSequenceNode"):
        from ACNNCore.io import write_frames

        if holds_segmentations(node):
            frames = [labels_from_segmentation(node.GetNthDataNode(i)) for i in range(node.GetNumberOfDataNodes())]
        else:
            frames = frames_from_node(node)
        return str(write_frames(frames, path))
    scene = scene_of(node)
    storage = node.CreateDefaultStorageNode()
    scene.AddNode(storage)
    try:
        storage.SetFileName(str(path))
        if not storage.WriteData(node):
            raise InputError(f"cannot write {node.GetName()!r} to {path}")
    finally:
        scene.RemoveNode(storage)
    return str(path)


def load_node(path, scene, kind: str = "volume", name: str | None = None):
    """Read a file into a new node with a fresh storage node: ``volume``, ``labelmap`` or ``segmentation``."""
    from pathlib import Path

    from ACNNCore.io import check_readable

    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such file: {path}")
    # MRML's segmentation reader aborts the process on a NRRD whose header or data is cut short, and its volume
    # reader takes a NIfTI file cut short (or holding NaNs) without a word
    if kind == "segmentation" or path.name.lower().endswith((".nii", ".nii.gz")):
        check_readable(path)
    classes = {"volume": ("vtkMRMLScalarVolumeNode", "vtkMRMLVolumeArchetypeStorageNode"),
               "labelmap": ("vtkMRMLLabelMapVolumeNode", "vtkMRMLVolumeArchetypeStorageNode"),
               "segmentation": ("vtkMRMLSegmentationNode", "vtkMRMLSegmentationStorageNode")}
    node_class, storage_class = classes[kind]
    node = scene.AddNewNodeByClass(node_class, name or path.name.split(".")[0])
    storage = scene.AddNewNodeByClass(storage_class)
    storage.SetFileName(str(path))
    if kind == "labelmap":
        storage.SetCenterImage(False)
    ok = storage.ReadData(node)
    scene.RemoveNode(storage)
    if not ok:
        scene.RemoveNode(node)
        raise InputError(f"cannot read {path} as a {kind}")
    node.CreateDefaultDisplayNodes()
    if kind == "volume":
        _grey(node)
    return node


def load_cine(path, scene, name: str | None = None):
    """A 4-D cine file (time last) or a DICOM cine (a folder or a study's tree) as a sequence node of volumes; a
    3-D file or DICOM stack as one volume node."""
    from pathlib import Path

    from ACNNCore.io import read_frames

    return frames_to_node(read_frames(path), scene, name or Path(path).name.split(".")[0])


def load_dicom(path, scene) -> list:
    """Each study of a DICOM folder as a node -- a stack as a volume node, a cine as a sequence node of volumes
    -- named by the study's folder (``ACNNCore.dicom.dicom_studies``): one for a study's tree, one per patient or
    visit for a folder of exports; a full study's several cines (the short-axis cine beside perfusion, T1
    mapping) a node each, named by the study and the series description, the short-axis-like cine (most slice
    positions) first (``ACNNCore.dicom.read_dicom_stacks``). Every study is read before any node is made, so a
    study that cannot be read leaves the scene as it was. Each node records where its images lie
    (:data:`DICOM_SOURCE`: folder, study UID, series), for DICOM SEG to refer to them. DICOM SEG objects in the
    folder (beside their images, or alone) come after the images, each a segmentation node named by the folder
    and its series (``ACNNCore.dicom.read_dicom_segs``)."""
    return [make(scene=scene) for make in read_dicom_nodes(path)]


def read_dicom_nodes(path) -> list:
    """What :func:`load_dicom` adds, read without a scene (so a worker thread can read while a GUI stays live): for
    each node, in the same order, a function that adds it, ``make(scene=scene) -> node``. Reading is nearly all
    of the time (a 360-file cine: 1.4 s read, 0.1 s to make its node)."""
    from functools import partial
    from pathlib import Path

    from ACNNCore.dicom import dicom_files, dicom_studies, read_dicom_segs, read_dicom_stacks

    labels = read_dicom_segs(path)
    studies = dicom_studies(path) if len(labels) < len(dicom_files(path)) else {}  # a folder of SEGs alone: none
    makers = []
    for name, study in studies.items():
        try:
            stacks = read_dicom_stacks(*study)
        except InputError as e:
            raise InputError(f"study {name}: {e}") from None
        several = len(stacks) > 1
        for series, frames in stacks.items():
            source = dict(zip(DICOM_SOURCE, (str(study.folder), study.uid, series if several else "")))
            makers.append(partial(_with_attributes, frames_to_node, source, frames,
                                  name=f"{name} {series}" if several else name))
    for name, (file, label_map) in labels.items():
        makers.append(partial(_seg_node, label_map, file, name=f"{Path(path).name} {name}"))
    return makers


def _seg_node(label_map, file, scene, name: str):
    """A DICOM SEG's segmentation node; where it labels one frame of a cine in the scene loaded from DICOM files
    (:func:`ACNNCore.dicom.seg_frame`), tied to that frame (``ACNN.Images``, ``ACNN.Frame``) and following it
    as the cine's results do (:func:`follow_frames`): shown while that frame is."""
    from ACNNCore.dicom import seg_frame

    node = labels_to_segmentation(label_map, scene=scene, name=name)
    for cine in scene.GetNodesByClass("vtkMRMLSequenceNode"):
        folder, study, series = (cine.GetAttribute(key) for key in DICOM_SOURCE)
        try:
            frame = seg_frame(file, folder, study, series or None) if folder else None
        except (InputError, OSError):  # its files moved or changed since: not this cine's
            frame = None
        if frame is not None:
            node.SetNodeReferenceID("ACNN.Images", cine.GetID())
            node.SetAttribute("ACNN.Frame", str(frame))
            follow_frames(cine)
            node.GetDisplayNode().SetVisibility(frame == browser_of(cine).GetSelectedItemNumber())
            break
    return node


def _with_attributes(make, attributes: dict, *args, **kwargs):
    node = make(*args, **kwargs)
    for key, value in attributes.items():
        node.SetAttribute(key, value)
    return node


#: the attributes of a node loaded from DICOM files that say where they lie: their folder, study UID and the
#: series picked ("" where the folder holds one stack), as ``ACNNCore.dicom.read_dicom`` takes them
DICOM_SOURCE = ("ACNN.DicomFolder", "ACNN.DicomStudy", "ACNN.DicomSeries")


def frames_to_node(frames: list, scene, name: str, like=None, labels: dict | None = None, surfaces: bool = True):
    """Frames read by ``ACNNCore.io.read_frames``: several as a sequence node of volumes, one as a volume node.
    ``like``: the sequence they were made from, frame by frame, whose index (name, unit, values: a cine's
    times) they take. ``labels`` ({value: segment name}): the frames are label maps, made segmentation nodes
    (:func:`labels_to_segmentation`, every frame with those segments, closed surfaces where ``surfaces``)."""
    def make(frame, name):
        return (volume_to_node(frame, scene=scene, name=name) if labels is None else
                labels_to_segmentation(frame, scene=scene, name=name, names=labels, surfaces=surfaces))

    if len(frames) == 1:
        return make(frames[0], name)
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", scene.GenerateUniqueName(name))
    if like is not None:
        sequence.CopySequenceIndex(like)
    for t, frame in enumerate(frames):
        node = make(frame, f"{name} frame {t + 1}")
        sequence.SetDataNodeAtValue(node, like.GetNthIndexValue(t) if like is not None else str(t))
        scene.RemoveNode(node)  # the sequence keeps its own copy
    return sequence


def is_cine(node) -> bool:
    """Whether a node is a cine: a sequence of images (not of segmentations, as a cine's every frame's)."""
    return node.IsA("vtkMRMLSequenceNode") and node.GetDataNodeClassName() == "vtkMRMLScalarVolumeNode"


def holds_segmentations(sequence) -> bool:
    """Whether a sequence node holds segmentations (a cine's every frame's, a 4-D label map loaded)."""
    return sequence.GetDataNodeClassName() == "vtkMRMLSegmentationNode"


def cines_of(scene) -> list:
    """The cines of a scene (:func:`is_cine`), in its order."""
    return [n for n in scene.GetNodesByClass("vtkMRMLSequenceNode") if is_cine(n)]


def proxy_of(sequence):
    """The node that shows a sequence's frame shown (its browser's proxy, :func:`browser_of`), or None where no
    browser plays it."""
    browser = browser_of(sequence)
    return None if browser is None else browser.GetProxyNode(sequence)


def label_frames_to_node(frames: list, scene, name: str):
    """Label maps read from a file (``ACNNCore.evaluation.read_label_frames``) into the scene: one as a
    segmentation node; a cine's (a 4-D map, as ``acnn segment CINE`` writes it) as a sequence of segmentations,
    every frame with the segments any frame holds, played along with the cine loaded last that has as many
    frames (its index taken, :func:`play_along`), else by a browser of its own."""
    names = {v: n for v, (n, _) in SEGMENTS.items() if any((f.array == v).any() for f in frames)}
    if len(frames) == 1:
        return labels_to_segmentation(frames[0], scene=scene, name=name, names=names)
    cine = next((n for n in reversed(cines_of(scene)) if n.GetNumberOfDataNodes() == len(frames)), None)
    sequence = frames_to_node(frames, scene, name, like=cine, labels=names)
    if cine is not None:
        play_along(sequence, cine)
    else:
        show_frame(sequence, 0)
    return sequence


def play_along(sequence, cine):
    """A sequence made from ``cine`` frame by frame (:func:`frames_to_node` ``like`` it) played with it: added to
    the cine's sequence browser (made where it has none), so that its proxy node shows the frame the cine shows,
    in Slicer's Sequences toolbar and the studio's frame slider alike. Returns that proxy node."""
    browser = browser_of(cine)
    if browser is None:
        show_frame(cine, 0)
        browser = browser_of(cine)
    browser.AddSynchronizedSequenceNode(sequence)
    _keep_edits(browser, sequence)
    sequences_logic(sequence.GetScene()).UpdateProxyNodesFromSequences(browser)
    return _displayed(browser.GetProxyNode(sequence))


def _displayed(proxy):
    """A browser's proxy node with display nodes (a volume's grey, as Slicer shows a loaded volume)."""
    if proxy.GetDisplayNode() is None:
        proxy.CreateDefaultDisplayNodes()
        if proxy.IsA("vtkMRMLVolumeNode"):
            _grey(proxy)
    return proxy


def _keep_edits(browser, sequence) -> None:
    """A sequence of segmentations keeps what is drawn on its frame shown (the Segment Editor edits the browser's
    proxy node; without this, an edit is lost as the frame moves on)."""
    if holds_segmentations(sequence):
        browser.SetSaveChanges(sequence, True)


def show_frame(sequence, frame: int = 0):
    """The volume node that shows one frame of a sequence of volumes, as Slicer's Sequences module does: the
    sequence's browser node (made here if it has none, its proxy then hidden from node lists: the sequence is
    what one segments) set to ``frame``, and its proxy node, returned."""
    scene = sequence.GetScene()
    if not 0 <= frame < sequence.GetNumberOfDataNodes():
        raise InputError(f"frame index {frame} is outside the sequence's {sequence.GetNumberOfDataNodes()} frames "
                         f"(indices 0 to {sequence.GetNumberOfDataNodes() - 1})")
    logic = sequences_logic(scene)
    browser = browser_of(sequence)
    made = browser is None
    if made:
        browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", f"{sequence.GetName()} browser")
        browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
        _keep_edits(browser, sequence)
    browser.SetSelectedItemNumber(frame)
    logic.UpdateProxyNodesFromSequences(browser)
    proxy = browser.GetProxyNode(sequence)
    if made and proxy.IsA("vtkMRMLVolumeNode"):
        proxy.SetHideFromEditors(True)
    return _displayed(proxy)


def frame_results(sequence) -> list:
    """A cine's segmentations of one frame each (``ACNN.Frame``): the results :meth:`SegmentLogic.apply` made of
    it (``ACNN.Input``), and DICOM SEG objects loaded that label its frames (``ACNN.Images``: :func:`_seg_node`)."""
    scene = sequence.GetScene()
    return [] if scene is None else [
        n for n in scene.GetNodesByClass("vtkMRMLSegmentationNode") if sequence in (
            n.GetNodeReference("ACNN.Input"), n.GetNodeReference("ACNN.Images"))
        and n.GetAttribute("ACNN.Frame") is not None and n.GetDisplayNode() is not None]


def every_frame_result(sequence):
    """A cine's segmentation of every frame (a sequence of segmentations :meth:`SegmentLogic.apply` made of it,
    played along with it: :func:`play_along`), or None."""
    scene = sequence.GetScene()
    return None if scene is None else next(
        (n for n in scene.GetNodesByClass("vtkMRMLSequenceNode") if n.GetNodeReference("ACNN.Input") is sequence
         and holds_segmentations(n) and browser_of(n) is not None), None)


def follow_frame(sequence, old: int, new: int, following: bool = True) -> bool:
    """A cine's ACNN results (:func:`frame_results`) as its frame shown goes from ``old`` to ``new``: where they
    follow the frame, the result of ``new`` shown (none, where that frame was not segmented) and the others
    hidden -- an ED result never lies over the ES image. They follow where one of them was shown at ``old``
    (hidden all: the user hid them); at a frame that has no result, as they did before (``following``). Where
    the cine has a segmentation of every frame (:func:`every_frame_result`), that one plays and the ED and ES
    results made with it are left as the user set them (DICOM SEG objects loaded still follow). Returns whether
    they follow now."""
    results = frame_results(sequence)
    if every_frame_result(sequence) is not None:
        results = [n for n in results if n.GetNodeReference("ACNN.Input") is not sequence]
    if any(int(n.GetAttribute("ACNN.Frame")) == old for n in results):
        following = any(n.GetDisplayNode().GetVisibility() for n in results)
    if following:
        for node in results:
            node.GetDisplayNode().SetVisibility(int(node.GetAttribute("ACNN.Frame")) == new)
    return following


def follow_frames(sequence) -> None:
    """From now on, a cine's ACNN results follow the frame its sequence browser shows (:func:`follow_frame`):
    in Slicer as the Sequences module's slider or player moves, in the studio as its frame slider does. An
    observer on the browser (made, at the first frame, where the cine has none), added once per browser."""
    browser = browser_of(sequence)
    if browser is None:
        show_frame(sequence, 0)
        browser = browser_of(sequence)
    if getattr(browser, "_acnn_follows_results", False):  # kept by VTK with the node, not saved in a scene file
        # (:func:`follow_frames_on_load` adds the observer again to a scene loaded)
        return
    browser._acnn_follows_results = True
    shown = {"frame": browser.GetSelectedItemNumber(), "following": True}

    def changed(caller, _event):
        frame = caller.GetSelectedItemNumber()
        if frame != shown["frame"]:
            shown["following"] = follow_frame(sequence, shown["frame"], frame, shown["following"])
            shown["frame"] = frame

    browser.AddObserver(vtk.vtkCommand.ModifiedEvent, changed)


def follow_frames_on_load(scene) -> None:
    """From now on, the cines' results in a scene file loaded into ``scene`` (an .mrb or .mrml Slicer saved)
    follow the frame shown again, as they did before it was saved (:func:`follow_frames`: an observer, which
    no scene file keeps). An observer on the scene's end of import, added once per scene; the Segment module
    adds it to Slicer's scene at startup."""
    if getattr(scene, "_acnn_follows_on_load", False):
        return
    scene._acnn_follows_on_load = True

    def imported(caller, _event):
        for sequence in list(caller.GetNodesByClass("vtkMRMLSequenceNode")):
            if frame_results(sequence):
                follow_frames(sequence)

    scene.AddObserver(scene.EndImportEvent, imported)


def write_scene(scene, path) -> str:
    """The whole scene as a Slicer scene bundle (.mrb) at ``path``, every node's data in it: what 3D Slicer opens
    (where the Segment module is installed, a cine's results follow its frame there: :func:`follow_frames_on_load`)
    and :func:`import_scene` reads. Each storable node is given a storage node, as Slicer's Save does."""
    messages = slicer.vtkMRMLMessageCollection()
    shown = vtk.vtkOutputWindow.GetInstance()
    vtk.vtkOutputWindow.SetInstance(vtk.vtkStringOutputWindow())  # not two lines per file zipped on stdout
    try:
        written = scene.WriteToMRB(str(path), None, messages)
    finally:
        vtk.vtkOutputWindow.SetInstance(shown)
    if not written:
        raise InputError(f"cannot write the scene to {path}: {messages.GetAllMessagesAsString().strip()}")
    return str(path)


#: the nodes :func:`import_scene` returns: what a user loads, works on and saves
DATA_CLASSES = ("vtkMRMLScalarVolumeNode", "vtkMRMLSequenceNode", "vtkMRMLSegmentationNode", "vtkMRMLTableNode")


def import_scene(path, scene) -> list:
    """A scene Slicer saved as a bundle (``.mrb``: a zip of its ``.mrml`` and data files) added to ``scene``, as
    Slicer's "Add Data" does: its nodes (IDs that clash renumbered, references kept), the saved settings of
    the views. Its cines' results follow their frame (:func:`follow_frames_on_load`). Returns the data nodes added
    (:data:`DATA_CLASSES`), a cine's frame (its browser's proxy) left out and hidden from node lists, as
    :func:`show_frame` makes it (what plays along with the cine, :func:`play_along`, kept as saved). Nodes of
    classes no module here makes (the Segment Editor's settings, an extension's) are left out, with a warning
    logged. All or none otherwise: a file that is no bundle, or whose data MRML cannot read (a file missing
    from it), is an InputError, the scene's nodes as they were."""
    import tempfile
    import zipfile
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such file: {path}")
    if not zipfile.is_zipfile(path):
        raise InputError(f"{path.name} is not a Slicer scene bundle (.mrb): not a zip file")
    sequences_logic(scene)  # the browser node's class registered
    follow_frames_on_load(scene)
    before = {n.GetID() for n in nodes_of(scene)}
    url, root = scene.GetURL(), scene.GetRootDirectory()
    messages = slicer.vtkMRMLMessageCollection()
    with tempfile.TemporaryDirectory() as folder, zipfile.ZipFile(path) as bundle:
        bundle.extractall(folder)  # names kept inside folder (zipfile drops "..", "/")
        scenes = sorted(Path(folder).rglob("*.mrml"), key=lambda f: len(f.parts))
        if not scenes:
            raise InputError(f"{path.name} is not a Slicer scene bundle (.mrb): it holds no .mrml scene")
        scene.SetURL(str(scenes[0]))
        scene.SetRootDirectory(str(scenes[0].parent))
        unpacking = _cache_for_bundles(scene, Path(folder) / "cache")
        try:
            read = scene.Import(messages)  # every data file read now: the folder can go
        finally:
            scene.SetURL(url)
            scene.SetRootDirectory(root)
            unpacking()
    added = [n for n in nodes_of(scene) if n.GetID() not in before]
    errors = [messages.GetNthMessageText(i).strip() for i in range(messages.GetNumberOfMessages())
              if messages.GetNthMessageType(i) == vtk.vtkCommand.ErrorEvent]
    unknown = sorted({m[1] for e in errors if (m := re.search(r"CreateNodeByClass: (\w+)", e))})
    unread = [m[1] for e in errors if (m := re.search(r"Failed to read node (.+?) \(vtkMRML\w+\) using", e))]
    other = [e.splitlines()[-1].split("): ", 1)[-1] for e in errors if "CreateNodeByClass" not in e and
             "Failed to read node" not in e]
    if unread or other or not (read or unknown):
        remove_all_but(scene, before)
        said = (f"the data of {', '.join(unread)} cannot be read" if unread
                else "; ".join(other) or "MRML cannot read it")
        raise InputError(f"{path.name}: {said}")
    if unknown:
        log.warning(f"{path.name}: nodes of {', '.join(unknown)} left out (no module here makes them)")
    cines = {b.GetProxyNode(b.GetMasterSequenceNode()) for b in added if b.IsA("vtkMRMLSequenceBrowserNode")}
    for node in added:
        if node in cines:  # a cine's frame shown; what plays along with it (its results) stays listed
            node.SetHideFromEditors(True)
    return [n for n in added if any(n.IsA(c) for c in DATA_CLASSES) and not n.GetHideFromEditors()]


def _cache_for_bundles(scene, folder):
    """Where ``scene`` has none (a scene outside Slicer's application), a cache folder for MRML to unpack the
    bundles inside a bundle into while it reads it: a sequence of segmentations is saved as a ``.seq.mrb`` of
    its own. Returns what puts the scene back as it was."""
    if scene.GetDataIOManager() is not None and scene.GetCacheManager() is not None:
        return lambda: None
    cache = slicer.vtkCacheManager()
    cache.SetRemoteCacheDirectory(str(folder))
    io = slicer.vtkDataIOManager()
    io.SetCacheManager(cache)
    scene.SetDataIOManager(io)
    scene.SetCacheManager(cache)

    def put_back():
        scene.SetDataIOManager(None)
        scene.SetCacheManager(None)

    return put_back


def nodes_of(scene) -> list:
    """Every node of a scene, in its order."""
    return [scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())]


def remove_all_but(scene, kept: set) -> None:
    """Every node whose ID is not in ``kept`` out of the scene: what a load that failed part way added."""
    for _ in range(3):  # the sequences logic makes a browser's proxy again as its sequence goes
        for node in reversed([n for n in nodes_of(scene) if n.GetID() not in kept]):
            if node.GetScene() is scene:
                scene.RemoveNode(node)


def browser_of(sequence):
    """The sequence browser node that plays a sequence (:func:`show_frame` makes one; a sequence played along
    with a cine, :func:`play_along`, is the cine's), or None."""
    scene = sequence.GetScene()
    browsers = [] if scene is None else list(scene.GetNodesByClass("vtkMRMLSequenceBrowserNode"))
    return next((b for b in browsers if b.GetMasterSequenceNode() is sequence), None) or next(
        (b for b in browsers if b.IsSynchronizedSequenceNode(sequence, True)), None)


def cine_shown_as(node):
    """Where ``node`` is the frame a cine shows -- a sequence browser's proxy node, listed among the volumes as
    Slicer's DICOM and Sequences modules load a cine -- the cine's sequence node and that frame's index; else
    None."""
    scene = None if node is None else node.GetScene()
    if scene is None:
        return None
    for browser in scene.GetNodesByClass("vtkMRMLSequenceBrowserNode"):
        sequence = browser.GetSequenceNode(node) if browser.IsProxyNodeID(node.GetID()) else None
        if sequence is not None:
            return sequence, browser.GetSelectedItemNumber()
    return None


def shown_frame_note(node, done: str, instead: str) -> str:
    """Where ``node`` is the frame a cine shows (:func:`cine_shown_as`: Slicer lists it among the volumes beside
    the cine itself), a sentence for a status line: that this frame alone was ``done`` and that the cine itself
    would ``instead``; else ""."""
    from ACNNCore.cine import frame_number

    shown = cine_shown_as(node)
    if shown is None:
        return ""
    cine, index = shown
    return (f" {node.GetName()!r} is frame {frame_number(index)} of the cine {cine.GetName()!r}, as shown: this "
            f"frame alone was {done}; choose the sequence {cine.GetName()!r} itself to {instead}.")


def remove_node(node) -> None:
    """A node out of its scene with what it alone uses: its display and storage nodes, and for a sequence
    its browser nodes (:func:`show_frame`'s) with their proxy nodes (those of what plays along with it too: its
    frames are no longer shown), or for a sequence played along with a cine its proxy node -- what Slicer's Data
    module removes with it. Nodes that refer to it keep nothing of it (MRML clears their references)."""
    scene = node.GetScene()
    if scene is None:
        return
    doomed = [node]
    if node.IsA("vtkMRMLSequenceNode"):
        for browser in list(scene.GetNodesByClass("vtkMRMLSequenceBrowserNode")):
            if browser.GetMasterSequenceNode() is node:  # a cine: its browser, and what shows its frames
                played = vtk.vtkCollection()
                browser.GetSynchronizedSequenceNodes(played, True)
                doomed += [browser] + [browser.GetProxyNode(played.GetItemAsObject(i))
                                       for i in range(played.GetNumberOfItems())]
            elif browser.IsSynchronizedSequenceNode(node, True):  # played along with a cine: its frame shown
                doomed.append(browser.GetProxyNode(node))
                browser.RemoveSynchronizedSequenceNode(node.GetID())
    for n in list(doomed):
        if n.IsA("vtkMRMLDisplayableNode"):
            doomed += [n.GetNthDisplayNode(i) for i in range(n.GetNumberOfDisplayNodes())]
        if n.IsA("vtkMRMLStorableNode") and n.GetStorageNode() is not None:
            doomed.append(n.GetStorageNode())
    for n in doomed:
        if n is not None and n.GetScene() is scene:
            scene.RemoveNode(n)


def load_labels(path, scene, name: str | None = None):
    """A label map file (an expert's, ``patientNNN_frameXX_gt.nii.gz``) as a segmentation node with our segment
    names and colours; its values in ACDC's convention where an ACDC ``Info.cfg`` lies beside it, else ours. A
    cine's 4-D map (``acnn segment CINE`` writes one) as a sequence of segmentations played along with its cine
    (:func:`label_frames_to_node`)."""
    from pathlib import Path

    from ACNNCore.evaluation import read_label_frames

    path = Path(path)
    return label_frames_to_node(read_label_frames(path, "auto"), scene, name or path.name.split(".")[0])
