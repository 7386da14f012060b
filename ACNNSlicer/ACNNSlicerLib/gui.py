"""What the modules' widgets share (Qt; widgets only, never the logic): their parameter node bound to their
.ui as Slicer's module template binds it; for Segment and SuperResolve, a model picker, a run that goes to a
worker thread, polled by a QTimer, with Apply turning into Cancel, and a read in a worker thread behind a busy
dialog."""

from __future__ import annotations

import logging
import time

import qt
import slicer


class ModelPicker:
    """Fills a combo box with the bundled models of a task, plus bundle folders the user browses to."""

    def __init__(self, widget, combo, browse_button, on_change):
        self.widget, self.combo = widget, combo
        browse_button.connect("clicked(bool)", self.browse)
        combo.connect("currentTextChanged(QString)", lambda text: text and on_change(text))

    def fill(self, models: list[str], current: str):
        self.combo.clear()
        self.combo.addItems(models)
        if current and current not in models:
            self.combo.addItem(current)
        self.combo.setCurrentText(current)

    def browse(self):
        folder = qt.QFileDialog.getExistingDirectory(
            self.widget, "ACNN model bundle (a folder with model.json, or an ensemble's with ensemble.json)")
        if folder:
            self.combo.addItem(folder)
            self.combo.setCurrentText(folder)


class BackgroundRun:
    """Apply -> ``start()`` returns a :class:`ACNNSlicerLib.common.BackgroundTask` (or None after showing an
    error); while it runs the button reads Cancel and the progress bar and label follow it; when it is done,
    ``apply(result)`` runs on the main thread and returns the status line. Apply is enabled only while
    ``can_start()`` (an input is chosen; :meth:`update` when that may have changed), Cancel always."""

    def __init__(self, button, progress_bar, status_label, start, apply, name: str, can_start=lambda: True):
        self.button, self.bar, self.label = button, progress_bar, status_label
        self.start, self.apply, self.name, self.can_start = start, apply, name, can_start
        self.task = None
        self.timer = qt.QTimer()
        self.timer.setInterval(100)
        self.timer.connect("timeout()", self.poll)
        button.connect("clicked(bool)", self.clicked)
        self.update()

    def update(self):
        self.button.enabled = self.task is not None or bool(self.can_start())

    def clicked(self):
        if self.task is not None:  # the button reads Cancel
            self.cancel()
            return
        from ACNNCore.errors import InputError

        try:
            self.task = self.start()
        except InputError as e:
            slicer.util.errorDisplay(str(e))
            return
        if self.task is not None:
            self.button.text = "Cancel"
            self.bar.setValue(0)
            self.timer.start()
        self.update()

    def cancel(self):
        if self.task is not None:
            self.task.cancel()
        self.finish("Cancelled.")

    def poll(self):
        task = self.task
        if task is None:
            return
        fraction, message = task.progress
        self.bar.setValue(int(100 * fraction))
        self.label.text = message
        if not task.done:
            return
        self.task = None  # done: whatever follows, polled no more
        error = task.error
        if error is None:
            try:
                self.finish(self.apply(task.result))
                return
            except Exception as e:  # adding the result to the scene failed (its input removed meanwhile, say)
                error = e
        from ACNNCore.errors import InputError

        self.finish("Failed.")
        if isinstance(error, InputError):
            slicer.util.errorDisplay(str(error))
        elif not task.cancelled:
            logging.exception("ACNN %s failed", self.name, exc_info=error)
            slicer.util.errorDisplay(f"{self.name} failed: {error}")

    def finish(self, message: str):
        self.timer.stop()
        self.task = None
        self.button.text = "Apply"
        self.label.text = message
        self.update()


def center_3d_views():
    """The 3-D views centred on what they show (a new segmentation, a shape that moved); none without a layout."""
    layout = slicer.app.layoutManager()
    if layout is not None:
        layout.resetThreeDViews()


def read_in_background(read, label: str):
    """``read()`` (a read that touches no scene: ``mrml.read_dicom_nodes``, say) in a worker thread behind a busy
    dialog with Cancel, the application painted and live meanwhile; its result, or None if the user cancelled
    (the read is left to finish on its own and dropped: the scene is as it was). Its exception is raised here."""
    from ACNNSlicerLib import BackgroundTask

    task = BackgroundTask(lambda progress, cancelled: read())
    dialog = slicer.util.createProgressDialog(windowTitle="ACNN", labelText=label, maximum=0)  # a busy bar
    dialog.show()
    try:
        while not task.done:
            slicer.app.processEvents()
            if dialog.wasCanceled:
                task.cancel()
                return None
            time.sleep(0.05)
    finally:
        dialog.close()
    return task.wait()


