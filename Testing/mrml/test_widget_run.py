"""The modules' Apply button (``ACNNSlicerLib.gui.BackgroundRun``): enabled once there is an input, Cancel while
a run is in its worker thread, Apply again after it. PythonQt exists inside Slicer only: stand-ins for the
button and the timer record what the widget does with them; the run itself is a real worker thread."""

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
