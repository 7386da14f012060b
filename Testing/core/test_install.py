"""`pip install .` as a user without a clone's layout does it (a wheel: no Resources/ beside the package): the
bundled models and recipes come with it, and `acnn demo` runs on them."""

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_wheel_install_carries_the_bundled_models(tmp_path):
    from ACNNCore.bundle import MODELS_DIR, available

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # torch etc. from here
    Path(site, "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n", encoding="utf-8")
    try:
        import setuptools

        offline = int(setuptools.__version__.split(".")[0]) >= 77  # the build needs no download
    except ImportError:
        offline = False
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                    *(["--no-build-isolation"] if offline else []), str(ROOT)], check=True, cwd=tmp_path)
    where = subprocess.run([python, "-c", "import json, ACNNCore; from ACNNCore.bundle import MODELS_DIR, available; "
                            "print(json.dumps([ACNNCore.__file__, str(MODELS_DIR), available()]))"],
                           capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    package, models, names = json.loads(where)
    assert Path(package).is_relative_to(venv) and Path(models).is_relative_to(venv / "share" / "acnn-slicer")
    assert names == available() and (Path(models) / "acdc.yaml").is_file()  # every bundle, and the recipes
    files = [f.relative_to(MODELS_DIR) for n in names for f in (MODELS_DIR / n).rglob("*") if f.is_file()]
    assert len(files) > 2 * len(names)  # weights and description of each bundle, an ensemble's members too
    assert all((Path(models) / f).stat().st_size == (MODELS_DIR / f).stat().st_size for f in files)
    run = subprocess.run([venv / "bin" / "acnn", "demo", "--out", tmp_path / "demo"], capture_output=True,
                         text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    results = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert abs(results["ef_pct"]["predicted"] - results["ef_pct"]["truth"]) < 5, results  # by the bundled models
