"""Each module's self-test, what Slicer's "Reload and Test" runs, run here on the Slicer core from PyPI: the
module files imported over stand-ins for what only the Slicer application has (its scripted-module base
classes, PythonQt, the parameter node wrapper), the tests' bodies on a real scene with the bundled models."""

import importlib.util
import sys
import types
import unittest
from pathlib import Path

import pytest

from .conftest import gui_with

MODULES = Path(__file__).resolve().parents[2] / "ACNNSlicer"


class ScriptedLoadableModule:
    def __init__(self, parent):
        self.parent = parent


class ScriptedLoadableModuleWidget:
    pass


class ScriptedLoadableModuleTest(unittest.TestCase):
    def delayDisplay(self, message, msec=None):
        self.shown = [*getattr(self, "shown", []), message]


@pytest.fixture
def load_module(monkeypatch, scene):
    """``load_module(name)``: ACNNSlicer/<name>/<name>.py imported as inside Slicer, ``slicer.mrmlScene`` a real
    scene; everything put back when the test ends."""
    import slicer

    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    slots = {}  # the application's signals a module connects to, as it starts
    monkeypatch.setattr(slicer, "app", types.SimpleNamespace(slots=slots, connect=slots.__setitem__), raising=False)
    qt = types.SimpleNamespace(QTimer=lambda: types.SimpleNamespace(
        setSingleShot=lambda on: None, setInterval=lambda ms: None, connect=lambda *a: None))
    gui_with(monkeypatch, qt)
    monkeypatch.setitem(sys.modules, "ctk", types.SimpleNamespace())
    monkeypatch.setitem(sys.modules, "slicer.parameterNodeWrapper", types.SimpleNamespace(
        parameterNodeWrapper=lambda cls: cls, Choice=lambda choices: tuple(choices),
        WithinRange=lambda least, most: (least, most)))
    monkeypatch.setitem(sys.modules, "slicer.ScriptedLoadableModule", types.SimpleNamespace(
        ScriptedLoadableModule=ScriptedLoadableModule, ScriptedLoadableModuleLogic=object,
        ScriptedLoadableModuleWidget=ScriptedLoadableModuleWidget,
        ScriptedLoadableModuleTest=ScriptedLoadableModuleTest))

    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"acnn_selftest_{name}", MODULES / name / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.mark.parametrize("name", ["Segment", "SuperResolve", "ShapeExplorer"])
def test_each_module_s_self_test_passes(load_module, scene, name):
    module = load_module(name)
    described = getattr(module, name)(types.SimpleNamespace())  # the module as Slicer lists it
    assert described.parent.title == f"ACNN {name}" and described.parent.categories == ["Segmentation.ACNN"]
    assert "Oktay" in described.parent.acknowledgementText
    test = getattr(module, f"{name}Test")()
    scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "left from before")
    test.runTest()  # clears the scene first, as inside Slicer
    assert test.shown[-1].startswith("Test passed")
    assert scene.GetFirstNodeByName("left from before") is None


def test_the_segment_module_makes_results_in_scenes_loaded_follow_their_frame(load_module, scene):
    """Slicer's startup has the Segment module add ``mrml.follow_frames_on_load`` to the application's scene
    (what it does: ``test_a_saved_scene_s_cine_results_follow_the_frame_again_when_loaded``)."""
    import slicer

    load_module("Segment").Segment(types.SimpleNamespace())
    assert not scene.HasObserver(scene.EndImportEvent)
    slicer.app.slots["startupCompleted()"]()
    assert scene.HasObserver(scene.EndImportEvent)
