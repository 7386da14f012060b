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
    annotations = {n.target.id: n.annotation for n in classes[module + "ParameterNode"].body
                   if isinstance(n, ast.AnnAssign)}
    fields = set(annotations)
    assert bound and bound <= fields, f"{module}.ui binds unknown parameters {sorted(bound - fields)}"
    # the widgets' base gives the .ui's top widget the scene, which passes it on to each MRML widget it connects
    root = ui.find("widget")
    passes = (root.get("name"), "mrmlSceneChanged(vtkMRMLScene*)", "setMRMLScene(vtkMRMLScene*)")
    sent = {c.findtext("receiver") for c in ui.iter("connection")
            if tuple(c.findtext(k) for k in ("sender", "signal", "slot")) == passes}
    mrml_widgets = {w.get("name") for w in root.iter("widget") if w.get("class").startswith("qMRML") and w is not root}
    assert root.get("class") == "qMRMLWidget", root.get("class")
    for c in ui.iter("connection"):  # Qt Designer's connections join widgets that exist
        assert {c.findtext("sender"), c.findtext("receiver")} <= widgets, ET.tostring(c)
    assert mrml_widgets == sent, f"{module}.ui gives no scene to {mrml_widgets - sent}"
    # a node selector bound to a parameter lists the node types of the parameter's annotation (the wrapper sets
    # them), not the .ui's: they must be the same; a union of several holds None too, as the wrapper needs
    binds = [(widget, name) for widget in ui.iter("widget") for p in widget.findall("property")
             if p.get("name") == "SlicerParameterName" and (name := p.find("string").text)]
    for widget, name in binds:
        if widget.get("class") != "qMRMLNodeComboBox":
            continue
        listed = [s.text for p in widget.findall("property") if p.get("name") == "nodeTypes" for s in p.iter("string")]
        annotation = annotations[name]
        types = [n.attr for n in ast.walk(annotation) if isinstance(n, ast.Attribute) and n.attr.startswith("vtkMRML")]
        assert sorted(types) == sorted(listed), f"{module}.{name}: annotated {types}, the .ui lists {listed}"
        if len(types) > 1:
            assert "Union[" in ast.unparse(annotation) and "None" in ast.unparse(annotation), ast.unparse(annotation)
    # so does a spin box's range (unbounded without one): the annotation's WithinRange, the .ui's the same
    for widget, name in binds:
        if widget.get("class") not in ("QSpinBox", "QDoubleSpinBox"):
            continue
        calls = [n for n in ast.walk(annotations[name]) if isinstance(n, ast.Call) and n.func.id == "WithinRange"]
        assert calls, f"{module}.{name}: a spin box's parameter needs a WithinRange"
        bounds = tuple(ast.literal_eval(a) for a in calls[0].args)
        listed = {p.get("name"): float(p.findtext("*")) for p in widget.findall("property")
                  if p.get("name") in ("minimum", "maximum")}
        assert bounds == (listed.get("minimum", 0), listed.get("maximum", 99)), f"{module}.{name}: {bounds}"


def test_logic_imports_no_gui():
    for path in (ROOT / "ACNNSlicer" / "ACNNSlicerLib").glob("*.py"):
        if path.name in ("dependencies.py", "gui.py"):  # used by the widgets alone
            continue
        text = path.read_text()
        assert not re.search(r"^\s*(import qt|from qt|import ctk)", text, re.M), path
        assert "slicer.app" not in text, path
    for path in (ROOT / "ACNNCore").rglob("*.py"):
        assert not re.search(r"^\s*(import|from) (slicer|ACNNSlicerLib|trame)", path.read_text(), re.M), path


