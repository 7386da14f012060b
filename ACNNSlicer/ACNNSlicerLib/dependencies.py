"""Installing ACNN's Python dependencies inside the Slicer application (widgets only).

The one file of this package that uses the application (``slicer.util`` dialogs and ``pip_install``);
the logic never imports it. torch comes through the PyTorch extension's ``PyTorchUtils`` (it picks the
build for the machine's GPU); the rest with ``slicer.util.pip_install`` after the user agrees, constrained
to the numpy, SimpleITK and vtk that Slicer ships so that none of them is replaced. A package older than ACNN
needs (Slicer 5.10's own pydicom 2.4.4, another extension's torch 1.x) counts as missing, and the question
says what it replaces.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

# the package's own lower bounds (pyproject.toml): torch's, installed by PyTorchUtils; the rest by pip
TORCH = "torch>=2.1"
PACKAGES = ("monai>=1.3", "safetensors>=0.4", "nibabel>=5.0",
            "pydicom>=3.0.1",  # highdicom's; Slicer ships it (2.4.4 in Slicer 5.10): upgraded after asking
            "highdicom>=0.28",  # DICOM SEG
            "scipy>=1.10", "scikit-learn>=1.3", "tqdm>=4.60", "PyYAML>=6.0")
KEEP = ("numpy", "SimpleITK", "vtk")  # Slicer's own: never upgraded or replaced


def _name(requirement: str) -> str:
    """A requirement's distribution name: "pydicom>=3.0.1" -> "pydicom"."""
    return requirement.split(">=")[0]


def _least(requirement: str) -> str:
    """A requirement's lower bound: "pydicom>=3.0.1" -> "3.0.1"."""
    return requirement.split(">=")[1]


def installed() -> dict[str, str]:
    """This Python's versions of torch and of the packages ACNN installs (distribution name -> version)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in map(_name, (TORCH, *PACKAGES)):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def _release(version: str) -> tuple[int, ...]:
    """A version's release numbers: "2.13.0+cpu" -> (2, 13, 0), "1.0rc1" -> (1, 0)."""
    return tuple(int(part) for part in re.findall(r"^\d+(?:\.\d+)*", version)[0].split("."))


def missing(versions: dict[str, str] | None = None) -> list[str]:
    """Requirements not met: not installed, or older than ACNN needs (torch's first).
    ``versions``: what is installed (default: :func:`installed`)."""
    versions = installed() if versions is None else versions
    return [requirement for requirement in (TORCH, *PACKAGES) if _name(requirement) not in versions
            or _release(versions[_name(requirement)]) < _release(_least(requirement))]


def _question(needed: list[str], versions: dict[str, str]) -> str:
    """What the user is asked before anything is installed: each package, and which of them replace an older
    version already there (Slicer 5.10's own pydicom, which its DICOM module uses too)."""
    lines = []
    for requirement in needed:
        name = _name(requirement)
        lines.append(requirement + (f" (replacing {name} {versions[name]}, which Slicer or another extension may "
                                    f"use too)" if name in versions else ""))
    return ("ACNN needs these Python packages, not installed yet or older than it needs:\n\n  "
            + "\n  ".join(lines)
            + "\n\nInstall them now? (Slicer's own numpy, SimpleITK and vtk are left as they are.)")


def _constraints(folder: str) -> str:
    """A pip constraints file in ``folder`` holding Slicer's numpy, SimpleITK and vtk at their versions."""
    from importlib.metadata import PackageNotFoundError, version

    lines = []
    for name in KEEP:
        try:
            lines.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            pass
    path = Path(folder) / "constraints.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def ensure(ask: bool = True) -> bool:
    """Install what is missing after asking; False if the user declined, torch could not be had or this
    Slicer's Python is older than ACNN's (3.10: Slicer 5.10 and later)."""
    import sys

    import slicer

    if sys.version_info < (3, 10):
        slicer.util.errorDisplay(f"ACNN needs Slicer 5.10 or later: its Python (3.10 or later); this Slicer has "
                                 f"Python {sys.version_info.major}.{sys.version_info.minor}.")
        return False
    versions = installed()
    needed = missing(versions)
    if not needed:
        return True
    if ask and not slicer.util.confirmOkCancelDisplay(_question(needed, versions), "ACNN: install dependencies"):
        return False
    upgraded = [_name(r) for r in needed if _name(r) in versions]
    if TORCH in needed:
        try:
            import PyTorchUtils
        except ImportError:
            slicer.util.errorDisplay("ACNN needs the PyTorch extension: install 'PyTorch' from the Extensions "
                                     "Manager, restart Slicer and try again.")
            return False
        if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False,  # ">=2.1", as it takes a bound
                                                         torchVersionRequirement=">=" + _least(TORCH)) is None:
            slicer.util.errorDisplay("PyTorch could not be installed; see the Python console for details.")
            return False
        needed.remove(TORCH)
    if needed:
        with tempfile.TemporaryDirectory(prefix="acnn-") as folder:
            slicer.util.pip_install(" ".join(f'"{r}"' for r in needed) + f' -c "{_constraints(folder)}"')
    if upgraded and not missing():  # the old versions may be loaded already (Slicer's DICOM module: pydicom)
        slicer.util.infoDisplay(f"{', '.join(upgraded)} upgraded: restart Slicer to use ACNN.", "ACNN: restart Slicer")
        return False
    return not missing()
