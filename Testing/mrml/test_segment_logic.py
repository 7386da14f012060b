"""Segment and SuperResolve logic on real MRML nodes (slicer-core), checked against ACNNCore's own output."""

from pathlib import Path

import numpy as np
import pytest
import slicer

from ACNNCore.cine import frame_index
from ACNNCore.errors import InputError, OutputExists
from ACNNCore.inference import Segmenter, SuperResolver, hr_geometry
from ACNNCore.metrics import dice, ejection_fraction
from ACNNCore.volume import Volume
from ACNNSlicerLib import SegmentLogic, SuperResolveLogic, mrml

from .conftest import node_ids


def rotated(volume: Volume, degrees: float = 30.0) -> Volume:
    """The same voxels on an oblique grid (rotated about the slice axis): what a real scanner writes."""
    a = np.deg2rad(degrees)
    direction = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    return Volume.from_array(volume.array, volume.spacing, (10.0, -20.0, 5.0), direction)


def test_volume_node_round_trip_keeps_geometry(scene, subject):
    lr = rotated(subject.phases["ED"]["lr"])
    node = mrml.volume_to_node(lr, scene=scene, name="stack")
    back = mrml.volume_from_node(node)
    assert back.geometry.same_as(lr.geometry) and np.array_equal(back.array, lr.array)
    assert np.allclose(_ijk_to_ras(node), lr.geometry.ijk_to_ras)


def _ijk_to_ras(node):
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def _type_code(segment) -> tuple[str, str, str]:
    """A segment's terminology type as Slicer reads it back: (scheme, code, meaning)."""
    entry = slicer.vtkSlicerTerminologyEntry()
    assert slicer.vtkSlicerTerminologiesModuleLogic.DeserializeTerminologyEntry(segment.GetTerminology(), entry)
    assert entry.GetTerminologyContextName() == mrml.TERMINOLOGY_CONTEXT
    assert entry.GetCategoryObject().GetCodeValue() == mrml.ANATOMICAL_STRUCTURE[0]
    code = entry.GetTypeObject()
    return code.GetCodingSchemeDesignator(), code.GetCodeValue(), code.GetCodeMeaning()


def test_the_terminology_is_the_one_slicer_lists():
    """The LV's and RV's category and type as Slicer's DICOM master list holds them (the copy trame-slicer
    ships), so that the Segment Editor's terminology selector finds them."""
    import json

    trame_slicer = pytest.importorskip("trame_slicer")
    path = Path(trame_slicer.__file__).parent / "resources/terminologies/" \
        "SegmentationCategoryTypeModifier-DICOM-Master.term.json"
    listed = json.loads(path.read_text())
    assert listed["SegmentationCategoryTypeContextName"] == mrml.TERMINOLOGY_CONTEXT
    (category,) = [c for c in listed["SegmentationCodes"]["Category"] if c["CodeValue"] == mrml.ANATOMICAL_STRUCTURE[0]]
    assert category["CodeMeaning"] == mrml.ANATOMICAL_STRUCTURE[1]
    types = {t["CodeValue"] for t in category["Type"]}
    assert {"87878005", "53085002"} <= types  # the LV's and RV's; the myocardium's code is not on the list
    assert mrml.terminology("something else") == ""


def test_segments_named_otherwise_are_read_by_their_terminology(scene, subject):
    """A segmentation made in the Segment Editor, its segments named by choosing a structure ("Left ventricle",
    "Myocardium") and one of Slicer's default "Tissue": read by the structures their terminology names, the
    tissue left out; a segmentation of none of ours is refused saying what it looks for."""
    truth = subject.phases["ED"]["hr_gt"]
    node = mrml.labels_to_segmentation(truth, scene=scene, names={1: "Left ventricle", 2: "Myocardium"},
                                       surfaces=False)
    tissue = truth.with_array((truth.array == 0).astype(np.uint8) * 3)
    mrml.labels_to_segmentation(tissue, node, names={3: "Tissue"}, surfaces=False)
    segmentation = node.GetSegmentation()
    for i, name in enumerate(("LV blood pool", "LV myocardium", None)):
        assert "^85756007^Tissue~" in segmentation.GetNthSegment(i).GetTerminology()  # Slicer's default
        if name:
            segmentation.GetNthSegment(i).SetTerminology(mrml.terminology(name))
    assert np.array_equal(mrml.labels_from_segmentation(node, truth.geometry).array, truth.array)
    segmentation.RemoveSegment(segmentation.GetNthSegmentID(0))
    segmentation.RemoveSegment(segmentation.GetNthSegmentID(0))
    with pytest.raises(InputError, match="has none of the segments LV blood pool.*by name or by terminology"):
        mrml.labels_from_segmentation(node)


def test_segment_volume_node(scene, subject):
    lr = rotated(subject.phases["ED"]["lr"])
    node = mrml.volume_to_node(lr, scene=scene, name="stack")
    steps = []
    result, segmentations, table = SegmentLogic().process(node, "acnn-seg-phantom", "cpu",
                                                          progress=lambda f, m: steps.append(f))
    assert steps[0] == 0.0 and steps[-1] == 1.0 and steps == sorted(steps)
    (seg,) = segmentations
    s = seg.GetSegmentation()
    assert [s.GetNthSegment(i).GetName() for i in range(s.GetNumberOfSegments())] == ["LV blood pool",
                                                                                      "LV myocardium"]
    assert s.ContainsRepresentation("Closed surface")
    assert seg.GetName() == "stack ACNN segmentation"
    assert [_type_code(s.GetNthSegment(i)) for i in range(2)] == [("SCT", "87878005", "Left ventricle"),
                                                                  ("SCT", "74281007", "Myocardium")]
    # the same voxels as ACNNCore's own segmenter, on the HR grid aligned with the oblique input
    own = Segmenter("acnn-seg-phantom", "cpu")(lr).labels
    assert own.geometry.same_as(hr_geometry(lr.geometry, 5))
    labels = mrml.labels_from_segmentation(seg, own.geometry)
    assert np.array_equal(labels.array, own.array)
    assert np.array_equal(mrml.labels_from_segmentation(seg).array, own.array)  # its own reference grid
    rows = mrml.table_rows(table)
    assert rows[0]["LV blood pool (ml)"] == pytest.approx(result.phases[0].measures["lv_volume_ml"], abs=0.05)
    assert rows[0]["Plausible"] in ("yes", "no")
    assert "RV blood pool (ml)" not in rows[0]  # the phantom model has no RV
    assert seg.GetAttribute("ACNN.Plausible") in ("true", "false")


def test_a_real_image_segmented_with_its_rv_measured(scene, acdc_root):
    """An ACDC image node segmented with no model named: the real-data model chosen, three segments and the
    RV's volume in the measures table."""
    from ACNNCore.io import read_volume

    node = mrml.volume_to_node(read_volume(acdc_root / "patient031" / "patient031_frame01.nii.gz"), scene=scene,
                               name="patient031")
    result, (seg,), table = SegmentLogic().process(node, device="cpu")
    assert result.model == "acnn-seg-acdc" and seg.GetAttribute("ACNN.Model") == "acnn-seg-acdc"
    s = seg.GetSegmentation()
    assert [s.GetNthSegment(i).GetName() for i in range(s.GetNumberOfSegments())][-1] == "RV blood pool"
    assert _type_code(s.GetNthSegment(2)) == ("SCT", "53085002", "Right ventricle")
    labels = result.phases[0].labels
    rv_ml = np.count_nonzero(labels.array == 3) * labels.geometry.voxel_volume_ml
    (row,) = mrml.table_rows(table)
    assert rv_ml > 50 and row["RV blood pool (ml)"] == pytest.approx(rv_ml, abs=0.05)
    assert result.notes == []  # a real image, the real-data model: nothing to mind


def test_orient_in_the_logic_says_how_it_saw_a_mirrored_image(scene, acdc_root, acdc_network):
    """A real image stored mirrored, segmented by the logic (one real-data network): without ``orient``, the RV
    lost, the result implausible and the status line naming the orientation search; with it, the RV found, and
    the status line says the network was surest of the image with its first axis reversed."""
    from ACNNCore.cine import IMPLAUSIBLE_UNSEARCHED
    from ACNNCore.inference import in_plane_view
    from ACNNCore.io import read_volume

    image = read_volume(acdc_root / "patient031" / "patient031_frame01.nii.gz")
    node = mrml.volume_to_node(in_plane_view(image, (False, True, False)), scene=scene, name="mirrored")
    result, _, table = SegmentLogic().process(node, acdc_network, "cpu", surfaces=False)
    assert mrml.table_rows(table)[0]["RV blood pool (ml)"] < 10 and IMPLAUSIBLE_UNSEARCHED in result.summary()
    result, _, table = SegmentLogic().process(node, acdc_network, "cpu", surfaces=False, orient=True)
    assert result.orientation_note().startswith(" The network was surest of the image with its first axis reversed")
    assert mrml.table_rows(table)[0]["RV blood pool (ml)"] > 50


