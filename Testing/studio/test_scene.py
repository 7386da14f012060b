"""The studio's scene, in process (a real Studio on the Slicer core, no browser; test_studio clicks the same in
Chromium): what a user uploads stays on the server while a node loaded from it is in the scene, and goes with
the last of them; removing asks first, saying what would be lost."""

import asyncio
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("trame_slicer", reason="trame-slicer is not installed")
os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    from ACNNStudio.app import Studio

    studio = Studio(output_dir=tmp_path_factory.mktemp("saved"))
    studio.state.ready()  # as the server marks it on start: changes flushed, their listeners called
    yield studio
    views = studio.app.view_manager.get_views()
    studio.close()  # its render windows finalized now, not at the interpreter's exit
    assert not Path(studio.uploads.name).exists()
    for view in views:  # and no displayable manager left listening to the scene, to be called at the exit
        group = view._displayable_manager_group
        managers = [group.GetNthDisplayableManager(i) for i in range(group.GetDisplayableManagerCount())]
        assert managers and all(m.GetMRMLScene() is None for m in managers)


def as_sent(folder: Path) -> list[dict]:
    """A folder's files as the browser sends them."""
    return [{"name": f.name, "content": f.read_bytes()} for f in sorted(folder.iterdir())]


def upload(studio, folder: Path) -> list:
    """The files of a folder as the browser sends them, uploaded; the nodes they made."""
    before = {n.GetID() for n in studio._nodes()}
    asyncio.run(studio._on_upload(upload=as_sent(folder)))
    assert not studio.state.error, studio.state.error
    return [n for n in studio._nodes() if n.GetID() not in before and n.GetAttribute("ACNN.Upload")]


def test_removing_an_uploaded_cine_asks_what_is_lost_and_frees_its_files(studio, phantom_cine, write_dicom,
                                                                        tmp_path):
    import io
    import zipfile

    import slicer

    from ACNNCore.io import read_segmentation
    from ACNNStudio.app import SAVED, UPLOAD
    from ACNNSlicerLib import mrml
    from ACNNSlicerLib.segment import SegmentLogic

    scene = studio.scene
    assert studio.results_zip() is None and studio.state.status == "Nothing to download yet."
    (cine,) = upload(studio, write_dicom(phantom_cine(4, 81), tmp_path / "dicom", per_slice_series=True))
    (other,) = upload(studio, write_dicom(phantom_cine(5, 82)[:1], tmp_path / "other", study="1.2.3.9"))
    files = Path(cine.GetAttribute(UPLOAD))
    assert cine.IsA("vtkMRMLSequenceNode") and any(files.rglob("*")) and files.is_relative_to(studio.uploads.name)
    assert studio.state.seg_input == cine.GetID()  # offered to Segment
    result, segmentations, table = SegmentLogic().process(cine, "acnn-seg-phantom", ed=0, es=1,  # theirs alone
                                                          surfaces=False)
    studio.show(mrml.show_frame(cine, 1))  # the cine's frame under the slice views

    def background():
        return {c.GetBackgroundVolumeID() for c in scene.GetNodesByClass("vtkMRMLSliceCompositeNode")}

    studio.show_node(other.GetID())  # the eyes of the Scene panel: a volume under the slice views...
    assert background() == {other.GetID()} and studio.state.shown == other.GetID()
    studio.show_node(cine.GetID())  # ... a cine's frame shown last
    assert background() == {mrml.show_frame(cine, 1).GetID()} and studio.state.shown == cine.GetID()
    studio.toggle_visibility(segmentations[1].GetID())  # a segmentation hidden, and shown again
    assert not segmentations[1].GetDisplayNode().GetVisibility()
    assert [s["visible"] for s in studio.state.segmentations] == [False, False]  # ED's: not over frame 1 (ES)
    studio.toggle_visibility(segmentations[1].GetID())
    assert segmentations[1].GetDisplayNode().GetVisibility() and studio.state.segmentations[1]["visible"]

    asked = studio.removal_question(cine)
    assert "2 results made from it, not saved yet, can then no longer be saved as DICOM SEG" in asked, asked
    assert "The files uploaded for it are deleted from the server." in asked
    assert "not saved yet: it will be lost" in studio.removal_question(segmentations[0])
    # Download: the files Save results writes, zipped for the browser; nothing kept on the server
    with zipfile.ZipFile(io.BytesIO(studio.results_zip())) as z:
        names = z.namelist()
        z.extractall(tmp_path / "downloaded")
    assert studio.state.status.startswith(f"Downloading {len(names)} files as acnn-results.zip.")
    assert all(n.startswith("acnn-results/") for n in names)
    assert sum(n.endswith(".seg.nrrd") for n in names) == 2 and "acnn-results/scene.mrb" in names and \
        all(n.endswith((".seg.nrrd", ".csv", ".mrb")) for n in names), names  # the phases' segmentations, tables
    # the whole scene besides, for 3D Slicer: the cine with its results, which follow its frame there again
    again = mrml.import_scene(tmp_path / "downloaded" / "acnn-results" / "scene.mrb", slicer.vtkMRMLScene())
    (cine_again,) = [n for n in again if n.GetName() == cine.GetName()]
    assert cine_again.IsA("vtkMRMLSequenceNode") and len(mrml.frame_results(cine_again)) == 2
    for frame in (1, 0, 1):
        mrml.show_frame(cine_again, frame)
        assert [n.GetAttribute("ACNN.Frame") for n in mrml.frame_results(cine_again)
                if n.GetDisplayNode().GetVisibility()] == [str(frame)]
    assert {n.GetAttribute(SAVED) for n in segmentations} <= {f"acnn-results.zip: {Path(n).name}" for n in names}
    assert "not saved" not in studio.removal_question(cine) + studio.removal_question(segmentations[0])
    assert not any(Path(studio.state.save_dir).glob("*"))
    studio.save_results()
    assert all(Path(n.GetAttribute(SAVED)).is_file() for n in segmentations)
    for n in segmentations:  # the same labels as downloaded
        saved = Path(n.GetAttribute(SAVED))
        assert np.array_equal(read_segmentation(saved)[0].array,
                              read_segmentation(tmp_path / "downloaded" / "acnn-results" / saved.name)[0].array)
    assert "not saved" not in studio.removal_question(cine) + studio.removal_question(segmentations[0])

    studio.ask_remove(cine.GetID())  # the button: a question, nothing removed yet
    assert studio.state.remove_dialog and studio.state.remove_question == studio.removal_question(cine)
    assert scene.GetNodeByID(cine.GetID()) is not None
    studio.remove()  # confirmed
    assert not studio.state.remove_dialog and studio.state.status == f"Removed {cine.GetName()}."
    assert cine.GetScene() is None and not files.exists()  # its uploaded files gone with it
    assert not list(scene.GetNodesByClass("vtkMRMLSequenceBrowserNode"))  # its browser and proxy too
    assert [n.GetID() for n in scene.GetNodesByClass("vtkMRMLVolumeNode")] == [other.GetID()]
    assert all(n.GetScene() is scene and n.GetNodeReference("ACNN.Input") is None for n in segmentations)
    assert studio.state.seg_input == other.GetID()  # the inputs offered follow
    assert cine.GetID() not in [v["value"] for v in studio.state.inputs]
    assert background() == {other.GetID()} and studio.state.shown == other.GetID()  # the views show what is left

    studio.remove(segmentations[0].GetID())
    assert segmentations[0].GetScene() is None and segmentations[1].GetScene() is scene
    assert [s["value"] for s in studio.state.segmentations] == [segmentations[1].GetID()]
    assert Path(other.GetAttribute(UPLOAD)).exists()  # another upload's files stay


