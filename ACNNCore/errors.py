"""Errors a user can act on.

Everything that is the user's input's fault (a missing file, a 2-D image, NaN
voxels, an output that already exists) raises :class:`InputError` with a
one-line message; the command line prints it without a traceback.
"""


class InputError(ValueError):
    """Bad input from the user: the message says what and where, in one line."""
