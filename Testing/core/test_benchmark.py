"""`acnn benchmark` end to end at the tiny budget: every experiment trains what it needs and writes its
report with every table and figure."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ACNNCore.cli import main


@pytest.fixture(scope="module")
def bench_out(tmp_path_factory):
    return tmp_path_factory.mktemp("bench")


@pytest.mark.slow
def test_seg_benchmark_reports_every_method(tiny_data, bench_out, capsys):
    assert main(["benchmark", "seg", "--data", str(tiny_data), "--out", str(bench_out), "--budget", "tiny",
                 "--device", "cpu", "--seeds", "2"]) == 0
    report = (bench_out / "seg.md").read_text()
    for method in ("2D-FCN", "3D-Seg", "3D-UNet", "AE-Seg", "3D-Seg-MAug", "ACNN-Seg"):
        assert f"| {method} |" in report
    for heading in ("## Segmentation (Table I)", "### Myocardium Dice by slice misalignment", "Wilcoxon",
                    "Implausible", "The paper's Table I"):
        assert heading in report
    assert "Wilcoxon ACNN-Seg vs 3D-Seg |" in report or "Wilcoxon 3D-Seg vs ACNN-Seg |" in report  # the prior
    assert (bench_out / "seg_overlay.png").stat().st_size > 10_000
    rows = (bench_out / "seg_cases.csv").read_text().splitlines()
    assert len(rows) == 1 + 6 * 8  # 6 methods x 4 subjects x 2 phases
    for key in ("fcn2d", "seg3d", "unet3d", "seg3d-maug", "acnn-seg", "ae"):
        assert (bench_out / "runs" / key / "model" / "model.json").is_file()
    # --seeds 2: 3D-Seg and ACNN-Seg once more with seed 1, compared over both seeds
    for key in ("seg3d", "acnn-seg"):
        meta = json.loads((bench_out / "runs" / f"{key}-seed1" / "model" / "model.json").read_text())
        assert meta["training"]["config"]["seed"] == 1
    section = report.split("### The prior's effect over 2 training seeds")[1].split("###")[0]
    assert "| 0 |" in section and "| 1 |" in section and "| mean over 2 seeds |" in section
    assert "| Wilcoxon (case means) | p " in section


@pytest.mark.slow
def test_sr_and_latent_benchmarks(tiny_data, bench_out):
    assert main(["benchmark", "sr", "--data", str(tiny_data), "--out", str(bench_out), "--budget", "tiny",
                 "--device", "cpu"]) == 0
    report = (bench_out / "sr.md").read_text()
    for method in ("Linear", "B-Spline", "SR-CNN", "3D-UNet", "ACNN-SR"):
        assert f"| {method} |" in report
    assert "SSIM" in report and (bench_out / "sr_montage.png").is_file()
    assert main(["benchmark", "latent", "--data", str(tiny_data), "--out", str(bench_out), "--budget", "tiny",
                 "--device", "cpu"]) == 0
    report = (bench_out / "latent.md").read_text()
    assert "| ED |" in report and "| ED+ES |" in report and "split on most" in report
    assert (bench_out / "latent_histograms.png").is_file()
    assert len(list(bench_out.glob("latent_traversal_dim*.png"))) == 3


@pytest.mark.slow
def test_reports_are_utf8_whatever_the_platform_s_encoding(tiny_data, tmp_path):
    """Under a locale whose encoding lacks "±" (ASCII here; a Windows code page lacks others), the report is
    still written, in UTF-8, and printed with what the terminal cannot show escaped: the command succeeds."""
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0", "PYTHONIOENCODING": ""}
    run = subprocess.run([sys.executable, "-m", "ACNNCore.cli", "benchmark", "sr", "--data", str(tiny_data),
                          "--out", str(tmp_path), "--budget", "tiny", "--device", "cpu"],
                         capture_output=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr.decode(errors="replace")[-2000:]
    assert " ± " in (tmp_path / "sr.md").read_bytes().decode("utf-8")
    assert b"\\xb1" in run.stdout  # the report printed, its "±" escaped


@pytest.mark.slow
def test_us_benchmark(tmp_path):
    from ACNNCore.phantom.population import PhantomConfig, write_population

    data = tmp_path / "us"
    write_population(data, 8, seed=3, config=PhantomConfig(modality="us", us_shape=(32, 32, 32),
                                                           us_spacing=(3.5, 3.5, 3.5)))
    assert main(["benchmark", "us", "--data", str(data), "--out", str(tmp_path / "out"), "--budget", "tiny",
                 "--device", "cpu"]) == 0
    report = (tmp_path / "out" / "us.md").read_text()
    assert "| FCN (3D-UNet) |" in report and "| ACNN-Seg |" in report and "EF r" in report


def test_benchmark_errors(tiny_data, tmp_path, capsys):
    assert main(["benchmark", "us", "--data", str(tiny_data), "--out", str(tmp_path)]) == 2
    assert "needs a US phantom" in capsys.readouterr().err
    assert main(["benchmark", "seg", "--data", str(tiny_data), "--out", str(tmp_path), "--models", "foo=bar"]) == 2
    assert "unknown model keys" in capsys.readouterr().err
    # a given bundle that is not there: said before anything trains (it was found at its turn, after the others)
    assert main(["benchmark", "seg", "--data", str(tiny_data), "--out", str(tmp_path / "m"), "--models",
                 "tl=tl-phantom", f"ae={tmp_path / 'gone'}"]) == 2
    assert f"no model '{tmp_path / 'gone'}'" in capsys.readouterr().err and not (tmp_path / "m" / "runs").exists()
    assert main(["benchmark", "acdc", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--models",
                 f"seg=acnn-seg-acdc,{tmp_path / 'gone'}"]) == 2
    assert "is not in the ACDC layout" in capsys.readouterr().err  # (the layout is checked first)
    assert main(["benchmark", "seg", "--data", str(tiny_data), "--out", str(tmp_path), "--seeds", "0"]) == 2
    assert "--seeds must be at least 1" in capsys.readouterr().err
    for n in ("0", "-1"):  # before: 0 fell back to the budget's count, -1 evaluated no case at all
        assert main(["benchmark", "seg", "--data", str(tiny_data), "--out", str(tmp_path), "--test-subjects", n]) == 2
        assert f"--test-subjects must be at least 1, not {n}" in capsys.readouterr().err
    assert main(["benchmark", "acdc", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--seeds", "3"]) == 2
    assert "--test-subjects and --seeds are options of the phantom benchmarks" in capsys.readouterr().err
    assert main(["benchmark", "seg", "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "not a phantom data set" in capsys.readouterr().err


def test_paired_degradation_leaves_out_images_a_method_missed():
    """The robustness pairing: myocardium Dice lost from 0 to 4 mm, per image; an image where either method
    missed the LV with no added misalignment cannot degrade and is left out (else it counts as robust)."""
    from ACNNCore.benchmark import paired_degradation

    def rows(method, scores):  # case -> (LV Dice at 0 mm, myocardium Dice at 0, 2, 4 mm)
        return [{"method": method, "case": case, "motion_mm": mm, "dice_lv": lv,
                 "dice_myo": myo[i]} for case, (lv, myo) in scores.items() for i, mm in enumerate((0.0, 2.0, 4.0))]

    a = rows("A", {"p1": (.9, (.80, .78, .75)), "p2": (.9, (.80, .79, .78)), "p3": (0.0, (0.0, 0.0, 0.0)),
                   "p4": (.9, (.70, .69, .69)), "p5": (float("nan"), (float("nan"),) * 3)})
    b = rows("B", {"p1": (.9, (.80, .76, .70)), "p2": (.9, (.80, .75, .72)), "p3": (.9, (.80, .70, .60)),
                   "p4": (.9, (.70, .70, .68)), "p5": (.9, (.80, .79, .77))})
    less, kept, missed, p = paired_degradation(a + b, "A", "B")
    assert (less, kept, missed) == (3, 3, ["p3", "p5"])  # p3: A's 0 lost would count as A losing less
    assert 0 < p <= 1
    assert paired_degradation(a + b, "B", "A")[:3] == (0, 3, ["p3", "p5"])


def test_figures_cut_through_what_they_show():
    """The overlay figures cut through a mask (a defect, a correction) where it is, not through the heart's
    centre, where it may not be: its fullest slice, at its centre there."""
    from ACNNCore.figures import cut_through

    mask = np.zeros((20, 20, 8), bool)
    mask[2:5, 10:13, 1] = True  # 9 voxels in slice 1
    mask[14:18, 4:6, 6] = True  # 8 in slice 6
    assert cut_through(mask) == (3, 11, 1)
    assert cut_through(np.zeros((4, 4, 4), bool)) is None


def test_a_traversal_draws_each_step_s_myocardium_in_one_box_in_mm():
    """The latent traversal's 3-D row: each voxel's faces that no other voxel covers (one voxel 6, two side by
    side 10), scaled to mm, every step in the box holding them all (a larger shape looks larger), true
    proportions; a step without myocardium leaves its axes empty; a step that fails the plausibility checks is
    marked under its short-axis cut, a plausible one is not."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ACNNCore.figures import exposed_faces, traversal_figure
    from ACNNCore.volume import Volume

    mask = np.zeros((3, 3, 3), bool)
    mask[1, 1, 1] = True
    assert exposed_faces(mask).shape == (6, 4, 3)
    mask[2, 1, 1] = True
    faces = exposed_faces(mask)
    assert faces.shape == (10, 4, 3) and faces.min((0, 1)).tolist() == [1, 1, 1]
    assert faces.max((0, 1)).tolist() == [3, 2, 2]
    small, large = np.zeros((40, 40, 10), np.uint8), np.zeros((40, 40, 10), np.uint8)
    small[16:24, 16:24, 4:6], large[8:32, 8:32, 2:8] = 2, 2  # 3.75 mm voxels: 8 x 8 x 2, 24 x 24 x 6
    steps = [(z, Volume.from_array(a, (3.75, 3.75, 3.75))) for z, a in ((-2, small), (0, 0 * small), (2, large))]
    figure = traversal_figure(steps, render3d=True)
    axes = [ax for ax in figure.axes if ax.name == "3d"]
    assert [len(ax.collections) for ax in axes] == [1, 0, 1]
    # myocardium without blood pool: no step is a plausible LV (the mark under each short-axis cut)
    assert [ax.get_xlabel() for ax in figure.axes[:3]] == ["implausible"] * 3
    for ax in axes:
        assert ax.get_xlim() == ax.get_ylim() == (8 * 3.75, 32 * 3.75) and ax.get_zlim() == (2 * 3.75, 8 * 3.75)
        np.testing.assert_allclose(ax.get_box_aspect() / ax.get_box_aspect()[0], [1, 1, 0.25])
    plt.close(figure)
    # maps that run base first (ACDC's: a shape model's slice_order) drawn with the apex down: reversed
    apex = np.zeros((40, 40, 10), np.uint8)
    apex[8:32, 8:32, :3] = 2  # the first three slices
    for base_first, shown in ((False, (0, 3)), (True, (7, 10))):
        figure = traversal_figure([(0, Volume.from_array(apex, (3.75, 3.75, 3.75)))], render3d=True,
                                  base_first=base_first)
        cut, solid = figure.axes[1], figure.axes[2]  # the long-axis cut (imshow: rows are slices), the 3-D view
        rows = np.flatnonzero(cut.images[-1].get_array()[..., 3].max(1) == 1)  # the labels' opaque rows
        assert (rows.min(), rows.max() + 1) == shown and solid.get_zlim() == (shown[0] * 3.75, shown[1] * 3.75)
        plt.close(figure)
    ring = np.zeros((40, 40, 10), np.uint8)  # a blood pool walled by myocardium, capped at the apex: plausible
    ring[10:30, 10:30, 2:9], ring[14:26, 14:26, 3:9] = 2, 1
    figure = traversal_figure([(0, Volume.from_array(ring, (1.5, 1.5, 1.5)))])
    assert figure.axes[0].get_xlabel() == ""
    plt.close(figure)


