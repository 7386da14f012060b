"""The modules' Apply button (``ACNNSlicerLib.gui.BackgroundRun``): enabled once there is an input, Cancel while
a run is in its worker thread, Apply again after it; and the widgets' parameter node bound to their GUI once, as
the scene changes (``ACNNSlicerLib.gui.module_widget_base``). PythonQt and the module widget exist inside Slicer
only: stand-ins for them record what the widget does with them; the run itself is a real worker thread, the
scene a real MRML scene."""

import threading
import types

import pytest

from .conftest import gui_with


class Connectable:
    def __init__(self):
        self.slots = {}

    def connect(self, signal, slot):
        self.slots[signal] = slot


class Button(Connectable):
    text, enabled = "Apply", True

    def click(self):
        self.slots["clicked(bool)"]()


class Timer(Connectable):
    running = False

    def setInterval(self, ms):
        pass

    def start(self):
        self.running = True

    def stop(self):
        self.running = False


@pytest.fixture
def gui(monkeypatch):
    """``ACNNSlicerLib.gui`` imported with a stand-in ``qt`` (its QTimer)."""
    return gui_with(monkeypatch, types.SimpleNamespace(QTimer=Timer))


def test_apply_waits_for_an_input_and_cancel_is_always_there(gui):
    from ACNNSlicerLib import BackgroundTask

    chosen, release, applied = [], threading.Event(), []
    button, bar, label = Button(), types.SimpleNamespace(setValue=lambda v: None), types.SimpleNamespace(text="")
    run = gui.BackgroundRun(button, bar, label, lambda: BackgroundTask(lambda progress, cancelled: release.wait(10)),
                            lambda result: applied.append(result) or "Done.", "Segment",
                            can_start=lambda: bool(chosen))
    assert not button.enabled  # no input yet: nothing to apply to
    chosen.append("a volume node")
    run.update()  # what the input selector's currentNodeChanged calls
    assert button.enabled
    button.click()
    assert button.text == "Cancel" and button.enabled and run.timer.running
    chosen.clear()  # the input removed while it runs: Cancel stays clickable
    run.update()
    assert button.enabled
    release.set()
    run.task.wait(10)
    run.poll()
    assert applied == [True] and label.text == "Done." and button.text == "Apply"
    assert not button.enabled and not run.timer.running  # back to Apply, and no input left


def test_a_result_that_cannot_be_added_fails_once_and_leaves_apply_ready(gui, monkeypatch):
    """Adding the result to the scene fails (its input removed while the network ran): said once, Apply again;
    the timer polls no more (it used to call the failing ``apply`` every 100 ms)."""
    import slicer

    from ACNNCore.errors import InputError
    from ACNNSlicerLib import BackgroundTask

    shown, applied = [], []
    monkeypatch.setattr(slicer.util, "errorDisplay", shown.append, raising=False)

    def apply(result):
        applied.append(result)
        raise InputError("stack was removed from the scene while it was segmented: nothing was added")

    button, bar, label = Button(), types.SimpleNamespace(setValue=lambda v: None), types.SimpleNamespace(text="")
    run = gui.BackgroundRun(button, bar, label, lambda: BackgroundTask(lambda progress, cancelled: "labels"),
                            apply, "Segment")
    button.click()
    run.task.wait(10)
    for _ in range(3):  # the timer's next ticks
        run.poll()
    assert applied == ["labels"] and shown == ["stack was removed from the scene while it was segmented: nothing "
                                               "was added"]
    assert label.text == "Failed." and button.text == "Apply" and not run.timer.running


class Wrapper:
    """A parameterNodeWrapper's binding to the GUI (``connectGui`` / ``disconnectGui``), recorded in ``bound``."""

    bound: dict = {}

    def __init__(self, node):
        self.parameterNode, self.model = node, "acnn-seg-phantom"

    def connectGui(self, ui):
        tag = object()
        Wrapper.bound[tag] = self.parameterNode
        return tag

    def disconnectGui(self, tag):
        Wrapper.bound.pop(tag, None)