def test_the_model_offered_suits_the_input(scene, subject):
    from ACNNCore.bundle import available

    stack = mrml.volume_to_node(subject.phases["ED"]["lr"], scene=scene, name="stack")
    assert SegmentLogic.suited_model(stack) == "acnn-seg-phantom"
    other = subject.phases["ED"]["hr"]  # not the phantom's acquisition: a real-data model, when bundled
    expected = "acnn-seg-acdc" if "acnn-seg-acdc" in available() else "acnn-seg-phantom"
    assert SegmentLogic.suited_model(mrml.volume_to_node(other, scene=scene, name="hr")) == expected
    assert SegmentLogic.suited_model(None) is None
    # the other model chosen all the same: the result says what to mind (the module's and studio's status)
    result = SegmentLogic().compute(SegmentLogic.read_input(stack), "acnn-seg-phantom", "cpu")
    assert result.notes == [] and result.notes_text() == ""
    thin = mrml.volume_to_node(Volume.from_array(subject.phases["ED"]["lr"].array, (1.25, 1.25, 8.0)), scene=scene)
    result = SegmentLogic().compute(SegmentLogic.read_input(thin), "acnn-seg-phantom", "cpu")
    assert result.notes_text().startswith(" Note: acnn-seg-phantom learnt 10 mm slices and this image has 8 mm")
    assert "Note: acnn-seg-phantom learnt from phantom images only" in result.notes_text()


def test_segment_with_the_cleanup(scene, subject):
    from ACNNCore.inference import ShapeModel
    from ACNNCore.postprocessing import clean_up

    lr = subject.phases["ES"]["lr"]
    frames = [lr]
    logic = SegmentLogic()
    raw = logic.compute(frames, "acnn-seg-phantom", "cpu").phases[0].labels
    clean = logic.compute(frames, "acnn-seg-phantom", "cpu", cleanup=True).phases[0].labels
    assert np.array_equal(clean.array, clean_up(raw).array)
    closed = logic.compute(frames, "acnn-seg-phantom", "cpu", close_myocardium=True).phases[0]
    assert np.array_equal(closed.labels.array, clean_up(raw, close_myocardium=True).array)
    assert closed.plausibility["plausible"]
    # corrected with the shape model the network was trained with (ae-phantom, found by its checksum)
    result = logic.compute(frames, "acnn-seg-phantom", "cpu", correct=True)
    probabilities = logic.segmenter("acnn-seg-phantom", "cpu")(lr).probabilities
    expected, how = ShapeModel("ae-phantom", "cpu").correct(raw, probabilities)
    assert np.array_equal(result.phases[0].labels.array, expected.array) and result.phases[0].correction == how
    assert result.rows()[0]["Shape model"] == how
    # both: the rule only where the correction fails (here it does not: the same as correcting alone)
    both = logic.compute(frames, "acnn-seg-phantom", "cpu", close_myocardium=True, correct=True).phases[0]
    assert np.array_equal(both.labels.array, expected.array) and both.correction == how
    # test-time augmentation: a segmenter of its own (the plain one stays cached as it was)
    augmented = logic.compute(frames, "acnn-seg-phantom", "cpu", tta=True).phases[0].labels
    assert logic.segmenter("acnn-seg-phantom", "cpu", tta=True) is not logic.segmenter("acnn-seg-phantom", "cpu")
    expected = Segmenter("acnn-seg-phantom", "cpu", tta=True)(lr).labels
    assert np.array_equal(augmented.array, expected.array) and not np.array_equal(augmented.array, raw.array)


def test_segment_agrees_with_truth_in_physical_space(scene, subject):
    node = mrml.volume_to_node(subject.phases["ES"]["lr"], scene=scene, name="es")
    _, (seg,), _ = SegmentLogic().process(node, "acnn-seg-phantom", "cpu", surfaces=False)
    truth = subject.phases["ES"]["hr_gt"]
    d = dice(mrml.labels_from_segmentation(seg), truth)
    assert d[1] > 0.9 and d[2] > 0.8


def test_nodes_under_a_transform_are_read_where_the_views_show_them(scene, subject):
    """A registration leaves an image and its expert's labels under a transform: the image is segmented where
    it is shown, the labels compared with the result there too; a non-linear transform refused until hardened."""
    import slicer
    import vtk

    es, truth = subject.phases["ES"]["lr"], subject.phases["ES"]["hr_gt"]
    image = mrml.volume_to_node(es, scene=scene, name="es")
    expert = mrml.labels_to_segmentation(truth, scene=scene, name="es_gt")
    a = np.deg2rad(20.0)  # turned about the patient's long axis and moved
    moved = np.array([[np.cos(a), -np.sin(a), 0, 15], [np.sin(a), np.cos(a), 0, -7], [0, 0, 1, 3], [0, 0, 0, 1]])
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    transform.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(moved))
    for node in (image, expert):
        node.SetAndObserveTransformNodeID(transform.GetID())
    seen, labels = mrml.volume_from_node(image), mrml.labels_from_segmentation(expert)
    assert np.allclose(seen.geometry.ijk_to_ras, moved @ es.geometry.ijk_to_ras)
    assert np.allclose(labels.geometry.ijk_to_ras, moved @ truth.geometry.ijk_to_ras)
    assert np.array_equal(seen.array, es.array) and np.array_equal(labels.array, truth.array)
    result, (seg,), _ = SegmentLogic().process(image, "acnn-seg-phantom", "cpu", surfaces=False)
    assert seg.GetParentTransformNode() is None  # in world coordinates: over the image as it is shown
    assert mrml.labels_from_segmentation(seg).geometry.same_as(hr_geometry(seen.geometry, 5))
    scores = SegmentLogic.agreement(result.phases[0].labels, expert)
    assert scores["LV blood pool"] > 0.9 and scores["LV myocardium"] > 0.8
    warp = vtk.vtkThinPlateSplineTransform()  # a non-linear transform
    source, target = vtk.vtkPoints(), vtk.vtkPoints()
    for p in ((0, 0, 0), (100, 0, 0), (0, 100, 0), (0, 0, 100)):
        source.InsertNextPoint(p)
        target.InsertNextPoint(p[0] + 5, p[1], p[2])
    warp.SetSourceLandmarks(source)
    warp.SetTargetLandmarks(target)
    warped = scene.AddNewNodeByClass("vtkMRMLTransformNode")
    warped.SetAndObserveTransformToParent(warp)
    for node in (image, expert):
        node.SetAndObserveTransformNodeID(warped.GetID())
    for read in (lambda: mrml.volume_from_node(image), lambda: mrml.labels_from_segmentation(expert)):
        with pytest.raises(InputError, match="is under a non-linear transform; harden it first"):
            read()


def cine(scene, subject):
    """A three-frame cine sequence: ES, ED, ES (with other noise)."""
    seq = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "cine")
    es = subject.phases["ES"]["lr"]
    noisy = es.with_array(es.array + np.random.default_rng(0).normal(0, 0.02, es.shape).astype(es.array.dtype))
    for t, v in enumerate((es, subject.phases["ED"]["lr"], noisy)):
        frame = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", f"frame{t}")
        mrml.volume_to_node(v, node=frame)
        seq.SetDataNodeAtValue(frame, str(t))
        scene.RemoveNode(frame)
    return seq