def test_nothing_is_removed_while_a_run_is_going(studio, phantom_cine, write_dicom, tmp_path):
    import time

    from ACNNSlicerLib.common import BackgroundTask

    (stack,) = upload(studio, write_dicom(phantom_cine(6, 83)[:1], tmp_path / "dicom"))

    def run(progress, cancelled):  # a run that goes until it is cancelled
        while not cancelled():
            time.sleep(0.01)

    studio.task = BackgroundTask(run)
    try:
        studio.ask_remove(stack.GetID())
        assert not studio.state.remove_dialog and "Cannot remove while a run is going" in studio.state.error
        studio.remove(stack.GetID())
        assert stack.GetScene() is studio.scene
    finally:
        studio.task.cancel()
        studio.task = None
    studio.remove(stack.GetID())
    assert stack.GetScene() is None


def test_the_frame_slider_steps_through_the_cine_shown(studio, phantom_cine, write_dicom, tmp_path):
    from ACNNSlicerLib import mrml

    frames = phantom_cine(7, 84)
    (cine,) = upload(studio, write_dicom(frames, tmp_path / "dicom", per_slice_series=True))
    studio.show_node(cine.GetID())
    proxy = mrml.show_frame(cine, 0)
    assert studio.state.shown == cine.GetID() and studio.state.frames == 2 and studio.state.frame == 0
    before = mrml.volume_from_node(proxy).array.copy()
    studio.state.frame = 1
    studio.state.flush()  # as the slider does
    assert not np.array_equal(mrml.volume_from_node(proxy).array, before)  # the second frame under the views
    assert np.allclose(mrml.volume_from_node(proxy).array, frames[1].array)
    studio.remove(cine.GetID())
    assert studio.state.frames == 0


def uploaded_cine(studio, phases, write_dicom, folder: Path):
    """A phantom subject's (ED, ES) uploaded as a DICOM cine of three frames, ED, ES, ED (0, 300, 600 ms)."""
    ed, es = phases
    (cine,) = upload(studio, write_dicom([ed, es, ed], folder, times=[0, 300, 600]))
    return cine


