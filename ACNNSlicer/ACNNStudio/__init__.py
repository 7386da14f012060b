"""ACNN Studio: the three ACNN modules in a browser (trame-slicer), driving :mod:`ACNNSlicerLib`."""