def test_cine_sequence_detects_ed_es_and_ef(scene, subject):
    """ED and ES found from the volume curve, or given (indices from 0); the tables count frames from 1, as
    the Sequences toolbar shows them, and so does the module's ED / ES spin boxes' conversion."""
    seq = cine(scene, subject)
    logic = SegmentLogic()
    result, segmentations, table = logic.process(seq, "acnn-seg-phantom", "cpu", surfaces=False)
    ed, es = result.phases
    assert (ed.phase, ed.frame) == ("ED", 1) and es.phase == "ES" and es.frame in (0, 2)
    assert len(result.volume_curve_ml) == 3 and result.volume_curve_ml[1] == max(result.volume_curve_ml)
    truth = ejection_fraction(*(float(np.count_nonzero(subject.phases[p]["hr_gt"].array == 1)) for p in ("ED", "ES")))
    assert result.ef_pct == pytest.approx(truth, abs=5.0)
    assert [n.GetName() for n in segmentations] == ["cine ED ACNN segmentation", "cine ES ACNN segmentation"]
    rows = mrml.table_rows(table)
    assert [r["Phase"] for r in rows] == ["ED", "ES"] and rows[0]["EF (%)"] == pytest.approx(result.ef_pct, abs=0.05)
    assert [r["Frame"] for r in rows] == [2, es.frame + 1]
    curve = table.GetNodeReference("ACNN.VolumeCurve")  # the LV over the cycle, and a chart of it
    assert [r["LV blood pool (ml)"] for r in mrml.table_rows(curve)] == pytest.approx(result.volume_curve_ml, abs=0.01)
    assert [r["Frame"] for r in mrml.table_rows(curve)] == [1, 2, 3]
    chart = table.GetNodeReference("ACNN.VolumeCurveChart")
    assert chart.IsA("vtkMRMLPlotChartNode") and chart.GetNumberOfPlotSeriesNodes() == 1
    assert chart.GetNthPlotSeriesNode(0).GetTableNode() is curve
    chosen = logic.compute(SegmentLogic.read_input(seq), "acnn-seg-phantom", "cpu", ed=1, es=2)
    assert [p.frame for p in chosen.phases] == [1, 2] and chosen.volume_curve_ml == []
    assert logic.apply(chosen, seq, surfaces=False)[1].GetNodeReference("ACNN.VolumeCurve") is None  # no curve
    with pytest.raises(InputError, match="ES frame index 7 is outside the sequence's 3 frames"):
        logic.compute(SegmentLogic.read_input(seq), "acnn-seg-phantom", "cpu", ed=1, es=7)
    with pytest.raises(InputError, match="ED and ES are the same frame: an ejection fraction needs two"):
        logic.compute(SegmentLogic.read_input(seq), "acnn-seg-phantom", "cpu", ed=1, es=1)  # was EF 0 %
    # the module's spin boxes (from 1) -> indices: for a cine whose phases are not detected only
    assert SegmentLogic.frames_asked(3, False, 1, 3) == (0, 2)
    assert SegmentLogic.frames_asked(3, True, 1, 3) == SegmentLogic.frames_asked(1, False, 5, 7) == (None, None)
    with pytest.raises(InputError, match=r"ED frame 4 is outside the cine's frames, 1 to 3 \(frames count from 1\)"):
        SegmentLogic.frames_asked(3, False, 4, 1)
    assert frame_index(None, 3, "ED") is None and frame_index("2", 3, "ES") == frame_index(2.0, 3, "ES") == 1
    for typed in ("", "two", 1.5, True):  # a field's text as typed: whole numbers only
        with pytest.raises(InputError, match="the ES frame is a whole number, counted from 1, not "):
            SegmentLogic.frames_asked(3, False, 1, typed)
    es_given = logic.compute(SegmentLogic.read_input(seq), "acnn-seg-phantom", "cpu", es=1)  # ED found, ES kept
    assert es_given.volume_curve_ml == result.volume_curve_ml
    curve = result.volume_curve_ml  # ED found among the other frames (the largest, frame 1, was ED = ES, EF 0 %)
    assert [p.frame for p in es_given.phases] == [0 if curve[0] > curve[2] else 2, 1] and es_given.ef_pct < 0
    assert "Note: the LV blood pool is larger at ES (frame 2) than at ED" in es_given.summary()  # said, not just shown
    assert "wrong way round" not in result.summary() + chosen.summary()


def frames_shown(cine_node) -> list[int]:
    """The frames whose results (:func:`mrml.frame_results`) of a cine are shown."""
    return sorted(int(n.GetAttribute("ACNN.Frame")) for n in mrml.frame_results(cine_node)
                  if n.GetDisplayNode().GetVisibility())


def test_the_frame_a_cine_shows_chosen_as_input_is_processed_alone_saying_so(scene, subject):
    """Slicer lists a cine's frame shown (its browser's proxy volume) among the volumes, beside the cine: chosen,
    that frame alone is segmented, and the status line says which frame of which cine it is and what gives ED,
    ES and the EF (SuperResolve's: what gives every frame). The cine itself and a plain volume get no such
    sentence."""
    seq = cine(scene, subject)
    shown = mrml.show_frame(seq, 1)  # as the Sequences module shows the cine's second frame
    assert mrml.cine_shown_as(shown) == (seq, 1)
    result, segmentations, _ = SegmentLogic().process(shown, "acnn-seg-phantom", "cpu", surfaces=False)
    assert [p.phase for p in result.phases] == [""] and result.ef_pct is None
    assert SegmentLogic.about_input(shown) == (" 'cine' is frame 2 of the cine 'cine', as shown: this frame alone was "
                                               "segmented; choose the sequence 'cine' itself to segment its ED "
                                               "and ES and measure the EF.")
    plain = mrml.volume_to_node(subject.phases["ED"]["lr"], scene=scene, name="ED")
    assert SegmentLogic.about_input(seq) == SegmentLogic.about_input(plain) == ""
    assert SuperResolveLogic.about_input(shown) == (" 'cine' is frame 2 of the cine 'cine', as shown: this frame "
                                                    "alone was super-resolved; choose the sequence 'cine' itself to "
                                                    "super-resolve every frame.")  # the SuperResolve module's too
    assert SuperResolveLogic.about_input(seq) == SuperResolveLogic.about_input(plain) == ""
    assert mrml.cine_shown_as(plain) is None and mrml.cine_shown_as(segmentations[0]) is None


def test_a_cine_s_results_follow_the_frame_its_browser_shows(scene, subject):
    """Results of a cine follow the frame the sequence browser shows -- Slicer's Sequences slider and player,
    the studio's frame slider: the frame's own result shown, the others hidden (none at a frame not segmented);
    hidden by the user, they stay hidden."""
    seq = cine(scene, subject)
    logic = SegmentLogic()

    def segment():
        result = logic.compute(SegmentLogic.read_input(seq), "acnn-seg-phantom", "cpu", ed=1, es=2)
        return logic.apply(result, seq, surfaces=False)[0]

    ed, es = segment()
    assert frames_shown(seq) == [1, 2] and mrml.browser_of(seq).GetSelectedItemNumber() == 0  # as apply leaves them
    mrml.show_frame(seq, 1)  # ED's frame (the widgets show it after apply)
    assert frames_shown(seq) == [1]
    mrml.show_frame(seq, 2)
    assert frames_shown(seq) == [2]
    mrml.show_frame(seq, 0)  # not segmented
    assert frames_shown(seq) == []
    mrml.show_frame(seq, 1)
    assert frames_shown(seq) == [1]
    ed.GetDisplayNode().SetVisibility(False)  # the user's eye
    mrml.show_frame(seq, 2)
    assert frames_shown(seq) == []
    for node in (ed, es):
        scene.RemoveNode(node)
    segment()  # again: the new results follow
    mrml.show_frame(seq, 1)
    assert frames_shown(seq) == [1]


