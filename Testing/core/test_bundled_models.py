"""The bundled phantom models: present, described, small, and working on a subject they never saw."""

import json
import subprocess
import sys

from ACNNCore.bundle import MODELS_DIR, available, load_bundle

BUNDLED = {"ae-phantom": "ae", "tl-phantom": "tl", "seg3d-phantom": "seg", "acnn-seg-phantom": "seg",
           "sr-phantom": "sr", "acnn-sr-phantom": "sr"}


def test_bundled_models_are_complete_and_small():
    assert set(BUNDLED) <= set(available())
    total = sum(p.stat().st_size for p in MODELS_DIR.rglob("*") if p.is_file())
    assert total < 50 * 2**20, f"bundled models take {total / 2**20:.1f} MB"
    for name, task in BUNDLED.items():
        bundle = load_bundle(name)
        meta = bundle.meta
        assert meta["task"] == task
        assert meta["training"]["command"].split()[1:3] == ["train", task]
        assert meta["training"]["data"]["cases"] > 0 and meta["metrics"]
        if task in ("ae", "tl"):
            assert len(meta["latent"]["mean"]) == 64
    assert load_bundle("acnn-seg-phantom").meta["training"]["prior"]
    assert load_bundle("acnn-sr-phantom").meta["training"]["prior"]


def test_demo_with_the_bundled_models(tmp_path):
    run = subprocess.run([sys.executable, "-m", "ACNNCore.cli", "demo", "--out", str(tmp_path / "demo"),
                          "--device", "cpu"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    results = json.loads((tmp_path / "demo" / "results.json").read_text())
    for phase in ("ED", "ES"):
        assert results["phases"][phase]["dice"]["LV blood pool"] > 0.85, results
        assert results["phases"][phase]["dice"]["LV myocardium"] > 0.75, results
    assert abs(results["ef_pct"]["predicted"] - results["ef_pct"]["truth"]) < 8