def run_on(studio, node, field: str, run) -> None:
    """A panel's Run (``run``: ``studio.run_segment``...) on ``node``, chosen in the panel's ``field``."""
    studio.state[field] = node.GetID()
    studio.state.flush()
    asyncio.run(run())
    assert not studio.state.error, studio.state.error


def test_a_cine_s_results_follow_the_frame_shown(studio, phantom_cine, write_dicom, tmp_path):
    """Segment on a cine, its ED and ES frames given, adds ED's and ES's results; as the frame slider moves, the
    frame's own result is shown and the other hidden (none at a frame that was not segmented), so that ED's
    never lies over the ES image; results the user hid stay hidden."""
    from ACNNSlicerLib import mrml

    cine = uploaded_cine(studio, phantom_cine(11, 89), write_dicom, tmp_path / "dicom")
    studio.state.update({"detect_phases": False, "ed_frame": 1, "es_frame": 2})
    try:
        run_on(studio, cine, "seg_input", studio.run_segment)
    finally:
        studio.state.detect_phases = True

    def shown():  # the frames whose results are visible
        return sorted(int(n.GetAttribute("ACNN.Frame")) for n in mrml.frame_results(cine)
                      if n.GetDisplayNode().GetVisibility())

    def slide(frame):
        studio.state.frame = frame
        studio.state.flush()  # as the slider does

    assert studio.state.shown == cine.GetID() and studio.state.frame == 0 and shown() == [0]  # ED, under ED
    slide(1)
    assert shown() == [1]  # ES's, under ES
    (es_result,) = [n for n in mrml.frame_results(cine) if n.GetAttribute("ACNN.Frame") == "1"]
    assert [s["visible"] for s in studio.state.segmentations if s["value"] == es_result.GetID()] == [True]  # its eye
    slide(2)
    assert shown() == []  # a frame not segmented
    slide(0)
    assert shown() == [0]
    (ed_result,) = [n for n in mrml.frame_results(cine) if n.GetAttribute("ACNN.Frame") == "0"]
    studio.toggle_visibility(ed_result.GetID())  # hidden by the user
    slide(1)
    assert shown() == []
    studio.remove(cine.GetID())


def test_a_cine_segmented_at_every_frame_plays_its_segmentation_along(studio, phantom_cine, write_dicom, tmp_path):
    """Segment on a cine, its ED and ES found (the default): every frame's segmentation in one sequence that
    steps with the frame slider, listed once among the segmentations (its eye shows and hides it; ED's and ES's
    own nodes hidden under it), never offered as an input, encoded by the Shape Explorer at its frame shown;
    saved as one 4-D label map (never as DICOM SEG), and in scene.mrb, from which it loads again and plays."""
    from ACNNCore.io import read_frames
    from ACNNSlicerLib import mrml

    cine = uploaded_cine(studio, phantom_cine(13, 91), write_dicom, tmp_path / "dicom")
    run_on(studio, cine, "seg_input", studio.run_segment)
    every = mrml.every_frame_result(cine)
    items = {s["value"]: s for s in studio.state.segmentations}
    assert items[every.GetID()]["title"] == f"{every.GetName()} (every frame, 3 frames)"
    assert items[every.GetID()]["visible"] and items[every.GetID()]["segments"] == "LV blood pool, LV myocardium"
    results = mrml.frame_results(cine)
    assert len(results) == 2 and not any(items[r.GetID()]["visible"] for r in results)
    proxy = mrml.browser_of(cine).GetProxyNode(every)
    assert proxy.GetID() not in items and every.GetID() not in [i["value"] for i in studio.state.inputs]
    for frame in (1, 2, 0):
        studio.state.frame = frame
        studio.state.flush()  # as the slider does
        assert np.array_equal(mrml.labels_from_segmentation(proxy).array,
                              mrml.labels_from_segmentation(every.GetNthDataNode(frame)).array)
    studio.toggle_visibility(every.GetID())  # its eye
    assert not proxy.GetDisplayNode().GetVisibility() and not studio.state.segmentations[-1]["visible"]
    studio.toggle_visibility(every.GetID())
    assert proxy.GetDisplayNode().GetVisibility()
    studio.state.update({"shape_model": "ae-phantom", "encode_source": every.GetID()})  # the Shape Explorer's
    studio.load_shape_model()
    studio.encode_shape()  # the frame shown, 1 (ED)
    assert not studio.state.error and studio.state.status == f"Encoded {every.GetName()}, frame 1 of 3."
    code = studio.explorer.code.copy()
    studio.state.frame = 1
    studio.state.flush()
    studio.encode_shape()
    assert studio.state.status == f"Encoded {every.GetName()}, frame 2 of 3."
    assert np.allclose(code, studio.explorer.encode_segmentation(every.GetNthDataNode(0)))  # ED's code, frame 1's
    assert not np.allclose(code, studio.explorer.encode_segmentation(proxy))  # ES's, frame 2's
    assert "a result not saved yet" in studio.removal_question(every)
    assert "2 results made from it, not saved yet, can then no longer be saved as DICOM SEG" in (
        studio.removal_question(cine))  # ED's and ES's: the sequence is saved as a file only
    written, notes = studio._write_results(tmp_path / "saved")
    name = cine.GetName()  # ED's and ES's refused as DICOM SEG for their grid: the sequence is not one to write
    assert f" No DICOM SEG for {name}: '{name} ED ACNN segmentation' lies on a finer grid than '{name}'" in notes
    (saved,) = [p for p in written if p.name == f"{every.GetName().replace(' ', '_')}.nii.gz"]
    frames = read_frames(saved)
    assert len(frames) == 3 and all(np.array_equal(f.array, mrml.labels_from_segmentation(
        every.GetNthDataNode(t)).array) for t, f in enumerate(frames))
    assert "a result not saved yet" not in studio.removal_question(every)

    studio.remove(every.GetID())  # with its frame shown
    assert every.GetScene() is None and proxy.GetScene() is None and mrml.every_frame_result(cine) is None
    assert not any(s["title"].startswith(every.GetName() + " (") for s in studio.state.segmentations)
    nodes = studio.load(written[-1])  # scene.mrb: the sequence plays again
    (again,) = [n for n in nodes if n.IsA("vtkMRMLSequenceNode") and n.GetName() == every.GetName()]
    (cine_again,) = [n for n in nodes if n.IsA("vtkMRMLSequenceNode") and n.GetName() == cine.GetName()]
    assert mrml.every_frame_result(cine_again) is again and mrml.browser_of(again) is mrml.browser_of(cine_again)
    shown = mrml.browser_of(cine_again).GetProxyNode(again)
    studio.remove(cine_again.GetID())  # its browser, with the frames it showed; the results stay
    assert shown.GetScene() is None and again.GetScene() is studio.scene and mrml.browser_of(again) is None
    item = next(s for s in studio.state.segmentations if s["value"] == again.GetID())
    assert not item["visible"]
    studio.toggle_visibility(again.GetID())  # its eye: shown at its first frame, by a browser of its own
    proxy = mrml.browser_of(again).GetProxyNode(again)
    assert proxy.GetDisplayNode().GetVisibility() and next(
        s for s in studio.state.segmentations if s["value"] == again.GetID())["visible"]
    assert np.array_equal(mrml.labels_from_segmentation(proxy).array, frames[0].array)
    for node in nodes:
        if node.GetScene() is not None:
            studio.remove(node.GetID())
    studio.remove(cine.GetID())


