"""Inference on volumes of any geometry, and the segment / superresolve / explore / demo commands."""

import copy
import csv
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from ACNNCore.bundle import members, prior_of, read_meta, save_ensemble
from ACNNCore.errors import InputError
from ACNNCore.inference import (CORRECTION_REFUSED, ENSEMBLE_AGREE_MM, Segmenter, ShapeModel, SuperResolver,
                                ensemble_center, heart_part, hr_geometry, interpolate_stack)
from ACNNCore.postprocessing import clean_up, keep_largest_component
from ACNNCore.io import read_labels, read_segmentation, read_volume, write_volume
from ACNNCore.metrics import plausibility
from ACNNCore.volume import Volume

from .test_volume_io import oblique_direction


def acnn(*args):
    return subprocess.run([sys.executable, "-m", "ACNNCore.cli", *map(str, args)], capture_output=True, text=True)


def in_process(capsys, *args):
    """``acnn ARGS`` through ``ACNNCore.cli.main`` in this process: its status, stdout and stderr, as
    :func:`acnn` gives them (a subprocess's cost, an import of torch, spared)."""
    from ACNNCore.cli import main

    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["acnn", *map(str, args)], code, out, err)


def _lr_case(tiny_data, subject="subject000", phase="ED"):
    return read_volume(tiny_data / subject / phase / "lr.nii.gz")


def test_hr_geometry_splits_each_slice_in_k():
    lr = Volume.from_array(np.zeros((8, 8, 4), np.float32), (1.5, 1.5, 10.0), (3, 4, 5), oblique_direction()).geometry
    hr = hr_geometry(lr, 5)
    assert hr.shape == (8, 8, 20) and hr.spacing == (1.5, 1.5, 2.0)
    # HR slices 5k..5k+4 are centred on LR slice k, and span exactly its 10 mm
    for k in range(4):
        np.testing.assert_allclose(hr.index_to_physical((2, 3, 5 * k + 2)), lr.index_to_physical((2, 3, k)))
    np.testing.assert_allclose(hr.direction, lr.direction)


def _labelled_parts(*parts):
    """(4, 120, 120, 4) class probabilities: background everywhere (sure, .99) but for boxes ``(corner,
    (width, height), sureness)`` labelled LV blood pool, each with that top-class probability."""
    probs = np.zeros((4, 120, 120, 4), np.float32)
    probs[0] = 0.99
    probs[1:] = 0.01 / 3
    for (x, y), (w, h), sure in parts:
        probs[:, x:x + w, y:y + h] = (1 - sure) / 3
        probs[1, x:x + w, y:y + h] = sure
    return probs


def test_the_heart_is_the_large_sure_part_of_a_whole_image_look():
    """What the first look of the heart search keeps (shapes of two failures on ACDC, benchmarks/ACDC.md):
    a heart much larger than a slightly surer stray part (patient090 ES), a heart that is only the
    fourth-largest part but far the surest (patient042 ES) -- both missed by the surest of the three largest."""
    heart = ((10, 10), (30, 30), 0.874)
    probs = _labelled_parts(heart, ((80, 80), (14, 14), 0.881))
    assert heart_part(probs)[10:40, 10:40].all() and heart_part(probs).sum() == 30 * 30 * 4
    heart = ((70, 70), (25, 25), 0.94)
    probs = _labelled_parts(((0, 0), (40, 30), 0.851), ((0, 40), (30, 28), 0.822), ((0, 80), (30, 30), 0.847), heart)
    assert heart_part(probs)[70:95, 70:95].all() and heart_part(probs).sum() == 25 * 25 * 4
    # an equally sure larger part is the heart; nothing labelled, no heart
    assert heart_part(_labelled_parts(((0, 0), (20, 20), 0.9), ((60, 60), (30, 30), 0.9)))[60:90, 60:90].all()
    assert heart_part(_labelled_parts()) is None


def test_an_ensemble_finds_the_heart_with_its_first_member_unless_the_others_disagree():
    """ensemble_center: where the members' searches agree, exactly the first member's centre (not their median:
    the window every ensemble figure before 2026-12-05 was measured with); a first member ending more than
    35 mm in-plane from the members' median is outvoted by the member nearest it; two members cannot outvote
    each other; a member that found nothing does not count; nothing found, None. In-plane is along the
    image's own axes: a stack's slices may lie along any physical direction."""
    grid = Volume.from_array(np.zeros((4, 4, 4), np.float32), (1.5, 1.5, 10.0), direction=oblique_direction()).geometry
    along = grid.direction[:, :2].T  # physical -> in-plane mm along the image's i and j axes
    heart = grid.index_to_physical((40, 50, 2))
    near = [heart + grid.direction @ d for d in ([5.0, 0, 0], [0, -8.0, 0], [-6.0, 4.0, 0], [3.0, 3.0, 0])]
    assert np.array_equal(ensemble_center(near, grid), near[0])  # agreeing: the first member's centre itself
    off = heart + grid.direction @ [ENSEMBLE_AGREE_MM + 10.0, 0, 0]
    outvoted = ensemble_center([off, *near[1:]], grid)
    median = np.median([off, *near[1:]], axis=0)
    assert any(np.array_equal(outvoted, c) for c in near[1:])  # a member's own centre, not a blend
    assert min(grid.in_plane_mm(c, median) for c in near[1:]) == grid.in_plane_mm(outvoted, median)
    assert np.linalg.norm(along @ (outvoted - heart)) < 10
    across = heart + grid.direction @ [0, 0, 200.0]  # far across the slices only: in-plane it agrees
    assert np.array_equal(ensemble_center([across, *near[1:]], grid), across)
    assert np.array_equal(ensemble_center([off, near[1]], grid), off)  # two members: the first kept
    assert any(np.array_equal(ensemble_center([None, off, *near[1:]], grid), c) for c in near[1:])  # first found
    assert np.array_equal(ensemble_center([None, near[2], None], grid), near[2])
    assert ensemble_center([None, None], grid) is None


def test_a_bundled_ensemble_is_its_members_averaged(tiny_models, tiny_data, tmp_path):
    """A folder with ensemble.json naming member bundles (how acnn-seg-acdc ships): the Segmenter runs each
    member and averages, as given the members' folders; it is described by its first member and lists them
    all; load_bundle refuses it with the way out; a member outside the folder or a tampered one is refused."""
    from ACNNCore.bundle import describe, load_bundle, members, read_meta, save_bundle

    folder = tmp_path / "ens"
    shutil.copytree(tiny_models["seg"], folder / "a")
    other = load_bundle(tiny_models["seg"])
    with torch.no_grad():
        for p in other.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_bundle(other.model, folder / "b", other.meta)
    (folder / "ensemble.json").write_text(json.dumps({"format": "acnn-ensemble", "name": "ens",
                                                      "members": ["a", "b"]}))

    lr = _lr_case(tiny_data)
    ensemble = Segmenter(folder, device="cpu")
    assert len(ensemble.runners) == 2 and ensemble.passes == 2 and ensemble.name == "ens"
    each = [Segmenter(folder / m, device="cpu")(lr).probabilities for m in ("a", "b")]
    assert not np.allclose(each[0], each[1], atol=1e-3)
    np.testing.assert_allclose(ensemble(lr).probabilities, (each[0] + each[1]) / 2, atol=1e-5)
    np.testing.assert_allclose(Segmenter([folder / "a", folder / "b"], device="cpu")(lr).probabilities,
                               ensemble(lr).probabilities, atol=1e-6)

    meta, about = read_meta(folder), describe(folder)
    assert meta["name"] == "ens" and meta["members"] == 2 and meta["task"] == "seg"
    assert [m["bundle"] for m in about["members"]] == [str(folder / "a"), str(folder / "b")]
    assert about["weights"] == "as recorded (SHA-256)" and about["prior"] == str(prior_of(tiny_models["seg"]))
    with pytest.raises(InputError, match=re.escape(f"ensemble of 2 networks (a, b): where one network is wanted "
                                                   f"(--init, load_bundle), name one of them, e.g. {folder / 'a'}")):
        load_bundle(folder)
    with pytest.raises(InputError, match=r"ens is a segmentation model \(task seg\); this needs a shape model"):
        ShapeModel(folder, device="cpu")  # refused for its task, not for being two networks

    weights = folder / "b" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + bytes(8))
    assert "does not match the checksum" in describe(folder)["weights"]
    with pytest.raises(InputError, match="does not match the checksum"):
        Segmenter(folder, device="cpu")
    for listed, why in ((["a", "../ens/../outside"], "not a bundle inside"), ([], "not an ACNN ensemble"),
                        ("a", "not an ACNN ensemble")):
        (folder / "ensemble.json").write_text(json.dumps({"format": "acnn-ensemble", "members": listed}))
        with pytest.raises(InputError, match=why):
            members(folder)
    (folder / "ensemble.json").write_text("{")
    with pytest.raises(InputError, match="not valid JSON"):
        read_meta(folder)


