"""The phantom population: physiological ranges, anatomy, intensities, determinism, files."""

import json

import numpy as np
import pytest

from ACNNCore.io import read_labels, read_volume
from ACNNCore.labels import LV_BLOOD_POOL, LV_MYOCARDIUM
from ACNNCore.phantom.anatomy import RANGES, measure
from ACNNCore.phantom.population import PhantomConfig, generate_subject


def test_written_subjects_fall_in_their_group_ranges(phantom_mr):
    """Volumes measured from the label-map files, not from the generator's own numbers."""
    root, infos = phantom_mr
    assert [i["group"] for i in infos] == ["NOR", "DCM", "HCM"] * 2
    for info in infos:
        folder = root / info["subject"]
        ed = read_labels(folder / "ED" / "hr_gt.nii.gz")
        es = read_labels(folder / "ES" / "hr_gt.nii.gz")
        m_ed, m_es = measure(ed.array, ed.geometry), measure(es.array, es.geometry)
        r = RANGES[info["group"]]
        ef = 100 * (1 - m_es["lv_volume_ml"] / m_ed["lv_volume_ml"])
        assert r.edv_ml[0] <= m_ed["lv_volume_ml"] <= r.edv_ml[1], info
        assert r.mass_g[0] <= m_ed["myo_mass_g"] <= r.mass_g[1], info
        assert r.ef_pct[0] <= ef <= r.ef_pct[1], info
        assert abs(ef - info["ef_pct"]) < 1e-2
        # the myocardium keeps its mass from ED to ES (incompressible), within 3 %
        assert abs(m_es["myo_mass_g"] - m_ed["myo_mass_g"]) < 0.03 * m_ed["myo_mass_g"]


@pytest.mark.parametrize("group", ["NOR", "DCM", "HCM"])
def test_population_ranges_hold_for_many_subjects(group):
    config = PhantomConfig(groups=(group,))
    r = RANGES[group]
    for i in range(8):
        ps = generate_subject(i, 123, config)
        ed, es = ps.info["phases"]["ED"], ps.info["phases"]["ES"]
        assert r.edv_ml[0] <= ed["lv_volume_ml"] <= r.edv_ml[1]
        assert r.mass_g[0] <= ed["myo_mass_g"] <= r.mass_g[1]
        assert r.ef_pct[0] <= ps.info["ef_pct"] <= r.ef_pct[1]
        assert es["lv_volume_ml"] < ed["lv_volume_ml"]


def test_default_grid_holds_the_largest_hearts_with_margin():
    """DCM hearts (largest) and HCM (thick septum, shifted) stay 3+ voxels from every face."""
    config = PhantomConfig(groups=("DCM", "HCM"))
    for i in range(12):
        for phase, vols in generate_subject(i, 5, config).phases.items():
            idx = np.argwhere(vols["hr_gt"].array > 0)
            assert idx.min() >= 3 and np.all(idx.max(0) <= np.array(vols["hr_gt"].shape) - 4), (i, phase)


def test_group_anatomy_differs_as_in_the_clinic():
    config = PhantomConfig()
    walls = {g: [] for g in ("NOR", "DCM", "HCM")}
    for i in range(9):
        s = generate_subject(i, 7, config).subject
        walls[s.group].append(s.ed.wall * (1 + s.ed.septal_bump))
    assert np.mean(walls["HCM"]) > 1.4 * np.mean(walls["NOR"])  # hypertrophy
    assert np.mean(walls["DCM"]) < np.mean(walls["HCM"])


def test_hcm_septum_is_thicker_than_the_lateral_wall():
    config = PhantomConfig(groups=("HCM",))
    asymmetric = [generate_subject(i, 3, config) for i in range(6)]
    asymmetric = [ps for ps in asymmetric if ps.subject.ed.septal_bump > 0.5]
    assert asymmetric
    for ps in asymmetric:
        labels = ps.phases["ED"]["hr_gt"]
        frame = ps.subject.ed.frame
        center = np.asarray(frame.center) + np.asarray(frame.long_axis) * 0.3 * ps.subject.ed.long_semi_axis
        septal = np.asarray(frame.septal)

        def thickness(direction):
            pts = center + np.outer(np.arange(0, 70, 0.25), direction)
            ijk = np.rint(labels.geometry.physical_to_index(pts)).astype(int)
            ijk = ijk[np.all((ijk >= 0) & (ijk < labels.shape), axis=1)]
            return 0.25 * np.count_nonzero(labels.array[tuple(ijk.T)] == LV_MYOCARDIUM)

        assert thickness(septal) > 1.3 * thickness(-septal)


def test_bssfp_contrast_and_rv(phantom_mr):
    root, infos = phantom_mr
    hr = read_volume(root / "subject000" / "ED" / "hr.nii.gz").array
    gt = read_labels(root / "subject000" / "ED" / "hr_gt.nii.gz").array
    blood, myo = np.median(hr[gt == LV_BLOOD_POOL]), np.median(hr[gt == LV_MYOCARDIUM])
    assert blood > 2.5 * myo  # bright blood, dark muscle
    # right ventricle: bright, labelled background, next to the myocardium
    from scipy import ndimage

    near = ndimage.binary_dilation(gt == LV_MYOCARDIUM, iterations=4) & (gt == 0)
    assert np.count_nonzero(near & (hr > 0.75 * blood)) > 500
    # papillary muscles: dark voxels inside the labelled blood pool
    assert np.count_nonzero((gt == LV_BLOOD_POOL) & (hr < 0.5 * blood)) > 50


def test_deterministic_and_independent_of_population_size():
    config = PhantomConfig()
    a, b = generate_subject(4, 9, config), generate_subject(4, 9, config)
    for ph in ("ED", "ES"):
        for name in ("lr", "hr", "hr_gt"):
            np.testing.assert_array_equal(a.phases[ph][name].array, b.phases[ph][name].array)
    c = generate_subject(4, 10, config)
    assert not np.array_equal(a.phases["ED"]["hr_gt"].array, c.phases["ED"]["hr_gt"].array)


def test_noise_and_bias_switch_off_and_on():
    from dataclasses import replace

    base = PhantomConfig()
    clean = replace(base, mr=replace(base.mr, noise=0.0, bias=0.0))
    a = generate_subject(0, 1, clean).phases["ED"]["hr"].array
    b = generate_subject(0, 1, clean).phases["ED"]["hr"].array
    np.testing.assert_array_equal(a, b)
    noisy = generate_subject(0, 1, replace(base, mr=replace(base.mr, bias=0.0))).phases["ED"]["hr"].array
    blood = generate_subject(0, 1, clean).phases["ED"]["hr_gt"].array == LV_BLOOD_POOL
    # Rician noise at high SNR ~ Gaussian with the configured sigma
    assert abs(np.std((noisy - a)[blood]) - base.mr.noise) < 0.01


def test_info_json_describes_the_subject(phantom_mr):
    root, infos = phantom_mr
    info = json.loads((root / "subject001" / "info.json").read_text())
    assert info["group"] == "DCM"
    assert set(info["phases"]) == {"ED", "ES"}
    assert {"lv_volume_ml", "myo_mass_g"} <= set(info["phases"]["ED"])
    assert len(info["motion"]["slices"]) == 12
    shifts = [np.hypot(s["tx_mm"], s["ty_mm"]) for s in info["motion"]["slices"]]
    assert max(shifts) <= 2.0 and max(shifts) > 0.5
    assert info["parameters"]["ed"]["wall"] > 0
    dataset = json.loads((root / "dataset.json").read_text())
    assert dataset["kind"] == "acnn-phantom" and len(dataset["subjects"]) == 6
