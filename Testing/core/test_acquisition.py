"""The MR acquisition model checked numerically: slice profile, slice positions, motion, noise."""

import numpy as np
import pytest
from scipy import ndimage

from ACNNCore.phantom.acquisition import (AcquisitionConfig, acquire, blur_through_plane, decimate, lr_geometry,
                                          move_slices)
from ACNNCore.volume import Geometry

HR = Geometry((32, 32, 60), (1.25, 1.25, 2.0)).centered_at((0, 0, 0))
RNG = np.random.default_rng(0)


def test_lr_slices_sit_at_the_centre_of_their_five_hr_slices():
    lr = lr_geometry(HR, 5)
    assert lr.shape == (32, 32, 12) and lr.spacing == (1.25, 1.25, 10.0)
    for k in range(12):
        np.testing.assert_allclose(lr.index_to_physical((3, 4, k)), HR.index_to_physical((3, 4, 5 * k + 2)))
    # the 12 LR slices cover exactly the HR extent
    assert np.isclose(lr.extent_mm[2], HR.extent_mm[2])


def test_without_blur_motion_or_noise_lr_is_every_fifth_hr_slice():
    hr = RNG.random(HR.shape).astype(np.float32)
    config = AcquisitionConfig(blur_sigma_mm=0, motion_mm=0, noise=0)
    lr, _, motion = acquire(hr, HR, config, RNG)
    np.testing.assert_array_equal(lr, hr[:, :, 2::5])
    assert not motion.any()


def test_slice_profile_is_a_gaussian_of_sigma_4_mm():
    """A thin bright HR slab at slice 27 (= 5*5 + 2) spreads over LR slices as exp(-d^2 / 2 sigma^2)."""
    hr = np.zeros(HR.shape, np.float32)
    hr[:, :, 27] = 1.0
    lr, _, _ = acquire(hr, HR, AcquisitionConfig(noise=0), RNG)
    profile = lr[16, 16, :]
    assert profile.argmax() == 5
    ratio = profile[6] / profile[5]
    np.testing.assert_allclose(ratio, np.exp(-(10.0 ** 2) / (2 * 4.0 ** 2)), rtol=0.05)
    np.testing.assert_allclose(profile[4], profile[6], rtol=1e-5)
    # the HR-resolution blur itself: full width at half maximum = 2.355 sigma = 9.4 mm
    blurred = blur_through_plane(hr, 2.0, 4.0)[16, 16, :]
    fine = np.interp(np.arange(0, 60, 0.01), np.arange(60), blurred)
    fwhm = np.count_nonzero(fine >= blurred.max() / 2) * 0.01 * 2.0
    np.testing.assert_allclose(fwhm, 2.3548 * 4.0, rtol=0.05)


def test_even_factor_samples_between_hr_slices():
    hr = np.broadcast_to(np.arange(60, dtype=np.float32), HR.shape)
    lr = decimate(hr, 4)
    np.testing.assert_allclose(lr[0, 0, :3], [1.5, 5.5, 9.5])


def test_motion_moves_each_slice_by_its_own_shift():
    blob = np.zeros((40, 40, 3), np.float32)
    blob[15:25, 12:22, :] = 1.0
    spacing = (1.25, 1.25, 10.0)
    motion = np.array([[0.0, 0.0, 0.0], [2.5, -1.25, 0.0], [0.0, 0.0, 20.0]])
    moved = move_slices(blob, spacing, motion)
    np.testing.assert_array_equal(moved[:, :, 0], blob[:, :, 0])
    shift_mm = (np.array(ndimage.center_of_mass(moved[:, :, 1])) - ndimage.center_of_mass(blob[:, :, 1])) * 1.25
    np.testing.assert_allclose(shift_mm, [2.5, -1.25], atol=0.05)
    # rotation about the slice centre: the blob's centre (off-centre) turns by 20 degrees
    c = (np.array(blob.shape[:2]) - 1) / 2
    before = np.array(ndimage.center_of_mass(blob[:, :, 2])) - c
    after = np.array(ndimage.center_of_mass(moved[:, :, 2])) - c
    angle = np.rad2deg(np.arctan2(after[1], after[0]) - np.arctan2(before[1], before[0]))
    np.testing.assert_allclose(angle, 20.0, atol=0.5)


