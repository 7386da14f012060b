"""Errors a user can act on.

Everything that is the user's input's fault (a missing file, a 2-D image, NaN
voxels) raises :class:`InputError` with a one-line message, an output that is
there already :class:`OutputExists` (one of them: a GUI asks and tries again);
a training that cannot go on (no step of an epoch had a finite gradient)
raises :class:`TrainingError`, whose message says what to change. The command
line prints either without a traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input from the user: the message says what and where, in one line."""


class TrainingError(RuntimeError):
    """A training that cannot go on: the message says why and what to change, in one line."""


class OutputExists(InputError):
    """An output that is there already, refused unless the caller asks to replace it: the command line's
    ``--overwrite``; a GUI asks its user (about :attr:`path`) and tries again with ``overwrite=True``."""

    def __init__(self, path, message: str | None = None):
        self.path = path
        super().__init__(message or f"{path} exists; pass --overwrite to replace it")