def test_a_cine_s_4d_label_map_loads_as_a_segmentation_that_plays_along_with_it(studio, phantom_cine, tmp_path):
    """A cine's 4-D label map (``acnn segment CINE`` writes one, named as the user likes) uploaded with its cine
    (before or after it in the files' order): a sequence of segmentations that plays along with the cine of as
    many frames, listed among the segmentations, never as an image to segment (before: an image cine of labels,
    offered to Segment); one with no such cine, by a browser of its own."""
    from ACNNCore.io import write_frames
    from ACNNSlicerLib import mrml

    ed, es = phantom_cine(14, 92)
    images = [ed, es, ed]
    labels = [f.with_array((f.array > np.percentile(f.array, 95)).astype(np.uint8)) for f in images]
    labels[1] = labels[1].with_array(labels[1].array * 2)  # frame 2: another structure
    labels[2] = labels[2].with_array(np.zeros_like(labels[2].array))  # frame 3: not labelled
    (tmp_path / "up").mkdir()
    write_frames(images, tmp_path / "up" / "cine.nii.gz")
    write_frames(labels, tmp_path / "up" / "a.nii.gz")  # read before the cine: added after it
    nodes = upload(studio, tmp_path / "up")
    (cine,) = [n for n in nodes if mrml.is_cine(n)]
    (seg,) = [n for n in nodes if n.GetName() == "a"]
    assert seg.GetDataNodeClassName() == "vtkMRMLSegmentationNode" and seg.GetNumberOfDataNodes() == 3
    assert mrml.browser_of(seg) is mrml.browser_of(cine)
    assert [seg.GetNthIndexValue(t) for t in range(3)] == [cine.GetNthIndexValue(t) for t in range(3)]
    assert "a (every frame, 3 frames)" in [s["title"] for s in studio.state.segmentations]
    assert seg.GetID() not in [i["value"] for i in studio.state.inputs] and studio.state.seg_input == cine.GetID()
    proxy = mrml.browser_of(cine).GetProxyNode(seg)
    for frame in (1, 0, 2):
        studio.state.frame = frame
        studio.state.flush()  # as the slider does
        segmentation = proxy.GetSegmentation()
        assert [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())] == [
            "LV blood pool", "LV myocardium"]
        assert np.array_equal(mrml.labels_from_segmentation(proxy).array, labels[frame].array)
    write_frames(labels[:2], tmp_path / "b_seg.nii.gz")  # named as labels; no cine of two frames
    (alone,) = studio.load(tmp_path / "b_seg.nii.gz")
    assert alone.GetDataNodeClassName() == "vtkMRMLSegmentationNode" and mrml.browser_of(alone) is not None
    assert mrml.browser_of(alone) is not mrml.browser_of(cine)
    for node in (alone, seg, cine):
        studio.remove(node.GetID())


