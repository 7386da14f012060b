"""The widgets' read in a worker thread (``ACNNSlicerLib.gui.read_in_background``, the Segment module's "DICOM
folder..."). PythonQt exists inside Slicer only: a stand-in for its busy dialog and event loop records what the
widget does with them; the read itself (DICOM files, MRML nodes) is real."""

import threading
import types

import numpy as np
import pytest

from ACNNCore.errors import InputError

from .conftest import gui_with


class BusyDialog:
    def __init__(self, cancel_after: int | None):
        self.cancel_after, self.events, self.shown, self.closed = cancel_after, 0, False, False

    def show(self):
        self.shown = True

    def close(self):
        self.closed = True

    @property
    def wasCanceled(self):
        return self.cancel_after is not None and self.events >= self.cancel_after


@pytest.fixture
def gui(monkeypatch):
    """``ACNNSlicerLib.gui`` imported with a stand-in ``qt`` and ``slicer.app``; ``gui.dialog(cancel_after=None)``
    sets the dialog the next read gets (cancelled by the user after that many event-loop turns)."""
    import slicer
    import slicer.util

    gui = gui_with(monkeypatch, types.ModuleType("qt"))
    dialogs = []

    def process_events():
        dialogs[-1].events += 1

    monkeypatch.setattr(slicer, "app", types.SimpleNamespace(processEvents=process_events), raising=False)
    monkeypatch.setattr(slicer.util, "createProgressDialog",
                        lambda **kwargs: dialogs[-1] if kwargs["maximum"] == 0 else None)
    gui.dialog = lambda cancel_after=None: dialogs.append(BusyDialog(cancel_after)) or dialogs[-1]
    return gui


def test_dicom_folder_read_while_the_application_stays_live(gui, scene, tmp_path, write_dicom, phantom_cine):
    from ACNNSlicerLib import mrml

    frames = phantom_cine(0, 7)
    folder = write_dicom(frames, tmp_path / "dicom")
    release = threading.Event()

    def read():  # held until the application has turned its event loop a few times
        assert release.wait(10)
        return mrml.read_dicom_nodes(folder)

    dialog = gui.dialog()
    threading.Timer(0.3, release.set).start()
    makers = gui.read_in_background(read, "Reading")
    assert dialog.shown and dialog.closed and dialog.events >= 3
    assert scene.GetNumberOfNodesByClass("vtkMRMLSequenceNode") == 0  # read, nothing added yet
    (seq,) = [make(scene=scene) for make in makers]
    assert seq.GetNumberOfDataNodes() == 2
    assert np.array_equal(mrml.volume_from_node(seq.GetNthDataNode(1)).array, frames[1].array)


def test_cancelled_read_returns_nothing_and_an_error_comes_through(gui, tmp_path):
    release = threading.Event()
    dialog = gui.dialog(cancel_after=2)
    assert gui.read_in_background(lambda: release.wait(10), "Reading") is None
    assert dialog.closed
    release.set()

    def broken():
        raise InputError(f"no DICOM files in {tmp_path}")

    dialog = gui.dialog()
    with pytest.raises(InputError, match="no DICOM files"):
        gui.read_in_background(broken, "Reading")
    assert dialog.closed


def test_what_a_dicom_read_leaves_out_is_told(gui, scene, tmp_path, write_dicom, phantom_cine):
    """The Segment module's "DICOM folder..." says in its status line what the read left out, logged by ACNNCore
    in the worker thread (``common.LoggedWarnings``): here a screenshot without a position and a copy of an
    image broken off in its header; the stack reads whole."""
    import pydicom

    from ACNNSlicerLib import mrml
    from ACNNSlicerLib.common import LoggedWarnings

    frames = phantom_cine(0, 7)
    folder = write_dicom(frames, tmp_path / "dicom")
    first = sorted(folder.iterdir())[0]
    screenshot = pydicom.dcmread(first)
    del screenshot.ImagePositionPatient, screenshot.ImageOrientationPatient
    screenshot.SeriesDescription = "report"
    screenshot.save_as(folder / "SC0001")
    (folder / "IM_COPY").write_bytes(first.read_bytes()[:600])
    gui.dialog()
    with LoggedWarnings() as told:
        makers = gui.read_in_background(lambda: mrml.read_dicom_nodes(folder), "Reading")
    (seq,) = [make(scene=scene) for make in makers]
    assert seq.GetNumberOfDataNodes() == 2
    assert f"{folder / 'IM_COPY'}: left out, an image whose header ends before its pixels (cut short?)" \
        in told.messages
    assert any("left out 1 image without a position (report in dicom)" in m for m in told.messages), told.messages
    with LoggedWarnings() as after:  # read again, files unchanged: the broken one was said already
        gui.dialog()
        gui.read_in_background(lambda: mrml.read_dicom_nodes(folder), "Reading")
    assert not any("IM_COPY" in m for m in after.messages)
