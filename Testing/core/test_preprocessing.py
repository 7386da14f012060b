"""Preprocessing steps and their inverses: outputs land back on the input's geometry."""

import sys
from pathlib import Path

import numpy as np
import pytest

from ACNNCore.errors import InputError
from ACNNCore.preprocessing import labels_center, model_geometry, normalize_intensity, resample
from ACNNCore.volume import Volume

from .test_volume_io import oblique_direction


@pytest.fixture
def image():
    rng = np.random.default_rng(2)
    return Volume.from_array(rng.random((20, 24, 9)).astype(np.float32) * 300 + 50, (1.4, 1.4, 8.0),
                             (10.0, -5.0, 3.0), oblique_direction())


def test_intensity_normalisation_inverts(image):
    norm, scaling = normalize_intensity(image)
    assert abs(np.percentile(norm.array, 1)) < 1e-5 and abs(np.percentile(norm.array, 99) - 1) < 1e-5
    np.testing.assert_allclose(scaling.invert(norm.array), image.array, rtol=1e-5)
    with pytest.raises(InputError, match="constant"):
        normalize_intensity(image.with_array(np.ones(image.shape, np.float32)))
    with pytest.raises(InputError, match=r"image of bool values \(a mask\?\)"):  # not a numpy error deep inside
        normalize_intensity(image.with_array(image.array > 200))
    norm16, _ = normalize_intensity(image.with_array(np.round(image.array).astype(np.int16)))  # scanner integers
    assert abs(np.percentile(norm16.array, 99) - 1) < 1e-5


def test_resampling_onto_the_same_grid_is_identity(image):
    np.testing.assert_array_equal(resample(image, image.geometry).array, image.array)


def test_model_grid_round_trip_for_labels(image):
    labels = image.with_array(np.zeros(image.shape, np.uint8))
    labels.array[6:14, 8:18, 2:7] = 1
    labels.array[9:11, 11:14, 3:6] = 2
    center = labels_center(labels)
    # same spacing, larger grid: exact
    on_model = resample(labels, model_geometry(labels, (32, 32, 12), image.spacing, center), "nearest")
    back = resample(on_model, image.geometry, "nearest")
    np.testing.assert_array_equal(back.array, labels.array)
    # finer in-plane spacing and back (nearest neighbour both ways): nearly the same
    fine = resample(labels, model_geometry(labels, (40, 40, 12), (0.7, 0.7, 8.0), center), "nearest")
    back = resample(fine, image.geometry, "nearest")
    dice = 2 * np.sum((back.array == 1) & (labels.array == 1)) / np.sum((back.array == 1) + (labels.array == 1))
    assert dice > 0.95
    # the model grid is centred on the labels' centroid, in physical space (snapped to the
    # input's lattice where the spacing is the same: here through-plane, half a slice at most)
    np.testing.assert_allclose(fine.geometry.center, center, atol=0.5 * 8.0 + 1e-6)
    offset = image.geometry.physical_to_index(fine.geometry.origin)
    assert abs(offset[2] - round(offset[2])) < 1e-6
    np.testing.assert_allclose(fine.geometry.direction, image.direction)


def test_a_stack_s_slice_order_is_read_from_its_geometry_and_a_model_s_from_its_maps():
    """Which way a stack's slices run: by the geometry, where it is a patient's (an oblique stack), and for a
    network, by its training maps (the ventricles narrow towards the apex)."""
    from ACNNCore.phantom.population import PhantomConfig, generate_subject
    from ACNNCore.preprocessing import APEX_FIRST, BASE_FIRST, slice_order, stack_order

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from acdc_orientation import standard_short_axis

    labels = generate_subject(0, 5, PhantomConfig()).phases["ED"]["hr_gt"]  # the phantom's: the apex at slice 0
    assert slice_order([labels]) == APEX_FIRST and slice_order([labels.flipped(2)]) == BASE_FIRST
    assert slice_order([labels, labels, labels.flipped(2)]) == APEX_FIRST  # most maps
    assert slice_order([labels.with_array(np.zeros_like(labels.array))]) is None and slice_order([]) is None
    scanner = standard_short_axis(labels.flipped(2))  # a base-first stack as a scanner stores it: apex first
    assert stack_order(scanner.geometry) == APEX_FIRST and stack_order(scanner.flipped(2).geometry) == BASE_FIRST
    assert stack_order(labels.geometry) is None  # an identity orientation: a file's that lost its own, as ACDC's
    assert stack_order(labels.permuted((1, 0, 2)).geometry) is None  # any axes along the patient's
    level = np.array([[0.0, 0.0, 1.0], [0.6, 0.8, 0.0], [0.8, -0.6, 0.0]]).T  # slices going sideways
    assert stack_order(type(labels.geometry)(labels.shape, labels.spacing, (0, 0, 0), level)) is None