@pytest.mark.parametrize("amplitude", [0.0, 1.0, 4.0])
def test_motion_amplitude_is_respected(amplitude):
    hr = RNG.random(HR.shape).astype(np.float32)
    _, _, motion = acquire(hr, HR, AcquisitionConfig(motion_mm=amplitude, noise=0), np.random.default_rng(3))
    shifts = np.hypot(motion[:, 0], motion[:, 1])
    assert shifts.max() <= amplitude + 1e-9 and np.abs(motion[:, 2]).max() <= amplitude + 1e-9
    assert (shifts.max() > 0) == (amplitude > 0)


def test_noise_level():
    hr = np.full(HR.shape, 1.0, np.float32)
    lr, _, _ = acquire(hr, HR, AcquisitionConfig(noise=0.05), np.random.default_rng(1))
    np.testing.assert_allclose(lr.std(), 0.05, rtol=0.1)


def test_phantom_lr_stack_matches_its_hr_image_when_effects_are_off(tmp_path):
    """End to end through the generator: with blur, motion and LR noise off, LR == HR slices (noise-free HR)."""
    from dataclasses import replace

    from ACNNCore.phantom.population import PhantomConfig, generate_subject

    base = PhantomConfig()
    config = replace(base, mr=replace(base.mr, noise=0.0),
                     acquisition=AcquisitionConfig(blur_sigma_mm=0.0, motion_mm=0.0, noise=0.0))
    ps = generate_subject(0, 2, config)
    np.testing.assert_allclose(ps.phases["ED"]["lr"].array, ps.phases["ED"]["hr"].array[:, :, 2::5], atol=1e-6)
    lr_g, hr_g = ps.phases["ED"]["lr"].geometry, ps.phases["ED"]["hr"].geometry
    np.testing.assert_allclose(lr_g.index_to_physical((0, 0, 7)), hr_g.index_to_physical((0, 0, 37)))


def test_ed_and_es_share_the_slice_motion():
    from ACNNCore.phantom.population import PhantomConfig, generate_subject, with_motion

    ps = generate_subject(1, 4, with_motion(PhantomConfig(), 3.0))
    slices = ps.info["motion"]["slices"]
    assert len(slices) == 12 and any(s["tx_mm"] != 0 for s in slices)
    # the HR targets do not move: ED labels equal those of a motion-free acquisition
    still = generate_subject(1, 4, PhantomConfig())
    np.testing.assert_array_equal(ps.phases["ED"]["hr_gt"].array, still.phases["ED"]["hr_gt"].array)
    assert not np.allclose(ps.phases["ED"]["lr"].array, still.phases["ED"]["lr"].array, atol=0.2)


def test_augmentation_moves_label_slices_with_the_input_only_where_asked():
    """Per-slice motion moves the input alone (a sub-pixel net's target stays still) or, with motion_labels,
    the label slices with it (labels drawn on the acquired slices, as ACDC's): same draw, same shift per slice,
    labels kept labels. HR labels (K > 1) cannot follow an acquired slice and are refused."""
    from dataclasses import replace

    from ACNNCore.augment import AugmentConfig, augment
    from ACNNCore.errors import InputError

    spacing = (1.5, 1.5, 10.0)
    image = np.zeros((48, 48, 6), np.float32)
    image[18:30, 16:28, :] = 1.0
    labels = (image * 2).astype(np.uint8)
    still = AugmentConfig(rotation_deg=0, scale=0, shift_mm=0, motion_mm=4.0, noise=0)
    moved, same, _ = augment(np.random.default_rng(1), still, image, spacing, labels)
    np.testing.assert_array_equal(same, labels)
    moved2, follow, _ = augment(np.random.default_rng(1), replace(still, motion_labels=True), image, spacing, labels)
    np.testing.assert_array_equal(moved2, moved)
    assert follow.dtype == labels.dtype and set(np.unique(follow)) == {0, 2}
    shifts = []
    for k in range(6):
        at = np.array(ndimage.center_of_mass(follow[:, :, k] > 0))
        np.testing.assert_allclose(at, ndimage.center_of_mass(moved[:, :, k]), atol=0.5)
        shifts.append(np.abs(at - ndimage.center_of_mass(labels[:, :, k])).max())
    assert max(shifts) > 1.0  # some slice really moved
    with pytest.raises(InputError, match="motion_labels"):
        augment(np.random.default_rng(1), replace(still, motion_labels=True), image, spacing,
                np.zeros((48, 48, 24), np.uint8), None, (1.5, 1.5, 2.5))
    with pytest.raises(InputError, match="motion_mm above 0"):  # nothing to move the labels with
        AugmentConfig(motion_labels=True)
