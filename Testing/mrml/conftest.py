"""The Slicer core from PyPI (``slicer-core``), offscreen; a fresh MRML scene per test."""

import os

import pytest

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
slicer = pytest.importorskip("slicer", reason="slicer-core is not installed (pip install -e '.[test]')")


@pytest.fixture
def scene():
    from ACNNSlicerLib.mrml import new_scene

    return new_scene()


@pytest.fixture(scope="session")
def subject():
    """An unseen phantom subject (2 mm slice motion): ED and ES LR stacks, HR truth."""
    from ACNNCore.phantom.population import PhantomConfig, generate_subject, with_motion

    return generate_subject(3, 4242, with_motion(PhantomConfig(), 2.0))


def node_ids(scene):
    from ACNNSlicerLib.mrml import nodes_of

    return [n.GetID() for n in nodes_of(scene)]


def gui_with(monkeypatch, qt):
    """``ACNNSlicerLib.gui`` imported afresh over a stand-in ``qt`` module (PythonQt exists inside Slicer only),
    what was there before put back when the test ends: never the copy another test imported over its own
    stand-in (the package keeps its submodule as an attribute, which ``from ACNNSlicerLib import gui`` returns)."""
    import importlib
    import sys

    import ACNNSlicerLib

    monkeypatch.setitem(sys.modules, "qt", qt)
    monkeypatch.delitem(sys.modules, "ACNNSlicerLib.gui", raising=False)
    monkeypatch.delattr(ACNNSlicerLib, "gui", raising=False)
    gui = importlib.import_module("ACNNSlicerLib.gui")
    monkeypatch.setattr(ACNNSlicerLib, "gui", gui, raising=False)  # undone with the rest
    return gui