def test_a_cine_super_resolved_plays_along_with_it(studio, phantom_cine, write_dicom, tmp_path):
    """SuperResolve on a cine: its HR frames a sequence under the slice views, whose frame follows the frame
    slider with the cine's own, and which the Scene panel lists as a cine."""
    from ACNNSlicerLib import mrml

    cine = uploaded_cine(studio, phantom_cine(12, 90), write_dicom, tmp_path / "dicom")
    run_on(studio, cine, "sr_input", studio.run_superresolve)
    assert studio.state.status == f"Super-resolved: {cine.GetName()} ACNN SR (3 frames of 96x96x60)."
    (hr,) = [n for n in studio.scene.GetNodesByClass("vtkMRMLSequenceNode") if n.GetName().endswith("ACNN SR")]
    assert studio.state.shown == hr.GetID() and studio.state.frames == 3 and studio.state.frame == 0
    assert f"{hr.GetName()} (cine, 3 frames)" in [i["title"] for i in studio.state.inputs]
    browser = mrml.browser_of(cine)
    proxy = browser.GetProxyNode(hr)
    for frame in (1, 2, 0):
        studio.state.frame = frame
        studio.state.flush()  # as the slider does
        assert browser.GetSelectedItemNumber() == frame
        assert np.array_equal(mrml.volume_from_node(proxy).array, mrml.volume_from_node(hr.GetNthDataNode(frame)).array)
    assert not np.array_equal(mrml.volume_from_node(hr.GetNthDataNode(0)).array,
                              mrml.volume_from_node(hr.GetNthDataNode(1)).array)  # ED's and ES's HR frames
    assert "a result not saved yet" in studio.removal_question(hr)
    written, _ = studio._write_results(tmp_path / "saved")  # saved as one 4-D image, beside the scene file
    from ACNNCore.io import read_frames

    (saved,) = [p for p in written if p.name.endswith("ACNN_SR.nii.gz")]
    frames = read_frames(saved)
    assert len(frames) == 3 and all(np.allclose(f.array, mrml.volume_from_node(hr.GetNthDataNode(t)).array)
                                    for t, f in enumerate(frames))
    assert "a result not saved yet" not in studio.removal_question(hr)
    studio.remove(hr.GetID())
    assert proxy.GetScene() is None  # its frame shown went with it
    studio.remove(cine.GetID())
    assert not [n for n in studio.scene.GetNodesByClass("vtkMRMLSequenceNode") if n.GetName().startswith(
        cine.GetName())]


def test_an_upload_is_read_while_the_server_goes_on(studio, phantom_cine, write_dicom, tmp_path):
    """The files are read in a worker thread: the event loop (views, other clicks) runs meanwhile, the status
    says what is loading; the nodes are added on the loop once all is read."""
    folder = write_dicom(phantom_cine(8, 85) * 5, tmp_path / "dicom")  # 10 frames, 120 files
    nodes_before = studio.scene.GetNumberOfNodes()
    seen = []

    async def both():
        task = asyncio.create_task(studio._on_upload(upload=as_sent(folder)))
        while not task.done():  # the loop's other work, as a click or a view's render would be
            seen.append((studio.state.status, studio.scene.GetNumberOfNodes()))
            assert task.done() or len(seen) == 1 or studio.state.loading
            await asyncio.sleep(0.005)
        await task

    asyncio.run(both())
    assert not studio.state.error, studio.state.error
    assert len(seen) > 5  # on the old code, which read on the loop: 1
    assert {status for status, _ in seen[1:]} == {"Loading IM0000 and 119 more"}
    assert studio.state.loading is False and studio.state.upload is None
    assert {count for _, count in seen} == {nodes_before}  # nothing added while reading
    cine = studio._node(studio.state.seg_input)  # chosen for Segment once loaded
    assert cine.GetAttribute("ACNN.Upload") and cine.GetNumberOfDataNodes() == 10
    assert studio.state.status == "Loaded DICOM."
    studio.remove(cine.GetID())


