"""ACNN Studio: Segment, SuperResolve and Shape Explorer in a browser, on trame-slicer (the Slicer core).

The panels call the same logic classes as the desktop modules (:mod:`ACNNSlicerLib`); this file holds
only the UI and its state. Long runs go to a worker thread (:class:`ACNNSlicerLib.common.BackgroundTask`)
polled from the server's event loop, so the views stay live and Cancel works; results are applied to
the scene on the loop's thread. Errors become a message in the UI: the server keeps running.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import shutil
import signal
import sys
import tempfile
import traceback
import zipfile
from pathlib import Path

if sys.platform.startswith("linux"):  # offscreen, with or without a display; Windows and macOS: VTK's own choice
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

import numpy as np  # noqa: E402
import slicer  # noqa: E402
from trame.app import get_server  # noqa: E402
from trame.app.file_upload import ClientFile  # noqa: E402
from trame.ui.vuetify3 import VAppLayout  # noqa: E402
from trame.widgets import html  # noqa: E402
from trame.widgets import vuetify3 as v3  # noqa: E402
from trame_slicer.core import LayoutManager, SlicerApp  # noqa: E402
from trame_slicer.rca_view import register_rca_factories  # noqa: E402

from ACNNCore.cine import frame_number  # noqa: E402
from ACNNCore.errors import InputError  # noqa: E402
from ACNNCore.progress import counted  # noqa: E402
from ACNNSlicerLib import mrml  # noqa: E402
from ACNNSlicerLib.common import BackgroundTask, Cancelled, LoggedWarnings  # noqa: E402
from ACNNSlicerLib.segment import SegmentLogic  # noqa: E402
from ACNNSlicerLib.shape_explorer import ShapeExplorerLogic  # noqa: E402
from ACNNSlicerLib.superresolve import SuperResolveLogic  # noqa: E402

log = logging.getLogger("ACNN.studio")
SLIDERS = 8  # latent dimensions shown (the most used first)
RESULT_COLUMNS = (("Phase", "Phase"), ("LV (ml)", "LV blood pool (ml)"), ("Mass (g)", "Myocardial mass (g)"),
                  ("EF (%)", "EF (%)"), ("RV (ml)", "RV blood pool (ml)"), ("RV EF (%)", "RV EF (%)"),
                  ("Plausible", "Plausible"))  # (header, SegmentResult.rows() key); shown where it has values
UPLOAD = "ACNN.Upload"  # a node's attribute: the server's folder holding the upload it was loaded from
SAVED = "ACNN.SavedAs"  # a result's attribute: the file Save results last wrote it to (or "DOWNLOAD: file")
LOOPBACK = ("127.0.0.1", "localhost", "::1")  # hosts that serve this machine only
DOWNLOAD = "acnn-results.zip"  # the name Download gives the results' zip


def write_uploads(files: list[dict], folder: Path) -> list[Path]:
    """The files a browser sent, written into ``folder`` under their base names (a client may send any name:
    none reaches outside the folder), a name taken twice numbered (``_free``)."""
    paths = []
    for file in map(ClientFile, files):
        name = Path(file.name.replace("\\", "/")).name
        if name in ("", ".", ".."):
            raise InputError(f"cannot take a file named {file.name!r}")
        paths.append(_free(folder / name))
        paths[-1].write_bytes(file.content)
    return paths


def uploaded_items(paths, folder: Path) -> list[Path]:
    """What a user uploaded, as :meth:`Studio.load` takes it: DICOM files chosen together as one folder (a
    stack or a cine), a ``.zip`` unpacked (its DICOM files, in whatever folders, as one stack or cine; its
    image files each), anything else as it is."""
    from ACNNCore.dicom import is_dicom_file, is_dicom_folder
    from ACNNCore.io import SUFFIXES

    items, dicom = [], folder / "DICOM"
    for path in map(Path, paths):
        if path.suffix.lower() == ".zip":
            root = folder / path.stem
            try:
                with zipfile.ZipFile(path) as z:
                    z.extractall(root)  # names are kept inside root (zipfile drops "..", "/")
            except zipfile.BadZipFile:
                raise InputError(f"{path.name} is not a zip file") from None
            inner = [root] if is_dicom_folder(root) else []  # its DICOM files, in whatever folders: one stack
            inner += sorted(p for p in root.rglob("*") if p.is_file() and p.name.lower().endswith(SUFFIXES)
                            and not any(part.startswith((".", "__MACOSX")) for part in p.relative_to(root).parts))
            if not inner:
                raise InputError(f"{path.name} holds no DICOM files and no images ({', '.join(SUFFIXES)})")
            items += inner
        elif path.name.upper() == "DICOMDIR":  # chosen with the files: their index, nothing to load
            continue
        elif is_dicom_file(path):
            dicom.mkdir(exist_ok=True)
            path.rename(dicom / path.name)
            if dicom not in items:
                items.append(dicom)
        else:
            items.append(path)
    return items


class Studio:
    def __init__(self, server=None, output_dir: Path | None = None, save_anywhere: bool = True, models=()):
        self.server = server or get_server(None, client_type="vue3")
        self.state, self.ctrl = self.server.state, self.server.controller
        self.app = SlicerApp()
        self.scene = self.app.scene
        slicer.mrmlScene = self.scene
        register_rca_factories(self.app.view_manager, self.server)
        self.layout_manager = LayoutManager(self.scene, self.app.view_manager, self.server)
        self.layout_manager.register_layout_dict(LayoutManager.default_grid_configuration())
        self.segment, self.resolve, self.explorer = SegmentLogic(), SuperResolveLogic(), ShapeExplorerLogic()
        self.output_dir = Path(output_dir or Path.cwd() / "acnn-studio-output")
        # whether the browser may name the save folder: not for a studio served beyond this machine, where
        # whoever reaches it could write where the server may; results then go to output_dir, or Download
        self.save_anywhere = save_anywhere
        # what was uploaded, kept while a node loaded from it is in the scene (a DICOM SEG refers to the files its
        # input came from), and deleted with the last of them or when the studio stops
        self.uploads = tempfile.TemporaryDirectory(prefix="acnn-studio-uploads-")
        self.task: BackgroundTask | None = None
        self._loading = 0  # uploads being read
        self.shape_node = None
        self._init_state()
        self.offer(models)
        self.state.change("seg_input")(self._choose_seg_model)
        self.state.change("seg_model")(self._choose_shape_model)
        self.server.trigger("download_results")(self._download)
        self._build_ui()
        self.layout_manager.set_layout("Quad View")

    def close(self):
        """Release what the studio holds once it stops: its views, taken off the scene (their displayable
        managers stop listening to it) and their render windows finalized, while VTK is whole rather than in
        whatever order the interpreter's exit takes them; and the uploaded files. Left listening, a view's
        displayable managers were called at the exit, when VTK's Python wrapping deleted the colour logic and
        it removed its colour nodes from the scene, on a view already gone: a segmentation fault (gdb,
        2026-12-05: ~vtkMRMLColorLogic -> RemoveDefaultColorNodes -> scene event ->
        vtkMRMLLinearTransformsDisplayableManager::UpdateFromMRML -> address 0)."""
        for view in self.app.view_manager.get_views():
            view.set_view_node(None)
            view.finalize()
        self.uploads.cleanup()

    # --- state ------------------------------------------------------------------------

    def _init_state(self):
        s = self.state
        s.trame__title = "ACNN Studio"
        s.volumes, s.inputs, s.segmentations = [], [], []
        s.seg_input, s.sr_input, s.encode_source = None, None, None
        s.seg_models, s.sr_models, s.shape_models = SegmentLogic.models(), SuperResolveLogic.models(), \
            ShapeExplorerLogic.models()
        # the phantom's models first (the demo's data); choosing an input picks the model that suits it
        s.seg_model, s.sr_model, s.shape_model = (
            next((m for m in models if m.endswith("-phantom")), models[0] if models else None)
            for models in (s.seg_models, s.sr_models, s.shape_models))
        s.device = "auto"
        s.clean_up = False
        s.close_myocardium = False
        s.correct = False
        s.tta = False
        s.orient = False
        s.detect_phases = True  # a cine's ED and ES found from its volume curve, or the frames given (from 1)
        s.ed_frame, s.es_frame = 1, 1
        s.busy, s.progress, s.status = False, 0, "Open an image, or make the phantom demo (Segment)."
        s.error = ""
        s.results = []
        s.curve = ""  # a cine's LV blood pool per frame, where ED and ES were found from it
        s.rv_curve = ""  # and its RV blood pool, from a model that segments the RV
        s.sliders = []
        s.shape_loaded, s.shape_voxels, s.shape_ms, s.shape_verdict = False, 0, 0, ""
        s.save_dir = _shown_folder(self.output_dir)
        s.upload = None
        s.loading = False  # an upload being read (the progress bar runs)
        s.change("upload")(self._on_upload)
        s.remove_dialog, s.remove_id, s.remove_question = False, None, ""
        s.shown = None  # the volume under the slice views
        s.frames, s.frame = 0, 0  # a cine's frames, where one is shown, and the one shown
        s.change("frame")(self._frame_changed)
        for i in range(SLIDERS):
            s[f"z{i}"] = 0.0
            s.change(f"z{i}")(self._slider_changed(i))

    def offer(self, models) -> None:
        """Bundles of the user's own (``acnn studio --model``; (list, folder) pairs, as ``command.own_models``
        checks them), each offered after the bundled ones in its list, and chosen."""
        s = self.state
        for kind, folder in models:
            s[f"{kind}_models"], s[f"{kind}_model"] = [*s[f"{kind}_models"], folder], folder

    def _segmentation_items(self) -> list[dict]:
        """The Scene panel's segmentations: each segmentation node, and a cine's segmentation of every frame (a
        sequence of segmentations) as one item, whose eye is its frame shown's (its browser's proxy, not listed
        again; none where it has no browser)."""
        def item(node, title: str, segmentation, shown) -> dict:
            display = shown.GetDisplayNode() if shown is not None else None
            return {"title": title, "value": node.GetID(), "segments": ", ".join(
                segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())),
                "visible": display is not None and bool(display.GetVisibility())}

        every = [n for n in self.scene.GetNodesByClass("vtkMRMLSequenceNode")
                 if mrml.holds_segmentations(n) and n.GetNumberOfDataNodes()]
        shown = {n.GetID(): mrml.proxy_of(n) for n in every}
        proxies = {p.GetID() for p in shown.values() if p is not None}
        return [item(n, n.GetName(), n.GetSegmentation(), n) for n in
                self.scene.GetNodesByClass("vtkMRMLSegmentationNode") if n.GetID() not in proxies] + [
            item(n, f"{n.GetName()} (every frame, {n.GetNumberOfDataNodes()} frames)",
                 n.GetNthDataNode(0).GetSegmentation(), shown[n.GetID()]) for n in every]

    def _volumes(self) -> list:
        """The volumes a user knows: not label maps, not a cine's frame (its proxy, hidden from editors)."""
        return [n for n in self.scene.GetNodesByClass("vtkMRMLScalarVolumeNode")
                if not n.IsA("vtkMRMLLabelMapVolumeNode") and not n.GetHideFromEditors()]

    def refresh_lists(self):
        """Volumes, sequences, segmentations and their segments, as the panels list them."""
        volumes = self._volumes()
        cines = mrml.cines_of(self.scene)
        self.state.volumes = [{"title": n.GetName(), "value": n.GetID()} for n in volumes]
        self.state.inputs = self.state.volumes + [{"title": f"{n.GetName()} (cine, {n.GetNumberOfDataNodes()} frames)",
                                                   "value": n.GetID()} for n in cines]
        self.state.segmentations = self._segmentation_items()
        self.state.shown = self._shown()
        cine = self._shown_cine()
        self.state.frames = cine[0].GetNumberOfDataNodes() if cine else 0
        self.state.frame = cine[1].GetSelectedItemNumber() if cine else 0
        if self.state.seg_input not in [i["value"] for i in self.state.inputs]:
            self.state.seg_input = self.state.inputs[0]["value"] if self.state.inputs else None
        if self.state.sr_input not in [i["value"] for i in self.state.inputs]:
            self.state.sr_input = self.state.inputs[0]["value"] if self.state.inputs else None
        if self.state.encode_source not in [i["value"] for i in self.state.segmentations + self.state.volumes]:
            self.state.encode_source = None

    def fail(self, message: str):
        self.state.error = message
        self.state.status = "Failed: see the message above."
        log.warning(message)

    def say(self, status: str):
        """What an action did, on the status line; an earlier failure's message (:meth:`fail`) goes. (A run and
        an upload clear it as they start.)"""
        self.state.error, self.state.status = "", status

    # --- data ------------------------------------------------------------------------------

    def show(self, node):
        self.app.display_manager.show_volume_in_slice_background(node)
        for view in self.app.view_manager.get_views():
            view.reset_view()

    def _shown(self) -> str | None:
        """The volume (or cine, whose frame it is) under the slice views, as the Scene panel lists it."""
        shown = next((c.GetBackgroundVolumeID() for c in self.scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
                      if c.GetBackgroundVolumeID()), None)
        for browser in self.scene.GetNodesByClass("vtkMRMLSequenceBrowserNode"):  # a cine, or one played along
            cine = browser.GetSequenceNode(self.scene.GetNodeByID(shown)) if shown else None  # with it (HR frames)
            if cine is not None:
                return cine.GetID()
        return shown

    def _shown_cine(self):
        """(the cine, its browser node) whose frame is under the slice views; None where a volume is."""
        node = self.scene.GetNodeByID(self.state.shown) if self.state.shown else None
        browser = mrml.browser_of(node) if node is not None and node.IsA("vtkMRMLSequenceNode") else None
        return (node, browser) if browser is not None else None

    def _frame_changed(self, frame=0, **_):
        """The frame slider: that frame of the cine shown, where the slice views stay as they are (the cine's
        results following it: :func:`mrml.follow_frames`)."""
        cine = self._shown_cine()
        if cine and int(frame) != cine[1].GetSelectedItemNumber() and 0 <= int(frame) < self.state.frames:
            mrml.show_frame(cine[0], int(frame))
            self.refresh_lists()  # the segmentations' eyes

    def show_node(self, node_id):
        """The eye of a volume in the Scene panel: that volume under the slice views (a cine: its frame shown
        last, else the first)."""
        node = self.scene.GetNodeByID(node_id) if node_id else None
        if node is None:
            return
        if node.IsA("vtkMRMLSequenceNode"):
            browser = mrml.browser_of(node)
            node = mrml.show_frame(node, browser.GetSelectedItemNumber() if browser is not None else 0)
        self.show(node)
        self.refresh_lists()

    def toggle_visibility(self, node_id):
        """The eye of a segmentation in the Scene panel: shown or hidden in the slice and 3-D views."""
        node = self.scene.GetNodeByID(node_id) if node_id else None
        if node is None:
            return
        if node.IsA("vtkMRMLSequenceNode"):  # a cine's segmentation of every frame: its frame shown
            node = mrml.proxy_of(node)
        if node is None:  # its cine gone: shown at its first frame, by a browser of its own
            mrml.show_frame(self.scene.GetNodeByID(node_id), 0)
        elif node.GetDisplayNode() is None:
            node.CreateDefaultDisplayNodes()
        else:
            node.GetDisplayNode().SetVisibility(not node.GetDisplayNode().GetVisibility())
        self.refresh_lists()

    def load(self, path) -> list:
        """Load an image (.nii.gz, .nrrd, .mha, or a folder of DICOM files: a stack or cine, or several studies
        each), a segmentation (.seg.nrrd, or a label map named ``*_gt``, ``*_seg``..., an ACDC expert's in
        ACDC's values; a cine's 4-D map, playing along with its cine: :func:`mrml.label_frames_to_node`), a
        scene Slicer saved (.mrb: its images, cines, segmentations and tables), or every image and segmentation
        of a folder; show the first image, and say what was loaded (with what was left out). Everything is read
        before a node is made: what cannot be read leaves the scene as it was."""
        with LoggedWarnings() as told:
            nodes = self.add(self.read(path))
        self.say(_loaded([Path(path).name], told.messages))
        return nodes

    @staticmethod
    def read(path) -> list:
        """What :meth:`load` adds, read without touching the scene (a worker thread reads an upload while the
        views stay live): for each node a function that adds it, ``make(scene=scene) -> node`` (for a scene
        file, one that adds its nodes and returns them)."""
        from functools import partial

        from ACNNCore.dicom import is_dicom_folder
        from ACNNCore.evaluation import is_label_file, read_label_frames
        from ACNNCore.io import SUFFIXES, format_of, looks_like_labels, read_frames

        path = Path(path)
        dicom = is_dicom_folder(path)
        files = sorted(p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(SUFFIXES)) \
            if path.is_dir() and not dicom else [path]
        if not files:
            inner = sorted(d for d in path.iterdir() if d.is_dir()) if path.is_dir() else []
            if inner:  # a data set's root (ACDC's patientNNN/ folders): one subject at a time
                raise InputError(f"{path} holds folders, not images: load one of them (e.g. {inner[0]})")
            raise InputError(f"no images ({', '.join(SUFFIXES)}) in {path}")
        makers = []
        for f in files:
            name = f.name.split(".")[0]
            try:
                if dicom:  # each study: one stack, or a cine (a sequence node)
                    makers += mrml.read_dicom_nodes(f)
                    continue
                if f.name.lower().endswith(".mrb"):  # a scene Slicer saved: imported as it is added
                    makers.append(partial(_import_scene, f))
                    continue
                if f.name.lower().endswith(".mrml"):
                    raise InputError("a Slicer scene without its data files: save it in Slicer as a bundle (.mrb) "
                                     "and load that")
                format_of(f)
                if f.name.lower().endswith(".seg.nrrd"):  # read by MRML's storage node, as it is added
                    makers.append(partial(mrml.load_node, f, kind="segmentation", name=name))
                    continue
                # an expert's label map (to compare with, or to encode), in ACDC's values where Info.cfg says so,
                # and acnn segment's CASE.nii.gz (a cine's: 4-D); else ACNNCore reads it (3-D or a 4-D cine,
                # scalar, finite: or a clear message)
                frames = None if is_label_file(f) else read_frames(f)
                if frames is None or any(map(looks_like_labels, frames)) and all(
                        looks_like_labels(t) or not t.array.any() for t in frames):
                    makers.append(partial(mrml.label_frames_to_node, read_label_frames(f, "auto"), name=name))
                else:
                    makers.append(partial(mrml.frames_to_node, frames, name=name))
            except InputError as e:
                raise InputError(f"{f.name}: {e}") from None
        return makers

    def add(self, makers) -> list:
        """The nodes :meth:`read` read, added to the scene; the first image shown (a cine: its first frame) and
        chosen for Segment. All or none: a file MRML cannot read (a .seg.nrrd or .mrb, read as it is added) takes
        the nodes added before it out again."""
        nodes, before = [], {n.GetID() for n in self._nodes()}
        labels_last = sorted(makers, key=lambda make: getattr(make, "func", None) is mrml.label_frames_to_node)
        try:
            for make in labels_last:  # a cine's label maps play along with its images, loaded with them
                made = make(scene=self.scene)  # a node, or a scene file's nodes
                nodes += made if isinstance(made, list) else [made]
        except Exception:
            mrml.remove_all_but(self.scene, before)
            raise
        for node in nodes:  # a segmentation read from a file (.seg.nrrd, .mrb): in the 3-D view too
            if node.IsA("vtkMRMLSegmentationNode"):
                node.CreateClosedSurfaceRepresentation()
        cines = [n for n in nodes if mrml.is_cine(n)]
        self._show_first([n for n in nodes if n.IsA("vtkMRMLScalarVolumeNode")], cines)
        self.refresh_lists()
        if cines:
            self.state.seg_input = cines[0].GetID()
        return nodes

    def load_demo(self):
        """A phantom subject the models never saw: ED and ES stacks, and the two as a cine sequence."""
        ed, _, cine = SegmentLogic.load_demo(self.scene)
        self.show(ed)
        self.refresh_lists()
        self.state.seg_input = cine.GetID()
        self.say("Demo: a phantom cine stack (ED, ES) with 2 mm slice misalignment.")

    async def _on_upload(self, upload=None, **_):
        """Files from the browser: written to a folder of their own and read in a worker thread, the views
        live meanwhile (a study of a few thousand DICOM files takes seconds), then added to the scene."""
        if not upload:
            return
        files = upload if isinstance(upload, list) else [upload]
        tmp = tempfile.mkdtemp(dir=self.uploads.name)

        def bare(message: str) -> str:  # the server's folder left out: the names are the user's
            return message.replace(str(Path(tmp)) + os.sep, "")

        self._loading += 1
        with self.state:  # the input cleared at once (it would list every file's name meanwhile), the bar running
            self.state.upload, self.state.loading, self.state.error = None, True, ""
            self.state.status = f"Loading {files[0]['name']}" + (f" and {len(files) - 1} more" if files[1:] else "")
        try:
            with LoggedWarnings() as told:
                items, makers = await asyncio.to_thread(self._read_upload, files, Path(tmp))
                with self.state:
                    for node in self.add(makers):
                        node.SetAttribute(UPLOAD, tmp)  # its files go when the last of its nodes does
                    self.say(_loaded([p.name for p in items], [bare(m) for m in told.messages]))
        except Exception as e:  # an InputError's message, or anything else logged: never take the server down
            shutil.rmtree(tmp, ignore_errors=True)
            if not isinstance(e, InputError):
                log.error(traceback.format_exc())
            with self.state:
                self.fail(f"Cannot load: {bare(str(e))}")
        finally:
            self._loading -= 1
            with self.state:
                self.state.loading = self._loading > 0

    def _read_upload(self, files, folder: Path):
        """(the items uploaded, the makers of their nodes): run in a worker thread, the scene untouched."""
        items = uploaded_items(write_uploads(files, folder), folder)
        return items, [make for item in items for make in self.read(item)]

    def _write_results(self, out: Path, saved_as=str) -> tuple[list[Path], str]:
        """Every ACNN result -- segmentations, SR volumes (a cine's: one 4-D image), the explored shape, the
        measures tables (CSV) -- written into ``out``; what was loaded from files is not written again. The
        segmentations of an input loaded from DICOM files also as DICOM SEG on them, in a folder
        ``INPUT_DICOM_SEG``. Each result is marked saved (``SAVED``: ``saved_as(its file)``). Besides, where
        there is a result, the whole scene as ``scene.mrb``, to go on in 3D Slicer: inputs, results tied to their
        cine's frames, tables. Returns the files written and notes to say."""
        out.mkdir(parents=True, exist_ok=True)
        written, dicom, notes = [], {}, []
        for kind, suffix in (("vtkMRMLSegmentationNode", ".seg.nrrd"), ("vtkMRMLScalarVolumeNode", ".nii.gz"),
                             ("vtkMRMLSequenceNode", ".nii.gz"), ("vtkMRMLTableNode", ".csv")):  # a cine's SR: 4-D
            for node in self.scene.GetNodesByClass(kind):
                if node.GetAttribute("ACNN.Model") is not None:
                    written.append(Path(mrml.save_node(node, _free(out / f"{_safe(node.GetName())}{suffix}"))))
                    node.SetAttribute(SAVED, saved_as(written[-1]))
                    source = node.GetNodeReference("ACNN.Input")  # a frame's segmentation: as DICOM SEG too
                    if (node.IsA("vtkMRMLSegmentationNode") and source is not None
                            and source.GetAttribute(mrml.DICOM_SOURCE[0])):
                        dicom.setdefault(source.GetID(), (source, []))[1].append(node)
        for source, nodes in dicom.values():
            try:
                written += SegmentLogic.write_dicom_seg(nodes, _free(out / f"{_safe(source.GetName())}_DICOM_SEG"))
            except InputError as e:  # a sub-pixel model's result
                notes.append(f" No DICOM SEG for {source.GetName()}: {e}")
        if written:
            written.append(Path(mrml.write_scene(self.scene, _free(out / "scene.mrb"))))
            notes.insert(0, f" {written[-1].name}: the whole scene, to open in 3D Slicer.")
        return written, "".join(notes)

    def save_results(self):
        """The results (:meth:`_write_results`) into the save folder, on the server, never over a file."""
        out = Path(self.state.save_dir).expanduser() if self.save_anywhere else self.output_dir
        try:
            written, notes = self._write_results(out)
            self.say((f"Saved {len(written)} files to {out}." if written else "Nothing to save yet.") + notes)
        except (OSError, InputError) as e:
            self.fail(f"Cannot save: {e}")

    def results_zip(self) -> bytes | None:
        """The results (:meth:`_write_results`) as a zip file for the browser to download (the studio on
        another machine than the browser); None, saying so, where there is none."""
        try:
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp) / DOWNLOAD.removesuffix(".zip")
                written, notes = self._write_results(folder, lambda f: f"{DOWNLOAD}: {f.relative_to(folder)}")
                if not written:
                    self.say("Nothing to download yet.")
                    return None
                buffer = io.BytesIO()
                with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
                    for path in written:
                        packed = path.name.endswith((".mrb", ".gz"))  # compressed already: stored as they are
                        z.write(path, path.relative_to(tmp), zipfile.ZIP_STORED if packed else None)
        except (OSError, InputError) as e:
            self.fail(f"Cannot download: {e}")
            return None
        self.say(f"Downloading {len(written)} files as {DOWNLOAD}." + notes)
        return buffer.getvalue()

    def _download(self):
        """The trigger behind Download: the zip as a binary attachment (None: nothing to download)."""
        data = self.results_zip()
        return None if data is None else self.server.protocol.addAttachment(memoryview(data))

    def _choose_seg_model(self, **_):
        """The bundled model that suits the chosen input (phantom stacks get the phantom model); a bundle of the
        user's own (``--model``) stays chosen."""
        if self.state.seg_model not in SegmentLogic.models():
            return
        node = self.scene.GetNodeByID(self.state.seg_input) if self.state.seg_input else None
        name = SegmentLogic.suited_model(node)
        if name in self.state.seg_models:
            self.state.seg_model = name

    def _choose_shape_model(self, **_):
        """The bundled shape space the chosen segmentation model was trained with (ae-acdc for acnn-seg-acdc); a
        bundle of the user's own (``--model``) stays chosen."""
        if self.state.shape_model not in ShapeExplorerLogic.models():
            return
        name = ShapeExplorerLogic.prior_of(self.state.seg_model)
        if name in self.state.shape_models:
            self.state.shape_model = name

    # --- removing ------------------------------------------------------------------------

    def _nodes(self) -> list:
        return mrml.nodes_of(self.scene)

    def removal_question(self, node) -> str:
        """What removing a node from the scene would cost, asked before it is removed."""
        said = [f"Remove {node.GetName()}?"]
        if node.GetAttribute("ACNN.Model") is not None and node.GetAttribute(SAVED) is None:
            said.append("It is a result not saved yet: it will be lost (Save results or Download keeps it).")
        unsaved = [n for n in self._nodes() if n.GetNodeReferenceID("ACNN.Input") == node.GetID()
                   and n.IsA("vtkMRMLSegmentationNode") and n.GetAttribute(SAVED) is None]
        if unsaved and node.GetAttribute(mrml.DICOM_SOURCE[0]):
            said.append(f"{counted(len(unsaved), 'result')} made from it, not saved yet, can then no "
                        f"longer be saved as DICOM SEG on its images.")
        if self._upload_only_of(node):
            said.append("The files uploaded for it are deleted from the server.")
        return " ".join(said)

    def _upload_only_of(self, node) -> str | None:
        """The folder of the upload a node was loaded from, where no other node in the scene was loaded from it."""
        upload = node.GetAttribute(UPLOAD)
        return upload if upload and not any(n.GetAttribute(UPLOAD) == upload for n in self._nodes()
                                            if n is not node) else None

    def _removable(self, node_id):
        """The node of that ID, where it may be removed now: none while a run is going (saying so)."""
        node = self.scene.GetNodeByID(node_id) if node_id else None
        if node is not None and self.task is not None:
            self.fail("Cannot remove while a run is going: wait for it, or cancel it.")
            return None
        return node

    def ask_remove(self, node_id):
        """The remove button of a node in the Scene list: what it would cost, for the user to confirm."""
        node = self._removable(node_id)
        if node is None:
            return
        self.state.remove_id, self.state.remove_question = node_id, self.removal_question(node)
        self.state.remove_dialog = True

    def remove(self, node_id=None):
        """Remove a node (the one the user confirmed) with what it alone uses; the files uploaded for it go
        with the last node loaded from them."""
        node_id = node_id or self.state.remove_id
        self.state.remove_dialog, self.state.remove_id = False, None
        node = self._removable(node_id)
        if node is None:
            return
        name, upload = node.GetName(), self._upload_only_of(node)
        mrml.remove_node(node)
        if upload:
            shutil.rmtree(upload, ignore_errors=True)
        if self._shown() is None:  # the views show what is left
            self._show_first(self._volumes(), mrml.cines_of(self.scene))
        self.refresh_lists()
        self.say(f"Removed {name}.")

    def _show_first(self, volumes: list, cines: list):
        """The first of these volumes under the slice views, else the first frame of the first of these cines."""
        if volumes or cines:
            self.show(volumes[0] if volumes else mrml.show_frame(cines[0], 0))

    # --- running ---------------------------------------------------------------------------

    def _node(self, node_id):
        node = self.scene.GetNodeByID(node_id) if node_id else None
        if node is None:
            raise InputError("no input selected: load an image first")
        return node

    async def _run(self, compute, args, apply, what: str, **options):
        if self.task is not None:
            return
        self.state.error, self.state.busy, self.state.progress = "", True, 0
        self.state.flush()
        try:
            self.task = BackgroundTask(compute, *args, **options)
            while not self.task.done:
                fraction, message = self.task.progress
                with self.state:
                    self.state.progress, self.state.status = int(100 * fraction), f"{what}: {message}"
                await asyncio.sleep(0.1)
            task, self.task = self.task, None
            if task.cancelled:
                raise Cancelled()
            result = task.wait()
            with self.state:
                apply(result)
                self.refresh_lists()
        except Cancelled:
            self.state.status = f"{what}: cancelled; nothing was added."
        except InputError as e:
            self.fail(f"{what}: {e}")
        except Exception as e:
            log.error(traceback.format_exc())
            self.fail(f"{what} failed: {e}")
        finally:
            self.task = None
            self.state.busy = False
            self.state.flush()

    def cancel(self):
        if self.task is not None:
            self.task.cancel()

    async def run_segment(self):
        try:
            node = self._node(self.state.seg_input)
            frames = SegmentLogic.read_input(node)
            ed, es = SegmentLogic.frames_asked(len(frames), bool(self.state.detect_phases), self.state.ed_frame,
                                               self.state.es_frame)  # as typed: checked there
        except InputError as e:
            self.fail(f"Segment: {e}")
            return

        def apply(result):
            for shown in self.scene.GetNodesByClass("vtkMRMLSegmentationNode"):  # the new result alone
                if shown.GetDisplayNode() is not None:
                    shown.GetDisplayNode().SetVisibility(False)
            segmentations, _ = SegmentLogic.apply(result, node)
            for other in segmentations[1:]:
                other.GetDisplayNode().SetVisibility(False)
            if node.IsA("vtkMRMLSequenceNode"):  # a cine: the frame of the first result (ED) under it
                self.app.display_manager.show_volume_in_slice_background(mrml.show_frame(node, result.phases[0].frame))
            for view in self.app.view_manager.get_threed_views():  # fitted to the new segmentation
                view.reset_view()
            self.state.encode_source = segmentations[0].GetID()  # the Shape Explorer encodes the new result
            self.state.results = result.rows()
            self.state.curve = ", ".join(f"{v:.0f}" for v in result.volume_curve_ml)
            self.state.rv_curve = ", ".join(f"{v:.0f}" for v in result.rv_volume_curve_ml)
            self.state.status = result.summary(SegmentLogic.against_expert(result, node))

        await self._run(self.segment.compute, (frames, self.state.seg_model, self.state.device, ed, es), apply,
                        "Segment", cleanup=bool(self.state.clean_up),
                        close_myocardium=bool(self.state.close_myocardium), correct=bool(self.state.correct),
                        tta=bool(self.state.tta), orient=bool(self.state.orient))

    async def run_superresolve(self):
        try:
            node = self._node(self.state.sr_input)
            frames = SuperResolveLogic.read_input(node)
        except InputError as e:
            self.fail(f"SuperResolve: {e}")
            return

        def apply(hr):
            out = SuperResolveLogic.apply(hr, node, self.state.sr_model)
            self.show(SuperResolveLogic.shown(out))  # a cine's: its HR frames, played along with it
            notes = self.resolve.caveats(frames[0], self.state.sr_model, self.state.device)
            size = "x".join(map(str, hr[0].shape))
            self.state.status = (f"Super-resolved: {out.GetName()} ({f'{len(hr)} frames of ' if len(hr) > 1 else ''}"
                                 f"{size}).") + "".join(f" Note: {n}." for n in notes)

        await self._run(self.resolve.compute, (frames, self.state.sr_model, self.state.device), apply, "SuperResolve")

    # --- shape explorer --------------------------------------------------------------------

    def load_shape_model(self):
        try:
            self.explorer.load(self.state.shape_model, "cpu")
        except InputError as e:
            self.fail(f"Shape model: {e}")
            return
        sliders = self.explorer.sliders(SLIDERS)
        for node in self.scene.GetNodesByClass("vtkMRMLSegmentationNode"):  # the explored shape alone
            if node is not self.shape_node and node.GetDisplayNode() is not None:
                node.GetDisplayNode().SetVisibility(False)
        with self.state:
            self.state.sliders = [{"i": i, "dim": s.dim, "min": s.range[0], "max": s.range[1],
                                   "step": (s.range[1] - s.range[0]) / 100} for i, s in enumerate(sliders)]
            self._sync_sliders()
            self.state.shape_loaded = True
            self._decode()
            self.refresh_lists()
            self.say(f"Loaded {self.state.shape_model}: its mean shape, the sliders on its {len(sliders)} most used "
                     "dimensions.")

    def _sync_sliders(self):
        self._syncing = True
        for s in self.state.sliders:
            self.state[f"z{s['i']}"] = float(self.explorer.code[s["dim"]])
        self.state.flush()
        self._syncing = False

    def _slider_changed(self, i):
        def changed(**kwargs):
            if getattr(self, "_syncing", False) or not self.state.shape_loaded or i >= len(self.state.sliders):
                return
            self.explorer.set_value(self.state.sliders[i]["dim"], float(kwargs[f"z{i}"]))
            self._decode()
        return changed

    def _decode(self):
        first = self.shape_node is None or self.scene.GetNodeByID(self.shape_node.GetID()) is None
        self.shape_node = self.explorer.update(None if first else self.shape_node, self.scene, "ACNN shape")
        self.state.shape_voxels = int(np.count_nonzero(self.explorer.last_labels.array))
        self.state.shape_ms = round(self.explorer.last_update_ms)
        self.state.shape_verdict = self.explorer.last_verdict
        if first:
            for view in self.app.view_manager.get_views():
                view.reset_view()

    def reset_shape(self):
        if self.state.shape_loaded:
            self.explorer.reset()
            self._sync_sliders()
            self._decode()

    def encode_shape(self):
        try:
            if not self.state.shape_loaded:
                raise InputError("load a shape model first")
            node, which = self._node(self.state.encode_source), ""
            if node.IsA("vtkMRMLSequenceNode"):  # a cine's segmentation of every frame: the frame shown
                browser = mrml.browser_of(node)
                frame = browser.GetSelectedItemNumber() if browser is not None else 0
                which = f", frame {frame_number(frame)} of {node.GetNumberOfDataNodes()}"
                self.explorer.encode_segmentation(node.GetNthDataNode(frame))
            elif node.IsA("vtkMRMLSegmentationNode"):
                self.explorer.encode_segmentation(node)
            else:
                self.explorer.encode_image(node)
            self._sync_sliders()
            self._decode()
            for view in self.app.view_manager.get_views():  # the shape now lies where the encoded one did
                view.reset_view()
            self.say(f"Encoded {node.GetName()}{which}.")
        except InputError as e:
            self.fail(f"Encode: {e}")

    # --- UI --------------------------------------------------------------------------------

    def _build_ui(self):
        with VAppLayout(self.server, fill_height=True) as self.ui:
            with v3.VAppBar(density="compact"):
                v3.VAppBarTitle("ACNN Studio")
                v3.VFileInput(v_model=("upload", None), label="Open image, segmentation, DICOM or .mrb",
                              multiple=True, density="compact", hide_details=True, style="max-width: 400px",
                              classes="mx-2", prepend_icon="mdi-folder-open", id="upload")
                v3.VTextField(v_model=("save_dir",), label="Save folder", density="compact", hide_details=True,
                              readonly=not self.save_anywhere, id="save-dir",
                              style="max-width: 320px", classes="mx-2")
                v3.VBtn("Save results", click=self.save_results, id="save", variant="tonal")
                # the same files zipped, to the browser's downloads (a studio served from another machine)
                v3.VBtn("Download", prepend_icon="mdi-download", variant="tonal", classes="ml-2", id="download",
                        click=f"trigger('download_results').then(z => z && utils.download('{DOWNLOAD}', z, "
                              "'application/zip'))")
            with v3.VNavigationDrawer(width=400, permanent=True):
                with html.Div(style="position: sticky; top: 0; z-index: 10; background: white;"):
                    v3.VAlert(v_if=("error",), text=("error",), type="error", density="compact", closable=True,
                              classes="ma-2", id="error")
                    v3.VProgressLinear(model_value=("progress",), active=("busy || loading",), color="primary",
                                       indeterminate=("loading && !busy",), id="progress")
                    html.Div("{{ status }}", classes="text-caption pa-2", id="status")
                    with html.Div(v_if=("frames > 1",), id="frame", classes="mx-3"):  # the cine shown's frames
                        v3.VSlider(v_model=("frame",), min=0, max=("frames - 1",), step=1, density="compact",
                                   label=("'Frame ' + (frame + 1) + ' of ' + frames",), hide_details=True)
                with v3.VExpansionPanels(multiple=True, v_model=("panels", [0, 2])):  # kept open as the user left them
                    self._segment_panel()
                    self._superresolve_panel()
                    self._shape_panel()
                    with v3.VExpansionPanel(title="Scene"):
                        with v3.VExpansionPanelText():
                            html.Div("Volumes", classes="text-subtitle-2")
                            with v3.VList(density="compact", id="volumes"):
                                with v3.VListItem(v_for="v in inputs", key="v.value", title=("v.title",),
                                                  classes="volume-item"):
                                    self._item_buttons("v", "v.value === shown", self.show_node,
                                                       "Show in the slice views")
                            html.Div("Segmentations", classes="text-subtitle-2")
                            with v3.VList(density="compact", id="segments"):
                                with v3.VListItem(v_for="s in segmentations", key="s.value", title=("s.title",),
                                                  subtitle=("s.segments",), classes="segment-item"):
                                    self._item_buttons("s", "s.visible", self.toggle_visibility, "Show or hide")
            with v3.VDialog(v_model=("remove_dialog",), max_width=440):
                with v3.VCard(title="Remove from the scene", id="remove-dialog"):
                    v3.VCardText("{{ remove_question }}", id="remove-question")
                    with v3.VCardActions():
                        v3.VSpacer()
                        v3.VBtn("Keep", click="remove_dialog = false", id="remove-keep")
                        v3.VBtn("Remove", click=self.remove, color="error", id="remove-confirm")
            with v3.VMain():
                with html.Div(style="position: relative; width: 100%; height: calc(100vh - 48px);", id="views"):
                    self.layout_manager.initialize_layout_grid(self.ui)

    def _item_buttons(self, item: str, shown: str, eye, eye_title: str):
        """A Scene list item's eye (open where ``shown``; clicked: ``eye(the node's ID)``) and remove button."""
        with v3.Template(v_slot_append=True):
            v3.VBtn(icon=(f"{shown} ? 'mdi-eye' : 'mdi-eye-off-outline'",), size="small", variant="text",
                    density="compact", click=(eye, f"[{item}.value]"), classes="eye", title=eye_title)
            v3.VBtn(icon="mdi-close", size="small", variant="text", density="compact", disabled=("busy",),
                    click=(self.ask_remove, f"[{item}.value]"), classes="remove", title="Remove from the scene")

    def _device_and_model(self, models, model):
        v3.VSelect(v_model=(model,), items=(models,), label="Model", density="compact")
        v3.VSelect(v_model=("device",), items=(["auto", "cpu", "cuda"],), label="Device", density="compact")

    def _run_buttons(self, run, button_id, needs: str):
        """Run (enabled once the state ``needs``, the input, is chosen, and nothing runs) and Cancel."""
        with html.Div(classes="d-flex ga-2"):
            v3.VBtn("Run", click=run, disabled=(f"busy || !{needs}",), color="primary", id=button_id)
            v3.VBtn("Cancel", click=self.cancel, disabled=("!busy",), id=f"{button_id}-cancel")

    def _segment_panel(self):
        with v3.VExpansionPanel(title="Segment"):
            with v3.VExpansionPanelText():
                v3.VSelect(v_model=("seg_input",), items=("inputs",), label="Short-axis stack or cine",
                           density="compact")
                v3.VBtn("Phantom demo", click=self.load_demo, disabled=("busy",), id="demo", size="small",
                        variant="tonal", classes="mb-4", title="An unseen phantom subject: ED, ES and the two as "
                        "a cine, to segment at once")
                self._device_and_model("seg_models", "seg_model")
                v3.VCheckbox(v_model=("clean_up",), density="compact", hide_details=True,
                             label="Clean up: each structure's largest connected part, LV blood pool without holes")
                v3.VCheckbox(v_model=("close_myocardium",), density="compact", hide_details=True,
                             label="Close the myocardium: the clean-up, and the ring closed where it is open")
                v3.VCheckbox(v_model=("correct",), density="compact", hide_details=True,
                             label="Correct with the shape model: an implausible output made plausible")
                v3.VCheckbox(v_model=("tta",), density="compact", hide_details=True,
                             label="Test-time augmentation: the network's output averaged over nine views")
                v3.VCheckbox(v_model=("orient",), density="compact", hide_details=True, id="orient",
                             label="Find the in-plane orientation: the surest of eight turns and mirrorings")
                v3.VCheckbox(v_model=("detect_phases",), density="compact", hide_details=True, id="detect-phases",
                             label="Find ED and ES from the LV volume curve")
                with html.Div(v_if=("!detect_phases",), classes="d-flex ga-2 mb-2"):  # else the frames, from 1
                    for key, phase in (("ed_frame", "ED"), ("es_frame", "ES")):
                        v3.VTextField(v_model_number=(key,), type="number", min=1, label=f"{phase} frame (from 1)",
                                      density="compact", hide_details=True, id=key.replace("_", "-"))
                self._run_buttons(self.run_segment, "segment", "seg_input")
                # seven columns in the panel's width: small type, narrow cells
                with v3.VTable(density="compact", v_if=("results.length",), id="results", classes="text-caption"):
                    with html.Thead():
                        with html.Tr():
                            for h, key in RESULT_COLUMNS:
                                html.Th(h, v_if=f"results.some(r => r['{key}'] != null)",  # columns with values
                                        classes="px-1")
                    with html.Tbody():
                        with html.Tr(v_for="r in results", key="r.Phase"):
                            for _, key in RESULT_COLUMNS:
                                html.Td(f"{{{{ r['{key}'] }}}}", v_if=f"results.some(r => r['{key}'] != null)",
                                        classes="px-1")
                html.Div("LV blood pool per frame (ml): {{ curve }}", v_if=("curve",), id="curve",
                         classes="text-caption mt-1")
                html.Div("RV blood pool per frame (ml): {{ rv_curve }}", v_if=("rv_curve",), id="rv-curve",
                         classes="text-caption")

    def _superresolve_panel(self):
        with v3.VExpansionPanel(title="SuperResolve"):
            with v3.VExpansionPanelText():
                v3.VSelect(v_model=("sr_input",), items=("inputs",), label="Short-axis stack or cine",
                           density="compact", id="sr-input")
                self._device_and_model("sr_models", "sr_model")
                self._run_buttons(self.run_superresolve, "superresolve", "sr_input")

    def _shape_panel(self):
        with v3.VExpansionPanel(title="Shape Explorer"):
            with v3.VExpansionPanelText():
                v3.VSelect(v_model=("shape_model",), items=("shape_models",), label="Shape model (AE or T-L)",
                           density="compact")
                v3.VBtn("Load shape model", click=self.load_shape_model, id="load-shape", classes="mb-2")
                with html.Div(v_if=("shape_loaded",)):
                    for i in range(SLIDERS):
                        v3.VSlider(v_if=(f"sliders.length > {i}",), v_model=(f"z{i}",),
                                   min=(f"sliders[{i}] ? sliders[{i}].min : 0",),
                                   max=(f"sliders[{i}] ? sliders[{i}].max : 1",),
                                   step=(f"sliders[{i}] ? sliders[{i}].step : 0.01",),
                                   label=(f"'z' + (sliders[{i}] ? sliders[{i}].dim : '')",),
                                   density="compact", hide_details=True, classes="latent-slider", id=f"slider-{i}")
                    html.Div("decoded: {{ shape_voxels }} voxels in {{ shape_ms }} ms; {{ shape_verdict }}",
                             id="shape-info",
                             classes="text-caption")
                    with html.Div(classes="d-flex ga-2 mt-2"):
                        v3.VBtn("Reset to mean", click=self.reset_shape, id="reset-shape")
                    v3.VSelect(v_model=("encode_source",), items=("segmentations.concat(volumes)",),
                               label="Encode a segmentation (or, T-L, an image)", density="compact", classes="mt-2")
                    v3.VBtn("Encode", click=self.encode_shape, id="encode-shape", disabled=("!encode_source",))