def test_figure_shows_a_defect_far_from_the_heart(tmp_path):
    """A stray island outside the box round the expert's heart (what 043 ED's sub-pixel pair gave): the figure
    widens its box to cut through it, instead of indexing past the box."""
    from ACNNCore.figures import cut_through, seg_figure
    from ACNNCore.volume import Volume

    truth = np.zeros((96, 96, 8), np.uint8)
    truth[30:50, 30:50, 2:6] = 1
    predicted = truth.copy()
    predicted[85:90, 85:90, 4] = 2  # far outside the heart's box widened by 10 voxels
    at = cut_through(predicted == 2)
    assert at == (87, 87, 4)
    image = Volume.from_array(np.random.default_rng(0).random((96, 96, 8), np.float32), (1.5, 1.5, 8.0))
    labels = [Volume.from_array(a, (1.5, 1.5, 8.0)) for a in (truth, predicted)]
    path = seg_figure({"lr": image, "hr_gt": labels[0]}, {"net": labels[1]}, tmp_path / "f.png", margin=10, at=at)
    assert path.stat().st_size > 1000


def test_prior_sensitivity_on_the_phantom_moves_the_truth_as_the_slices_moved():
    """benchmarks/acdc_prior_sensitivity.py --phantom: the motion-free HR truth encodes to its own code; moved
    slab by slab as the LR slices moved, it overlaps the truth less and its code moves away."""
    import sys
    from pathlib import Path

    from ACNNCore.inference import ShapeModel

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from acdc_prior_sensitivity import phantom_sensitivity

    maps, codes = phantom_sensitivity(ShapeModel("ae-phantom", "cpu"), 1)
    truth, moved = maps["truth (its AE reconstruction)"], maps["truth, slabs moved up to 4 mm"]
    assert codes.shape[0] == 2 and truth.shape == moved.shape == (2, 3)  # ED and ES
    np.testing.assert_allclose(truth[:, :2], [[1.0, 0.0], [1.0, 0.0]], atol=1e-6)
    assert np.all(moved[:, 0] < 0.99) and np.all(moved[:, 1] > 0)