def test_a_cine_segmented_at_every_frame_plays_its_segmentation_along(scene, subject, tmp_path):
    """Every frame of a cine segmented (ED and ES found): a sequence of every frame's segmentation, played
    along with the cine, so the heart beats in the 3-D view as the Sequences toolbar plays; ED's and ES's own
    nodes hidden under it and left as the user sets them; a frame edited, kept. Saved as one 4-D label map, and
    in an .mrb read again; offered as an input, refused with a sentence."""
    from ACNNCore.io import read_frames

    seq = cine(scene, subject)
    result, segmentations, table = SegmentLogic().process(seq, "acnn-seg-phantom", "cpu")
    every = table.GetNodeReference("ACNN.EveryFrame")
    assert every.GetName() == "cine ACNN segmentation" and mrml.every_frame_result(seq) is every
    assert every.GetNumberOfDataNodes() == 3 and every.GetAttribute("ACNN.Model") == "acnn-seg-phantom"
    assert every.GetNodeReference("ACNN.Input") is seq
    assert [every.GetNthIndexValue(t) for t in range(3)] == [seq.GetNthIndexValue(t) for t in range(3)]
    browser = mrml.browser_of(seq)
    proxy = browser.GetProxyNode(every)
    assert mrml.browser_of(every) is browser and proxy.GetDisplayNode().GetVisibility()
    for frame in (1, 2, 0, 1):  # the Sequences toolbar's steps: the frame's own segmentation under it
        mrml.show_frame(seq, frame)
        assert browser.GetProxyNode(every) is proxy
        assert np.array_equal(mrml.labels_from_segmentation(proxy).array, result.frames[frame].array)
        segmentation = proxy.GetSegmentation()
        assert [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())] == [
            "LV blood pool", "LV myocardium"] and segmentation.ContainsRepresentation("Closed surface")
        assert frames_shown(seq) == []  # ED's and ES's nodes hidden: the sequence shows their frames
    assert np.array_equal(mrml.labels_from_segmentation(segmentations[0]).array, result.frames[1].array)  # ED's
    segmentations[1].GetDisplayNode().SetVisibility(True)  # the user's eye: kept as the frame moves
    mrml.show_frame(seq, 0)
    assert frames_shown(seq) == [result.phases[1].frame]
    segmentations[1].GetDisplayNode().SetVisibility(False)
    mrml.show_frame(seq, 2)  # frame 3 edited (the Segment Editor draws on the frame shown): kept in the sequence
    labels = [result.frames[0], result.frames[1], result.frames[2].with_array(
        np.where(result.frames[2].array == 2, 0, result.frames[2].array).astype(np.uint8))]
    mrml.labels_to_segmentation(labels[2], node=proxy, names={1: "LV blood pool", 2: "LV myocardium"})  # erased
    mrml.show_frame(seq, 0)
    mrml.show_frame(seq, 2)
    assert np.array_equal(mrml.labels_from_segmentation(proxy).array, labels[2].array)

    saved = read_frames(mrml.save_node(every, tmp_path / "cine_seg.nii.gz"))  # as `acnn segment CINE` writes it
    assert len(saved) == 3 and all(np.array_equal(f.array, labels[t].array) for t, f in enumerate(saved))
    assert saved[0].geometry.same_as(result.frames[0].geometry)
    with pytest.raises(InputError, match="^sequence 'cine ACNN segmentation' holds segmentations, not images: "
                                         "choose the cine of images it labels$"):
        SegmentLogic.read_input(every)

    mrml.write_scene(scene, tmp_path / "study.mrb")  # the sequence in a bundle of its own inside: read again
    again = mrml.new_scene()
    nodes = mrml.import_scene(tmp_path / "study.mrb", again)
    (cine_again,) = [n for n in nodes if n.GetName() == "cine"]
    every_again = mrml.every_frame_result(cine_again)
    assert every_again.GetNumberOfDataNodes() == 3 and every_again in nodes
    assert again.GetDataIOManager() is None  # the cache for reading it was for the import only
    mrml.show_frame(cine_again, 2)
    shown = mrml.browser_of(cine_again).GetProxyNode(every_again)
    assert shown in nodes and not shown.GetHideFromEditors()  # listed, as before it was saved
    assert np.array_equal(mrml.labels_from_segmentation(shown).array, labels[2].array)  # as edited
    assert frames_shown(cine_again) == [] and mrml.browser_of(cine_again).GetSaveChanges(every_again)


def test_a_saved_scene_s_cine_results_follow_the_frame_again_when_loaded(scene, subject, tmp_path):
    """A scene saved as an .mrb with a cine's results and loaded again, in Slicer (the Segment module adds
    ``follow_frames_on_load`` to its scene at startup): they follow the frame shown again, though the observer
    that did it is not in the file; a scene loaded without it leaves them as they were."""
    import slicer

    seq = cine(scene, subject)
    logic = SegmentLogic()
    logic.apply(logic.compute(SegmentLogic.read_input(seq), "acnn-seg-phantom", "cpu", ed=1, es=2), seq,
                surfaces=False)
    mrml.show_frame(seq, 1)
    assert scene.WriteToMRB(str(tmp_path / "saved.mrb"))

    def load(follow: bool):
        loaded = mrml.new_scene()
        sequences = slicer.vtkSlicerSequencesLogic()  # the node classes Slicer's modules register
        sequences.SetMRMLScene(loaded)
        cache = slicer.vtkCacheManager()
        cache.SetRemoteCacheDirectory(str(tmp_path / f"cache{follow}"))
        io = slicer.vtkDataIOManager()
        io.SetCacheManager(cache)
        loaded.SetDataIOManager(io)
        loaded.SetCacheManager(cache)
        if follow:
            mrml.follow_frames_on_load(loaded)
            mrml.follow_frames_on_load(loaded)  # once
        assert loaded.ReadFromMRB(str(tmp_path / "saved.mrb"))
        (again,) = loaded.GetNodesByClass("vtkMRMLSequenceNode")
        return again

    again = load(follow=True)
    assert len(mrml.frame_results(again)) == 2 and mrml.browser_of(again).GetSelectedItemNumber() == 1
    assert frames_shown(again) == [1]
    mrml.show_frame(again, 2)
    assert frames_shown(again) == [2]
    mrml.show_frame(again, 0)
    assert frames_shown(again) == []
    unfollowed = load(follow=False)
    mrml.show_frame(unfollowed, 2)
    assert frames_shown(unfollowed) == [1]  # what the observer mends


def test_a_saved_scene_is_added_beside_what_is_there_or_refused_whole(scene, subject, tmp_path, caplog, capfd,
                                                                      rezipped):
    """``mrml.write_scene`` and ``mrml.import_scene`` (the studio's saving and loading of an .mrb): a scene
    bundle, written without a word on stdout, added to a scene (the same one twice: its IDs renumbered, each
    result still its own cine's), its cine's frame hidden from the node lists and its results following the
    frame; one holding a node no module here makes loads without it, said; one that is no bundle or misses a
    data file leaves the scene's nodes as they were; a bundle that cannot be written is a clear error."""
    import logging
    import zipfile

    seq = cine(scene, subject)
    SegmentLogic().apply(SegmentLogic().compute(SegmentLogic.read_input(seq), "acnn-seg-phantom", "cpu", ed=1,
                                                es=2), seq, surfaces=False)
    mrml.show_frame(seq, 1)
    capfd.readouterr()
    assert mrml.write_scene(scene, tmp_path / "saved.mrb") == str(tmp_path / "saved.mrb")
    assert "Zip: adding" not in "".join(capfd.readouterr())  # VTK's archive says so for each file: not here
    with pytest.raises(InputError, match="^cannot write the scene to /proc/saved.mrb: .*Could not create"):
        mrml.write_scene(scene, "/proc/saved.mrb")
    into = mrml.new_scene()
    kinds = sorted(n.GetClassName() for n in mrml.nodes_of(scene) if any(n.IsA(c) for c in (
        "vtkMRMLSequenceNode", "vtkMRMLSegmentationNode", "vtkMRMLTableNode")))  # the cine's, with its results
    assert kinds.count("vtkMRMLSegmentationNode") == 2
    for time in (1, 2):
        added = mrml.import_scene(tmp_path / "saved.mrb", into)
        assert sorted(n.GetClassName() for n in added) == kinds
        (again,) = [n for n in added if n.IsA("vtkMRMLSequenceNode")]
        assert again.GetName() == "cine" and again.GetNumberOfDataNodes() == 3
        for t in range(3):
            assert np.array_equal(mrml.volume_from_node(again.GetNthDataNode(t)).array,
                                  mrml.volume_from_node(seq.GetNthDataNode(t)).array)
        results = {n.GetID() for n in mrml.frame_results(again)}
        assert results == {n.GetID() for n in added if n.IsA("vtkMRMLSegmentationNode")} and len(results) == 2
        proxy = mrml.browser_of(again).GetProxyNode(again)
        assert proxy.GetHideFromEditors() and proxy not in added
        mrml.show_frame(again, 2)
        assert frames_shown(again) == [2]
    assert into.GetNodesByClass("vtkMRMLSequenceNode").GetNumberOfItems() == 2

    before = node_ids(into)
    (tmp_path / "text.mrb").write_text("not a bundle")
    with zipfile.ZipFile(tmp_path / "empty.mrb", "w") as z:
        z.writestr("notes.txt", "no scene")
    rezipped(tmp_path / "saved.mrb", tmp_path / "missing.mrb", leave_out="cine ED ACNN segmentation.seg.nrrd")
    for bad, said in (("text.mrb", "not a zip file"), ("empty.mrb", "holds no .mrml scene"),
                      ("gone.mrb", "no such file"),
                      ("missing.mrb", "^missing.mrb: the data of cine ED ACNN segmentation cannot be read$")):
        with pytest.raises(InputError, match=said):
            mrml.import_scene(tmp_path / bad, into)
        assert node_ids(into) == before, bad

    foreign = rezipped(tmp_path / "saved.mrb", tmp_path / "foreign.mrb", scene_text=lambda text: text.replace(
        "</MRML>", '<Widget id="vtkMRMLWidgetNode1" name="an extension\'s"></Widget>\n</MRML>'))
    with caplog.at_level(logging.WARNING, logger="ACNNSlicerLib"):
        assert sorted(n.GetClassName() for n in mrml.import_scene(foreign, into)) == kinds
    assert "foreign.mrb: nodes of vtkMRMLWidgetNode left out (no module here makes them)" in caplog.text


