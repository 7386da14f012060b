"""Installing ACNN's Python dependencies inside the Slicer application (widgets only).

The one file of this package that uses the application (``slicer.util`` dialogs and ``pip_install``);
the logic never imports it. torch comes through the PyTorch extension's ``PyTorchUtils`` (it picks the
build for the machine's GPU); the rest with ``slicer.util.pip_install`` after the user agrees, constrained
to the numpy, SimpleITK and vtk that Slicer ships so that none of them is replaced.
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

# import name -> pip requirement (torch is handled by PyTorchUtils)
PACKAGES = {"monai": "monai>=1.3", "safetensors": "safetensors>=0.4", "nibabel": "nibabel>=5.0",
            "pydicom": "pydicom>=2.4",  # Slicer ships it
            "highdicom": "highdicom>=0.28",  # DICOM SEG
            "scipy": "scipy>=1.10", "sklearn": "scikit-learn>=1.3",
            "tqdm": "tqdm>=4.60", "yaml": "PyYAML>=6.0"}
KEEP = ("numpy", "SimpleITK", "vtk")  # Slicer's own: never upgraded or replaced


def missing() -> list[str]:
    """Requirements not importable now (``torch`` first if it is missing)."""
    out = [] if importlib.util.find_spec("torch") else ["torch"]
    return out + [req for name, req in PACKAGES.items() if importlib.util.find_spec(name) is None]


def _constraints() -> str:
    from importlib.metadata import PackageNotFoundError, version

    lines = []
    for name in KEEP:
        try:
            lines.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            pass
    path = Path(tempfile.mkdtemp(prefix="acnn-")) / "constraints.txt"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def ensure(ask: bool = True) -> bool:
    """Install what is missing after asking; False if the user declined or torch could not be had."""
    import slicer

    needed = missing()
    if not needed:
        return True
    if ask and not slicer.util.confirmOkCancelDisplay(
            "ACNN needs these Python packages, which are not installed yet:\n\n  " + "\n  ".join(needed)
            + "\n\nInstall them now? (Slicer's own numpy, SimpleITK and vtk are left as they are.)",
            "ACNN: install dependencies"):
        return False
    if "torch" in needed:
        try:
            import PyTorchUtils
        except ImportError:
            slicer.util.errorDisplay("ACNN needs the PyTorch extension: install 'PyTorch' from the Extensions "
                                     "Manager, restart Slicer and try again.")
            return False
        torch_logic = PyTorchUtils.PyTorchUtilsLogic()
        if not torch_logic.torchInstalled() and torch_logic.installTorch(askConfirmation=False) is None:
            slicer.util.errorDisplay("PyTorch could not be installed; see the Python console for details.")
            return False
        needed.remove("torch")
    if needed:
        slicer.util.pip_install(" ".join(f'"{r}"' for r in needed) + f' -c "{_constraints()}"')
    return not missing()