def test_slicer_installs_the_bundled_models_and_recipes_a_pip_install_has():
    """The extension installs Resources/Models as a wheel does: every bundle and every recipe (`acnn train`
    on ACDC data reads acdc.yaml from there), the training scripts left out of both."""
    from fnmatch import fnmatch

    cmake = (ROOT / "CMakeLists.txt").read_text()
    install = re.search(r"install\(DIRECTORY Resources/Models\b(.*?)\)", cmake, re.S).group(1)
    excluded = re.findall(r'PATTERN "([^"]+)" EXCLUDE', install)
    wheel = re.search(r"^\[tool\.setuptools\.data-files\]\n(.*?)\n\n", (ROOT / "pyproject.toml").read_text(),
                      re.S | re.M).group(1)
    globs = re.findall(r'"(Resources/Models/[^"]+)"', wheel)
    for path in (ROOT / "Resources" / "Models").rglob("*"):
        if path.is_file() and not path.name.startswith("."):
            relative = path.relative_to(ROOT).as_posix()
            in_wheel = any(fnmatch(relative, g) and relative.count("/") == g.count("/") for g in globs)
            assert in_wheel == (not any(fnmatch(path.name, pattern) for pattern in excluded)), relative
    assert not any(fnmatch("acdc.yaml", pattern) for pattern in excluded)


def test_slicer_installs_the_libraries_the_package_needs():
    """The packages the Slicer modules install on first use are the package's dependencies, with the same lower
    bounds (torch comes by the PyTorch extension; numpy and SimpleITK are Slicer's own; matplotlib draws the
    command line's and benchmarks' figures only): one the library comes to need, or a newer version of one,
    is not forgotten, nor left out of the install notes."""
    from ACNNSlicerLib.dependencies import PACKAGES, TORCH

    listed = re.search(r"^dependencies = \[(.*?)^\]", (ROOT / "pyproject.toml").read_text(), re.S | re.M).group(1)
    needed = {re.match(r'\s*"([^"]+)"', line).group(1).lower() for line in listed.splitlines()
              if line.strip().startswith('"')}
    assert {r for r in needed if r.split(">=")[0] not in ("torch", "numpy", "simpleitk", "matplotlib")} \
        == {r.lower() for r in PACKAGES}
    assert {r.split(",")[0] for r in needed if r.startswith("torch>=")} == {TORCH}  # its upper bound is pip's
    names = {r.split(">=")[0].lower() for r in PACKAGES}
    readme = (ROOT / "ACNNSlicer" / "README.md").read_text()
    notes = re.search(r"the\s+few\s+other\s+packages\s+\((.*?)\)", readme, re.S)
    assert {name for name in names if name not in notes.group(1).lower()} == set()


def test_slicer_s_older_packages_are_named_and_asked_for():
    """A package older than ACNN needs (Slicer 5.10 ships pydicom 2.4.4; ACNN's DICOM code needs pydicom 3; a
    torch 1.x another extension installed) counts as missing, and the question names what it replaces; what is
    installed here meets every bound."""
    import torch

    from ACNNSlicerLib.dependencies import _question, _release, installed, missing

    here = installed()  # PyPI's CUDA builds: "2.1.2" installed, "2.1.2+cu121" as torch says it
    assert missing(here) == [] and _release(here["torch"]) == _release(torch.__version__)
    slicer_5_10 = {**{k: v for k, v in here.items() if k != "tqdm"}, "pydicom": "2.4.4", "monai": "1.3rc1"}
    assert missing(slicer_5_10) == ["pydicom>=3.0.1", "tqdm>=4.60"]  # 1.3rc1 meets monai>=1.3
    assert missing({k: v for k, v in here.items() if k != "torch"}) == ["torch>=2.1"]
    question = _question(missing(slicer_5_10), slicer_5_10)
    assert "\n  pydicom>=3.0.1 (replacing pydicom 2.4.4, which Slicer or another extension may use too)\n  " \
        "tqdm>=4.60\n" in question
    old_torch = {**here, "torch": "1.13.1+cu117"}  # another extension's: upgraded by PyTorchUtils, asked first
    assert missing(old_torch) == ["torch>=2.1"] and missing({**here, "torch": "2.1.0+cpu"}) == []
    assert "torch>=2.1 (replacing torch 1.13.1+cu117" in _question(missing(old_torch), old_torch)


