"""ACNNCore: Anatomically Constrained Neural Networks (Oktay et al., IEEE TMI 2018) for cardiac images.

Pure Python (numpy, SimpleITK, torch); no 3D Slicer import anywhere in this package.
"""

__version__ = "0.1.0"