def test_the_phantom_demo_is_a_cine_to_segment_at_once(scene):
    """The Segment module's "Phantom demo" (and the studio's --demo): an unseen phantom's ED and ES stacks and
    the two as a cine, which the phantom model segments with the phantom's own EF."""
    from ACNNCore.demo import demo_subject

    ed, es, cine = SegmentLogic.load_demo(scene)
    truth = demo_subject()  # acnn demo's
    assert [ed.GetName(), es.GetName(), cine.GetName()] == ["phantom ED", "phantom ES", "phantom cine"]
    frames = SegmentLogic.read_input(cine)
    for frame, node, phase in zip(frames, (ed, es), ("ED", "ES")):
        assert np.array_equal(frame.array, truth.phases[phase]["lr"].array)
        assert np.array_equal(mrml.volume_from_node(node).array, frame.array)
    assert SegmentLogic.suited_model(cine) == "acnn-seg-phantom"
    result, _, _ = SegmentLogic().process(cine, "acnn-seg-phantom", "cpu", surfaces=False)
    assert [(p.phase, p.frame) for p in result.phases] == [("ED", 0), ("ES", 1)]
    ef = ejection_fraction(*(float(np.count_nonzero(truth.phases[p]["hr_gt"].array == 1)) for p in ("ED", "ES")))
    assert result.ef_pct == pytest.approx(ef, abs=5.0)
    assert SegmentLogic.load_demo(scene)[2].GetName() == "phantom cine_1"  # a second demo beside the first


def test_superresolve_output_geometry(scene, subject):
    lr = rotated(subject.phases["ED"]["lr"])
    node = mrml.volume_to_node(lr, scene=scene, name="stack")
    out = SuperResolveLogic().process(node, "acnn-sr-phantom", "cpu")
    hr = mrml.volume_from_node(out)
    assert hr.shape == (96, 96, 60) and hr.spacing == pytest.approx((1.25, 1.25, 2.0))
    assert hr.geometry.same_as(hr_geometry(lr.geometry, 5))
    assert np.allclose(hr.array, SuperResolver("acnn-sr-phantom", "cpu")(lr).array, atol=1e-4)
    assert SuperResolveLogic().caveats(lr, "acnn-sr-phantom", "cpu") == []  # the phantom's stacks: nothing to mind
    thin = Volume.from_array(lr.array, (1.25, 1.25, 5.0))
    assert "learnt 10 mm slices" in SuperResolveLogic().caveats(thin, "acnn-sr-phantom", "cpu")[0]
    # the same physical extent as the input stack
    corners = lambda g: g.index_to_physical(np.array([[-0.5, -0.5, -0.5], np.array(g.shape) - 0.5]))  # noqa: E731
    assert np.allclose(corners(hr.geometry), corners(lr.geometry), atol=1e-4)
    assert out.GetName() == "stack ACNN SR"


def test_a_cine_is_super_resolved_frame_by_frame_into_a_sequence_that_plays_along(scene, subject):
    """A cine sequence: each frame super-resolved in one window, as ACNNCore's (and ``acnn superresolve``'s) own;
    the HR frames a sequence with the cine's index (its times), played by the cine's browser, so the HR frame
    shown is the cine's frame shown; progress frame by frame, and Cancel between frames adds nothing."""
    from ACNNCore.cine import superresolve_frames
    from ACNNSlicerLib.common import Cancelled

    seq = cine(scene, subject)
    seq.SetIndexName("time")
    seq.SetIndexUnit("ms")
    for t, ms in enumerate(("0", "40", "80")):
        seq.UpdateIndexValue(str(t), ms)
    before, seen = node_ids(scene), []
    with pytest.raises(Cancelled):
        SuperResolveLogic().process(seq, "acnn-sr-phantom", "cpu", progress=lambda f, m: seen.append(m),
                                    cancelled=lambda: "super-resolving frame 2 of 3" in seen)
    assert seen[-1] == "super-resolving frame 2 of 3" and node_ids(scene) == before
    seen.clear()
    out = SuperResolveLogic().process(seq, "acnn-sr-phantom", "cpu", progress=lambda f, m: seen.append(m))
    assert [m for m in seen if m.startswith("super-resolving")] == [f"super-resolving frame {t} of 3"
                                                                    for t in (1, 2, 3)]
    assert out.IsA("vtkMRMLSequenceNode") and out.GetName() == "cine ACNN SR" and out.GetNumberOfDataNodes() == 3
    assert (out.GetIndexName(), out.GetIndexUnit()) == ("time", "ms")
    assert [out.GetNthIndexValue(t) for t in range(3)] == ["0", "40", "80"]
    expected = superresolve_frames(SuperResolver("acnn-sr-phantom", "cpu"), SegmentLogic.read_input(seq))
    for t in range(3):
        hr = mrml.volume_from_node(out.GetNthDataNode(t))
        assert hr.geometry.same_as(expected[t].geometry) and np.allclose(hr.array, expected[t].array, atol=1e-4)
    browser = mrml.browser_of(seq)
    assert mrml.browser_of(out) is browser  # played along with the cine
    proxy = SuperResolveLogic.shown(out)
    for t in (1, 2, 0):  # the Sequences toolbar (the studio's slider) moves: the HR frame shown follows
        browser.SetSelectedItemNumber(t)
        assert np.allclose(mrml.volume_from_node(proxy).array, expected[t].array, atol=1e-4)
    assert mrml.show_frame(out, 1) is proxy and browser.GetSelectedItemNumber() == 1  # and the other way
    assert np.allclose(mrml.volume_from_node(browser.GetProxyNode(seq)).array, subject.phases["ED"]["lr"].array)


def test_results_save_and_reload_through_storage_nodes(scene, subject, tmp_path):
    node = mrml.volume_to_node(subject.phases["ED"]["lr"], scene=scene, name="stack")
    _, (seg,), _ = SegmentLogic().process(node, "acnn-seg-phantom", "cpu", surfaces=False)
    sr = SuperResolveLogic().process(node, "acnn-sr-phantom", "cpu")
    mrml.save_node(seg, tmp_path / "seg.seg.nrrd")
    mrml.save_node(sr, tmp_path / "sr.nii.gz")
    seg2 = mrml.load_node(tmp_path / "seg.seg.nrrd", scene, "segmentation")
    sr2 = mrml.load_node(tmp_path / "sr.nii.gz", scene, "volume")
    assert np.array_equal(mrml.labels_from_segmentation(seg2).array, mrml.labels_from_segmentation(seg).array)
    a, b = mrml.volume_from_node(sr2), mrml.volume_from_node(sr)
    assert a.geometry.same_as(b.geometry, atol=1e-3) and np.allclose(a.array, b.array, atol=1e-5)
    # and ACNNCore reads what Slicer wrote
    from ACNNCore.io import read_segmentation

    labels, names = read_segmentation(tmp_path / "seg.seg.nrrd")
    assert set(names.values()) == {"LV blood pool", "LV myocardium"}
    # a file cut short (an upload broken off): a clear error, where MRML's own reader aborts the process
    data = (tmp_path / "seg.seg.nrrd").read_bytes()
    before = node_ids(scene)
    for cut in (data[:data.index(b"\n\n") + 2], data[:-40], data[:40]):
        (tmp_path / "cut.seg.nrrd").write_bytes(cut)
        with pytest.raises(InputError, match="cannot read .*cut.seg.nrrd"):
            mrml.load_node(tmp_path / "cut.seg.nrrd", scene, "segmentation")
    (tmp_path / "cut.nii.gz").write_bytes((tmp_path / "sr.nii.gz").read_bytes()[:-40])  # MRML would take it
    with pytest.raises(InputError, match="cut short"):
        mrml.load_node(tmp_path / "cut.nii.gz", scene, "volume")
    (tmp_path / "bad.nrrd").write_text("NRRD0004\ntype: garbage\n\n")  # MRML's reader refuses it
    for kind in ("volume", "labelmap"):
        with pytest.raises(InputError, match=f"cannot read .*bad.nrrd as a {kind}"):
            mrml.load_node(tmp_path / "bad.nrrd", scene, kind)
    with pytest.raises(InputError, match="no such file: .*nothing.nrrd"):
        mrml.load_node(tmp_path / "nothing.nrrd", scene)
    assert node_ids(scene) == before


