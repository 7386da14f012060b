"""Errors a user can act on.

Everything that is the user's input's fault (a missing file, a 2-D image, NaN
voxels, an output that already exists) raises :class:`InputError` with a
one-line message; a training that cannot go on (no step of an epoch had a
finite gradient) raises :class:`TrainingError`, whose message says what to
change. The command line prints either without a traceback.
"""


class InputError(ValueError):
    """Bad input from the user: the message says what and where, in one line."""


class TrainingError(RuntimeError):
    """A training that cannot go on: the message says why and what to change, in one line."""
