"""Model bundles: safetensors + JSON, round trip, and refusal of anything that does not match."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from ACNNCore.bundle import load_bundle, read_meta, resolve, save_bundle
from ACNNCore.errors import InputError
from ACNNCore.networks import ConvAutoencoder, SubPixelNet

META = {"task": "seg", "architecture": "SubPixelNet",
        "config": {"out_channels": 3, "factor": 5, "features": [4, 8, 8, 8], "skip_features": 4,
                   "fused_features": 6}}


@pytest.fixture
def bundle(tmp_path):
    torch.manual_seed(0)
    model = SubPixelNet(**META["config"]).eval()
    return model, save_bundle(model, tmp_path / "b", META)


def test_round_trip_gives_the_same_outputs(bundle):
    model, folder = bundle
    loaded = load_bundle(folder)
    x = torch.randn(1, 1, 32, 32, 3)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), model(x))
    meta = read_meta(folder)
    assert meta["format"] == "acnn-bundle" and meta["format_version"] == 1 and len(meta["weights_sha256"]) == 64
    assert {p.name for p in folder.iterdir()} == {"model.safetensors", "model.json"}


def test_no_pickle_anywhere_in_a_bundle(bundle):
    _, folder = bundle
    assert (folder / "model.safetensors").read_bytes()[8:9] == b"{"  # safetensors: a JSON header, no pickle
    json.loads((folder / "model.json").read_text())


def test_tampered_weights_are_refused(bundle):
    _, folder = bundle
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (folder / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(InputError, match="does not match the checksum"):
        load_bundle(folder)


def test_weights_of_another_architecture_are_refused(bundle, tmp_path):
    _, folder = bundle
    meta = json.loads((folder / "model.json").read_text())
    meta["config"]["features"] = [8, 8, 8, 8]
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="weights do not match SubPixelNet"):
        load_bundle(folder)
    save_bundle(ConvAutoencoder(grid_shape=(16, 16, 12)), tmp_path / "ae",
                {"task": "ae", "architecture": "ConvAutoencoder", "config": {"grid_shape": [16, 16, 12]}})
    with pytest.raises(InputError, match=r"is a shape model \(task ae\); this needs a segmentation model \(task seg\)"):
        load_bundle(tmp_path / "ae", expect_task="seg")


def test_wrong_files_are_refused(bundle, tmp_path):
    _, folder = bundle
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    (bad / "model.safetensors").write_bytes(b"\x80\x04not a safetensors file")
    meta = json.loads((bad / "model.json").read_text())
    meta.pop("weights_sha256")
    (bad / "model.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="not a safetensors file"):
        load_bundle(bad)
    (bad / "model.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_bundle(bad)
    (bad / "model.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(InputError, match="not an ACNN model description"):
        load_bundle(bad)
    (bad / "model.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="not an ACNN model description .format 'none: a JSON list'"):
        load_bundle(bad)
    with pytest.raises(InputError, match="no model 'nonexistent-model'"):
        load_bundle("nonexistent-model")
    with pytest.raises(InputError, match=r"no model '/nonexistent/run': "):  # a path as written, not its repr
        load_bundle(Path("/nonexistent/run"))


def test_an_incomplete_description_is_refused_saying_what_it_lacks(bundle):
    """A model.json written by hand or cut down: one line naming what is missing, not a KeyError."""
    from ACNNCore.inference import Segmenter

    _, folder = bundle
    meta = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "architecture"}))
    with pytest.raises(InputError, match=r"model.json lacks architecture \(or holds the wrong kind"):
        load_bundle(folder)
    (folder / "model.json").write_text(json.dumps({**meta, "config": None}))
    with pytest.raises(InputError, match="lacks config"):
        load_bundle(folder)
    (folder / "model.json").write_text(json.dumps({**meta, "format_version": 99}))  # from a later acnn
    with pytest.raises(InputError, match="has format version 99; this ACNN reads up to 1: update acnn"):
        load_bundle(folder)
    (folder / "model.json").write_text(json.dumps({**meta, "config": {**meta["config"], "depth": 3}}))
    with pytest.raises(InputError, match=f"{folder}: cannot build {meta['architecture']}: .*'depth'"):
        load_bundle(folder)
    (folder / "model.json").write_text(json.dumps(meta))  # complete for load_bundle; no grids for inference
    load_bundle(folder)
    with pytest.raises(InputError, match=r"lacks input.shape, input.spacing, .*output.spacing: the grids"):
        Segmenter(folder, "cpu")


def test_existing_bundle_is_not_overwritten(bundle):
    model, folder = bundle
    with pytest.raises(InputError, match="already holds a model"):
        save_bundle(model, folder, META)


def test_a_training_run_folder_stands_for_its_best_model(tiny_models):
    """``--prior RUN``, ``--init RUN``, ``--model RUN``: a run folder resolves to ``RUN/model``."""
    run = tiny_models["seg"].parent
    assert resolve(run) == run / "model" == resolve(run / "model") == resolve(run / "model" / "model.json")
    assert load_bundle(run).path == run / "model"
