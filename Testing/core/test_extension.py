"""The Slicer extension's files agree with each other (what can be checked without a Slicer build):
CMake lists name files that exist, every widget the module code uses is in its .ui, every parameter a
.ui widget binds is a field of the module's parameter node, and the logic never imports qt or slicer.app."""

import ast
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = ("Segment", "SuperResolve", "ShapeExplorer")


def test_top_level_cmake_names_every_module_and_the_metadata():
    text = (ROOT / "CMakeLists.txt").read_text()
    assert re.findall(r"add_subdirectory\(ACNNSlicer/(\w+)\)", text) == list(MODULES)
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        assert f"set({key} " in text
    assert 'set(EXTENSION_DEPENDS "PyTorch")' in text
    for url in re.findall(r"https://raw\.githubusercontent\.com/\S+?/main/(\S+?\.png)", text):
        assert (ROOT / url).is_file(), url
    entry = json.loads((ROOT / "ACNN.json").read_text())
    assert entry["category"] == re.search(r'EXTENSION_CATEGORY "([^"]+)"', text).group(1)
    assert entry["build_dependencies"] == ["PyTorch"] and entry["scm_url"].startswith("https://")
    assert "schema" in entry["$schema"]


@pytest.mark.parametrize("module", MODULES)
def test_module_files_agree(module):
    folder = ROOT / "ACNNSlicer" / module
    cmake = (folder / "CMakeLists.txt").read_text()
    assert "WITH_GENERIC_TESTS" in cmake and f"set(MODULE_NAME {module})" in cmake
    for rel in (f"{module}.py", f"Resources/Icons/{module}.png", f"Resources/UI/{module}.ui",
                "Testing/CMakeLists.txt", "Testing/Python/CMakeLists.txt"):
        assert (folder / rel).is_file(), rel
    source = (folder / f"{module}.py").read_text()
    tree = ast.parse(source)
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    for suffix in ("", "Widget", "Test", "ParameterNode"):
        assert module + suffix in classes
    ui = ET.parse(folder / "Resources" / "UI" / f"{module}.ui")
    widgets = {w.get("name") for w in ui.iter("widget")}
    used = set(re.findall(r"self\.ui\.(\w+)", source))
    assert used <= widgets, f"not in {module}.ui: {sorted(used - widgets)}"
    bound = {p.find("string").text for p in ui.iter("property") if p.get("name") == "SlicerParameterName"}
    fields = {n.target.id for n in classes[module + "ParameterNode"].body if isinstance(n, ast.AnnAssign)}
    assert bound and bound <= fields, f"{module}.ui binds unknown parameters {sorted(bound - fields)}"


def test_logic_imports_no_gui():
    for path in (ROOT / "ACNNSlicer" / "ACNNSlicerLib").glob("*.py"):
        if path.name in ("dependencies.py", "gui.py"):  # used by the widgets alone
            continue
        text = path.read_text()
        assert not re.search(r"^\s*(import qt|from qt|import ctk)", text, re.M), path
        assert "slicer.app" not in text, path
    for path in (ROOT / "ACNNCore").rglob("*.py"):
        assert not re.search(r"^\s*(import|from) (slicer|ACNNSlicerLib|trame)", path.read_text(), re.M), path


def test_slicer_installs_the_libraries_the_package_needs():
    """The packages the Slicer modules install on first use are the package's dependencies (torch comes by the
    PyTorch extension; numpy and SimpleITK are Slicer's own; matplotlib draws the command line's and benchmarks'
    figures only): one the library comes to need is not forgotten, nor left out of the install notes."""
    from ACNNSlicerLib.dependencies import PACKAGES

    listed = re.search(r"^dependencies = \[(.*?)^\]", (ROOT / "pyproject.toml").read_text(), re.S | re.M).group(1)
    needed = {re.match(r'\s*"([\w.-]+)', line).group(1).lower() for line in listed.splitlines()
              if line.strip().startswith('"')}
    installed = {re.match(r"[\w.-]+", r).group(0).lower() for r in PACKAGES.values()}
    assert needed - {"torch", "numpy", "simpleitk", "matplotlib"} == installed
    notes = re.search(r"the few other packages \((.*?)\)", (ROOT / "ACNNSlicer" / "README.md").read_text(), re.S)
    assert {name for name in installed if name not in notes.group(1).lower()} == set()