def module_widget_base():
    """The base of the modules' widgets (made on first use: it needs the Slicer application): the module's .ui
    loaded into ``self.ui`` and given the scene (its top widget passes it on to its MRML widgets), and the
    module's parameter node bound to it as Slicer's module template binds one: on entering the module, once
    (the binding before it undone), unbound on leaving it, and bound anew to the new scene's node after the
    scene is closed, while the module is shown.

    A subclass names ``UI`` (its .ui file), ``parameter_node(node)`` (its parameterNodeWrapper around
    ``node``), ``module_logic()``, and may extend ``setParameterNode`` (what follows a new node)."""
    from slicer.ScriptedLoadableModule import ScriptedLoadableModuleWidget
    from slicer.util import VTKObservationMixin

    class ACNNModuleWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
        UI = ""

        def __init__(self, parent=None):
            ScriptedLoadableModuleWidget.__init__(self, parent)
            VTKObservationMixin.__init__(self)
            self.logic = None
            self._parameterNode = None
            self._parameterNodeGuiTag = None

        def setup(self):
            ScriptedLoadableModuleWidget.setup(self)
            form = slicer.util.loadUI(self.resourcePath(f"UI/{self.UI}"))
            self.layout.addWidget(form)
            self.ui = slicer.util.childWidgetVariables(form)
            form.setMRMLScene(slicer.mrmlScene)  # the .ui passes it on to its MRML widgets (mrmlSceneChanged)
            self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
            self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        def cleanup(self):
            self.removeObservers()

        def enter(self):
            self.initializeParameterNode()

        def exit(self):
            self._unbindGui()  # the GUI follows the parameter node again on entering

        def onSceneStartClose(self, caller=None, event=None):
            self.setParameterNode(None)

        def onSceneEndClose(self, caller=None, event=None):
            if self.parent.isEntered:
                self.initializeParameterNode()

        def initializeParameterNode(self):
            """The module's parameter node bound to the GUI, once the libraries ACNN needs are there."""
            from ACNNSlicerLib import dependencies

            if not dependencies.ensure(ask=True):
                return
            if self.logic is None:
                self.logic = self.module_logic()
            self.setParameterNode(self.parameter_node(self.logic.getParameterNode()))

        def setParameterNode(self, node):
            self._unbindGui()
            self._parameterNode = node
            if node is not None:
                self._parameterNodeGuiTag = node.connectGui(self.ui)

        def _unbindGui(self):
            if self._parameterNode is not None and self._parameterNodeGuiTag is not None:
                self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None

    return ACNNModuleWidget


def run_widget_base():
    """The base of the Segment and SuperResolve widgets: :func:`module_widget_base`'s, with a model picker
    and Apply run in a worker thread (:class:`BackgroundRun`), cancelled when the scene is closed under it.

    A subclass also names ``TITLE``, ``model_names()``, and implements ``_start()`` (-> BackgroundTask) and
    ``_apply(result)`` (-> status line)."""

    class ACNNRunWidget(module_widget_base()):
        TITLE = ""

        def setup(self):
            super().setup()
            self.models = ModelPicker(self.parent, self.ui.modelComboBox, self.ui.browseModelButton,
                                      self._modelChanged)
            self.run = BackgroundRun(self.ui.applyButton, self.ui.progressBar, self.ui.statusLabel, self._start,
                                     self._apply, self.TITLE, can_start=lambda: (
                                         self._parameterNode is not None
                                         and self.ui.inputSelector.currentNode() is not None))
            self.ui.inputSelector.connect("currentNodeChanged(vtkMRMLNode*)", lambda node: self.run.update())
            self.initializeParameterNode()

        def cleanup(self):
            self.run.cancel()
            super().cleanup()

        def onSceneStartClose(self, caller=None, event=None):
            if self.run.task is not None:  # its input and outputs' scene is going
                self.run.cancel()
            super().onSceneStartClose(caller, event)

        def setParameterNode(self, node):
            super().setParameterNode(node)
            if node is not None:
                self.models.fill(self.model_names(), node.model)
            self.run.update()

        def _modelChanged(self, text):
            if self._parameterNode:
                self._parameterNode.model = text

    return ACNNRunWidget