def test_segmenter_on_the_model_grid(tiny_models, tiny_data):
    lr = _lr_case(tiny_data)
    result = Segmenter(tiny_models["seg"], device="cpu")(lr)
    truth = read_volume(tiny_data / "subject000" / "ED" / "hr_gt.nii.gz")
    assert result.labels.geometry.same_as(truth.geometry)
    assert result.labels.array.dtype == np.uint8 and set(np.unique(result.labels.array)) <= {0, 1, 2}
    np.testing.assert_allclose(result.probabilities.sum(0), 1.0, atol=1e-4)
    assert result.label_names == {1: "LV blood pool", 2: "LV myocardium"}


def test_runner_computes_channels_last_what_the_network_computes(tiny_models, tiny_data):
    runner = Segmenter(tiny_models["seg"], device="cpu").runner
    x, _ = runner.model_input(runner.normalised(_lr_case(tiny_data))[0])
    model = runner.bundle.model
    assert model.up.weight.is_contiguous(memory_format=torch.channels_last_3d)
    out = runner.run(model, x)
    assert out.is_contiguous()
    with torch.no_grad():
        plain = copy.deepcopy(model).to(memory_format=torch.contiguous_format)(x)
    torch.testing.assert_close(out, plain, rtol=1e-4, atol=1e-4)


def test_segmenter_maps_back_onto_any_input_geometry(tiny_models, tiny_data):
    """An oblique, cropped stack: the output lies on the input's own in-plane grid, K slices per slice."""
    lr = _lr_case(tiny_data)
    moved = Volume.from_array(lr.array[2:30, 1:31, :], (3.0, 3.0, 30.0), (10.0, -20.0, 5.0), oblique_direction())
    result = Segmenter(tiny_models["seg"], device="cpu")(moved)
    expected = hr_geometry(moved.geometry, 5)
    assert result.labels.geometry.same_as(expected)
    np.testing.assert_allclose(result.labels.geometry.ijk_to_ras[:3, :3] @ np.ones(3),
                               expected.ijk_to_ras[:3, :3] @ np.ones(3))


@pytest.mark.parametrize("order", [(2, 0, 1), (1, 2, 0)])
def test_a_stack_with_its_slices_along_another_axis_gives_the_same_result(tiny_models, tiny_data, order):
    """The same stack stored with its slices along the first or second array axis (the same voxels at the
    same places): segmentation, super-resolution, plausibility and the shape code are those of the usual
    layout, the outputs laid out as the input is. (Before, the networks took in-plane for through-plane.)"""
    lr = _lr_case(tiny_data)
    turned = lr.permuted(order)
    assert turned.slices_last()[0].geometry.same_as(lr.geometry) and turned.spacing[2] < lr.spacing[2]
    back = tuple(np.argsort(order))
    segmenter = Segmenter(tiny_models["seg"], device="cpu", cleanup=True)
    usual, other = segmenter(lr), segmenter(turned)
    assert other.labels.shape == tuple(usual.labels.shape[o] for o in order)  # laid out as the input
    assert np.array_equal(other.labels.permuted(back).array, usual.labels.array)
    assert other.labels.permuted(back).geometry.same_as(usual.labels.geometry)
    np.testing.assert_allclose(other.probabilities.transpose(0, *(1 + b for b in back)), usual.probabilities,
                               atol=1e-5)
    assert plausibility(other.labels) == plausibility(usual.labels)
    hr = SuperResolver(tiny_models["sr"], device="cpu")
    np.testing.assert_allclose(hr(turned).permuted(back).array, hr(lr).array, atol=1e-4)
    shapes = ShapeModel(tiny_models["ae"], device="cpu")
    np.testing.assert_allclose(shapes.encode(other.labels), shapes.encode(usual.labels), atol=1e-4)
    raw = Segmenter(tiny_models["seg"], device="cpu")
    usual, other = raw(lr), raw(turned)
    for fix in (lambda r: clean_up(r.labels, close_myocardium=True),
                lambda r: shapes.correct(r.labels, r.probabilities, max_change=None)[0]):
        assert np.array_equal(fix(other).permuted(back).array, fix(usual).array)
    near_isotropic = Volume.from_array(np.zeros((4, 4, 4)), (1.0, 1.4, 1.2))
    assert near_isotropic.slices_last()[1] == (0, 1, 2)  # no slice axis to find: left as it is


def test_super_resolver_geometry_and_intensity_units(tiny_models, tiny_data):
    lr = _lr_case(tiny_data)
    hr = SuperResolver(tiny_models["sr"], device="cpu")(lr)
    assert hr.geometry.same_as(hr_geometry(lr.geometry, 5))
    # back in the input's intensity units (not the normalised ones), roughly
    assert 0.2 * lr.array.max() < hr.array.max() < 5 * lr.array.max()
    linear = interpolate_stack(lr, 5, "linear")
    assert linear.geometry.same_as(hr.geometry)
    np.testing.assert_allclose(linear.array[:, :, 2::5], lr.array, atol=1e-5)


def test_super_resolver_covers_a_field_of_view_wider_than_its_model(tiny_models, tiny_data):
    """A real image's chest reaches beyond the model's 120 mm: there the HR image is the input interpolated
    linearly, inside the network's output -- the whole extent, nothing left black."""
    lr = _lr_case(tiny_data)
    wide = np.pad(lr.array, ((24, 24), (24, 24), (0, 0)), mode="reflect")  # 3.75 mm pixels: 300 mm across
    wide = Volume.from_array(wide, lr.spacing, origin=lr.geometry.origin - np.array([24 * lr.spacing[0]] * 2 + [0]))
    hr = SuperResolver(tiny_models["sr"], device="cpu", locator=None)(wide).array  # the window at the centre
    linear = interpolate_stack(wide, 5, "linear").array
    assert np.isfinite(hr).all()
    np.testing.assert_allclose(hr[:10], linear[:10], atol=1e-5)  # a border 37 mm wide: outside the model's view
    np.testing.assert_allclose(hr[:, -10:], linear[:, -10:], atol=1e-5)
    assert np.abs(hr[40:60, 40:60] - linear[40:60, 40:60]).mean() > 1e-3  # the middle: the network's