def test_an_upload_that_cannot_be_read_adds_nothing(studio, phantom_cine, tmp_path):
    """Several files uploaded together are all read before any is added: one that cannot be read leaves the scene
    as it was, and its files are not kept."""
    from ACNNCore.io import write_volume

    (tmp_path / "up").mkdir()
    write_volume(phantom_cine(9, 86)[0], tmp_path / "up" / "a.nii.gz")
    (tmp_path / "up" / "b.nii.gz").write_bytes(b"not an image")
    nodes_before, kept = studio.scene.GetNumberOfNodes(), set(Path(studio.uploads.name).iterdir())
    asyncio.run(studio._on_upload(upload=as_sent(tmp_path / "up")))
    assert studio.state.error.startswith("Cannot load: b.nii.gz")
    assert studio.scene.GetNumberOfNodes() == nodes_before  # a.nii.gz, read, not added either
    assert set(Path(studio.uploads.name).iterdir()) == kept
    # a segmentation file is read by MRML as it is added, after the image before it was: that is taken out again
    (tmp_path / "up" / "b.nii.gz").unlink()
    (tmp_path / "up" / "c.seg.nrrd").write_bytes(b"NRRD0004\n# a header cut short\n")
    asyncio.run(studio._on_upload(upload=as_sent(tmp_path / "up")))
    assert studio.state.error.startswith("Cannot load:") and "c.seg.nrrd" in studio.state.error
    assert studio.scene.GetNumberOfNodes() == nodes_before
    assert set(Path(studio.uploads.name).iterdir()) == kept


def test_a_studio_served_beyond_this_machine_saves_to_its_output_folder_only(studio, phantom_cine, tmp_path):
    """Served beyond loopback (`acnn studio --host 0.0.0.0`) the save folder is --output's: whoever reaches the
    studio cannot name where the server writes (the field is read-only, and a save folder a client sets in the
    state is not followed)."""
    from ACNNCore.io import write_volume
    from ACNNSlicerLib.segment import SegmentLogic

    write_volume(phantom_cine(10, 87)[0], tmp_path / "stack.nii.gz")
    (stack,) = studio.load(tmp_path / "stack.nii.gz")
    assert studio.state.status == "Loaded stack.nii.gz."
    SegmentLogic().process(stack, "acnn-seg-phantom", surfaces=False)
    elsewhere, before = tmp_path / "elsewhere", set(studio.output_dir.iterdir())
    studio.state.save_dir = str(elsewhere)
    studio.save_anywhere = False  # as main() makes it for another host
    try:
        studio.save_results()
    finally:
        studio.save_anywhere, studio.state.save_dir = True, str(studio.output_dir)
    assert not elsewhere.exists() and set(studio.output_dir.iterdir()) > before
    assert studio.state.status.startswith("Saved ") and str(studio.output_dir) in studio.state.status
    studio.remove(stack.GetID())


def test_a_save_folder_under_the_home_is_shown_and_typed_as_tilde(studio, phantom_cine, tmp_path, monkeypatch):
    """The Save folder field shows a folder under the user's home as ``~/...``, and a folder typed so is saved
    into there (not into a folder named "~" where the server runs)."""
    from ACNNCore.io import write_volume
    from ACNNSlicerLib.segment import SegmentLogic
    from ACNNStudio.app import _shown_folder

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert _shown_folder(tmp_path / "home" / "acnn-studio-output") == "~/acnn-studio-output"
    assert _shown_folder(tmp_path / "elsewhere") == str(tmp_path / "elsewhere")
    write_volume(phantom_cine(10, 88)[0], tmp_path / "stack.nii.gz")
    (stack,) = studio.load(tmp_path / "stack.nii.gz")
    SegmentLogic().process(stack, "acnn-seg-phantom", surfaces=False)
    studio.state.save_dir = "~/results"
    try:
        studio.save_results()
    finally:
        studio.state.save_dir = str(studio.output_dir)
    assert any((tmp_path / "home" / "results").glob("*.seg.nrrd")), studio.state.status
    assert f"to {tmp_path / 'home' / 'results'}." in studio.state.status and not Path("~").exists()
    studio.remove(stack.GetID())


def test_models_of_ones_own_are_offered_chosen_and_kept(studio, tiny_models, phantom_cine, tmp_path):
    """`acnn studio --model FOLDER`: a bundle of the user's own, checked before the studio starts, is offered
    after the bundled ones in its task's list and chosen; it stays chosen whatever input is chosen (no bundled
    model put in its place), and Segment runs it."""
    from ACNNCore.bundle import resolve
    from ACNNCore.errors import InputError
    from ACNNCore.io import write_volume
    from ACNNSlicerLib.segment import SegmentLogic
    from ACNNStudio.command import own_models

    with pytest.raises(InputError, match="no such folder"):
        own_models([tmp_path / "nothing"])
    with pytest.raises(InputError, match="is not a model bundle"):
        own_models([tmp_path])
    seg, ae = str(tiny_models["seg"]), str(tiny_models["ae"])
    assert own_models([tiny_models["seg"], tiny_models["ae"]]) == [("seg", seg), ("shape", ae)]
    s = studio.state
    before = {key: (list(s[f"{key}_models"]), s[f"{key}_model"]) for key in ("seg", "shape")}
    studio.offer(own_models([tiny_models["seg"], tiny_models["ae"]]))
    try:
        s.flush()
        assert (s.seg_models, s.seg_model) == (before["seg"][0] + [seg], seg)
        assert (s.shape_models, s.shape_model) == (before["shape"][0] + [ae], ae)
        write_volume(phantom_cine(10, 88)[0], tmp_path / "stack.nii.gz")
        (stack,) = studio.load(tmp_path / "stack.nii.gz")
        s.seg_input = stack.GetID()
        s.flush()
        assert SegmentLogic.suited_model(stack) == "acnn-seg-phantom"  # what a bundled model would give way to
        assert (s.seg_model, s.shape_model) == (seg, ae)
        asyncio.run(studio.run_segment())
        assert not s.error, s.error
        results = [n for n in studio._nodes() if n.IsA("vtkMRMLSegmentationNode")
                   and n.GetNodeReferenceID("ACNN.Input") == stack.GetID()]
        assert results and {n.GetAttribute("ACNN.Model") for n in results} == {seg}
        studio.load_shape_model()
        assert not s.error and s.shape_loaded
        assert studio.explorer.model.runner.bundle.path.resolve() == resolve(ae).resolve()
    finally:
        for key, (models, chosen) in before.items():
            s[f"{key}_models"], s[f"{key}_model"] = models, chosen
        s.flush()
    studio.remove(stack.GetID())


