"""The bundled models (phantom MR, phantom echo, ACDC): present, described, small, and working on a subject
they never saw."""

import json
import subprocess
import sys

from ACNNCore.bundle import MODELS_DIR, available, load_bundle, members

BUNDLED = {"ae-phantom": "ae", "tl-phantom": "tl", "seg3d-phantom": "seg", "acnn-seg-phantom": "seg",
           "sr-phantom": "sr", "acnn-sr-phantom": "sr", "ae-us": "ae", "acnn-seg-us": "seg",
           "ae-acdc": "ae", "acnn-seg-acdc": "seg"}


def test_bundled_models_are_complete_and_small():
    assert set(BUNDLED) <= set(available())
    total = sum(p.stat().st_size for p in MODELS_DIR.rglob("*") if p.is_file())
    assert total < 50 * 2**20, f"bundled models take {total / 2**20:.1f} MB"
    for name, task in BUNDLED.items():
        for member in members(name):  # a bundle's own folder, or an ensemble's members
            meta = load_bundle(member).meta
            assert meta["task"] == task and meta["name"] == member.name  # an ensemble's members: seed-0, ...
            assert meta["training"]["command"].split()[1:3] == ["train", task]
            assert meta["training"]["data"]["cases"] > 0 and meta["metrics"]
            if task in ("ae", "tl"):
                assert len(meta["latent"]["mean"]) == 64
    assert load_bundle("acnn-seg-phantom").meta["training"]["prior"]
    assert load_bundle("acnn-sr-phantom").meta["training"]["prior"]
    assert load_bundle("acnn-seg-us").meta["training"]["prior"]
    # the real-data model: four networks of one recipe, other seeds, one prior, the same patients held out
    recipes = [load_bundle(m).meta["training"] for m in members("acnn-seg-acdc")]
    assert len(recipes) == 4 and len({r["config"]["seed"] for r in recipes}) == 4
    assert {(r["prior_sha256"], r["config"]["split_seed"], r["config"]["epochs"]) for r in recipes} == \
        {(load_bundle("ae-acdc").meta["weights_sha256"], 0, 100)}


def test_echo_model_on_an_unseen_subject():
    """acnn-seg-us on an echo volume of a seed it never saw, on its own grid and on the default 1 mm one."""
    from ACNNCore.evaluation import evaluate_case
    from ACNNCore.inference import Segmenter
    from ACNNCore.phantom.population import PhantomConfig, generate_subject

    segmenter = Segmenter("acnn-seg-us", "cpu")
    for config in (PhantomConfig(modality="us", us_shape=(64, 64, 64), us_spacing=(1.75, 1.75, 1.875)),
                   PhantomConfig(modality="us")):
        phase = generate_subject(3, 1000, config).phases["ED"]
        labels = segmenter(phase["us"]).labels
        assert labels.geometry.same_as(phase["us"].geometry)
        assert evaluate_case(labels, phase["us_gt"], (1,))["dice_lv"] > 0.85


def test_demo_with_the_bundled_models(tmp_path):
    run = subprocess.run([sys.executable, "-m", "ACNNCore.cli", "demo", "--out", str(tmp_path / "demo"),
                          "--device", "cpu"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    results = json.loads((tmp_path / "demo" / "results.json").read_text())
    for phase in ("ED", "ES"):
        assert results["phases"][phase]["dice"]["LV blood pool"] > 0.85, results
        assert results["phases"][phase]["dice"]["LV myocardium"] > 0.75, results
    assert abs(results["ef_pct"]["predicted"] - results["ef_pct"]["truth"]) < 8


def test_test_time_augmentation_maps_every_view_back_where_it_belongs():
    """acnn-seg-phantom on a subject it never saw: each of the nine views alone, its output mapped back onto
    the input's grid, segments as well as the plain one (a view put back turned or moved the wrong way
    would lose Dice: the views move the grid up to 4 mm); with tta=True the views' probabilities are
    averaged."""
    import numpy as np

    from ACNNCore.evaluation import evaluate_case
    from ACNNCore.inference import TTA_VIEWS, VIEW, Segmenter
    from ACNNCore.phantom.population import generate_subject

    phase = generate_subject(4, 1000).phases["ED"]
    plain = Segmenter("acnn-seg-phantom", "cpu")
    assert plain.views == (VIEW,) and len(TTA_VIEWS) == 9
    base = evaluate_case(plain(phase["lr"]).labels, phase["hr_gt"])
    probabilities = []
    for view in TTA_VIEWS:
        plain.views = (view,)
        result = plain(phase["lr"])
        probabilities.append(result.probabilities)
        scores = evaluate_case(result.labels, phase["hr_gt"])
        for k in ("dice_lv", "dice_myo"):
            assert scores[k] > base[k] - 0.03, (view, k, scores[k], base[k])
    tta = Segmenter("acnn-seg-phantom", "cpu", tta=True)(phase["lr"])
    np.testing.assert_allclose(tta.probabilities, np.mean(probabilities, 0), atol=1e-5)
    assert tta.labels.geometry.same_as(result.labels.geometry)
    assert evaluate_case(tta.labels, phase["hr_gt"])["dice_myo"] > base["dice_myo"] - 0.01