def test_shape_model_encode_decode_traverse(tiny_models, tiny_data):
    model = ShapeModel(tiny_models["tl"], device="cpu")
    truth = read_volume(tiny_data / "subject000" / "ED" / "hr_gt.nii.gz")
    code = model.encode(truth.with_array(truth.array.astype(np.uint8)))
    assert code.shape == (64,)
    decoded = model.decode(code)
    assert decoded.shape == (32, 32, 20)
    placed = model.reconstruct(truth.with_array(truth.array.astype(np.uint8)))  # where the map lies
    assert placed.geometry.same_as(model.placement(truth)) and np.array_equal(placed.array, decoded.array)
    steps = model.traverse(model.order[0], steps=5, k=2.0)
    assert [z for z, _ in steps] == [-2.0, -1.0, 0.0, 1.0, 2.0]
    image_code = model.encode_image(read_volume(tiny_data / "subject000" / "ED" / "hr.nii.gz"))
    assert image_code.shape == (64,)
    with pytest.raises(InputError, match="outside the 64-d code"):
        model.traverse(64)
    # what is not a code or a label map: refused, not decoded or encoded into a shape
    with pytest.raises(InputError, match="the code holds 1 NaN or infinite values"):
        model.decode(np.where(np.arange(64) == 5, np.nan, code))
    with pytest.raises(InputError, match="non-integer values; is it an image rather than a label map"):
        model.encode(read_volume(tiny_data / "subject000" / "ED" / "hr.nii.gz"))
    assert np.allclose(model.encode(truth.with_array(truth.array.astype(np.float32))), code, atol=1e-5)
    with_rv = truth.with_array(np.where(truth.array == 0, 3, truth.array).astype(np.uint8))  # an RV it never saw
    with pytest.raises(InputError, match="holds values up to 3; tl knows 1 LV blood pool, 2 LV myocardium$"):
        model.encode(with_rv)


def test_models_of_the_wrong_kind_are_refused(tiny_models):
    with pytest.raises(InputError, match=r"is a shape model \(task ae\); this needs a segmentation model \(task seg\)"):
        Segmenter(tiny_models["ae"], device="cpu")
    with pytest.raises(InputError, match=r"this needs a shape model \(task ae\) or a T-L shape model \(task tl\)$"):
        ShapeModel(tiny_models["seg"], device="cpu")
    # a bundled ensemble of another task is refused as that task's model, not for being four networks
    with pytest.raises(InputError, match=r"acnn-seg-acdc is a segmentation model \(task seg\); this needs a shape"):
        ShapeModel("acnn-seg-acdc", device="cpu")
    with pytest.raises(InputError, match=r"is a segmentation model \(task seg\); this needs a super-resolution"):
        SuperResolver("acnn-seg-acdc", device="cpu")


def test_an_ensemble_averages_its_members_probabilities(tiny_models, tiny_data, tmp_path, capsys):
    """Several bundles of one kind (here the same recipe, another seed): their probabilities averaged on the
    input's grid; from the command line, --model given twice. Members that do not match are refused."""
    from ACNNCore.training import TrainConfig, train

    other = train(TrainConfig(task="seg", epochs=2, batch_size=4, seed=1), tiny_data, tmp_path / "seg1",
                  prior=tiny_models["ae"], progress=False)
    lr_path = tiny_data / "subject002" / "ED" / "lr.nii.gz"
    lr = read_volume(lr_path)
    a, b = (Segmenter(m, device="cpu")(lr) for m in (tiny_models["seg"], other))
    assert not np.allclose(a.probabilities, b.probabilities, atol=1e-3)
    both = Segmenter([tiny_models["seg"], other], device="cpu")(lr)
    np.testing.assert_allclose(both.probabilities, (a.probabilities + b.probabilities) / 2, atol=1e-5)
    np.testing.assert_array_equal(both.labels.array, both.probabilities.argmax(0))
    assert both.labels.geometry.same_as(a.labels.geometry) and both.label_names == a.label_names
    run = acnn("segment", lr_path, "--out", tmp_path / "e.nii.gz", "--model", tiny_models["seg"], "--model", other,
               "--device", "cpu")
    assert run.returncode == 0, run.stderr
    np.testing.assert_array_equal(read_volume(tmp_path / "e.nii.gz").array, both.labels.array)
    with pytest.raises(InputError, match="cannot join an ensemble .* labels differs"):
        Segmenter([tiny_models["seg"], "acnn-seg-acdc"], device="cpu")
    for kind, model in ((ShapeModel, tiny_models["ae"]), (SuperResolver, tiny_models["sr"])):
        with pytest.raises(InputError, match="takes one model, not 2"):
            kind([model, model], device="cpu")

    # saved as one model (`acnn ensemble`): the same average from its folder, its networks named by their runs
    run = in_process(capsys, "ensemble", tiny_models["seg"], tmp_path / "seg1", "--out", tmp_path / "ens", "--about",
                     "two seeds")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"{tmp_path / 'ens'}: an ensemble of 2 networks (seg, seg1)"
    np.testing.assert_array_equal(Segmenter(tmp_path / "ens", device="cpu")(lr).probabilities, both.probabilities)
    about = json.loads(in_process(capsys, "info", tmp_path / "ens").stdout)
    assert about["about"] == "two seeds" and len(about["members"]) == 2
    again = in_process(capsys, "ensemble", tiny_models["seg"], tmp_path / "seg1", "--out",
                       tmp_path / "ens")  # nothing replaced
    assert again.returncode == 2 and "ens exists and is not empty; pass --overwrite" in again.stderr
    for models, why in (([tiny_models["seg"]], "an ensemble is two or more networks, not 1"),
                        ([tiny_models["seg"], tiny_models["seg"].parent], "is given twice"),
                        ([tiny_models["seg"], tiny_models["ae"]], "is a shape model"),
                        ([tiny_models["seg"], "acnn-seg-acdc"], "cannot join an ensemble .* labels differs")):
        with pytest.raises(InputError, match=why):
            save_ensemble(models, tmp_path / "refused")
    with pytest.raises(InputError, match="holds .*seg1.*, a network of the ensemble: save the ensemble elsewhere"):
        save_ensemble([tiny_models["seg"], tmp_path / "seg1"], tmp_path, overwrite=True)  # would delete seg1
    assert not (tmp_path / "refused").exists() and (tmp_path / "seg1" / "model" / "model.json").is_file()
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "notes.txt").touch()
    save_ensemble([tmp_path / "ens", tmp_path / "seg1" / "model-final"], tmp_path / "more", overwrite=True)
    assert [m.name for m in members(tmp_path / "more")] == ["seg", "seg1", "seg1-2"]  # an ensemble's networks each
    assert not (tmp_path / "more" / "notes.txt").exists() and sorted(p.name for p in tmp_path.iterdir()) == \
        ["e.nii.gz", "ens", "more", "seg1"]  # replaced as asked, nothing left beside it


