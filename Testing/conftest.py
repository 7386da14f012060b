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