def test_cancel_stops_a_run_and_adds_nothing(studio, phantom_cine, tmp_path):
    """Cancel while Segment runs (the worker thread asked to stop, the loop polling it): the status says so,
    the scene is as it was, the studio is free for the next run, which goes through."""
    from ACNNCore.io import write_volume

    write_volume(phantom_cine(11, 89)[0], tmp_path / "stack.nii.gz")
    (stack,) = studio.load(tmp_path / "stack.nii.gz")
    s = studio.state
    s.seg_input, s.seg_model, s.tta = stack.GetID(), "acnn-seg-phantom", True  # nine passes: time to cancel
    s.flush()
    nodes = [n.GetID() for n in studio._nodes()]
    seen = []

    async def cancelled_run():
        run = asyncio.create_task(studio.run_segment())
        while studio.task is None or studio.task.progress[0] == 0:  # under way: a pass done
            assert not run.done(), s.error
            await asyncio.sleep(0.01)
        seen.append(studio.task.progress[0])
        studio.cancel()
        await run

    try:
        asyncio.run(cancelled_run())
        assert 0 < seen[0] < 1
        assert s.status == "Segment: cancelled; nothing was added." and not s.error
        assert [n.GetID() for n in studio._nodes()] == nodes and studio.task is None and not s.busy
        s.tta = False
        s.flush()
        asyncio.run(studio.run_segment())
        results = [n for n in studio._nodes() if n.GetNodeReferenceID("ACNN.Input") == stack.GetID()]
        assert not s.error and results
    finally:
        s.tta = False
        s.flush()
    for node in (*results, stack):
        studio.remove(node.GetID())


def test_a_scene_slicer_saved_loads_with_its_cine_and_results(studio, tmp_path, rezipped):
    """An .mrb uploaded (a scene saved in Slicer, or by the Segment module): its images, its cine offered to
    Segment, its results listed and following the frame slider; one whose data cannot all be read adds
    nothing, and says which; a scene file without its data (.mrml) is refused, the bundle asked for."""
    import slicer

    from ACNNCore.errors import InputError
    from ACNNSlicerLib import mrml
    from ACNNSlicerLib.segment import SegmentLogic

    start = {n.GetID() for n in studio._nodes()}
    saved = slicer.vtkMRMLScene()
    SegmentLogic.load_demo(saved)
    (saved_cine,) = saved.GetNodesByClass("vtkMRMLSequenceNode")
    SegmentLogic().process(saved_cine, "acnn-seg-phantom", ed=0, es=1, surfaces=False)  # ED's and ES's alone
    (tmp_path / "scene").mkdir()
    assert saved.WriteToMRB(str(tmp_path / "scene" / "study.mrb"))
    nodes = upload(studio, tmp_path / "scene")
    assert studio.state.status == "Loaded study.mrb."
    names = sorted(n.GetName() for n in mrml.nodes_of(saved) if any(n.IsA(c) for c in mrml.DATA_CLASSES)
                   and not n.GetHideFromEditors())  # the images, the cine, its results and their tables
    assert sorted(n.GetName() for n in nodes) == names
    (cine,) = [n for n in nodes if n.IsA("vtkMRMLSequenceNode")]
    assert studio.state.seg_input == cine.GetID()
    studio.show_node(cine.GetID())  # its eye in the Scene panel: the frame slider's
    assert studio.state.frames == 2
    results = mrml.frame_results(cine)
    assert len(results) == 2 and {r.GetID() for r in results} <= {s["value"] for s in studio.state.segmentations}
    assert all(r.GetSegmentation().ContainsRepresentation("Closed surface") for r in results)  # the 3-D view's
    assert studio.removal_question(results[0]) == f"Remove {results[0].GetName()}?"  # kept in the file: not lost
    for frame in (1, 0):
        studio.state.frame = frame
        studio.state.flush()  # as the slider does
        assert [int(r.GetAttribute("ACNN.Frame")) for r in results if r.GetDisplayNode().GetVisibility()] == [frame]

    (tmp_path / "broken").mkdir()
    rezipped(tmp_path / "scene" / "study.mrb", tmp_path / "broken" / "broken.mrb", leave_out="phantom ES.nrrd")
    before = [n.GetID() for n in studio._nodes()]
    asyncio.run(studio._on_upload(upload=as_sent(tmp_path / "broken")))
    assert studio.state.error == "Cannot load: broken.mrb: the data of phantom ES cannot be read"
    assert [n.GetID() for n in studio._nodes()] == before
    # a whole bundle, then a file MRML cannot read as it is added: the bundle's every node taken out again (its
    # cine's browser, the volume curve's plot chart too, not only what the lists show)
    (tmp_path / "scene" / "z.seg.nrrd").write_bytes(b"NRRD0004\n# a header cut short\n")
    asyncio.run(studio._on_upload(upload=as_sent(tmp_path / "scene")))
    assert studio.state.error.startswith("Cannot load: cannot read z.seg.nrrd")
    assert [n.GetID() for n in studio._nodes()] == before
    for node in nodes:
        studio.remove(node.GetID())
    (tmp_path / "scene.mrml").write_text("<MRML></MRML>")
    with pytest.raises(InputError, match=r"^scene.mrml: a Slicer scene without its data files: save it in Slicer "
                                         r"as a bundle \(.mrb"):
        studio.load(tmp_path / "scene.mrml")
    # saved by a Slicer with an extension: that extension's node left out, said; the rest loaded (as by --data)
    foreign = rezipped(tmp_path / "scene" / "study.mrb", tmp_path / "foreign.mrb", scene_text=lambda text: text.replace(
        "</MRML>", '<Widget id="vtkMRMLWidgetNode1" name="an extension\'s"></Widget>\n</MRML>'))
    nodes = studio.load(foreign)
    assert studio.state.status == ("Loaded foreign.mrb. foreign.mrb: nodes of vtkMRMLWidgetNode left out (no module "
                                   "here makes them).") and not studio.state.error
    assert sorted(n.GetName() for n in nodes) == names
    for node in nodes:
        studio.remove(node.GetID())
    mrml.remove_all_but(studio.scene, start)  # the bundles' plot charts, which no list shows
    studio.refresh_lists()