def test_segment_command_writes_nifti_and_slicer_segmentation(tiny_models, tiny_data, tmp_path, capsys):
    """`acnn segment` on a stack as a user runs it (the first command); the others in-process (no import of
    torch and a model load each)."""
    lr_path = tiny_data / "subject001" / "ES" / "lr.nii.gz"
    run = acnn("segment", lr_path, "--out", tmp_path / "seg.nii.gz", "--model", tiny_models["seg"])
    assert run.returncode == 0, run.stderr
    labels = read_volume(tmp_path / "seg.nii.gz")
    assert labels.geometry.same_as(hr_geometry(read_volume(lr_path).geometry, 5))
    assert f"HR grid {labels.shape}" in run.stdout  # K = 5
    assert re.search(r"; (plausible|IMPLAUSIBLE: [a-z(), -]+)\n", run.stdout), run.stdout  # its plausibility
    # an implausible output raw (a tiny model's), alone or in a cine: what to do about it, on stderr
    from ACNNCore.io import write_frames

    cine = write_frames([read_volume(lr_path)] * 2, tmp_path / "cine.nii.gz")
    run_cine = in_process(capsys, "segment", cine, "--out", tmp_path / "cine_seg.nii.gz", "--model", tiny_models["seg"])
    for r in (run, run_cine):
        assert "IMPLAUSIBLE" in r.stdout and "note: implausible outputs: --clean-up removes" in r.stderr, r.stderr
        assert "image stored turned or mirrored in-plane, unlike the model's training images: --orient" in r.stderr
    # the orientation search, asked for, is not suggested again
    searched = in_process(capsys, "segment", lr_path, "--out", tmp_path / "searched.nii.gz", "--model",
                          tiny_models["seg"], "--orient")
    assert searched.returncode == 0 and "orientation: the network was surest of" in searched.stdout, searched.stderr
    assert "IMPLAUSIBLE" in searched.stdout and "--clean-up removes" in searched.stderr  # a tiny model's output
    assert "--orient" not in searched.stderr, searched.stderr
    run = in_process(capsys, "segment", lr_path, "--out", tmp_path / "seg.seg.nrrd", "--model", tiny_models["seg"])
    assert run.returncode == 0, run.stderr
    seg, names = read_segmentation(tmp_path / "seg.seg.nrrd")
    np.testing.assert_array_equal(seg.array, labels.array)
    assert names == {1: "LV blood pool", 2: "LV myocardium"}
    again = in_process(capsys, "segment", lr_path, "--out", tmp_path / "seg.nii.gz", "--model", tiny_models["seg"])
    assert again.returncode == 2 and "pass --overwrite" in again.stderr
    wrong = in_process(capsys, "segment", lr_path, "--out", tmp_path / "x.nii.gz", "--model", tiny_models["ae"])
    assert wrong.returncode == 2 and "this needs a segmentation model (task seg)" in wrong.stderr
    assert "Traceback" not in wrong.stderr
    run = in_process(capsys, "segment", lr_path, "--out", tmp_path / "tta.nii.gz", "--model", tiny_models["seg"],
                     "--tta")
    assert run.returncode == 0, run.stderr
    calls = []  # progress after each of the nine passes (the command's bar)
    tta = Segmenter(tiny_models["seg"], "cpu", tta=True)(read_volume(lr_path),
                                                         progress=lambda done, total: calls.append((done, total)))
    tta = tta.labels
    assert calls == [(i, 9) for i in range(1, 10)]
    np.testing.assert_array_equal(read_volume(tmp_path / "tta.nii.gz").array, tta.array)
    phantom_only = in_process(capsys, "benchmark", "seg", "--data", tmp_path, "--out", tmp_path / "b", "--tta")
    assert phantom_only.returncode == 2 and "options of the acdc benchmark" in phantom_only.stderr


def test_segment_command_on_a_data_folder_writes_maps_and_measures(tiny_models, tiny_data, tmp_path):
    """A phantom data folder: OUT/CASE.nii.gz per case and OUT/measures.csv with each case's volumes and
    plausibility, and each subject's EF on its ED and ES rows; nothing overwritten without --overwrite."""
    import csv

    from ACNNCore.metrics import clinical_measures, ejection_fraction

    out = tmp_path / "segs"
    run = acnn("segment", tiny_data, "--out", out, "--model", tiny_models["seg"], "--device", "cpu")
    assert run.returncode == 0, run.stderr
    said = rf"segmented 16 cases into {out} \((\d+) of 16 outputs implausible\); measures: {out / 'measures.csv'}"
    implausible = int(re.search(said, run.stdout).group(1))
    assert implausible and "note: implausible outputs: --clean-up removes stray islands" in run.stderr  # tiny models
    rows = {r["case"]: r for r in csv.DictReader(open(out / "measures.csv", encoding="utf-8"))}
    assert len(rows) == 16 and "rv_volume_ml" not in rows["subject000_ED"]  # the phantom model: no RV
    ed, es = (clinical_measures(read_volume(out / f"subject003_{p}.nii.gz"))["lv_volume_ml"] for p in ("ED", "ES"))
    assert float(rows["subject003_ED"]["lv_volume_ml"]) == pytest.approx(ed, abs=0.01)
    ef = ejection_fraction(round(ed, 2), round(es, 2))
    assert float(rows["subject003_ED"]["lv_ef_pct"]) == float(rows["subject003_ES"]["lv_ef_pct"]) == round(ef, 1)
    assert rows["subject003_ED"]["plausible"] in ("True", "False")
    again = acnn("segment", tiny_data, "--out", out, "--model", tiny_models["seg"], "--device", "cpu")
    assert again.returncode == 2 and "pass --overwrite" in again.stderr


def test_segment_command_on_a_plain_folder_of_stacks_and_cines(tmp_path, capsys):
    """A plain folder (neither phantom nor ACDC layout): each image a stack or a 4-D cine (a cine was 'a 4-D
    image; a 3-D volume is needed'), the cine's labels a 4-D map, its ED and ES rows in measures.csv with their
    frames (from 1) and the EF; a file that cannot be read fails the command before any output."""
    import csv

    from ACNNCore.io import read_frames, write_frames
    from ACNNCore.phantom.population import PhantomConfig, generate_subject

    subject = generate_subject(0, 1000, PhantomConfig())
    ed, es = subject.phases["ED"]["lr"], subject.phases["ES"]["lr"]
    folder, out = tmp_path / "in", tmp_path / "out"
    write_frames([es, ed], folder / "cine.nii.gz")
    write_volume(ed, folder / "stack.nii.gz")
    about = in_process(capsys, "info", folder)  # described as acnn segment reads it (was "a 4-D image" as well)
    assert about.returncode == 0 and re.search(rf"^{re.escape(str(folder))}: 2 images, stacks and 4-D cines\n +cine +2 "
                                               r"frames of \(96, 96, 12\) .*\n +stack +1 frame of ", about.stdout)
    run = in_process(capsys, "segment", folder, "--out", out, "--model", "acnn-seg-phantom", "--device", "cpu")
    assert run.returncode == 0 and f"segmented 2 cases into {out} (" in run.stdout, run.stderr
    labels = read_frames(out / "cine.nii.gz")
    assert len(labels) == 2 and np.array_equal(read_volume(out / "stack.nii.gz").array, labels[1].array)
    rows = {r["case"]: r for r in csv.DictReader(open(out / "measures.csv", encoding="utf-8"))}
    assert set(rows) == {"cine_ED", "cine_ES", "stack"} and rows["stack"]["frame"] == ""
    assert (rows["cine_ED"]["frame"], rows["cine_ES"]["frame"]) == ("2", "1")
    assert float(rows["cine_ED"]["lv_ef_pct"]) > 20
    (folder / "z_broken.nii.gz").write_bytes(b"not an image")
    run = in_process(capsys, "segment", folder, "--out", tmp_path / "again", "--model", "acnn-seg-phantom")
    assert run.returncode == 2 and "z_broken.nii.gz" in run.stderr and not (tmp_path / "again").exists()