def test_bad_inputs_give_clear_errors_and_leave_the_scene_unchanged(scene, subject, tmp_path):
    import vtk

    flat = mrml.volume_to_node(Volume.from_array(np.ones((64, 64, 1), np.float32), (1, 1, 8)), scene=scene,
                               name="flat")
    rgb = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "rgb")
    image = vtk.vtkImageData()
    image.SetDimensions(32, 32, 8)
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 3)
    rgb.SetAndObserveImageData(image)
    stack = mrml.volume_to_node(subject.phases["ED"]["lr"], scene=scene, name="stack")
    nan = subject.phases["ED"]["lr"].array.copy()
    nan[3, 3, 3] = np.nan
    nan_node = mrml.volume_to_node(Volume(nan, subject.phases["ED"]["lr"].geometry), scene=scene, name="nan")
    empty = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "empty cine")
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    blank = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "blank")
    before = node_ids(scene)
    logic = SegmentLogic()
    with pytest.raises(InputError, match="sequence 'empty cine' is empty"):
        logic.process(empty, "acnn-seg-phantom", "cpu")
    cases = [(flat, "acnn-seg-phantom", "not a single slice"), (rgb, "acnn-seg-phantom", "RGB or vector"),
             (None, "acnn-seg-phantom", "no input volume"), (nan_node, "acnn-seg-phantom", "NaN"),
             (labelmap, "acnn-seg-phantom", "'labels' is a vtkMRMLLabelMapVolumeNode, not a scalar volume"),
             (blank, "acnn-seg-phantom", "volume 'blank' holds no image"),
             (stack, "ae-phantom", "not a segmentation|is a|task"),
             (stack, str(tmp_path), "model.json|not a bundle|no model")]
    for node, model, message in cases:
        with pytest.raises(InputError, match=message):
            logic.process(node, model, "cpu")
        with pytest.raises(InputError):
            SuperResolveLogic().process(node, model if model != "acnn-seg-phantom" else "acnn-sr-phantom", "cpu")
    assert node_ids(scene) == before


def test_an_input_removed_while_it_is_processed_gets_nothing_added(scene, subject):
    """The input node deleted (Data module) while the network runs in its worker thread: the result is refused
    saying why, and the scene gets nothing."""
    stack = mrml.volume_to_node(subject.phases["ED"]["lr"], scene=scene, name="stack")
    segment, resolve = SegmentLogic(), SuperResolveLogic()
    segmented = segment.compute(segment.read_input(stack), "acnn-seg-phantom", "cpu")
    resolved = resolve.compute(resolve.read_input(stack), "acnn-sr-phantom", "cpu")
    scene.RemoveNode(stack)
    before = node_ids(scene)
    with pytest.raises(InputError, match="stack was removed from the scene while it was segmented: nothing"):
        segment.apply(segmented, stack)
    with pytest.raises(InputError, match="stack was removed from the scene while it was super-resolved"):
        resolve.apply(resolved, stack)
    assert node_ids(scene) == before


def test_cancel_stops_before_anything_is_added(scene, subject):
    from ACNNSlicerLib.common import Cancelled

    seq = cine(scene, subject)
    before = node_ids(scene)
    seen = []
    with pytest.raises(Cancelled):
        SegmentLogic().process(seq, "acnn-seg-phantom", "cpu", progress=lambda f, m: seen.append(m),
                               cancelled=lambda: len(seen) >= 2)
    assert len(seen) == 2 and node_ids(scene) == before
    # with test-time augmentation a frame is nine passes: each reported, and Cancel heard between them
    node = mrml.volume_to_node(subject.phases["ED"]["lr"], scene=scene, name="stack")
    seen.clear()
    SegmentLogic().process(node, "acnn-seg-phantom", "cpu", tta=True, progress=lambda f, m: seen.append((f, m)))
    passes = [m for _, m in seen if "(pass " in m]
    assert passes[-1] == "segmenting frame 1 of 1 (pass 9 of 9)" and len(passes) == 9
    fractions = [f for f, _ in seen]
    assert all(b >= a - 1e-9 for a, b in zip(fractions, fractions[1:]))
    before, seen = node_ids(scene), []
    with pytest.raises(Cancelled):
        SegmentLogic().process(node, "acnn-seg-phantom", "cpu", tta=True, progress=lambda f, m: seen.append(m),
                               cancelled=lambda: bool(seen) and seen[-1].endswith("(pass 3 of 9)"))
    assert seen[-1] == "segmenting frame 1 of 1 (pass 3 of 9)" and node_ids(scene) == before


def test_cancel_is_heard_while_the_shape_model_corrects(acdc_root):
    """The correction's search takes seconds on an implausible output: its progress is reported, and Cancel
    stops it there (patient 085's ED, which the bundled model's clean-up leaves implausible)."""
    from ACNNCore.io import read_volume
    from ACNNSlicerLib.common import Cancelled

    frames = [read_volume(acdc_root / "patient085" / "patient085_frame01.nii.gz")]
    seen = []
    result = SegmentLogic().compute(frames, "acnn-seg-acdc", "cpu", correct=True,
                                    progress=lambda f, m: seen.append(m))
    assert result.phases[0].correction.startswith("corrected"), result.phases[0].correction
    assert "segmenting frame 1 of 1 (correcting with the shape model)" in seen
    seen.clear()
    with pytest.raises(Cancelled):
        SegmentLogic().compute(frames, "acnn-seg-acdc", "cpu", correct=True, progress=lambda f, m: seen.append(m),
                               cancelled=lambda: bool(seen) and seen[-1].endswith("(correcting with the shape model)"))
    assert seen[-1].endswith("(correcting with the shape model)")


def test_cuda_falls_back_to_cpu_without_a_gpu_and_an_unknown_device_is_refused(scene, subject):
    import torch

    node = mrml.volume_to_node(subject.phases["ED"]["lr"], scene=scene, name="stack")
    with pytest.raises(InputError, match="unknown device 'gpu'"):  # a script's typo said, not run somewhere
        SegmentLogic().process(node, "acnn-seg-phantom", "gpu", surfaces=False)
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    result, _, _ = SegmentLogic().process(node, "acnn-seg-phantom", "cuda", surfaces=False)
    assert result.device == "cpu"


def test_background_task_runs_off_the_main_thread_and_cancels(scene, subject):
    import threading
    import time

    from ACNNSlicerLib.common import BackgroundTask, Cancelled

    logic = SegmentLogic()
    frames = SegmentLogic.read_input(mrml.volume_to_node(subject.phases["ED"]["lr"], scene=scene, name="s"))
    threads = []

    def watch(*args, progress, cancelled, **kw):
        threads.append(threading.current_thread())
        return logic.compute(*args, progress=progress, cancelled=cancelled, **kw)

    task = BackgroundTask(watch, frames, "acnn-seg-phantom", "cpu")
    result = task.wait(60)
    assert task.done and task.progress == (1.0, "done") and threads[0] is not threading.main_thread()
    assert result.phases[0].labels.shape == (96, 96, 60)

    def slow(progress, cancelled):
        for i in range(100):
            progress(i / 100, "working")
            if cancelled():
                raise Cancelled("cancelled")
            time.sleep(0.01)

    task = BackgroundTask(slow)
    task.cancel()
    with pytest.raises(Cancelled):
        task.wait(10)


def test_a_4d_cine_file_becomes_a_sequence_and_is_segmented(scene, subject, tmp_path):
    import SimpleITK as sitk

    from ACNNCore.io import to_sitk

    frames = [subject.phases[p]["lr"] for p in ("ES", "ED", "ES")]
    image = sitk.JoinSeries([to_sitk(f) for f in frames])
    sitk.WriteImage(image, str(tmp_path / "cine.nii.gz"))
    seq = mrml.load_cine(tmp_path / "cine.nii.gz", scene)
    assert seq.IsA("vtkMRMLSequenceNode") and seq.GetNumberOfDataNodes() == 3
    result, segmentations, _ = SegmentLogic().process(seq, "acnn-seg-phantom", "cpu", surfaces=False)
    assert [p.frame for p in result.phases][0] == 1 and result.ef_pct > 20
    back = mrml.volume_from_node(seq.GetNthDataNode(1))
    assert back.geometry.same_as(frames[1].geometry, atol=1e-3)
    with pytest.raises(InputError, match="'cine' was not loaded from DICOM files"):  # no images to refer to
        SegmentLogic.write_dicom_seg(segmentations, tmp_path / "seg")
    _, other, _ = SegmentLogic().process(mrml.volume_to_node(frames[1], scene=scene, name="ED"), "acnn-seg-phantom",
                                         "cpu", surfaces=False)
    with pytest.raises(InputError, match="results of 2 inputs: write each input's into a folder of its own"):
        SegmentLogic.write_dicom_seg(segmentations + other, tmp_path / "seg")  # their SEG objects would share names
    assert SegmentLogic.write_dicom_seg([], tmp_path / "seg") == [] and not (tmp_path / "seg").exists()


