"""Metrics against hand-computed cases, plausibility on constructed maps, and `acnn evaluate`."""

import json
import math
import re

import numpy as np
import pytest

from ACNNCore.cli import main
from ACNNCore.errors import InputError
from ACNNCore.io import write_volume
from ACNNCore.metrics import agreement, on_grid_of, plausibility, ssim, surface_distances, wilcoxon_p
from ACNNCore.volume import Volume

ANISO = (1.0, 2.0, 5.0)


def labels(points, shape=(10, 10, 8), spacing=ANISO, value=1):
    a = np.zeros(shape, np.uint8)
    for p in points:
        a[p] = value
    return Volume.from_array(a, spacing)


def test_surface_distances_by_hand_with_anisotropic_spacing():
    truth = labels([(2, 2, 2)])
    pred = labels([(2, 2, 2), (5, 6, 4)])  # one extra voxel: 3 mm, 8 mm, 10 mm away
    d = math.sqrt(3 ** 2 + 8 ** 2 + 10 ** 2)
    s = surface_distances(pred, truth, labels=(1,))[1]
    assert s["hd_mm"] == pytest.approx(d, rel=1e-5)
    assert s["msd_mm"] == pytest.approx(d / 3, rel=1e-5)  # surface points 0, d (pred) and 0 (truth)
    shifted = surface_distances(labels([(2, 2, 3)]), truth, labels=(1,))[1]  # one slice: 5 mm
    assert shifted["hd_mm"] == pytest.approx(5.0) and shifted["msd_mm"] == pytest.approx(5.0)
    assert math.isnan(surface_distances(labels([]), truth, labels=(1,))[1]["hd_mm"])


def test_prediction_on_another_grid_is_compared_in_physical_space():
    truth = labels([(4, 4, 4)], shape=(10, 10, 8), spacing=(1.0, 1.0, 5.0))
    fine = Volume.from_array(np.zeros((10, 10, 40), np.uint8), (1.0, 1.0, 1.0), origin=(0, 0, -2.0))
    fine.array[4, 4, 20:25] = 1  # the same 5 mm slab at 1 mm: z = 18..22 mm
    assert on_grid_of(fine, truth).array[4, 4, 4] == 1
    assert surface_distances(fine, truth, labels=(1,))[1]["hd_mm"] == pytest.approx(0.0)
    far = Volume.from_array(fine.array, (1.0, 1.0, 1.0), origin=(500.0, 0, 0))
    with pytest.raises(InputError, match="do not overlap"):
        on_grid_of(far, truth)


def test_ssim_agreement_and_wilcoxon():
    rng = np.random.default_rng(0)
    img = Volume.from_array(rng.random((24, 24, 12)).astype(np.float32), (1, 1, 2))
    assert ssim(img, img) == pytest.approx(1.0, abs=1e-5)
    noisy = img.with_array(img.array + rng.normal(0, 0.3, img.shape).astype(np.float32))
    assert ssim(noisy, img) < 0.7
    a = agreement([50, 60, 70, 40], [48, 61, 66, 41])
    assert a["bias"] == pytest.approx(1.0) and a["n"] == 4
    sd = np.std([2, -1, 4, -1], ddof=1)
    assert a["loa"][1] == pytest.approx(1 + 1.96 * sd)
    assert wilcoxon_p(np.arange(10), np.arange(10)) == 1.0
    assert wilcoxon_p(np.arange(20) + 1.0, np.arange(20)) < 1e-3


def ring_lv(shape=(40, 40, 20)):
    """A plausible LV: blood cylinder in a myocardial wall, closed at the apex (k = 2), open at the base."""
    x, y = np.mgrid[: shape[0], : shape[1]]
    r = np.hypot(x - 20, y - 20)
    a = np.zeros(shape, np.uint8)
    for k in range(2, 18):
        a[..., k][r < 10] = 2
        if k > 3:
            a[..., k][r < 6 + 0.1 * k] = 1
    return Volume.from_array(a, (1.5, 1.5, 3.0))


