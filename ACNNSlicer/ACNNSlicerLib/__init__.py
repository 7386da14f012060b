"""ACNN's Slicer logic: MRML nodes <-> ACNNCore, shared by the desktop modules and ACNN Studio.

Imports only the MRML API (``slicer`` from the Slicer application or the ``slicer-core`` wheel),
``slicer.util`` array helpers, vtk, numpy and ACNNCore — never ``qt`` or the application object — so every
logic path runs headless under pytest. (``dependencies``, used by the widgets alone, is the exception.)
Names are imported on first use, so that a widget can check and install dependencies (torch...) before
anything needs them.
"""

import importlib

_EXPORTS = {
    "SegmentLogic": "segment", "SegmentResult": "segment", "SuperResolveLogic": "superresolve",
    "ShapeExplorerLogic": "shape_explorer", "BackgroundTask": "common", "Cancelled": "common",
    "volume_from_node": "mrml", "volume_to_node": "mrml", "labels_to_segmentation": "mrml",
    "labels_from_segmentation": "mrml", "new_scene": "mrml",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