def test_cleanup_removes_islands_and_fills_the_blood_pool(tiny_models, tiny_data, tmp_path):
    a = np.zeros((20, 20, 6), np.uint8)
    a[2:12, 2:12, 1:5] = 2
    a[4:10, 4:10, 1:5] = 1
    a[6, 6, 2] = 0  # a hole in the blood pool
    a[7:9, 7:9, 3] = 2  # a papillary muscle labelled myocardium, inside the blood pool
    a[4, 2:4, 1:5] = 1  # a gap in the myocardium: stays
    a[16:18, 16:18, 2] = 1  # an island of blood pool: goes
    a[0, 19, 0] = 2  # an island of myocardium: goes
    a[12, 12, 5] = 2  # myocardium meeting the wall at a corner only: 26-connected, stays
    before = a.copy()
    islands = a.copy()
    islands[16:18, 16:18, 2] = 0
    islands[0, 19, 0] = 0
    islands[7:9, 7:9, 3] = 0  # the papillary muscle is an island of myocardium, too
    np.testing.assert_array_equal(keep_largest_component(Volume.from_array(a, (1.0, 1.0, 2.0))).array, islands)
    np.testing.assert_array_equal(a, before)  # the input is left as it was
    out = clean_up(Volume.from_array(a, (1.0, 1.0, 2.0))).array
    expected = islands.copy()
    expected[6, 6, 2] = expected[7:9, 7:9, 3] = 1  # cavity, as ACDC's experts label it
    np.testing.assert_array_equal(out, expected)
    assert plausibility(Volume.from_array(a, (1.0, 1.0, 2.0)))["holes"] > 0
    assert plausibility(Volume.from_array(out, (1.0, 1.0, 2.0)))["holes"] == 0
    lr_path = tiny_data / "subject001" / "ES" / "lr.nii.gz"
    code = ("import sys; from ACNNCore.cli import main; main(['segment', *sys.argv[1:]]); "
            "print('monai' in sys.modules)")  # the clean-up does not import MONAI (seconds)
    run = subprocess.run([sys.executable, "-c", code, str(lr_path), "--out", str(tmp_path / "clean.nii.gz"),
                          "--model", str(tiny_models["seg"]), "--clean-up"], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.splitlines()[-1] == "False", run.stdout + run.stderr
    clean = read_volume(tmp_path / "clean.nii.gz")
    np.testing.assert_array_equal(clean.array, clean_up(clean).array)


def test_closing_the_myocardium_makes_open_rings_plausible(tiny_models, tiny_data, tmp_path):
    from .test_metrics import ring_lv

    good = ring_lv()  # 3 mm slices: an open apex counts too
    np.testing.assert_array_equal(clean_up(good, close_myocardium=True).array, good.array)  # nothing to close
    a = good.array.copy()
    a[28, 20, 10] = a[27, 20, 11] = 0  # holes in the LV: inside the wall, and between wall and cavity
    assert "holes" in plausibility(clean_up(good.with_array(a)))["problems"]
    filled = clean_up(good.with_array(a), close_myocardium=True).array
    assert filled[28, 20, 10] == 2 and filled[27, 20, 11] == 1 and plausibility(good.with_array(filled))["plausible"]
    a = good.array.copy()
    a[24:32, 18:23, 8:10] = 0  # a gap in the lateral wall, mid-ventricle: blood meets background
    a[..., 2:4] = 0  # no apical cap
    a[8:17, 18:23, 11][a[8:17, 18:23, 11] == 2] = 3  # blood meeting the RV through the septum
    before = a.copy()
    gappy = good.with_array(a)
    assert set(plausibility(clean_up(gappy))["problems"]) == {"not_enclosed", "touches_background"}
    closed = clean_up(gappy, close_myocardium=True)
    np.testing.assert_array_equal(a, before)  # the input is left as it was
    assert plausibility(closed)["plausible"]
    changed = closed.array != a
    assert set(a[changed]) == {1} and set(closed.array[changed]) == {2}  # only cavity became wall
    assert changed[..., 4].all(where=a[..., 4] == 1)  # the apical slice's blood: the cap
    assert changed[24:, :, 8:10].any() and changed[:20, :, 11].any() and not changed[20:, :, 11].any()
    assert not changed[..., 14:].any()  # the basal third is open to the atrium
    np.testing.assert_array_equal(clean_up(closed, close_myocardium=True).array, closed.array)
    # blood of the first basal slice (13) reaching past the wall, over background in the slice below: an open
    # apex through-plane, as the checks see it; that blood becomes wall, the rest of the base stays open
    a = good.array.copy()
    a[20:33, 18:23, 13] = 1
    assert plausibility(good.with_array(a))["problems"] == ["touches_background"]
    closed = clean_up(good.with_array(a), close_myocardium=True).array
    assert plausibility(good.with_array(closed))["plausible"]
    assert set(closed[a != closed]) == {2} and (closed[30:33, 18:23, 13] == 2).all()
    np.testing.assert_array_equal(closed[..., :13], a[..., :13])
    # blood with no myocardium reaching its wall (thick slices: the apex is not closed through-plane) goes
    a = good.array.copy()
    a[..., :5] = 0
    x, y = np.mgrid[:40, :40]
    a[..., 4][np.hypot(x - 20, y - 20) < 3] = 1
    thick = Volume.from_array(a, (1.5, 1.5, 10.0))
    closed = clean_up(thick, close_myocardium=True).array
    assert not closed[..., 4].any() and plausibility(thick.with_array(closed))["plausible"]
    np.testing.assert_array_equal(closed[..., 5:], a[..., 5:])
    # from the command line
    lr_path = tiny_data / "subject001" / "ES" / "lr.nii.gz"
    run = acnn("segment", lr_path, "--out", tmp_path / "closed.nii.gz", "--model", tiny_models["seg"],
               "--close-myocardium")
    assert run.returncode == 0, run.stderr
    out = read_volume(tmp_path / "closed.nii.gz")
    np.testing.assert_array_equal(out.array, clean_up(out, close_myocardium=True).array)


def test_a_shape_model_corrects_an_implausible_map_where_it_is_wrong_and_leaves_a_plausible_one(
        tiny_models, tiny_data, tmp_path, capsys):
    from scipy import ndimage

    from ACNNCore.metrics import defects, lv_thirds
    from ACNNCore.phantom.population import generate_subject

    truth = generate_subject(0, 7).phases["ED"]["hr_gt"]  # the phantom's HR grid, which ae-phantom knows
    shape = ShapeModel("ae-phantom", device="cpu")
    out, how = shape.correct(truth)
    assert how == "plausible" and np.array_equal(out.array, truth.array)
    a = truth.array.copy()
    mid = lv_thirds(a == 1)[0]
    k = mid[len(mid) // 2]
    cx, cy = np.argwhere(a[..., k] == 1).mean(0).astype(int)
    wall = a[cx:, cy - 1:cy + 2, k - 1:k + 2]
    wall[wall == 2] = 0  # a gap through the lateral wall in three mid-ventricular slices
    gappy = truth.with_array(a)
    assert set(plausibility(gappy)["problems"]) == {"not_enclosed", "touches_background"}
    probabilities = np.stack([a == c for c in range(3)]).astype(np.float32)
    for p in (None, probabilities):
        out, how = shape.correct(gappy, p)
        np.testing.assert_array_equal(gappy.array, a)  # the input is left as it was
        assert how.startswith("corrected within 3 voxels") and plausibility(out)["plausible"], how
        changed = out.array != a
        near = ndimage.binary_dilation(defects(gappy), ndimage.iterate_structure(
            ndimage.generate_binary_structure(2, 1), 3)[..., None])
        assert changed.any() and not (changed & ~near).any()  # only around the gap
        assert 2 in out.array[changed] and set(out.array[changed]) <= {1, 2}  # the LV closed
        assert set(np.flatnonzero(changed.any((0, 1)))) <= {k - 1, k, k + 1}
    # the search calls its checkpoint as it starts and before each region (here one: the first passes); what it
    # raises (a GUI's Cancel) stops the search
    calls = []

    class Stop(Exception):
        pass

    def stop_before_the_region():
        calls.append(0)
        if len(calls) == 2:
            raise Stop

    assert shape.correct(gappy, probabilities, checkpoint=lambda: calls.append(0))[1] == how and len(calls) == 2
    calls.clear()
    with pytest.raises(Stop):
        shape.correct(gappy, probabilities, checkpoint=stop_before_the_region)
    calls.clear()
    shape.correct(truth, checkpoint=lambda: calls.append(0))
    assert not calls  # a plausible map: nothing to search
    # a correction that must change more of the LV than allowed is refused, saying how much it would change (out:
    # the correction with the probabilities, from the loop above)
    changed, lv = np.count_nonzero(out.array != a), np.count_nonzero((a == 1) | (a == 2))
    kept, why = shape.correct(gappy, probabilities, max_change=0.5 * changed / lv)
    assert why.startswith(CORRECTION_REFUSED) and f"changes {changed} voxels" in why and f"LV's {lv}" in why, why
    np.testing.assert_array_equal(kept.array, clean_up(gappy).array)
    assert not plausibility(kept)["plausible"]
    for enough in (changed / lv, None, np.inf):  # at the limit, or none
        assert np.array_equal(shape.correct(gappy, probabilities, max_change=enough)[0].array, out.array)
    with pytest.raises(InputError, match="share of the LV"):
        shape.correct(gappy, max_change=0)
    with pytest.raises(InputError, match="probabilities of shape"):
        shape.correct(gappy, probabilities[:2])
    with pytest.raises(InputError, match="values up to 3"):
        shape.correct(truth.with_array(np.where(a == 2, 3, a).astype(np.uint8)))
    # in the segmenter and on the command line: the clean-up, then the correction
    with pytest.raises(InputError, match="must be the same"):
        Segmenter(tiny_models["seg"], "cpu", shape_model="ae-acdc")
    lr = _lr_case(tiny_data, "subject001", "ES")
    result = Segmenter(tiny_models["seg"], "cpu", shape_model=shape)(lr)
    expected, how = shape.correct(Segmenter(tiny_models["seg"], "cpu")(lr).labels, result.probabilities)
    assert result.correction == how and np.array_equal(result.labels.array, expected.array)
    run = acnn("segment", tiny_data / "subject001" / "ES" / "lr.nii.gz", "--out", tmp_path / "corrected.nii.gz",
               "--model", tiny_models["seg"], "--correct", "ae-phantom")
    assert run.returncode == 0, run.stderr
    assert f"shape model: {how}" in run.stdout
    np.testing.assert_array_equal(read_volume(tmp_path / "corrected.nii.gz").array, expected.array)
    strict = Segmenter(tiny_models["seg"], "cpu", shape_model=shape, max_change=1e-6)(lr)
    assert strict.correction == how or strict.correction.startswith(CORRECTION_REFUSED)
    run = in_process(capsys, "segment", tiny_data / "subject001" / "ES" / "lr.nii.gz", "--out",
                     tmp_path / "limit.nii.gz", "--model", tiny_models["seg"], "--max-change", "0.1")
    assert run.returncode != 0 and "give it with --correct" in run.stderr
    run = in_process(capsys, "segment", tiny_data / "subject001" / "ES" / "lr.nii.gz", "--out",
                     tmp_path / "limit.nii.gz", "--model", tiny_models["seg"], "--correct", "--max-change", "-1")
    assert run.returncode != 0 and "above 0" in run.stderr and not (tmp_path / "limit.nii.gz").exists()
    # --correct alone: the network's own prior, found by the checksum its bundle records
    assert Segmenter(tiny_models["seg"], "cpu", shape_model=True).shape_model.runner.bundle.path == \
        prior_of(tiny_models["seg"]) == tiny_models["ae"]
    assert Segmenter("acnn-seg-phantom", "cpu", shape_model=True).shape_model.meta["name"] == "ae-phantom"
    run = in_process(capsys, "segment", tiny_data / "subject001" / "ES" / "lr.nii.gz", "--out", tmp_path / "own.nii.gz",
                     "--model", tiny_models["seg"], "--correct")
    assert run.returncode == 0 and "shape model: " in run.stdout, run.stderr
    with pytest.raises(InputError, match="trained without a shape prior"):
        Segmenter("seg3d-phantom", "cpu", shape_model=True)
    # an ensemble: the prior its networks share (one trained without a prior adds none); two priors, refused
    # (it was the first network's, whatever the others had learnt)
    other, without = tmp_path / "other", tmp_path / "without"
    for folder, prior in ((other, read_meta(tiny_models["tl"])["weights_sha256"]), (without, None)):
        shutil.copytree(tiny_models["seg"], folder)
        meta = read_meta(folder)
        meta["training"]["prior_sha256"] = prior
        (folder / "model.json").write_text(json.dumps(meta), encoding="utf-8")
    assert Segmenter([without, tiny_models["seg"]], "cpu", shape_model=True).shape_model.runner.bundle.path == \
        tiny_models["ae"]
    with pytest.raises(InputError, match=re.escape("the ensemble's networks were trained with 2 different shape "
                                                   f"priors ({tiny_models['seg']}: {tiny_models['ae']} (sha256 ")):
        Segmenter([tiny_models["seg"], without, other], "cpu", shape_model=True)
    with pytest.raises(InputError, match="trained without a shape prior"):
        prior_of([without])


def test_superresolve_and_explore_commands(tiny_models, tiny_data, tmp_path, capsys):
    lr_path = tiny_data / "subject002" / "ED" / "lr.nii.gz"
    run = acnn("superresolve", lr_path, "--out", tmp_path / "sr.nii.gz", "--model", tiny_models["sr"])
    assert run.returncode == 0, run.stderr
    assert read_volume(tmp_path / "sr.nii.gz").shape == (32, 32, 20)
    from ACNNCore.io import read_frames, write_frames  # a cine: every frame, in one window, as a 4-D image

    es = read_volume(tiny_data / "subject002" / "ES" / "lr.nii.gz")
    cine = write_frames([read_volume(lr_path), es], tmp_path / "cine.nii.gz")
    run = in_process(capsys, "superresolve", cine, "--out", tmp_path / "cine_sr.nii.gz", "--model", tiny_models["sr"])
    assert run.returncode == 0 and "cine_sr.nii.gz: 2 frames of HR grid (32, 32, 20)" in run.stdout, run.stderr
    frames = read_frames(tmp_path / "cine_sr.nii.gz")
    assert np.allclose(frames[0].array, read_volume(tmp_path / "sr.nii.gz").array, atol=1e-4)
    assert np.allclose(frames[1].array, SuperResolver(tiny_models["sr"], "cpu")(es).array, atol=1e-4)
    run = in_process(capsys, "superresolve", cine, "--out", tmp_path / "cine.seg.nrrd", "--model", tiny_models["sr"])
    assert run.returncode == 2 and "cine.seg.nrrd: an HR image is written as .nii.gz, .nrrd or .mha (a .seg.nrrd " \
        "holds segmentations)" in run.stderr and not (tmp_path / "cine.seg.nrrd").exists()
    run = in_process(capsys, "explore", "--model", tiny_models["ae"], "--steps", 5, "--out", tmp_path / "t.png")
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"
    again = in_process(capsys, "explore", "--model", tiny_models["ae"], "--steps", 5, "--out", tmp_path / "t.png")
    assert again.returncode == 2 and "t.png exists; pass --overwrite to replace it" in again.stderr
    run = in_process(capsys, "explore", "--model", tiny_models["ae"], "--dim", 3, "--steps", 3, "--out",
                     tmp_path / "steps")
    assert run.returncode == 0, run.stderr
    assert len(list((tmp_path / "steps").glob("dim03_step*.nii.gz"))) == 3
    failing = [f"{z:+.1f}" for z, labels in ShapeModel(tiny_models["ae"], device="cpu").traverse(3, 3)
               if not plausibility(labels)["plausible"]]  # the checks' verdicts said, a folder holding no marks
    assert run.stdout.splitlines()[-1] == (f"failing the plausibility checks: the steps at {', '.join(failing)} sd"
                                           if failing else "every step passes the plausibility checks")
    run = in_process(capsys, "explore", "--model", tiny_models["ae"], "--range", -1, "--out", tmp_path / "neg.png")
    assert run.returncode == 2 and "--range is k in mean +- k std, above 0, not -1" in run.stderr
    from ACNNCore.cli import build_parser, run_explore

    # an infinite range was "the code holds 1 NaN or infinite values"; a .jpg was made a folder of label maps
    for extra, error in ((["--range", "inf", "--out", str(tmp_path / "inf.png")], "above 0, not inf"),
                         (["--out", str(tmp_path / "t.jpg")], "the montage is written as .png (or give a folder")):
        with pytest.raises(InputError, match=re.escape(error)):
            run_explore(build_parser().parse_args(["explore", "--model", str(tiny_models["ae"]), *extra]))
    assert not (tmp_path / "t.jpg").exists()
    # around a subject's own code: its other dimensions kept, the shapes placed where its heart lies
    gt = tiny_data / "subject002" / "ED" / "hr_gt.nii.gz"
    run = in_process(capsys, "explore", "--model", tiny_models["ae"], "--dim", 3, "--steps", 3, "--from", gt, "--out",
                     tmp_path / "around")
    assert run.returncode == 0 and "the other 63 as hr_gt.nii.gz has them" in run.stdout, run.stderr
    around = read_volume(tmp_path / "around" / "dim03_step01_+0.00sd.nii.gz")
    mean = read_volume(tmp_path / "steps" / "dim03_step01_+0.00sd.nii.gz")
    model, truth = ShapeModel(tiny_models["ae"], device="cpu"), read_labels(gt)
    assert around.geometry.same_as(model.placement(truth)) and not around.geometry.same_as(mean.geometry)
    code = model.encode(truth)
    code[3] = model.mean[3]
    assert np.array_equal(around.array, model.decode(code).array)


def test_encode_command_writes_each_maps_code_and_group(tiny_models, tiny_data, tmp_path, capsys):
    out = tmp_path / "codes.csv"
    run = acnn("encode", tiny_data, "--model", tiny_models["ae"], "--out", out)
    assert run.returncode == 0 and "16 label maps encoded" in run.stdout and "groups DCM, HCM, NOR" in run.stdout, \
        run.stderr
    rows = {r["case"]: r for r in csv.DictReader(out.open())}
    assert len(rows) == 16 and list(next(iter(rows.values())))[:4] == ["case", "group", "file", "z0"]
    row = rows["subject002_ED"]  # the phantom's info.json names the group
    assert row["group"] == json.loads((tiny_data / "subject002" / "info.json").read_text())["group"]
    model = ShapeModel(tiny_models["ae"], device="cpu")
    code = np.array([float(row[f"z{d}"]) for d in range(model.code_size)])
    np.testing.assert_allclose(code, model.encode(read_labels(row["file"])), rtol=1e-4, atol=1e-5)
    # nothing overwritten without asking; a wrong output kind or a map of more structures than the model's: one line
    assert in_process(capsys, "encode", tiny_data, "--model", tiny_models["ae"], "--out", out).returncode == 2
    run = in_process(capsys, "encode", tiny_data, "--model", tiny_models["ae"], "--out", tmp_path / "codes.json")
    assert run.returncode == 2 and "written as a .csv file" in run.stderr
    labels = read_labels(row["file"])
    three = tmp_path / "rv" / "x_gt.nii.gz"
    write_volume(labels.with_array(np.where(labels.array == 1, 3, labels.array).astype(np.uint8)), three)
    run = in_process(capsys, "encode", three, "--model", tiny_models["ae"], "--out", tmp_path / "rv.csv")
    assert run.returncode == 2 and f"{three}: label map holds values up to 3" in run.stderr \
        and "Traceback" not in run.stderr and not (tmp_path / "rv.csv").exists()
    from ACNNCore.io import write_frames  # a cine's 4-D map: a row per labelled frame, counted from 1

    es = read_labels(rows["subject002_ES"]["file"])
    cine = write_frames([labels, labels.with_array(np.zeros_like(labels.array)), es], tmp_path / "cine_seg.nii.gz")
    run = in_process(capsys, "encode", cine, "--model", tiny_models["ae"], "--out", tmp_path / "cine.csv")
    assert run.returncode == 0 and "2 label maps encoded" in run.stdout
    assert f"acnn: note: {cine}: 1 frame without labels left out (2)" in run.stderr
    cine_rows = list(csv.DictReader((tmp_path / "cine.csv").open()))
    assert [(r["case"], r["frame"]) for r in cine_rows] == [("cine_frame1", "1"), ("cine_frame3", "3")]
    for r, source in zip(cine_rows, (row, rows["subject002_ES"])):  # each frame's code, as its 3-D map's
        np.testing.assert_allclose([float(r[f"z{d}"]) for d in range(model.code_size)],
                                   [float(source[f"z{d}"]) for d in range(model.code_size)], rtol=1e-4, atol=1e-5)


def test_demo_command_runs_the_whole_pipeline(tiny_models, tmp_path):
    run = acnn("demo", "--out", tmp_path / "demo", "--seg-model", tiny_models["seg"], "--sr-model", tiny_models["sr"])
    assert run.returncode == 0, run.stderr
    assert "[5/5" in run.stdout and "EF" in run.stdout
    results = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert set(results["phases"]) == {"ED", "ES"} and "truth" in results["ef_pct"]
    for name in ("ED_seg.nii.gz", "ES_seg.seg.nrrd", "ED_sr.nii.gz", "overlay.png"):
        assert (tmp_path / "demo" / name).is_file()


def test_segment_command_on_a_cine_finds_ed_and_es_or_takes_them_counted_from_1(tmp_path, capsys):
    """A 4-D cine: every frame segmented into a 4-D label map; ED and ES are its frames of largest and smallest
    LV blood pool, with the EF between them, printed counted from 1 (as Slicer's Sequences toolbar and ACDC's
    Info.cfg count). --ed / --es name them instead, counted the same way; every frame is still written."""
    from ACNNCore.io import read_frames, write_frames, write_volume
    from ACNNCore.metrics import clinical_measures, ejection_fraction
    from ACNNCore.phantom.population import PhantomConfig, generate_subject

    subject = generate_subject(0, 1000, PhantomConfig())
    ed, es = subject.phases["ED"]["lr"], subject.phases["ES"]["lr"]
    cine = write_frames([es, ed, es.with_array(0.5 * (ed.array + es.array))], tmp_path / "cine.nii.gz")
    refused = acnn("segment", cine, "--out", tmp_path / "cine.seg.nrrd")
    assert refused.returncode == 2 and "4-D label map" in refused.stderr
    run = acnn("segment", cine, "--out", tmp_path / "labels.nii.gz", "--clean-up")
    assert run.returncode == 0, run.stderr
    frames = read_frames(tmp_path / "labels.nii.gz")
    segmenter = Segmenter("acnn-seg-phantom", "cpu", cleanup=True)  # the model chosen for the phantom's stacks
    expected = [segmenter(f).labels for f in read_frames(cine)]
    assert len(frames) == 3 and all(np.array_equal(a.array, b.array) for a, b in zip(frames, expected))
    assert frames[0].geometry.same_as(expected[0].geometry)
    lv = [clinical_measures(f)["lv_volume_ml"] for f in expected]
    assert int(np.argmax(lv)) == 1 and int(np.argmin(lv)) == 0  # the ED stack, then the first ES one
    assert "ED frame 2 " in run.stdout and "ES frame 1 " in run.stdout
    assert f"EF {ejection_fraction(lv[1], lv[0]):.1f} %" in run.stdout
    given = acnn("segment", cine, "--out", tmp_path / "given.nii.gz", "--clean-up", "--ed", "2", "--es", "3")
    assert given.returncode == 0, given.stderr
    assert "ED frame 2 " in given.stdout and "ES frame 3 " in given.stdout
    assert f"EF {ejection_fraction(lv[1], lv[2]):.1f} %" in given.stdout and "wrong way round" not in given.stderr
    written = read_frames(tmp_path / "given.nii.gz")
    assert len(written) == 3 and all(np.array_equal(a.array, b.array) for a, b in zip(written, expected))
    stack = write_volume(ed, tmp_path / "stack.nii.gz")
    for source, wrong, said in (
            (cine, ["--ed", "0"], "ED frame 0 is outside the cine's frames, 1 to 3 (frames count from 1)"),
            (cine, ["--es", "4"], "ES frame 4 is outside the cine's frames, 1 to 3"),
            (cine, ["--ed", "2", "--es", "2"], "ED and ES are the same frame: an ejection fraction needs two"),
            (stack, ["--ed", "1"], f"--ed names frames of a cine; {stack} is one stack"),
            (tmp_path, ["--ed", "1", "--es", "2"], "--ed and --es name frames of one cine; ")):
        run = in_process(capsys, "segment", source, "--out", tmp_path / "no.nii.gz", *wrong)
        assert run.returncode == 2 and said in run.stderr and not (tmp_path / "no.nii.gz").exists()


def test_a_gpu_that_runs_out_of_memory_hands_the_run_to_the_cpu(caplog):
    """CUDA running out of memory mid-run (no GPU here: the network's first call raises the error it raises):
    said once, the model moved to the CPU, and the same labels as a run on the CPU from the start."""
    from ACNNCore.phantom.population import PhantomConfig, generate_subject

    stack = generate_subject(0, 5, PhantomConfig()).phases["ED"]["lr"]
    expected = Segmenter("acnn-seg-phantom", "cpu")(stack).labels
    segmenter = Segmenter("acnn-seg-phantom", "cpu")
    model, calls = segmenter.runner.bundle.model, []

    def forward(x, forward=model.forward):
        calls.append(x.device)
        if len(calls) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(x)

    model.forward = forward
    with caplog.at_level("WARNING", logger="ACNNCore"):
        labels = segmenter(stack).labels
    assert np.array_equal(labels.array, expected.array) and len(calls) == 2
    assert caplog.text.count("CUDA out of memory: running on the CPU instead") == 1
    assert segmenter.runner.device == torch.device("cpu")
    assert {p.device.type for p in model.parameters()} == {"cpu"}


def test_segmenters_say_when_a_model_meets_images_unlike_its_training_images(tmp_path):
    """The phantom MR model on an image that is not one of the phantom's stacks, or on thinner slices, says so
    (the command on stderr, a cine's result in its notes); the real-data model, which takes slices as
    acquired, on slices far from the thickness it learnt; both on 1 mm voxels, what a file without spacing
    is read with. The echo model on its own volumes (1 mm, resampled to its 1.75-1.875) has nothing to say."""
    from ACNNCore.cine import segment_frames
    from ACNNCore.io import write_volume
    from ACNNCore.phantom.population import PhantomConfig, generate_subject

    stack = generate_subject(0, 5, PhantomConfig()).phases["ED"]["lr"]
    phantom = Segmenter("acnn-seg-phantom", "cpu")
    assert phantom.caveats(stack) == []
    wider = Volume.from_array(np.pad(stack.array, ((16, 16), (16, 16), (0, 0)), mode="edge"), stack.spacing)
    (note,) = phantom.caveats(wider)
    assert "acnn-seg-phantom learnt from phantom images only" in note
    thin = Volume.from_array(stack.array, (1.25, 1.25, 5.0))  # the phantom's stack but 5 mm slices: both notes
    assert "learnt 10 mm slices and this image has 5 mm" in phantom.caveats(thin)[0]
    assert segment_frames(phantom, [wider]).notes == phantom.caveats(wider)
    real = Segmenter("acnn-seg-acdc", "cpu")
    assert real.caveats(thin) == []  # slices as acquired, 5 mm: within what it learnt (5-10 mm, median 10)
    (note,) = real.caveats(Volume.from_array(stack.array, (1.25, 1.25, 2.0)))
    assert "acnn-seg-acdc learnt slices as acquired, 10 mm thick" in note and "this image has 2 mm slices" in note
    unit = Volume.from_array(stack.array, (1.0, 1.0, 1.0))  # a NIfTI written without its affine: one note each
    for segmenter in (real, phantom):
        assert "this image's voxels are 1 x 1 x 1 mm" in segmenter.caveats(unit)[0]
        assert not any("slices" in n and "this image has" in n for n in segmenter.caveats(unit))
    echo = generate_subject(0, 5, PhantomConfig(modality="us")).phases["ED"]["us"]
    assert Segmenter("acnn-seg-us", "cpu").caveats(echo) == []
    write_volume(wider, tmp_path / "wider.nii.gz")
    run = acnn("segment", tmp_path / "wider.nii.gz", "--model", "acnn-seg-phantom", "--out", tmp_path / "s.nii.gz")
    assert run.returncode == 0 and "acnn: note: acnn-seg-phantom learnt from phantom images only" in run.stderr
    write_volume(unit, tmp_path / "unit.nii.gz")
    run = acnn("segment", tmp_path / "unit.nii.gz", "--out", tmp_path / "u.nii.gz")
    assert run.returncode == 0 and "acnn: note: this image's voxels are 1 x 1 x 1 mm" in run.stderr


def test_a_result_is_summed_up_in_the_one_status_line_every_front_end_shows():
    """SegmentResult.summary, the status line of the Slicer module and the studio: the device, the EF, each
    phase's verdict with what failed and what repaired it, then the caller's sentences and the caveats."""
    from ACNNCore.cine import IMPLAUSIBLE_UNSEARCHED, PhaseResult, SegmentResult
    from ACNNCore.inference import CLOSED_BY_RULE

    good, bad = {"plausible": True, "problems": []}, {"plausible": False, "problems": ["holes", "not_enclosed"]}
    cine = SegmentResult([PhaseResult("ED", 4, None, {}, good, correction="corrected in 2 slices: 40 voxels"),
                          PhaseResult("ES", 9, None, {}, bad)], "m", "cpu", ef_pct=61.24, notes=["m learnt 10 mm"])
    assert cine.summary(" Dice against x_gt: LV blood pool 0.900.") == (
        "Segmented on cpu, EF 61.2 %; ED plausible (corrected by the shape model); ES IMPLAUSIBLE: a hole in the "
        "blood pool or in the myocardium, blood pool not enclosed by myocardium in a mid-ventricular slice. An "
        "implausible output can also mean an image stored turned or mirrored in-plane, unlike the model's training "
        "images: find its in-plane orientation. Dice against x_gt: LV blood pool 0.900. Note: m learnt 10 mm.")
    searched = SegmentResult([PhaseResult("", 0, None, {}, bad, orientation="as stored (sureness 0.9)")], "m", "cpu")
    assert "orientation" not in searched.summary()  # the search, done, is not suggested again
    closed = PhaseResult("", 0, None, {}, good, correction=f"no plausible shape; {CLOSED_BY_RULE}")
    single = SegmentResult([closed], "m", "cuda")
    assert single.summary() == "Segmented on cuda; result plausible (ring closed by rule)."
    empty = SegmentResult([PhaseResult("", 0, None, {}, {"plausible": False, "problems": ["missing structure"]})],
                          "m", "cpu")
    assert empty.summary() == ("Segmented on cpu; result IMPLAUSIBLE: no blood pool or no myocardium."
                               + IMPLAUSIBLE_UNSEARCHED)