def test_plausibility_of_constructed_maps():
    good = ring_lv()
    assert plausibility(good)["plausible"]
    a = good.array.copy()
    a[20, 20, 10] = 0  # a hole in the blood pool
    assert plausibility(good.with_array(a))["problems"] == ["holes"]
    a = good.array.copy()
    a[2:5, 2:5, 8:10] = 2  # a stray piece of myocardium
    assert plausibility(good.with_array(a))["problems"] == ["fragmented"]
    a = good.array.copy()
    a[20:32, 18:23, 9:12] = 1  # blood breaking through the wall in mid-ventricle
    r = plausibility(good.with_array(a))
    assert r["not_enclosed"] == 3 and r["touches_background"] >= 3  # (and the slices above and below)
    a = good.array.copy()
    a[20:30, 19:22, 9:12] = 1  # a cut through the wall to its outer edge: blood at the LV's outermost voxels
    r = plausibility(good.with_array(a))  # (the checks work in the LV's box: its margin holds what blood meets)
    assert r["not_enclosed"] == 3 and r["touches_background"] == 3
    from ACNNCore.postprocessing import clean_up

    assert plausibility(clean_up(good.with_array(a), close_myocardium=True))["plausible"]  # the rule sees it too
    a = good.array.copy()
    a[..., 2:4][a[..., 2:4] == 2] = 0  # no apical cap
    assert plausibility(good.with_array(a))["problems"] == ["touches_background"]
    assert not plausibility(good.with_array(np.zeros_like(good.array)))["plausible"]


def acdc_truth(gt):
    """Three patients' expert maps in the ACDC layout under ``gt`` (ACDC's label values, an Info.cfg each):
    {patient: (ED frame, ED map, ES frame, ES map)}, frames counted from 1, maps in our values; an LV smaller at
    ES, and an RV smaller at ES by as much as each patient's number."""
    from ACNNCore.labels import OURS_TO_ACDC, remap

    ed = ring_lv()
    es = ed.with_array(np.where((ed.array == 1) & (np.hypot(*np.mgrid[:40, :40] - 20) > 4)[..., None], 2,
                                ed.array).astype(np.uint8))  # a smaller blood pool
    ed.array[31:38, 5:35, 4:16] = 3  # an RV beside it
    patients = {}
    for i, (n, (f_ed, f_es)) in enumerate({"patient001": (1, 12), "patient002": (1, 9),
                                          "patient003": (2, 14)}.items()):
        es = es.with_array(es.array.copy())
        es.array[31:38, 5:35, 4:16] = 3
        es.array[31:38, 5:10 + 3 * i, 4:16] = 0
        (gt / n).mkdir(parents=True)
        (gt / n / "Info.cfg").write_text(f"ED: {f_ed}\nES: {f_es}\nGroup: NOR\nHeight: 180\nWeight: 80\n")
        for f, v in ((f_ed, ed), (f_es, es)):
            write_volume(v.with_array(remap(v.array, OURS_TO_ACDC)), gt / n / f"{n}_frame{f:02d}_gt.nii.gz")
            write_volume(v, gt / n / f"{n}_frame{f:02d}.nii.gz")  # the image: not a label map to match
        patients[n] = (f_ed, ed, f_es, es)
    return patients


