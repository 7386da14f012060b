"""ACNN's Slicer logic: MRML nodes <-> ACNNCore, shared by the desktop modules and ACNN Studio.

Imports only the MRML API (``slicer`` from the Slicer application or the ``slicer-core`` wheel),
``slicer.util`` array helpers, vtk, numpy and ACNNCore — never ``qt`` or ``slicer.app`` — so every
logic path runs headless under pytest.
"""

from .mrml import (volume_from_node, volume_to_node, labels_to_segmentation, labels_from_segmentation,
                   new_scene)
from .segment import SegmentLogic, SegmentResult
from .superresolve import SuperResolveLogic
from .shape_explorer import ShapeExplorerLogic

__all__ = ["SegmentLogic", "SegmentResult", "SuperResolveLogic", "ShapeExplorerLogic", "volume_from_node",
           "volume_to_node", "labels_to_segmentation", "labels_from_segmentation", "new_scene"]