def test_a_dicom_cine_of_a_real_patient_becomes_a_sequence_and_is_segmented(scene, acdc_root, tmp_path,
                                                                           write_dicom):
    """ACDC patient001's ED and ES frames written as a DICOM cine (one series per slice): loaded as a sequence on
    the images' own grid, the Segment logic finds ED and ES and the EF it finds for the NIfTI frames."""
    from ACNNCore.io import read_volume

    folder = acdc_root / "patient001"
    frames = [read_volume(folder / f"patient001_frame{f:02d}.nii.gz") for f in (1, 12)]
    frames = [f.with_array(np.round(f.array * 1000).astype(np.int16)) for f in frames]
    (seq,) = mrml.load_dicom(write_dicom(frames, tmp_path / "dicom", per_slice_series=True, times=[0, 330]), scene)
    assert seq.IsA("vtkMRMLSequenceNode") and seq.GetNumberOfDataNodes() == 2 and seq.GetName() == "dicom"
    back = mrml.volume_from_node(seq.GetNthDataNode(1))
    assert back.geometry.same_as(frames[1].geometry, atol=1e-3) and np.array_equal(back.array, frames[1].array)
    shown = mrml.show_frame(seq, 1)  # what the slice views show: a proxy volume, as Slicer's Sequences module
    assert np.array_equal(mrml.volume_from_node(shown).array, frames[1].array) and shown.GetHideFromEditors()
    assert mrml.show_frame(seq, 0) is shown and np.array_equal(mrml.volume_from_node(shown).array, frames[0].array)
    assert len(list(scene.GetNodesByClass("vtkMRMLSequenceBrowserNode"))) == 1
    with pytest.raises(InputError, match="outside the sequence's 2 frames"):
        mrml.show_frame(seq, 2)
    other = mrml.load_cine(tmp_path / "dicom", scene)  # one with a browser of its own (Slicer makes one on load)
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode")
    browser.SetAndObserveMasterSequenceNodeID(other.GetID())
    proxy = mrml.show_frame(other, 1)
    assert browser.GetProxyNode(other) is proxy and browser.GetSelectedItemNumber() == 1
    assert not proxy.GetHideFromEditors()  # the user's own browser's proxy stays in the lists
    result, segmentations, table = SegmentLogic().process(seq, "acnn-seg-acdc", "cpu", surfaces=False)
    segmenter = Segmenter("acnn-seg-acdc", "cpu")
    ed = segmenter(frames[0])
    es = segmenter(frames[1], near=ed.heart)  # a cine's heart search starts where the last frame's ended
    expected = ejection_fraction(*(float(np.count_nonzero(r.labels.array == 1)) for r in (ed, es)))
    assert [(p.phase, p.frame) for p in result.phases] == [("ED", 0), ("ES", 1)]
    assert result.ef_pct == pytest.approx(expected, abs=0.05) and result.rv_ef_pct > 20
    rv = [p.measures["rv_volume_ml"] for p in result.phases]  # the RV over the cycle too, charted with the LV
    assert result.rv_volume_curve_ml == pytest.approx(rv) and rv[1] < rv[0]
    curve = table.GetNodeReference("ACNN.VolumeCurve")
    assert [r["RV blood pool (ml)"] for r in mrml.table_rows(curve)] == pytest.approx(rv, abs=0.01)
    chart = table.GetNodeReference("ACNN.VolumeCurveChart")
    assert [chart.GetNthPlotSeriesNode(i).GetYColumnName() for i in range(chart.GetNumberOfPlotSeriesNodes())] == [
        "LV blood pool (ml)", "RV blood pool (ml)"]
    import highdicom  # the results as DICOM SEG on the files they were loaded from, each on its own frame's

    paths = SegmentLogic.write_dicom_seg(segmentations, tmp_path / "seg")
    assert [p.name for p in paths] == ["SEG_001.dcm", "SEG_002.dcm"]
    g = frames[0].geometry
    for path, phase in zip(paths, result.phases):
        seg, back = highdicom.seg.segread(path), np.zeros(g.shape, np.uint8)
        for pixels, item in zip(seg.pixel_array, seg.PerFrameFunctionalGroupsSequence):
            z = int(round(g.physical_to_index(item.PlanePositionSequence[0].ImagePositionPatient)[2]))
            back[:, :, z] += pixels.T * item.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        assert np.array_equal(back, phase.labels.array)
        assert [s.SegmentLabel for s in seg.SegmentSequence] == ["LV blood pool", "LV myocardium", "RV blood pool"]
    with pytest.raises(OutputExists, match="SEG_001.dcm exists"):  # the module asks before replacing them
        SegmentLogic.write_dicom_seg(segmentations, tmp_path / "seg")
    assert SegmentLogic.write_dicom_seg(segmentations, tmp_path / "seg", overwrite=True) == paths
    for node in segmentations:  # a segment renamed by the user: still the RV, by its terminology
        segment = node.GetSegmentation().GetNthSegment(2)
        segment.SetName("RV")
    SegmentLogic.write_dicom_seg(segmentations, tmp_path / "renamed")
    seg = highdicom.seg.segread(tmp_path / "renamed" / "SEG_001.dcm")
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["LV blood pool", "LV myocardium", "RV blood pool"]
    scene.RemoveNode(segmentations[1])  # the ES result deleted since
    with pytest.raises(InputError, match="ES ACNN segmentation' was removed from the scene: there is no result"):
        SegmentLogic.write_dicom_seg(segmentations, tmp_path / "removed")
    assert not (tmp_path / "removed").exists()