def test_evaluate_matches_segment_outputs_to_an_acdc_folder(tmp_path, capsys):
    """`acnn segment` names an ACDC data folder's outputs patientNNN_ED / _ES; `acnn evaluate` finds the expert
    maps for them in the ACDC layout (Info.cfg gives the frames), also under their frame names, with the LV's and
    the RV's EF."""
    from ACNNCore.datasets import read_dataset

    gt, pred = tmp_path / "acdc", tmp_path / "pred"
    for n, (f_ed, ed, f_es, es) in acdc_truth(gt).items():
        write_volume(ed, pred / f"{n}_ED.nii.gz")
        write_volume(es, pred / (f"{n}_ES.nii.gz" if n != "patient003" else f"{n}_frame{f_es:02d}.nii.gz"))
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--gt-convention", "acdc",
                 "--out", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["summary"]["cases"] == 6 and report["summary"]["dice_myo"]["mean"] == pytest.approx(1.0)
    assert report["ef"]["n"] == 3 and report["ef"]["bias"] == pytest.approx(0.0)
    assert report["rv_ef"]["n"] == 3 and report["rv_ef"]["bias"] == pytest.approx(0.0)  # the RV's EF as well
    assert re.search(r"\n  RV EF: r = 1\.000, bias \+0\.0 %", capsys.readouterr().out)
    rows = (tmp_path / "r.csv").read_text().splitlines()
    assert sorted(r.split(",")[0] for r in rows[1:]) == [f"patient00{i}_{p}" for i in (1, 2, 3) for p in ("ED", "ES")]
    linked = tmp_path / "linked"  # a folder of links to the patients' folders, as users keep data sets
    linked.mkdir()
    for n in ("patient001", "patient002", "patient003"):
        (linked / n).symlink_to(gt / n, target_is_directory=True)
    assert main(["evaluate", "--pred", str(pred), "--gt", str(linked)]) == 0  # ACDC's values found by Info.cfg
    out = capsys.readouterr().out
    assert "6 cases" in out and re.search(r"LV blood pool +dice 1\.000", out)
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt / "patient001")]) == 0  # one patient's folder
    assert re.search(r"2 cases.*\n +LV blood pool +dice 1\.000", capsys.readouterr().out)
    cases = read_dataset(gt / "patient001")  # read as ACDC: named by phase, labels in our values
    assert [c.name for c in cases] == ["patient001_ED", "patient001_ES"] and cases[0].meta["group"] == "NOR"
    assert np.array_equal(cases[0].labels.array, ed.array)
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--gt-convention", "ours"]) == 0
    assert "--gt-convention" in capsys.readouterr().err  # LV and RV swapped: says which options to look at
    (pred / "patient002_ES.nii.gz").unlink()
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--gt-convention", "acdc"]) == 2
    assert "no prediction for 1 ground-truth case(s): patient002_ES" in capsys.readouterr().err