def widget_class(monkeypatch, gui, scene):
    """A Segment-like widget class on :func:`ACNNSlicerLib.gui.run_widget_base`, over a real scene: stand-ins for
    Slicer's module widget and the .ui's widgets, the dependency question answered yes and counted."""
    import sys

    import slicer

    class ModuleWidget:  # slicer.ScriptedLoadableModule's, as the base uses it
        def __init__(self, parent=None):
            self.parent = parent

        def setup(self):
            self.layout = types.SimpleNamespace(addWidget=lambda widget: None)

        def resourcePath(self, path):
            return path

    class Combo(Connectable):
        currentText = ""

        def clear(self):
            self.items = []

        def addItems(self, items):
            self.items += items

        def addItem(self, item):
            self.items.append(item)

        def setCurrentText(self, text):
            self.currentText = text

    chosen = []
    ui = types.SimpleNamespace(
        inputSelector=types.SimpleNamespace(connect=lambda *a: None,
                                            currentNode=lambda: chosen[-1] if chosen else None),
        modelComboBox=Combo(), browseModelButton=Connectable(), applyButton=Button(),
        progressBar=types.SimpleNamespace(setValue=lambda v: None), statusLabel=types.SimpleNamespace(text=""))
    monkeypatch.setitem(sys.modules, "slicer.ScriptedLoadableModule",
                        types.SimpleNamespace(ScriptedLoadableModuleWidget=ModuleWidget))
    form = types.SimpleNamespace(scene=None)  # the .ui's top widget
    form.setMRMLScene = lambda scene: setattr(form, "scene", scene)
    monkeypatch.setattr(slicer.util, "loadUI", lambda path: form if path == "UI/Segment.ui" else None)
    monkeypatch.setattr(slicer.util, "childWidgetVariables", lambda widget: ui if widget is form else None)
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    asked = []
    from ACNNSlicerLib import dependencies

    monkeypatch.setattr(dependencies, "ensure", lambda ask: asked.append(ask) or True)
    monkeypatch.setattr(Wrapper, "bound", {})

    class Logic:
        def getParameterNode(self):  # the module's singleton parameter node: a new one after the scene is closed
            return scene.GetFirstNodeByName("ACNN Segment") or scene.AddNewNodeByClass(
                "vtkMRMLScriptedModuleNode", "ACNN Segment")

    class Widget(gui.run_widget_base()):
        UI, TITLE = "Segment.ui", "Segment"

        def parameter_node(self, node):
            return Wrapper(node)

        def module_logic(self):
            return Logic()

        def model_names(self):
            return ["acnn-seg-phantom", "acnn-seg-acdc"]

        def _start(self):
            from ACNNSlicerLib import BackgroundTask

            self.release = threading.Event()
            return BackgroundTask(lambda progress, cancelled: self.release.wait(10))

        def _apply(self, result):
            return "Done."

    return Widget, form, ui, chosen, asked


def test_the_parameter_node_is_bound_to_the_gui_once_and_follows_the_scene(monkeypatch, gui, scene):
    """As Slicer's module template: bound once on entering (a binding per visit would pile up connections, and
    one left on a closed scene's node writes its old values back into the GUI), unbound on leaving, bound to the
    new scene's node after a close while the module is shown, and a run in progress cancelled by the close."""
    Widget, form, ui, chosen, asked = widget_class(monkeypatch, gui, scene)
    widget = Widget(types.SimpleNamespace(isEntered=False))
    widget.setup()
    assert form.scene is scene  # which the .ui passes on to its MRML widgets
    first = widget._parameterNode.parameterNode
    assert list(Wrapper.bound.values()) == [first] and ui.modelComboBox.items == widget.model_names()
    widget.parent.isEntered = True
    for _ in range(3):  # entered, left and entered again: one binding at a time
        widget.enter()
        assert list(Wrapper.bound.values()) == [first]
        widget.exit()
        assert Wrapper.bound == {}
    widget.enter()
    chosen.append("a volume node")
    widget.run.update()
    ui.applyButton.click()
    assert ui.applyButton.text == "Cancel"

    scene.Clear(0)  # File > Close scene while the module is shown and a run is going
    assert widget.run.task is None and ui.applyButton.text == "Apply" and ui.statusLabel.text == "Cancelled."
    now = widget._parameterNode.parameterNode
    assert list(Wrapper.bound.values()) == [now] and now is not first and scene.IsNodePresent(now)

    widget.exit()
    widget.parent.isEntered = False
    questions = len(asked)
    scene.Clear(0)  # closed while another module is shown: nothing bound, nothing asked until it is entered
    assert Wrapper.bound == {} and widget._parameterNode is None and len(asked) == questions
    assert not ui.applyButton.enabled  # no parameter node to run with
    widget.parent.isEntered = True
    widget.enter()
    assert list(Wrapper.bound.values()) == [widget._parameterNode.parameterNode] and ui.applyButton.enabled
    widget.cleanup()
