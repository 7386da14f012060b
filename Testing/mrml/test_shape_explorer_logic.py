"""ShapeExplorer logic on real MRML nodes: sliders over mean +- 2 std, live decoding, encoding, saving."""

import re
from pathlib import Path

import numpy as np
import pytest

from ACNNCore.errors import InputError, OutputExists
from ACNNCore.inference import ShapeModel
from ACNNSlicerLib import SegmentLogic, ShapeExplorerLogic, mrml

from .conftest import node_ids


@pytest.fixture(scope="module")
def explorer():
    logic = ShapeExplorerLogic()
    logic.load("ae-phantom", "cpu")
    return logic


def test_sliders_follow_the_bundle_statistics(explorer):
    meta = explorer.model.meta["latent"]
    sliders = explorer.sliders(6)
    assert [s.dim for s in sliders] == meta["order"][:6]
    s = sliders[0]
    assert s.range == pytest.approx((meta["mean"][s.dim] - 2 * meta["std"][s.dim],
                                     meta["mean"][s.dim] + 2 * meta["std"][s.dim]))
    assert np.array_equal(explorer.reset(), np.asarray(meta["mean"], np.float32))


def test_slider_moves_update_the_segmentation_live(explorer, scene):
    explorer.reset()
    node = explorer.update(scene=scene)
    s = explorer.sliders(1)[0]
    volumes, times = [], []
    for value in np.linspace(*s.range, 5):
        explorer.set_value(s.dim, value)
        same = explorer.update(node)
        assert same is node
        labels = mrml.labels_from_segmentation(node)
        volumes.append(int(np.count_nonzero(labels.array)))
        times.append(explorer.last_update_ms)
        assert node.GetSegmentation().ContainsRepresentation("Closed surface")
    assert len(set(volumes)) > 1  # the shape changes along the dimension
    # decoded voxels in the node are the model's own decoding
    own = ShapeModel("ae-phantom", "cpu").decode(explorer.code)
    assert np.array_equal(mrml.labels_from_segmentation(node, own.geometry).array, own.array)
    print(f"\nShapeExplorer update (decode 96x96x60 + segments + closed surfaces), CPU: "
          f"median {np.median(times):.0f} ms, max {max(times):.0f} ms")
    assert node.GetSegmentation().GetNumberOfSegments() == 2


def test_encode_a_segmentation_reproduces_its_shape(explorer, scene, subject):
    stack = mrml.volume_to_node(subject.phases["ED"]["lr"], scene=scene, name="stack")
    _, (seg,), _ = SegmentLogic().process(stack, "acnn-seg-phantom", "cpu", surfaces=False)
    # what enables the Encode buttons: a segmentation with a model loaded; an image only with a T-L model
    assert explorer.can_encode(seg) and not explorer.can_encode(stack) and not explorer.can_encode(None)
    assert not ShapeExplorerLogic().can_encode(seg)  # no model loaded yet
    code = explorer.encode_segmentation(seg)
    assert code.shape == (64,) and not np.allclose(code, explorer.model.mean)
    shape = explorer.update(scene=scene, name="encoded")
    from ACNNCore.metrics import dice

    d = dice(mrml.labels_from_segmentation(shape), mrml.labels_from_segmentation(seg))
    assert d[1] > 0.7  # placed where the segmentation lies, close to its shape
    explorer.reset()  # the mean shape where the model shows it, in the widget as in the studio
    assert explorer.placement is None and explorer.decode().geometry is explorer.model.grid
    with pytest.raises(InputError, match="T-L"):
        explorer.encode_image(stack)
    # what cannot be encoded, said as it is (an image, or an RV alone, was "no segmentation selected" / "empty")
    labels = mrml.labels_from_segmentation(seg)
    rv_only = mrml.labels_to_segmentation(labels.with_array(np.where(labels.array > 0, 3, 0).astype(np.uint8)),
                                          scene=scene, name="RV alone")
    for node, said in ((stack, "'stack' is a vtkMRMLScalarVolumeNode, not a segmentation"),
                       (rv_only, "segmentation 'RV alone' holds none of the structures ae-phantom knows (LV blood "
                                 "pool, LV myocardium)")):
        with pytest.raises(InputError, match=re.escape(said)):
            explorer.encode_segmentation(node)
    for value in (float("nan"), float("inf")):  # a slider gives none; the API refuses it
        with pytest.raises(InputError, match="a latent value is a finite number"):
            explorer.set_value(0, value)
    assert np.isfinite(explorer.code).all()


def test_tl_model_encodes_an_image(scene, subject):
    logic = ShapeExplorerLogic()
    logic.load("tl-phantom", "cpu")
    assert logic.can_encode_images
    hr = mrml.volume_to_node(subject.phases["ED"]["hr"], scene=scene, name="hr")
    assert logic.can_encode(hr)
    code = logic.encode_image(hr)
    assert code.shape == (64,) and np.isfinite(code).all()