def test_evaluate_compares_a_cine_s_4d_map_with_the_expert_maps_of_its_frames(tmp_path, capsys):
    """`acnn segment CINE` writes a 4-D map; `acnn evaluate` compares the frame each expert map labels: ACDC's
    by its name (patientNNN_frameXX_gt, the cine named patientNNN or, as ACDC names it, patientNNN_4d), any
    other with --frame (counted from 1); two 4-D maps frame by frame, an expert's two labelled frames as ED and
    ES. Frames it cannot tell, or outside the cine, are refused with one line."""
    from ACNNCore.io import write_frames

    gt, pred = tmp_path / "acdc", tmp_path / "pred"
    truth = acdc_truth(gt)
    wrong = ring_lv().with_array(np.zeros((40, 40, 20), np.uint8))  # the frames no expert map labels: empty
    for n, (f_ed, ed, f_es, es) in truth.items():
        frames = [ed if t == f_ed else es if t == f_es else wrong for t in range(1, 16)]
        if n == "patient003":  # its ED and ES maps as 3-D files, beside the others' cines
            write_volume(ed, pred / f"{n}_ED.nii.gz")
            write_volume(es, pred / f"{n}_ES.nii.gz")
        else:
            write_frames(frames, pred / (f"{n}_4d.nii.gz" if n == "patient001" else f"{n}.nii.gz"))
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--out", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["summary"]["cases"] == 6 and report["summary"]["dice_lv"]["mean"] == pytest.approx(1.0)
    assert report["summary"]["dice_rv"]["mean"] == pytest.approx(1.0) and "frame" not in report["summary"]
    assert report["ef"]["n"] == 3 and report["ef"]["bias"] == pytest.approx(0.0)  # the cines' ED and ES too
    rows = {r.split(",")[0]: r.split(",") for r in (tmp_path / "r.csv").read_text().splitlines()}
    frame = rows["case"].index("frame")
    assert [rows[c][frame] for c in ("patient001_ED", "patient001_ES", "patient002_ES", "patient003_ES")] \
        == ["1", "12", "9", ""]  # the cine's frame each row compared; none for a 3-D map
    cine = pred / "patient001_4d.nii.gz"  # one cine's map against its patient's folder, whatever its name
    cine.rename(tmp_path / "mine_seg.nii.gz")
    assert main(["evaluate", "--pred", str(tmp_path / "mine_seg.nii.gz"), "--gt", str(gt / "patient001")]) == 0
    assert re.search(r"2 cases.*\n +LV blood pool +dice 1\.000", capsys.readouterr().out)
    ed_file = gt / "patient001" / "patient001_frame01_gt.nii.gz"
    assert main(["evaluate", "--pred", str(tmp_path / "mine_seg.nii.gz"), "--gt", str(ed_file)]) == 0
    assert re.search(r"1 case.*\n +LV blood pool +dice 1\.000", capsys.readouterr().out)  # frame 1, by its name

    other = tmp_path / "other_gt.nii.gz"  # not ACDC's: the frame is not in its name
    _, ed, f_es, es = truth["patient001"]
    write_volume(es, other)
    cine = str(tmp_path / "mine_seg.nii.gz")
    assert main(["evaluate", "--pred", cine, "--gt", str(other)]) == 2
    assert ("the prediction is a cine's 4-D map of 15 frames, the ground truth one 3-D map: say which frame it "
            "labels with --frame (counted from 1)") in capsys.readouterr().err
    assert main(["evaluate", "--pred", cine, "--gt", str(other), "--frame", str(f_es)]) == 0
    assert re.search(r"LV blood pool +dice 1\.000", capsys.readouterr().out)
    assert main(["evaluate", "--pred", cine, "--gt", str(other), "--frame", "1"]) == 0  # ED's map against ES's
    assert not re.search(r"LV blood pool +dice 1\.000", capsys.readouterr().out)
    assert main(["evaluate", "--pred", str(other), "--gt", cine, "--frame", str(f_es)]) == 0  # the other way
    assert re.search(r"LV blood pool +dice 1\.000", capsys.readouterr().out)
    assert main(["evaluate", "--pred", cine, "--gt", str(other), "--frame", "16"]) == 2
    assert "frame 16 of a cine of 15 frames (counted from 1)" in capsys.readouterr().err
    assert main(["evaluate", "--pred", str(other), "--gt", str(other), "--frame", "2"]) == 2
    assert "the prediction and the ground truth are 3-D label maps" in capsys.readouterr().err
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt / "patient002"), "--frame", "2"]) == 2
    assert "--frame names the frame of one pair of label maps; 2 cases were matched" in capsys.readouterr().err

    expert = tmp_path / "expert_gt.nii.gz"  # a 4-D expert map labelling ED and ES alone (ACDC's, M&Ms')
    write_frames([wrong if t not in (3, 8) else ed if t == 8 else es for t in range(1, 16)], expert)
    write_frames([wrong if t not in (3, 8) else ed if t == 8 else es for t in range(1, 16)], tmp_path / "seg.nii.gz")
    assert main(["evaluate", "--pred", str(tmp_path / "seg.nii.gz"), "--gt", str(expert), "--out",
                 str(tmp_path / "4d.json")]) == 0
    rows = (tmp_path / "4d.csv").read_text().splitlines()
    assert [r.split(",")[:2] for r in rows] == [["case", "frame"], ["expert_ES", "3"], ["expert_ED", "8"]]
    assert main(["evaluate", "--pred", cine, "--gt", str(expert)]) == 0  # the cine's frames 3 and 8: empty
    assert re.search(r"2 cases, 2 anatomically implausible.*\n +LV blood pool +dice 0\.000", capsys.readouterr().out)
    write_frames([ed, es], tmp_path / "short.nii.gz")
    assert main(["evaluate", "--pred", str(tmp_path / "short.nii.gz"), "--gt", str(expert)]) == 2
    assert "the prediction is a cine's map of 2 frames, the ground truth one of 15" in capsys.readouterr().err


def test_the_ef_agreement_leaves_out_an_empty_ed_blood_pool_of_either_side():
    """No EF where the ED blood pool is empty -- a segmentation that found nothing, or a truth read in the wrong
    label values: that subject is left out and n says so, not the whole evaluation stopped with an error."""
    from ACNNCore.evaluation import ef_agreement

    rows = []
    for i, (pred_ed, gt_ed) in enumerate(((100, 100), (120, 110), (90, 95), (0, 80), (80, 0))):
        rows += [{"case": f"p{i}_ED", "pred_lv_volume_ml": pred_ed, "gt_lv_volume_ml": gt_ed},
                 {"case": f"p{i}_ES", "pred_lv_volume_ml": 40, "gt_lv_volume_ml": 45}]
    assert ef_agreement(rows)["n"] == 3