def _loaded(names: list[str], left_out: list[str]) -> str:
    """The status once files are loaded: their names, then what was left out (the warnings logged meanwhile)."""
    return " ".join([f"Loaded {', '.join(names)}.", *(m + "." for m in left_out)])


def _import_scene(path: Path, scene) -> list:
    """:func:`mrml.import_scene`, its results marked saved (``SAVED``) where they were not: they are in the
    scene file, and removing them loses nothing."""
    nodes = mrml.import_scene(path, scene)
    for node in nodes:
        if node.GetAttribute("ACNN.Model") is not None and node.GetAttribute(SAVED) is None:
            node.SetAttribute(SAVED, str(path))
    return nodes


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def _shown_folder(path: Path) -> str:
    """A folder as the Save folder field shows it: ``~/...`` under the user's home (where a user types ``~``
    too: saving expands it), else as it is."""
    try:
        return str(Path("~") / path.resolve().relative_to(Path.home().resolve()))
    except (ValueError, RuntimeError):  # outside the home, or no home
        return str(path)


def _free(path: Path) -> Path:
    """``path``, or ``path`` with -1, -2... before its suffix if it exists: nothing is overwritten."""
    if not path.exists():
        return path
    suffix = next((s for s in (".seg.nrrd", ".nii.gz") if path.name.endswith(s)), path.suffix)
    stem = path.name[: len(path.name) - len(suffix)]
    n = 1
    while (path.parent / f"{stem}-{n}{suffix}").exists():
        n += 1
    return path.parent / f"{stem}-{n}{suffix}"


def main(data=None, host: str = "127.0.0.1", port: int = 8080, demo: bool = False, open_browser: bool = False,
         output_dir=None, models=()) -> int:
    # served beyond loopback: the save folder is --output's, not one a visitor names
    studio = Studio(output_dir=output_dir, save_anywhere=host in LOOPBACK, models=models)
    if demo:
        studio.load_demo()
    if data:
        studio.load(data)
    print(f"ACNN Studio: http://{host}:{port}/", flush=True)
    if not studio.save_anywhere:
        print(f"Served beyond this machine: results save to {studio.output_dir} only (or Download them).",
              flush=True)
    if hasattr(signal, "SIGHUP"):  # a hang-up (the terminal or SSH session closed) stops it as Ctrl+C does:
        signal.signal(signal.SIGHUP, signal.default_int_handler)  # the uploaded files deleted, not left behind
    try:
        studio.server.start(host=host, port=port, open_browser=open_browser, show_connection_info=False)
    finally:
        studio.close()
    return 0