def test_prior_terms_with_probabilities_and_with_the_arg_max(phantom_mr):
    """benchmarks/acdc_prior_sensitivity.py --train-data: the prior term of Eq. 1 on training cases, with the
    network's probabilities and with its arg-max -- two different, small, positive numbers per model."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from acdc_prior_sensitivity import prior_terms

    terms = prior_terms("ae-phantom", ["acnn-seg-phantom", "seg3d-phantom"], phantom_mr[0], cases=2)
    assert set(terms) == {"acnn-seg-phantom", "seg3d-phantom"}
    for soft, hard in terms.values():
        assert 0 < soft < 1 and 0 < hard < 1 and soft != hard


def test_arms_train_at_once_resume_and_are_left_when_finished(tiny_data, tmp_path, capsys):
    """benchmarks/acdc_ae.py's train_at_once (acdc_ae.py's and acdc_ae_contact.py's arms): each run trains in
    its own process, its messages in RUN.log; a finished run is not started again, one asked for more epochs
    resumes its own, and a failing one stops the script with the logs to read."""
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from acdc_ae import epochs_done, train_at_once

    jobs = {tmp_path / f"s{seed}": ["ae", "--data", str(tiny_data), "--batch-size", "4", "--seed", str(seed),
                                    "--device", "cpu", "--workers", "0"] for seed in (0, 1)}
    train_at_once(jobs, 1)
    assert [epochs_done(run) for run in jobs] == [1, 1]
    assert all((tmp_path / f"s{seed}.log").is_file() for seed in (0, 1))
    weights = {run: (run / "model" / "model.safetensors").read_bytes() for run in jobs}
    capsys.readouterr()
    train_at_once(jobs, 1)  # both finished: nothing starts
    assert capsys.readouterr().out == ""
    train_at_once({tmp_path / "s0": jobs[tmp_path / "s0"]}, 2)
    assert "--resume" in capsys.readouterr().out
    assert [epochs_done(run) for run in jobs] == [2, 1]
    assert (tmp_path / "s1" / "model" / "model.safetensors").read_bytes() == weights[tmp_path / "s1"]
    with pytest.raises(SystemExit, match="training failed: see .*bad.log") as failed:  # the finished s1 not named
        train_at_once({tmp_path / "s1": jobs[tmp_path / "s1"],
                       tmp_path / "bad": ["ae", "--data", str(tmp_path / "absent"), "--device", "cpu"]}, 1)
    assert str(failed.value) == f"training failed: see {tmp_path / 'bad'}.log"
    assert epochs_done(tmp_path / "bad") == 0