def test_evaluate_cli_on_folders(tmp_path, capsys):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    good = ring_lv()
    for name in ("a_ED", "a_ES", "b_ED"):
        write_volume(good, gt / f"{name}_gt.nii.gz")
    write_volume(good, pred / "a_ED.nii.gz")
    write_volume(good, pred / "b_ED.nii.gz")
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt)]) == 2
    assert "no prediction for 1 ground-truth case(s): a_ES" in capsys.readouterr().err
    shifted = Volume.from_array(good.array, good.spacing, origin=(0, 0, 3.0))  # one slice up
    write_volume(shifted, pred / "a_ES.nii.gz")
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--out", str(tmp_path / "r.json")]) == 0
    summary = json.loads((tmp_path / "r.json").read_text())["summary"]
    assert summary["cases"] == 3 and summary["implausible"] == 0 and summary["gt_implausible"] == 0
    assert "dice_rv" not in summary and "RV" not in capsys.readouterr().out  # no RV in the truth: none reported
    rows = (tmp_path / "r.csv").read_text().splitlines()
    assert rows[0].startswith("case,dice_lv") and len(rows) == 4
    a_es = next(r for r in rows if r.startswith("a_ES")).split(",")
    assert float(a_es[1]) < 0.99 and float(a_es[3]) == pytest.approx(3.0)  # HD one slice
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--out", str(tmp_path / "r.json")]) == 2
    empty = good.with_array(np.where(good.array == 2, 0, good.array).astype(np.uint8))  # no myocardium
    write_volume(empty, tmp_path / "empty.nii.gz")
    assert main(["evaluate", "--pred", str(tmp_path / "empty.nii.gz"), "--gt", str(gt / "a_ED_gt.nii.gz"), "--out",
                 str(tmp_path / "e.json")]) == 0
    summary = json.loads((tmp_path / "e.json").read_text(), parse_constant=_not_json)["summary"]  # strict JSON
    assert summary["dice_myo"]["mean"] == 0.0 and summary["msd_mm_myo"]["mean"] is None  # no distance: null
    out = capsys.readouterr().out  # printed as undefined, not "nan ± nan"; a mean over some cases says so
    assert "  LV myocardium  dice 0.000 ± 0.000, msd_mm undefined, hd_mm undefined\n" in out and "nan" not in out
    assert "a distance is undefined where the prediction or the ground truth lacks the structure" in out
    write_volume(empty, pred / "b_ED.nii.gz", overwrite=True)
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt)]) == 0
    assert re.search(r"LV myocardium  dice .*, msd_mm \d+\.\d{3} ± \d+\.\d{3} \(2 of 3\), hd_mm .* \(2 of 3\)\n",
                     capsys.readouterr().out)


def test_evaluate_summarises_the_rv_over_the_cases_whose_truth_has_one(tmp_path, capsys):
    """Ground truths with and without an RV in one folder (an expert's DICOM SEG of the LV alone beside ACDC's):
    the RV summarised over the cases that have one, whichever comes first."""
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    lv = ring_lv()
    both = lv.with_array(lv.array.copy())
    both.array[31:38, 5:35, 4:16] = 3
    for name, v in (("a", lv), ("b", both), ("c", lv)):
        write_volume(v, gt / f"{name}_gt.nii.gz")
        write_volume(v, pred / f"{name}.nii.gz")
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt)]) == 0
    assert re.search(r"3 cases.*\n.*\n.*\n +RV blood pool +dice 1\.000 ± 0\.000 \(1 of 3\)",
                     capsys.readouterr().out)


def _not_json(constant):
    raise AssertionError(f"{constant} is not JSON")


def test_label_files_are_told_by_their_names():
    from pathlib import Path

    from ACNNCore.evaluation import is_label_file

    for name in ("patient001_frame01_gt.nii.gz", "hr_gt.nii.gz", "us_gt.nii.gz", "case_seg.nrrd", "p_pred.mha",
                 "a_labels.nii"):
        assert is_label_file(Path(name)), name
    for name in ("patient001_frame01.nii.gz", "lr.nii.gz", "hr.nii.gz", "gtx.nii.gz", "case.seg.nrrd"):
        assert not is_label_file(Path(name)), name