def test_save_the_current_shape(explorer, scene, tmp_path):
    node = explorer.update(scene=scene)
    path = explorer.save(node, tmp_path / "shape.seg.nrrd")
    reloaded = mrml.load_node(path, scene, "segmentation")
    assert np.array_equal(mrml.labels_from_segmentation(reloaded).array, mrml.labels_from_segmentation(node).array)
    with pytest.raises(OutputExists, match="exists") as refused:  # the GUI asks (Qt's file dialog), then replaces
        explorer.save(node, tmp_path / "shape.seg.nrrd")
    assert refused.value.path == tmp_path / "shape.seg.nrrd"
    Path(path).write_bytes(b"not a segmentation")
    explorer.save(node, tmp_path / "shape.seg.nrrd", overwrite=True)
    reloaded = mrml.load_node(path, scene, "segmentation")
    assert np.array_equal(mrml.labels_from_segmentation(reloaded).array, mrml.labels_from_segmentation(node).array)
    explorer.save(node, tmp_path / "shape.nii.gz")
    assert (tmp_path / "shape.nii.gz").is_file()


def test_wrong_model_kind_is_refused_and_the_scene_unchanged(scene):
    logic = ShapeExplorerLogic()
    before = node_ids(scene)
    with pytest.raises(InputError):
        logic.load("acnn-seg-phantom", "cpu")
    with pytest.raises(InputError, match="load a shape model"):
        logic.sliders()
    assert node_ids(scene) == before


def test_a_bundle_folder_of_ones_own_loads_and_a_failed_load_keeps_it(scene, tiny_models):
    """What the module's Browse... gives: a folder `acnn train ae` wrote. A wrong kind of bundle chosen after it
    is refused with the explored shape as it was."""
    logic = ShapeExplorerLogic()
    logic.load(str(tiny_models["ae"]), "cpu")
    s = logic.sliders(1)[0]
    logic.set_value(s.dim, s.range[1])
    code = logic.code.copy()
    node = logic.update(None, scene)
    assert node.GetAttribute("ACNN.Model") == logic.model.runner.bundle.name
    with pytest.raises(InputError, match="seg"):
        logic.load(str(tiny_models["seg"]), "cpu")
    assert logic.model.runner.bundle.path == Path(tiny_models["ae"]) and np.array_equal(logic.code, code)


def test_real_shape_model_decodes_lv_and_rv(scene):
    """The bundled ACDC shape model (ae-acdc): real shapes, three structures, as named segments."""
    from ACNNSlicerLib.common import models_for

    if "ae-acdc" not in models_for("ae", "tl"):
        pytest.skip("ae-acdc is not bundled")
    logic = ShapeExplorerLogic()
    logic.load("ae-acdc", "cpu")
    logic.reset()
    node = logic.update(scene=scene)
    segmentation = node.GetSegmentation()
    names = {segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())}
    assert {"LV blood pool", "LV myocardium", "RV blood pool"} <= names
    labels = mrml.labels_from_segmentation(node)
    assert {1, 2, 3} <= set(np.unique(labels.array).tolist())
    # as the heart lies in the patient (and the phantom's shapes lie): the apex down, the RV on the right. ACDC's
    # maps run base first on an identity grid, which would put the base down
    assert _lies(labels) == ("apex down", "RV right")
    phantom = ShapeExplorerLogic()
    phantom.load("ae-phantom", "cpu")
    assert _lies(mrml.labels_from_segmentation(phantom.update(scene=scene)))[0] == "apex down"
    # each shape shown is checked as a segmentation is: ae-acdc's mean code decodes its apical slice as blood pool
    # with two stray voxels of myocardium (the apex open, the myocardium in three parts); its most used
    # dimension at -2 std gives a plausible shape
    assert phantom.last_verdict == "plausible"
    assert logic.last_verdict == ("IMPLAUSIBLE: more than one connected component in a structure, "
                                  "blood pool touching the background below the basal third (apex included)")
    logic.set_value(logic.sliders(1)[0].dim, logic.sliders(1)[0].range[0])
    logic.update(node)
    assert logic.last_verdict == "plausible"


def _lies(labels):
    """How a decoded shape lies in RAS (the node's physical space): its LV's voxels weigh towards the wide end, the
    base, so their mean lies above the middle of its extent where the apex is down; the RV's mean right of the
    LV's or not."""
    def ras(values):
        ijk = np.argwhere(np.isin(labels.array, values)).astype(float)
        return ijk @ labels.geometry.ijk_to_ras[:3, :3].T + labels.geometry.ijk_to_ras[:3, 3]

    lv, rv = ras((1, 2)), ras((3,))
    s = lv[:, 2]
    return ("apex down" if s.mean() > (s.min() + s.max()) / 2 else "apex up",
            None if not len(rv) else "RV right" if rv[:, 0].mean() > lv[:, 0].mean() else "RV left")


def test_the_shape_model_a_segmentation_model_was_trained_with():
    """The studio offers, beside a segmentation model, the shape space it was trained with (found by checksum)."""
    from ACNNSlicerLib.common import models_for

    assert ShapeExplorerLogic.prior_of("acnn-seg-phantom") == "ae-phantom"
    if "acnn-seg-acdc" in models_for("seg"):
        assert ShapeExplorerLogic.prior_of("acnn-seg-acdc") == "ae-acdc"
    assert ShapeExplorerLogic.prior_of("seg3d-phantom") is None  # trained without a prior
    assert ShapeExplorerLogic.prior_of(None) is None