def test_what_cannot_run_is_said_and_adds_nothing_then_the_same_runs_go_through(studio, phantom_cine, tmp_path):
    """Segment and SuperResolve with no input chosen, a model of the wrong task, a shape model that is not
    there, Encode before a shape model is loaded: each a message (the error, the status pointing to it) and
    nothing added; the studio takes the next action. Then a T-L model, loaded, encodes an image (not only a
    segmentation). Last in this file: it leaves a shape model loaded."""
    from ACNNCore.io import write_volume

    s = studio.state

    def said(action, message):
        nodes = [n.GetID() for n in studio._nodes()]
        s.error = ""
        result = action()
        if asyncio.iscoroutine(result):
            asyncio.run(result)
        assert s.error.startswith(message) and s.status == "Failed: see the message above.", s.error
        assert [n.GetID() for n in studio._nodes()] == nodes and not s.busy and studio.task is None

    s.seg_input = s.sr_input = None
    said(studio.run_segment, "Segment: no input selected: load an image first")
    said(studio.run_superresolve, "SuperResolve: no input selected: load an image first")
    write_volume(phantom_cine(12, 90)[0], tmp_path / "stack.nii.gz")
    (stack,) = studio.load(tmp_path / "stack.nii.gz")
    s.seg_input, s.seg_model = stack.GetID(), "acnn-sr-phantom"  # a super-resolution model, in the worker
    said(studio.run_segment, "Segment: ")
    s.seg_model = "acnn-seg-phantom"
    s.shape_loaded, s.encode_source = False, stack.GetID()
    said(studio.encode_shape, "Encode: load a shape model first")
    s.shape_model = "no-such-model"
    said(studio.load_shape_model, "Shape model: ")
    s.shape_model = "ae-phantom"
    studio.load_shape_model()  # after a failure: the message goes
    assert not s.error and s.status.startswith("Loaded ae-phantom: its mean shape, the sliders on its ")
    said(studio.encode_shape, "Encode: encoding an image needs a T-L model; this one is an autoencoder")
    s.shape_model = "tl-phantom"  # the T-L network: an image encoded straight into the shape space
    studio.load_shape_model()
    s.encode_source = None
    said(studio.encode_shape, "Encode: no input selected")
    s.encode_source = stack.GetID()
    studio.encode_shape()
    assert not s.error and s.status == f"Encoded {stack.GetName()}." and s.shape_voxels > 0
    studio.remove(stack.GetID())
    said(studio.encode_shape, "Encode: no input selected")  # the image went with the stack
    before = {n.GetID() for n in studio._nodes()}
    studio.load_demo()  # after a failure too: the message goes
    assert not s.error and s.status.startswith("Demo: ")
    for node in [n for n in studio._nodes() if n.GetID() not in before]:
        studio.remove(node.GetID())
