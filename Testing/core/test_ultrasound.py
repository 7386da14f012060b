"""The 3-D echo mode: isotropic grid, cavity label, dark blood, sector, shadows."""

import numpy as np

from ACNNCore.phantom.population import PhantomConfig, generate_subject


def test_us_subject():
    ps = generate_subject(1, 0, PhantomConfig(modality="us"))
    image, gt = ps.phases["ED"]["us"], ps.phases["ED"]["us_gt"]
    assert image.spacing == (1.0, 1.0, 1.0)
    assert set(np.unique(gt.array)) == {0, 1}  # LV cavity only
    assert 0.0 <= image.array.min() and image.array.max() <= 1.0
    # dark blood pool, brighter wall around it
    from scipy import ndimage

    cavity = gt.array == 1
    wall = ndimage.binary_dilation(cavity, iterations=5) & ~ndimage.binary_dilation(cavity, iterations=1)
    assert np.median(image.array[wall]) > 2 * np.median(image.array[cavity])
    # a sector: the corners of the volume near the probe are empty
    assert image.array[:5, :5, :5].max() == 0.0
    assert np.count_nonzero(image.array == 0) > 0.2 * image.array.size
    # ED/ES: the cavity empties; EF as in the MR subject of the same index and seed
    es = ps.phases["ES"]["us_gt"].array
    assert es.sum() < gt.array.sum()
    mr = generate_subject(1, 0, PhantomConfig())
    np.testing.assert_allclose(ps.info["ef_pct"], mr.info["ef_pct"], atol=2.0)