def test_the_installer_asks_installs_and_asks_for_a_restart_after_an_upgrade(monkeypatch):
    """``dependencies.ensure`` as Slicer 5.10 with another extension's torch 1.13 runs it: one question naming
    what is replaced, torch upgraded by PyTorchUtils to ACNN's bound, the rest by one pip call constrained to
    Slicer's numpy, SimpleITK and vtk, then a restart asked for (the old pydicom and torch may be loaded); a
    user who declines gets nothing installed. The Slicer application's side (its dialogs, pip and PyTorchUtils)
    is stood in for by recorders: it cannot run here."""
    import sys
    import types
    from importlib.metadata import version

    from ACNNSlicerLib import dependencies

    here = dependencies.installed()
    versions = {**here, "pydicom": "2.4.4", "torch": "1.13.1+cu117"}
    calls = []

    def pip_install(arguments):
        calls.append(("pip", arguments, Path(arguments.split(" -c ")[1].strip('"')).read_text(encoding="utf-8")))
        versions.update({dependencies._name(r.strip('"')): dependencies._least(r.strip('"'))
                         for r in arguments.split(" -c ")[0].split()})

    def install_torch(askConfirmation=False, forceComputationBackend=None, torchVersionRequirement=None):
        calls.append(("torch", askConfirmation, torchVersionRequirement))
        versions["torch"] = "2.13.0"
        return types.ModuleType("torch")

    answer = [False]
    util = types.SimpleNamespace(
        confirmOkCancelDisplay=lambda text, title: calls.append(("asked", text)) or answer[0],
        pip_install=pip_install, infoDisplay=lambda text, title: calls.append(("told", text)),
        errorDisplay=lambda text: calls.append(("error", text)))
    monkeypatch.setitem(sys.modules, "slicer", types.SimpleNamespace(util=util))
    monkeypatch.setitem(sys.modules, "PyTorchUtils", types.SimpleNamespace(
        PyTorchUtilsLogic=lambda: types.SimpleNamespace(installTorch=install_torch)))
    monkeypatch.setattr(dependencies, "installed", lambda: dict(versions))

    assert not dependencies.ensure() and [c[0] for c in calls] == ["asked"]  # declined: nothing installed
    assert "torch>=2.1 (replacing torch 1.13.1+cu117" in calls[0][1] and "pydicom>=3.0.1 (replacing" in calls[0][1]
    calls.clear()
    answer[0] = True
    assert not dependencies.ensure()  # installed, but Slicer must restart first
    assert [c[0] for c in calls] == ["asked", "torch", "pip", "told"]
    assert calls[1] == ("torch", False, ">=2.1")
    _, pip, constraints = calls[2]
    assert pip.startswith('"pydicom>=3.0.1" -c "') and "torch" not in pip
    assert not Path(pip.split(" -c ")[1].strip('"')).exists()  # a temporary file
    assert f"numpy=={version('numpy')}\nSimpleITK=={version('SimpleITK')}\n" in constraints
    assert calls[3][1] == "torch, pydicom upgraded: restart Slicer to use ACNN."
    calls.clear()
    assert dependencies.ensure() and calls == []  # after the restart: nothing asked


def test_an_older_slicer_is_told_which_it_needs():
    """Slicer 5.8 and older run Python 3.9, which ACNN does not support: what such a Slicer loads before
    ``dependencies.ensure`` says so (the modules, the widgets' helpers, the logic package's lazy index) must
    parse as Python 3.9, or the user sees a syntax error instead of the reason."""
    first = [ROOT / "ACNNSlicer" / m / f"{m}.py" for m in MODULES] + \
        [ROOT / "ACNNSlicer" / "ACNNSlicerLib" / f for f in ("__init__.py", "gui.py", "dependencies.py")]
    for path in first:
        ast.parse(path.read_text(), str(path), feature_version=(3, 9))
    assert "sys.version_info < (3, 10)" in (ROOT / "ACNNSlicer" / "ACNNSlicerLib" / "dependencies.py").read_text()
    assert re.search(r'requires-python = ">=3\.10"', (ROOT / "pyproject.toml").read_text())
    assert "Slicer ≥ 5.10" in (ROOT / "ACNNSlicer" / "README.md").read_text()