def test_a_folder_of_dicom_studies_loads_a_node_each(scene, tmp_path, write_dicom):
    """Several patients' exports in one folder (what the desktop module's DICOM button and the studio load): a
    node per study, named by its folder -- a cine as a sequence, a stack as a volume; a full study's several
    stacks (cine, perfusion, late enhancement) a node each, named by their series, the cine of most slices
    first; a study that cannot be read is named and leaves the scene as it was."""
    from ACNNCore.volume import Geometry, Volume

    volume = Volume.from_array(np.arange(8 * 9 * 4, dtype=np.int16).reshape(8, 9, 4), (1.5, 1.4, 8.0))
    write_dicom([volume, volume.with_array(volume.array // 2)], tmp_path / "exports" / "p1", times=[0, 300],
                study="1.2.3.1")
    write_dicom([volume], tmp_path / "exports" / "p2" / "sax", study="1.2.3.2")
    cine, stack = mrml.load_dicom(tmp_path / "exports", scene)
    assert (cine.GetName(), stack.GetName()) == ("p1", "p2")
    assert cine.IsA("vtkMRMLSequenceNode") and cine.GetNumberOfDataNodes() == 2
    assert stack.IsA("vtkMRMLScalarVolumeNode") and np.array_equal(mrml.volume_from_node(stack).array, volume.array)
    g = volume.geometry  # p3: a full study: perfusion (two slices, three times), the cine, an LGE stack
    perfusion = Volume(volume.array[:, :, :2], Geometry((8, 9, 2), g.spacing, g.origin, g.direction))
    write_dicom([perfusion] * 3, tmp_path / "study" / "perf", times=[0, 500, 1000], study="1.2.3.3", series=20,
                description="perf")
    write_dicom([volume, volume], tmp_path / "study" / "cine", times=[0, 300], study="1.2.3.3", series=30)
    write_dicom([volume], tmp_path / "study" / "lge", study="1.2.3.3", series=40, description="lge")
    nodes = mrml.load_dicom(tmp_path / "study", scene)
    assert [(n.GetName(), n.GetNumberOfDataNodes() if n.IsA("vtkMRMLSequenceNode") else 1) for n in nodes] == [
        ("study cine_sax", 2), ("study perf", 3), ("study lge", 1)]
    write_dicom([volume], tmp_path / "exports" / "p4", study="1.2.3.4")  # p4: a file cut short in copying
    cut = next((tmp_path / "exports" / "p4").iterdir())
    cut.write_bytes(cut.read_bytes()[:-100])
    before = scene.GetNumberOfNodes()
    with pytest.raises(InputError, match="study p4: .*its pixel data cannot be read"):
        mrml.load_dicom(tmp_path / "exports", scene)
    assert scene.GetNumberOfNodes() == before


def test_dicom_seg_objects_load_as_segmentations_beside_their_images(scene, tmp_path, write_dicom):
    """A study's folder holding DICOM SEG objects (``acnn segment --dicom-seg`` writes them; PACS exports hold
    them): the images as before, each SEG a segmentation node after them with our segments on the images' grid;
    a folder of SEGs alone (the studio's upload of a SEG file) loads them alone; the whole read before any node
    is made."""
    from ACNNCore.dicom import write_dicom_seg
    from ACNNCore.labels import SEGMENTS

    volume = rotated(Volume.from_array(np.arange(8 * 9 * 4, dtype=np.int16).reshape(8, 9, 4), (1.5, 1.4, 8.0)))
    g = volume.geometry  # oblique, as a scanner's
    study = write_dicom([volume, volume], tmp_path / "study" / "cine", times=[0, 300])
    ed, es = np.zeros(g.shape, np.uint8), np.zeros(g.shape, np.uint8)
    ed[2:5, 3:6, 1:3], ed[5, 3:6, 1:3] = 1, 2
    es[2:4, 3:5, 1:3], es[6, 2:4, :] = 1, 3
    labels = [volume.with_array(ed), volume.with_array(es)]
    write_dicom_seg(labels, study, tmp_path / "study" / "seg", {v: n for v, (n, _) in SEGMENTS.items()})
    cine, *segmentations = mrml.load_dicom(tmp_path / "study", scene)
    assert cine.IsA("vtkMRMLSequenceNode") and cine.GetNumberOfDataNodes() == 2  # the SEGs are no frames
    assert [n.GetName() for n in segmentations] == [f"study ACNN labels, frame {t} of 2" for t in (1, 2)]
    for node, expected in zip(segmentations, labels):
        back = mrml.labels_from_segmentation(node, g)
        assert np.array_equal(back.array, expected.array)
        assert {node.GetSegmentation().GetNthSegment(i).GetName()
                for i in range(node.GetSegmentation().GetNumberOfSegments())} <= {n for n, _ in SEGMENTS.values()}
    # each tied to the frame it labels, by the images it refers to: shown while that frame is
    assert [(n.GetNodeReference("ACNN.Images"), n.GetAttribute("ACNN.Frame")) for n in segmentations] == \
        [(cine, "0"), (cine, "1")]

    def shown():
        return [n.GetName() for n in mrml.frame_results(cine) if n.GetDisplayNode().GetVisibility()]

    assert shown() == ["study ACNN labels, frame 1 of 2"]
    mrml.show_frame(cine, 1)
    assert shown() == ["study ACNN labels, frame 2 of 2"]
    alone = mrml.load_dicom(tmp_path / "study" / "seg", scene)  # a folder of SEGs alone (the images loaded before)
    assert [n.GetName() for n in alone] == [f"seg ACNN labels, frame {t} of 2" for t in (1, 2)]
    assert np.array_equal(mrml.labels_from_segmentation(alone[1], g).array, labels[1].array)
    assert [n.GetAttribute("ACNN.Frame") for n in alone] == ["0", "1"]
    mrml.show_frame(cine, 0)
    assert shown() == ["study ACNN labels, frame 1 of 2", "seg ACNN labels, frame 1 of 2"]
    every = mrml.frames_to_node(labels, scene, "every frame", like=cine, labels={1: "LV blood pool"}, surfaces=False)
    every.SetNodeReferenceID("ACNN.Input", cine.GetID())  # as SegmentLogic.apply makes a cine's every frame's
    mrml.play_along(every, cine)
    assert mrml.every_frame_result(cine) is every
    mrml.show_frame(cine, 1)
    assert shown() == ["study ACNN labels, frame 2 of 2", "seg ACNN labels, frame 2 of 2"]  # still following
    mrml.remove_node(every)
    cine.SetAttribute(mrml.DICOM_SOURCE[0], str(tmp_path / "moved"))  # its files gone since: the SEGs load untied
    assert [n.GetAttribute("ACNN.Frame") for n in mrml.load_dicom(tmp_path / "study" / "seg", scene)] == [None, None]
    broken = tmp_path / "study" / "seg" / "SEG_002.dcm"
    broken.write_bytes(broken.read_bytes()[:-50])
    before = scene.GetNumberOfNodes()
    with pytest.raises(InputError, match="SEG_002.dcm"):
        mrml.load_dicom(tmp_path / "study", scene)
    assert scene.GetNumberOfNodes() == before


def test_an_expert_label_map_loads_as_a_segmentation_in_its_convention(scene, acdc_root, subject, tmp_path):
    """`mrml.load_labels` (the studio reads `*_gt` files as it does: `read_label_frames(path, "auto")`): ACDC's
    values (1 RV, 3 LV) where Info.cfg lies beside the file, ours elsewhere; our segment names; the same voxels
    on the same grid; a cine's 4-D map, a sequence that plays along with its cine."""
    from ACNNCore.io import read_labels, read_volume, write_volume

    gt = acdc_root / "patient031" / "patient031_frame01_gt.nii.gz"
    node = mrml.load_labels(gt, scene)
    segmentation = node.GetSegmentation()
    names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
    assert names == ["LV blood pool", "LV myocardium", "RV blood pool"]
    raw = read_labels(gt, allowed=(0, 1, 2, 3))
    back = mrml.labels_from_segmentation(node, raw.geometry)
    assert np.array_equal(back.array == 1, raw.array == 3) and np.array_equal(back.array == 3, raw.array == 1)
    # a result compared with it (SegmentLogic.agreement): per structure the expert drew, on the expert's grid
    assert SegmentLogic.agreement(back, node) == pytest.approx({"LV blood pool": 1.0, "LV myocardium": 1.0,
                                                                "RV blood pool": 1.0})
    eroded = back.with_array(np.where(back.array == 3, 0, back.array).astype(np.uint8))  # no RV
    scores = SegmentLogic.agreement(eroded, node)
    assert scores["RV blood pool"] == 0.0 and scores["LV blood pool"] == pytest.approx(1.0)
    empty = mrml.labels_to_segmentation(back.with_array(np.zeros_like(back.array)), scene=scene, name="empty")
    assert SegmentLogic.agreement(back, empty) == {}  # nothing drawn: nothing to compare
    # the status line's sentence, for a result of the image named as the expert's map without "_gt"
    from ACNNCore.cine import PhaseResult, SegmentResult

    image = mrml.volume_to_node(read_volume(acdc_root / "patient031" / "patient031_frame01.nii.gz"), scene=scene,
                                name="patient031_frame01")
    result = SegmentResult([PhaseResult("", 0, eroded, {}, {})], "m", "cpu")
    assert SegmentLogic.against_expert(result, image) == " Dice against patient031_frame01_gt: LV blood pool " \
                                                         "1.000, LV myocardium 1.000, RV blood pool 0.000."
    image.SetName("another")
    assert SegmentLogic.against_expert(result, image) == ""  # no expert's map of that name
    ours = tmp_path / "subject_ED_gt.nii.gz"  # no Info.cfg: our values
    write_volume(subject.phases["ED"]["hr_gt"], ours)
    back = mrml.labels_from_segmentation(mrml.load_labels(ours, scene), subject.phases["ED"]["hr_gt"].geometry)
    assert np.array_equal(back.array, subject.phases["ED"]["hr_gt"].array)
    # a cine's 4-D map (ACDC's values: Info.cfg beside it): a sequence of segmentations, played along with the
    # cine of as many frames
    import shutil

    from ACNNCore.io import write_frames

    folder = tmp_path / "patient031"
    folder.mkdir()
    shutil.copy(acdc_root / "patient031" / "Info.cfg", folder)
    frames = [f"patient031_frame{f:02d}" for f in (1, 10)]
    cine = mrml.frames_to_node([read_volume(acdc_root / "patient031" / f"{f}.nii.gz") for f in frames], scene,
                               "patient031_4d")
    write_frames([read_labels(acdc_root / "patient031" / f"{f}_gt.nii.gz", allowed=(0, 1, 2, 3)) for f in frames],
                 folder / "patient031_4d_gt.nii.gz")
    sequence = mrml.load_labels(folder / "patient031_4d_gt.nii.gz", scene)
    assert sequence.GetName() == "patient031_4d_gt" and sequence.GetNumberOfDataNodes() == 2
    assert mrml.browser_of(sequence) is mrml.browser_of(cine) is not None
    mrml.show_frame(cine, 1)
    es = mrml.labels_from_segmentation(mrml.browser_of(cine).GetProxyNode(sequence), raw.geometry)
    es_raw = read_labels(acdc_root / "patient031" / f"{frames[1]}_gt.nii.gz", allowed=(0, 1, 2, 3))
    assert np.array_equal(es.array == 1, es_raw.array == 3) and np.array_equal(es.array == 3, es_raw.array == 1)
