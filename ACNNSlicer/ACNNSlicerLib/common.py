"""What the three logics share: model lists, devices, progress and cancellation."""

from __future__ import annotations

import logging
from typing import Callable

from ACNNCore.bundle import available, read_meta, resolve

log = logging.getLogger("ACNN")

Progress = Callable[[float, str], None]  # (fraction done 0..1, message)


class Cancelled(Exception):
    """The user cancelled a run; nothing was added to the scene."""


def models_for(*tasks: str) -> list[str]:
    """Names of the bundled models of the given tasks (``seg``, ``sr``, ``ae``, ``tl``)."""
    return [name for name in available() if read_meta(resolve(name)).get("task") in tasks]


def device_for(choice: str) -> str:
    """``auto``/``cpu``/``cuda``; ``cuda`` without a GPU falls back to the CPU with a warning (anything else is
    refused by ACNNCore when the model loads)."""
    import torch

    if choice == "cuda" and not torch.cuda.is_available():
        log.warning("no CUDA device: running on the CPU")
        return "cpu"
    return choice


def cached(cache: dict, kind, model: str, device: str, **options):
    """One loaded model per (model, device, options): ``kind(model, device, **options)`` the first time, the
    same one after."""
    key = (str(model), device_for(device), *sorted(options.items()))
    if key not in cache:
        cache[key] = kind(model, key[1], **options)
    return cache[key]


def step(progress: Progress | None, cancelled: Callable[[], bool] | None, fraction: float, message: str) -> None:
    """Report progress, and stop with :class:`Cancelled` if the user asked to."""
    if cancelled is not None and cancelled():
        raise Cancelled("cancelled")
    if progress is not None:
        progress(fraction, message)


class LoggedWarnings(logging.Handler):
    """``with LoggedWarnings() as told:`` the warnings ACNNCore and ACNNSlicerLib log meanwhile, from any thread (a
    DICOM folder's images of other orientations, screenshots or broken files left out, a scene file's nodes of
    classes no module here makes ...), in ``told.messages``, for a front end to show beside what it loaded."""

    LOGGERS = ("ACNNCore", "ACNNSlicerLib")

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())

    def __enter__(self):
        for name in self.LOGGERS:
            logging.getLogger(name).addHandler(self)
        return self

    def __exit__(self, *_):
        for name in self.LOGGERS:
            logging.getLogger(name).removeHandler(self)


class BackgroundTask:
    """Runs ``fn(*args, progress=..., cancelled=..., **kwargs)`` in a worker thread, so that a GUI stays
    responsive: poll ``done`` (a QTimer in Slicer, the event loop in the studio), read ``progress``,
    ``result`` or ``error``; ``cancel()`` asks ``fn`` to stop at its next step. ``fn`` must not touch the
    scene: results are applied on the main thread once ``done``."""

    def __init__(self, fn, *args, **kwargs):
        import threading

        self.progress: tuple[float, str] = (0.0, "starting")
        self.result = None
        self.error: BaseException | None = None
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(fn, args, kwargs), daemon=True)
        self._thread.start()

    def _run(self, fn, args, kwargs):
        try:
            self.result = fn(*args, progress=self._report, cancelled=self._cancel.is_set, **kwargs)
        except BaseException as e:  # handed to the main thread
            self.error = e

    def _report(self, fraction: float, message: str) -> None:
        self.progress = (float(fraction), message)

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def wait(self, timeout: float | None = None):
        """Block until done; the result, or the worker's exception raised here."""
        self._thread.join(timeout)
        if self.error is not None:
            raise self.error
        return self.result
