"""Shared fixtures: small phantom data sets made once per test session."""

from pathlib import Path

import pytest

ACDC = Path(__file__).resolve().parents[2] / "shared" / "data" / "acdc"


@pytest.fixture(scope="session")
def acdc_root():
    if not (ACDC / "README.md").is_file():
        pytest.skip(f"ACDC data not found at {ACDC} (see README: real-data tests need ../shared/data/acdc)")
    return ACDC


@pytest.fixture(scope="session")
def phantom_mr(tmp_path_factory):
    """Six MR subjects (two per group) with 2 mm slice motion, written by the library."""
    from ACNNCore.phantom.population import PhantomConfig, with_motion, write_population

    out = tmp_path_factory.mktemp("phantom_mr")
    infos = write_population(out, 6, seed=11, config=with_motion(PhantomConfig(), 2.0))
    return out, infos


TINY_GRID = {"hr_shape": (32, 32, 20), "hr_spacing": (3.75, 3.75, 6.0)}  # the same 120 mm cube, coarse


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """Eight small MR subjects (16 cases) on a coarse grid: models train on it in seconds."""
    from ACNNCore.phantom.population import PhantomConfig, with_motion, write_population

    out = tmp_path_factory.mktemp("tiny_data")
    write_population(out, 8, seed=3, config=with_motion(PhantomConfig(**TINY_GRID), 2.0))
    return out


@pytest.fixture(scope="session")
def tiny_models(tiny_data, tmp_path_factory):
    """Tiny AE, T-L, ACNN-Seg and ACNN-SR runs (two epochs each: fast, not accurate)."""
    from ACNNCore.training import TrainConfig, train

    root = tmp_path_factory.mktemp("tiny_models")
    small = dict(epochs=2, batch_size=4)
    ae = train(TrainConfig(task="ae", **small), tiny_data, root / "ae", progress=False)
    tl = train(TrainConfig(task="tl", tl_predictor_epochs=1, network={"predictor_features": [4, 8, 8, 8]}, **small),
               tiny_data, root / "tl", prior=ae, progress=False)
    seg = train(TrainConfig(task="seg", **small), tiny_data, root / "seg", prior=ae, progress=False)
    sr = train(TrainConfig(task="sr", **small), tiny_data, root / "sr", prior=tl, progress=False)
    return {"ae": ae, "tl": tl, "seg": seg, "sr": sr}
