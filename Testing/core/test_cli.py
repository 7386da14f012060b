"""The `acnn` command line as a user runs it: a real subprocess, real files."""

import csv
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from ACNNCore.io import read_labels, read_volume


def acnn(*args):
    return subprocess.run([sys.executable, "-m", "ACNNCore.cli", *map(str, args)], capture_output=True,
                          encoding="utf-8")


def test_phantom_command_writes_the_documented_layout(tmp_path):
    out = tmp_path / "ph"
    run = acnn("phantom", "-o", out, "--subjects", 3, "--seed", 4, "--motion", 2, "--preview")
    assert run.returncode == 0, run.stderr
    for n in range(3):
        for phase in ("ED", "ES"):
            lr = read_volume(out / f"subject00{n}" / phase / "lr.nii.gz")
            hr = read_volume(out / f"subject00{n}" / phase / "hr.nii.gz")
            gt = read_labels(out / f"subject00{n}" / phase / "hr_gt.nii.gz")
            assert lr.shape == (96, 96, 12) and hr.shape == gt.shape == (96, 96, 60)
            assert lr.spacing == (1.25, 1.25, 10.0) and gt.spacing == (1.25, 1.25, 2.0)
    info = json.loads((out / "subject002" / "info.json").read_text())
    assert info["group"] == "HCM" and 65 <= info["ef_pct"] <= 80
    png = (out / "preview.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000
    assert "subject002  HCM" in run.stdout


def test_phantom_refuses_to_overwrite(tmp_path):
    out = tmp_path / "ph"
    assert acnn("phantom", "--out", out, "--subjects", 1).returncode == 0
    before = (out / "subject000" / "ED" / "lr.nii.gz").read_bytes()
    run = acnn("phantom", "--out", out, "--subjects", 1, "--seed", 9)
    assert run.returncode == 2 and "pass --overwrite" in run.stderr and "Traceback" not in run.stderr
    assert (out / "subject000" / "ED" / "lr.nii.gz").read_bytes() == before
    assert acnn("phantom", "--out", out, "--subjects", 1, "--seed", 9, "--overwrite").returncode == 0
    assert (out / "subject000" / "ED" / "lr.nii.gz").read_bytes() != before


def test_phantom_us_mode(tmp_path):
    run = acnn("phantom", "--out", tmp_path / "us", "--subjects", 1, "--modality", "us")
    assert run.returncode == 0, run.stderr
    us = read_volume(tmp_path / "us" / "subject000" / "ED" / "us.nii.gz")
    assert us.spacing == (1.0, 1.0, 1.0)
    assert set(np.unique(read_labels(tmp_path / "us" / "subject000" / "ES" / "us_gt.nii.gz").array)) == {0, 1}
    run = acnn("phantom", "--out", tmp_path / "coarse", "--subjects", 1, "--modality", "us",
               "--us-grid", 64, 64, 64, "--us-spacing", 1.75, 1.75, 1.875)
    assert run.returncode == 0, run.stderr
    coarse = read_volume(tmp_path / "coarse" / "subject000" / "ED" / "us.nii.gz")
    assert coarse.shape == (64, 64, 64) and coarse.spacing == (1.75, 1.75, 1.875)


def test_help_answers_without_loading_the_models():
    """`acnn --help` and each command's help build the parser without importing torch or MONAI (seconds)."""
    code = ("import sys; from ACNNCore.cli import build_parser; p = build_parser(); "
            "p.parse_args(['benchmark', 'acdc', '--data', 'd', '--out', 'o']); "
            "print(sorted(m for m in ('torch', 'monai', 'SimpleITK', 'vtk') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
    run = acnn("benchmark", "--help")
    assert run.returncode == 0 and "acdc" in run.stdout and "acnn-fcn2d" in run.stdout
    import argparse

    from ACNNCore.cli import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    silent = [f"{name} {a.option_strings or a.dest}" for name, p in commands.items() for a in p._actions
              if not a.help]
    assert "studio" in commands and not silent  # every argument of every command says what it takes


def test_bad_arguments_give_one_line(tmp_path):
    for args, said in ((["--motion", "-1"], "--motion must not be negative, not -1.0"),
                       (["--factor", "7"], "--factor must divide"), (["--subjects", "0"], "--subjects must be"),
                       (["--us-grid", "8", "8", "8"], "--us-grid and --us-spacing are for --modality us"),
                       (["--seed", "-1"], "--seed must not be negative, not -1"),  # was a traceback
                       (["--noise", "nan"], "--noise must not be negative, not nan"),  # was taken
                       (["--rotation", "400"], "from 0 to 90 degrees, not 400.0")):  # was taken
        run = acnn("phantom", "--out", tmp_path / "x", *args)
        assert run.returncode == 2 and run.stderr.strip().startswith("acnn: error:") and said in run.stderr
        assert not (tmp_path / "x").exists()


def test_arguments_a_command_does_not_take_are_named_in_its_own_words(tmp_path):
    """An unknown option, or a second image (a shell's glob): the command's usage and error, not acnn's; for
    a second path, where several go."""
    for name in ("a.nii.gz", "b.nii.gz"):
        (tmp_path / name).touch()
    run = acnn("segment", tmp_path / "a.nii.gz", tmp_path / "b.nii.gz", "--out", tmp_path / "x.nii.gz")
    assert run.returncode == 2 and run.stderr.startswith("usage: acnn segment ")
    assert not (tmp_path / "x.nii.gz").exists()
    assert run.stderr.strip().endswith(f"acnn segment: error: unrecognized arguments: {tmp_path / 'b.nii.gz'} (acnn "
                                       f"segment takes one path: for several images, give the folder that holds them)")
    run = acnn("info", tmp_path / "a.nii.gz", "--bogus")
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1] == "acnn info: error: unrecognized arguments: --bogus"


def test_info_describes_files_and_folders(tmp_path):
    assert acnn("phantom", "--out", tmp_path / "ph", "--subjects", 1).returncode == 0
    run = acnn("info", tmp_path / "ph" / "subject000" / "ED" / "hr_gt.nii.gz", "--labels")
    assert run.returncode == 0
    summary = json.loads(run.stdout)
    assert summary["spacing_mm"] == [1.25, 1.25, 2.0] and set(summary["label_volumes_ml"]) == {"0", "1", "2"}
    assert summary["structures_ml"]["LV blood pool"] == summary["label_volumes_ml"]["1"]  # our values, named
    assert summary["plausibility"] == "plausible"  # the checks acnn segment reports
    named = json.loads(acnn("info", tmp_path / "ph" / "subject000" / "ED" / "hr_gt.nii.gz").stdout)
    assert named["label_volumes_ml"] == summary["label_volumes_ml"]  # *_gt: a label map without --labels
    image = json.loads(acnn("info", tmp_path / "ph" / "subject000" / "ED" / "lr.nii.gz").stdout)
    assert "label_volumes_ml" not in image
    run = acnn("info", tmp_path / "ph")
    assert run.returncode == 0 and "2 cases" in run.stdout
    assert "label maps implausible by acnn's checks: 0 of 2" in run.stdout
    from ACNNCore.io import write_frames  # a cine's label map (acnn segment CINE writes one): frame by frame

    phases = [read_labels(tmp_path / "ph" / "subject000" / p / "hr_gt.nii.gz") for p in ("ED", "ES")]
    write_frames(phases, tmp_path / "cine_seg.nii.gz")
    for told in ((), ("--labels",)):
        cine = json.loads(acnn("info", tmp_path / "cine_seg.nii.gz", *told).stdout)
        assert cine["frames"] == 2 and cine["plausibility"] == ["plausible", "plausible"]
        assert [v["1"] for v in cine["label_volumes_ml"]] == \
            [pytest.approx(np.count_nonzero(p.array == 1) * p.geometry.voxel_volume_ml, abs=1e-3) for p in phases]
        assert cine["structures_ml"][1]["LV blood pool"] == cine["label_volumes_ml"][1]["1"]
    from ACNNCore.metrics import ejection_fraction  # and its EF, ED and ES found as acnn segment finds them

    lv = [s["LV blood pool"] for s in cine["structures_ml"]]
    assert cine["ejection_fraction"] == {"ed_frame": 1, "es_frame": 2, "ef_pct": round(ejection_fraction(*lv), 1)}
    empty = phases[0].with_array(np.zeros_like(phases[0].array))  # an expert's 4-D map: ED and ES alone labelled
    write_frames([empty, phases[1], empty, phases[0]], tmp_path / "expert_gt.nii.gz")
    expert = json.loads(acnn("info", tmp_path / "expert_gt.nii.gz").stdout)
    assert expert["ejection_fraction"] == {"ed_frame": 4, "es_frame": 2, "ef_pct": round(ejection_fraction(*lv), 1)}
    write_frames([empty, phases[1], empty], tmp_path / "one_gt.nii.gz")
    assert "ejection_fraction" not in json.loads(acnn("info", tmp_path / "one_gt.nii.gz").stdout)  # one LV: none


def test_a_dicom_cine_is_described_and_segmented_as_its_nifti_is(tmp_path, write_dicom, to_enhanced, phantom_cine):
    """A phantom subject's ED and ES stacks as a DICOM cine (one series per slice, as scanners write it):
    `acnn info` sees two frames, `acnn segment` gives the same 4-D label map and EF as for the same frames in a
    4-D NIfTI; so does a study's tree of folders, and the cine as enhanced DICOM (one multi-frame file a slice)."""
    from ACNNCore.io import read_frames, write_frames

    frames = phantom_cine(0, 777)
    write_dicom(frames, tmp_path / "dicom", per_slice_series=True, times=[0, 320])
    write_frames(frames, tmp_path / "cine.nii.gz")
    summary = json.loads(acnn("info", tmp_path / "dicom").stdout)
    assert summary["format"] == "DICOM" and summary["frames"] == 2 and summary["shape"] == list(frames[0].shape)
    runs = [acnn("segment", tmp_path / name, "-o", tmp_path / f"seg-{i}.nii.gz", "--device", "cpu")
            for i, name in enumerate(("dicom", "cine.nii.gz"))]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr
    ef = [re.search(r"EF (\S+) %", r.stdout).group(1) for r in runs]
    assert all(("note: implausible outputs: --clean-up" in r.stderr) is ("IMPLAUSIBLE" in r.stdout) for r in runs)
    assert ef[0] == ef[1] and float(ef[0]) > 20, runs[0].stdout
    a, b = (read_frames(tmp_path / f"seg-{i}.nii.gz") for i in (0, 1))
    assert len(a) == 2 and all(np.array_equal(x.array, y.array) and x.geometry.same_as(y.geometry, atol=1e-4)
                               for x, y in zip(a, b))
    (tmp_path / "study").mkdir()  # a study: a folder of series folders, read as the one stack it holds
    (tmp_path / "dicom").rename(tmp_path / "study" / "cine")
    run = acnn("segment", tmp_path / "study", "--out", tmp_path / "seg-study.nii.gz", "--device", "cpu")
    assert run.returncode == 0 and f"EF {ef[0]} %" in run.stdout, run.stderr
    to_enhanced(tmp_path / "study" / "cine", tmp_path / "enhanced")
    run = acnn("segment", tmp_path / "enhanced", "--out", tmp_path / "seg-enhanced.nii.gz", "--device", "cpu")
    assert run.returncode == 0 and f"EF {ef[0]} %" in run.stdout, run.stderr


def test_a_folder_of_dicom_studies_is_segmented_study_by_study(tmp_path, write_dicom, phantom_cine):
    """A folder of exported studies (a cine, a single stack, one that is not one stack, one with a file cut
    short): `acnn info` lists them, and `acnn segment` segments each into OUT/STUDY.nii.gz (the cine's 4-D),
    measures.csv with the cine's ED and ES (frame, volumes, EF) and the stack's row; the studies that cannot be
    read skipped, named, and the status 1."""
    from ACNNCore.io import read_frames
    from ACNNCore.metrics import clinical_measures
    from ACNNCore.volume import Geometry, Volume

    cine, other = phantom_cine(0, 777), phantom_cine(0, 778)
    write_dicom(cine, tmp_path / "studies" / "p1", per_slice_series=True, times=[0, 320], study="1.2.3.1")
    write_dicom(other[:1], tmp_path / "studies" / "p2" / "sax", study="1.2.3.2")
    g = other[0].geometry  # p3: its short-axis stack beside a second stack on another grid
    write_dicom(other[:1], tmp_path / "studies" / "p3" / "a", study="1.2.3.3")
    write_dicom([Volume(other[0].array, Geometry(g.shape, (2.0, 2.0, g.spacing[2]), g.origin, g.direction))],
                tmp_path / "studies" / "p3" / "b", study="1.2.3.3", description="t1")
    write_dicom(other[1:], tmp_path / "studies" / "p4", study="1.2.3.4")  # p4: a file cut short in copying
    cut = next((tmp_path / "studies" / "p4").iterdir())
    cut.write_bytes(cut.read_bytes()[:-100])
    from ACNNCore.dicom import _dicom_images  # told by its header (SimpleITK before 2.5 reads it, the rest zero)

    whole = next((tmp_path / "studies" / "p2" / "sax").iterdir())
    assert not _dicom_images(cut, cut.parent)[0].whole and _dicom_images(whole, whole.parent)[0].whole
    run = acnn("info", tmp_path / "studies")  # what segment will find
    assert run.returncode == 0 and "4 DICOM studies" in run.stdout, run.stderr
    assert re.search(r"p1 +2 frames of \(", run.stdout) and re.search(r"p2 +1 frame of \(", run.stdout)
    assert re.search(r"p3 +not read: .*holds 2 stacks", run.stdout), run.stdout
    assert re.search(rf"p4 +not read: {cut}: its pixel data cannot be read", run.stdout), run.stdout
    run = acnn("segment", tmp_path / "studies", "--out", tmp_path / "out.nii.gz")
    assert run.returncode == 2 and "is a folder of 4 DICOM studies: --out must be a folder too" in run.stderr
    run = acnn("segment", tmp_path / "studies", "--out", tmp_path / "out", "--device", "cpu")
    assert run.returncode == 1, run.stderr
    assert "skipped p3: " in run.stderr and "holds 2 stacks" in run.stderr and "Traceback" not in run.stderr
    assert "skipped p4: " in run.stderr and "2 of 4 studies could not be read: p3, p4" in run.stderr
    assert "segmented 2 of 4 studies" in run.stdout, run.stdout
    labels = read_frames(tmp_path / "out" / "p1.nii.gz")
    assert len(labels) == 2 and len(read_frames(tmp_path / "out" / "p2.nii.gz")) == 1
    assert not (tmp_path / "out" / "p3.nii.gz").exists() and not (tmp_path / "out" / "p4.nii.gz").exists()
    with open(tmp_path / "out" / "measures.csv", encoding="utf-8") as f:
        rows = {r["case"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"p1_ED", "p1_ES", "p2"}
    assert (rows["p1_ED"]["frame"], rows["p1_ES"]["frame"], rows["p2"]["frame"]) == ("1", "2", "")  # counted from 1
    ed, es = (clinical_measures(labels[t])["lv_volume_ml"] for t in (0, 1))
    assert float(rows["p1_ED"]["lv_volume_ml"]) == round(ed, 2) and float(rows["p1_ES"]["lv_volume_ml"]) == round(es, 2)
    assert float(rows["p1_ED"]["lv_ef_pct"]) == round(100 * (ed - es) / ed, 1) > 20
    run = acnn("segment", tmp_path / "studies", "--out", tmp_path / "out", "--device", "cpu")
    assert run.returncode == 2 and "exists" in run.stderr and "--overwrite" in run.stderr


def test_dicom_seg_holds_the_labels_on_the_dicom_images(tmp_path, write_dicom, phantom_cine, acdc_network, capsys):
    """`--dicom-seg FOLDER`: a DICOM cine's labels also written as DICOM SEG objects on its images, one per
    frame, holding the 4-D map's labels; a folder of studies gets FOLDER/STUDY/. Refused before any work: a
    sub-pixel model (its grid is not the images'), input that is not DICOM, segmentations already there. A
    study whose files a SEG cannot refer to (no frame of reference) gets its label map, not a SEG, and status 1.
    A study holding a second cine (perfusion) is read, segmented and labelled by `--series`. A SEG reads back
    (`acnn info`, `acnn evaluate --gt SEG_001.dcm`) as the label map it was written from; SEGs lying among a
    study's images are listed by `acnn info`."""
    import highdicom
    import pydicom

    from ACNNCore.io import read_frames
    from ACNNCore.volume import Geometry, Volume

    cine = phantom_cine(0, 777)
    write_dicom(cine, tmp_path / "studies" / "p1", per_slice_series=True, times=[0, 320], study="1.2.3.1")
    g = cine[0].geometry  # beside the cine, perfusion: three slices of it, four times
    perfusion = [Volume(cine[0].array[:, :, 2:5] + 10 * t, Geometry((*g.shape[:2], 3), g.spacing,
                                                                    g.index_to_physical((0, 0, 2)), g.direction))
                 for t in range(4)]
    write_dicom(perfusion, tmp_path / "studies" / "p1" / "perf", study="1.2.3.1", series=90, description="perf")
    from ACNNCore.cli import main  # reading and refusing in-process; segmenting as a user runs it

    assert main(["info", str(tmp_path / "studies" / "p1")]) == 0  # its stacks, to pick from
    out = capsys.readouterr().out
    assert "p1: 2 stacks; segment one with --series" in out
    assert re.search(r"cine_sax +2 frames of .*\n +perf +4 frames of \(", out), out
    assert main(["segment", str(tmp_path / "studies" / "p1"), "--out", str(tmp_path / "p1.nii.gz")]) == 2
    err = capsys.readouterr().err
    assert "holds 2 stacks" in err and "--series" in err, err
    assert main(["info", str(tmp_path / "studies" / "p1"), "--series", "CINE_SAX"]) == 0
    assert json.loads(capsys.readouterr().out)["frames"] == 2
    write_dicom(cine[1:], tmp_path / "studies" / "p2", study="1.2.3.2")
    for path in write_dicom(cine[:1], tmp_path / "studies" / "p3", study="1.2.3.3").iterdir():
        ds = pydicom.dcmread(path)
        del ds.FrameOfReferenceUID
        ds.save_as(path)
    model = ("--model", acdc_network, "--device", "cpu", "--series", "cine_sax")  # one network: a quarter of the work
    run = acnn("segment", tmp_path / "studies" / "p1", "--out", tmp_path / "p1.nii.gz", "--dicom-seg",
               tmp_path / "seg", *model)
    assert run.returncode == 0 and f"{tmp_path / 'seg'}: 2 DICOM segmentations" in run.stdout, run.stderr
    labels = read_frames(tmp_path / "p1.nii.gz")
    assert all(f.array.any() for f in labels)
    g = labels[0].geometry
    for t, frame in enumerate(labels):
        seg = highdicom.seg.segread(tmp_path / "seg" / f"SEG_{t + 1:03d}.dcm")
        back = np.zeros(g.shape, np.uint8)
        for pixels, item in zip(seg.pixel_array, seg.PerFrameFunctionalGroupsSequence):
            z = int(round(g.physical_to_index(item.PlanePositionSequence[0].ImagePositionPatient)[2]))
            back[:, :, z] += pixels.T * item.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        np.testing.assert_array_equal(back, frame.array)
    run = acnn("segment", tmp_path / "studies" / "p2", "--out", tmp_path / "p2.nii.gz", "--dicom-seg",
               tmp_path / "seg2", *model)  # one stack
    assert run.returncode == 0 and f"{tmp_path / 'seg2'}: 1 DICOM segmentation on" in run.stdout, run.stderr
    assert [p.name for p in (tmp_path / "seg2").iterdir()] == ["SEG_001.dcm"]
    assert main(["info", str(tmp_path / "seg")]) == 2  # a folder of SEGs alone: no images, says how to read them
    assert "holds DICOM files but no images (2 DICOM SEGs, label maps: give acnn info or acnn evaluate one of " \
           "them)" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "seg2" / "SEG_001.dcm")]) == 0  # a SEG read back: a label map on the grid
    (p2,) = read_frames(tmp_path / "p2.nii.gz")
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "DICOM SEG" and info["shape"] == list(p2.shape)
    assert info["label_volumes_ml"]["1"] == pytest.approx(np.count_nonzero(p2.array == 1) * p2.geometry.voxel_volume_ml,
                                                             abs=1e-3)
    run = acnn("evaluate", "--pred", tmp_path / "p2.nii.gz", "--gt", tmp_path / "seg2" / "SEG_001.dcm", "--out",
               tmp_path / "ev.json")
    assert run.returncode == 0, run.stderr
    summary = json.loads((tmp_path / "ev.json").read_text())["summary"]
    assert summary["cases"] == 1 and summary["dice_lv"]["mean"] == 1.0, run.stderr
    assert summary["dice_myo"]["mean"] == 1.0 and summary["dice_rv"]["mean"] == 1.0
    refusals = ((tmp_path / "studies" / "p1", model, "holds DICOM segmentations already; pass --overwrite"),
                (tmp_path / "studies" / "p1", ("--model", "acnn-seg-phantom", "--series", "cine_sax"),
                 "a sub-pixel model"),
                (tmp_path / "p1.nii.gz", model, "--series is for DICOM input: "),
                (tmp_path / "p1.nii.gz", model[:4], "--dicom-seg is for DICOM input: "))
    for n, (source, options, says) in enumerate(refusals):
        assert main(["segment", str(source), "--out", str(tmp_path / f"again{n}.nii.gz"), "--dicom-seg",
                     str(tmp_path / "seg"), *map(str, options)]) == 2
        assert says in capsys.readouterr().err and not (tmp_path / f"again{n}.nii.gz").exists()
    run = acnn("segment", tmp_path / "studies", "--out", tmp_path / "out", "--dicom-seg", tmp_path / "segs", *model)
    assert run.returncode == 1 and "no DICOM SEG for p3: " in run.stderr and "has no FrameOfReferenceUID" in run.stderr
    assert "no DICOM SEG for 1 of 3 studies: p3" in run.stderr and (tmp_path / "out" / "p3.nii.gz").exists()
    assert sorted(p.relative_to(tmp_path / "segs").as_posix() for p in (tmp_path / "segs").rglob("*.dcm")) == [
        "p1/SEG_001.dcm", "p1/SEG_002.dcm", "p2/SEG_001.dcm"]
    import shutil

    shutil.copytree(tmp_path / "segs" / "p1", tmp_path / "studies" / "p1" / "labels")  # SEGs among the images
    capsys.readouterr()
    assert main(["info", str(tmp_path / "studies" / "p1")]) == 0  # listed beside the stacks
    assert "  DICOM SEG: labels/SEG_001.dcm, labels/SEG_002.dcm\n" in capsys.readouterr().out
    assert main(["info", str(tmp_path / "studies" / "p1"), "--series", "cine_sax"]) == 0
    assert json.loads(capsys.readouterr().out)["dicom_seg"] == ["labels/SEG_001.dcm", "labels/SEG_002.dcm"]


def test_segment_says_when_it_finds_no_heart(tmp_path, acdc_network, capsys):
    """Noise segmented by a real-data network: nothing is found, the label map is written, and stderr says so;
    a NaN voxel, a 2-D image or a constant one is refused with one line (in-process, as the other refusals)."""
    from ACNNCore.cli import main
    from ACNNCore.io import write_volume
    from ACNNCore.volume import Volume

    noise = np.random.default_rng(0).random((100, 100, 10)).astype(np.float32)
    write_volume(Volume.from_array(noise, (1.5, 1.5, 8.0)), tmp_path / "noise.nii.gz")
    run = acnn("segment", tmp_path / "noise.nii.gz", "--out", tmp_path / "seg.nii.gz", "--model", acdc_network,
               "--device", "cpu")
    assert run.returncode == 0, run.stderr
    assert not read_labels(tmp_path / "seg.nii.gz", allowed=(0, 1, 2, 3)).array.any()
    assert "no LV found in" in run.stderr and "short-axis cardiac stack" in run.stderr
    assert "IMPLAUSIBLE" in run.stdout and "--clean-up" not in run.stderr  # nothing there to mend
    noise[5, 5, 5] = np.nan
    write_volume(Volume.from_array(noise, (1.5, 1.5, 8.0)), tmp_path / "nan.nii.gz")
    write_volume(Volume.from_array(noise[:, :, :1], (1.5, 1.5, 8.0)), tmp_path / "flat.nii.gz")
    write_volume(Volume.from_array(np.zeros_like(noise), (1.5, 1.5, 8.0)), tmp_path / "zero.nii.gz")
    for name, says in (("nan", "1 NaN or infinite voxels"), ("flat", "a stack of several slices is needed"),
                       ("zero", "percentiles are both 0")):
        assert main(["segment", str(tmp_path / f"{name}.nii.gz"), "--out", str(tmp_path / f"{name}_seg.nii.gz")]) == 2
        assert says in capsys.readouterr().err and not (tmp_path / f"{name}_seg.nii.gz").exists()
    labels = Volume.from_array((noise > 0.5).astype(np.uint8) * 2, (1.5, 1.5, 8.0))  # a label map for an image
    write_volume(labels, tmp_path / "case.nii.gz")
    for command in ("segment", "superresolve"):
        assert main([command, str(tmp_path / "case.nii.gz"), "--out", str(tmp_path / "out.nii.gz")]) == 2
        assert "a label map, not an image" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "case.nii.gz")]) == 0
    assert json.loads(capsys.readouterr().out)["label_volumes_ml"]  # described as labels
    for command in ("segment", "superresolve"):  # a missing input: said before any model loads
        assert main([command, str(tmp_path / "missing.nii.gz"), "--out", str(tmp_path / "out.nii.gz")]) == 2
        assert capsys.readouterr().err.strip() == f"acnn: error: no such file or folder: " \
                                                  f"{tmp_path / 'missing.nii.gz'}"


def test_info_describes_a_model_without_loading_it():
    """`acnn info NAME`: what a bundled model takes, gives and learnt from, and its prior found by checksum --
    from model.json alone (no torch imported)."""
    code = ("import sys; from ACNNCore.cli import main; main(['info', 'acnn-seg-acdc']); "
            "print(sorted(m for m in ('torch', 'monai') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    text, imported = run.stdout.rsplit("\n", 2)[:2]
    about = json.loads(text)
    assert imported == "[]"
    assert about["task"] == "seg" and about["labels"] == {"1": "LV blood pool", "2": "LV myocardium",
                                                          "3": "RV blood pool"}
    assert about["input"]["slices"] == "as acquired" and about["trained"]["data"]["cases"] == 140
    assert about["prior"].endswith("ae-acdc")  # the AE it was trained with, by the checksum its bundle records
    shape = json.loads(acnn("info", "ae-acdc").stdout)
    assert shape["latent"]["code_size"] == 64 and len(shape["latent"]["most_used_dimensions"]) == 5
    listed = {line.split()[0]: line for line in acnn("models").stdout.splitlines() if not line.startswith("(")}
    assert {"acnn-seg-acdc", "acnn-seg-phantom", "acnn-sr-phantom", "ae-acdc"} <= set(listed)
    # the real-data model is an ensemble: four networks' size, the first one's validation
    assert re.search(r"596,624 params x 4 LV, myo, RV +140 cases +validation \(first of 4\): dice LV 0\.\d{3}, "
                     r"dice myo", listed["acnn-seg-acdc"])
    assert [m["bundle"].rsplit("/", 1)[1] for m in about["members"]] == ["seed-0", "seed-1", "seed-2", "seed-3"]
    assert re.search(r" image .* validation: PSNR \d+\.\d dB", listed["acnn-sr-phantom"])
    run = acnn("info", "no-such-model")
    assert run.returncode == 2 and "no such file, folder or bundled model: no-such-model" in run.stderr


def test_info_checks_a_model_s_weights(tmp_path):
    """`acnn info` on a bundle whose weights are missing or not the file model.json records (a copy broken off):
    described, the problem said, exit status 1 -- where using it would be refused."""
    import shutil

    from ACNNCore.bundle import resolve

    bundle = shutil.copytree(resolve("ae-phantom"), tmp_path / "ae")
    assert json.loads(acnn("info", bundle).stdout)["weights"] == "as recorded (SHA-256)"
    weights = bundle / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    run = acnn("info", bundle)
    assert run.returncode == 1 and "does not match the checksum in model.json" in run.stderr
    assert json.loads(run.stdout)["name"] == "ae-phantom"
    weights.unlink()
    run = acnn("info", bundle)
    assert run.returncode == 1 and "has no model.safetensors" in run.stderr


def test_a_reader_that_goes_away_stops_it_quietly():
    """`acnn models | head -1`: the pipe closed before the output is written ends the command with the status
    of a tool killed by SIGPIPE (141) and nothing on stderr -- not "acnn: error: Broken pipe" or Python's
    "Exception ignored" at exit."""
    run = subprocess.Popen([sys.executable, "-m", "ACNNCore.cli", "models"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    run.stdout.close()  # no reader: the first write meets a broken pipe
    assert run.wait(timeout=60) == 141
    assert run.stderr.read() == b""


def test_a_broken_pipe_elsewhere_is_an_error(monkeypatch, capsys):
    """Only a reader gone from standard output ends quietly: a pipe broken elsewhere (a worker process's) while
    standard output is fine is one line and status 2, never a silent 141."""
    from ACNNCore import cli

    def broken(args):  # what a worker's pipe breaking looks like from the command
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "run_models", broken)
    assert cli.main(["models"]) == 2
    assert capsys.readouterr().err == "acnn: error: Broken pipe\n"


def test_a_crash_in_native_code_says_where_python_was():
    """`acnn` enables faulthandler: a segmentation fault in a library (ITK, GDCM, torch) prints the Python stack."""
    code = "import ctypes; from ACNNCore.cli import main; main(['models']); ctypes.string_at(0)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, encoding="utf-8")
    assert run.returncode == -11 and "Fatal Python error: Segmentation fault" in run.stderr, run.stderr


def test_progress_is_a_bar_on_a_terminal_and_plain_lines_in_a_log(monkeypatch):
    """A batch job's log gets whole lines (no carriage returns piling up on one line), at most one per interval and
    none for a loop shorter than it; a terminal (a real pseudo-terminal here) gets tqdm's bar."""
    import io
    import os
    import pty
    import time

    from ACNNCore import progress

    log = io.StringIO()
    bar = progress.progress_bar(range(3), desc="segment", unit="case", stream=log)
    for i in bar:
        bar.set_postfix_str(f"case {i}")  # on a terminal shown at once; in a log with the next line
        bar.set_postfix(loss=1.0)
    assert log.getvalue() == ""  # shorter than the interval: nothing
    monkeypatch.setattr(progress, "LOG_INTERVAL_S", 0.05)
    bar = progress.progress_bar(range(6), desc="segment", unit="case", stream=log)
    for i in bar:
        bar.set_postfix_str(f"case {i}")
        time.sleep(0.03)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and 2 <= len(lines) <= 6 and len(set(lines)) == len(lines), lines
    assert all(line.startswith("segment: ") for line in lines) and re.search(r"100% 6/6 \[.*case 5\]", lines[-1])
    for _ in progress.progress_bar(range(6), stream=io.StringIO(), enabled=False):
        pass
    main, child = pty.openpty()
    with os.fdopen(child, "w") as terminal:
        for _ in progress.progress_bar(range(3), desc="segment", stream=terminal):
            pass
    shown = b""
    while True:  # what the terminal was sent, to the end (a pseudo-terminal hands it over in pieces)
        try:
            piece = os.read(main, 10_000)
        except OSError:  # the terminal's other end is closed: all read
            break
        if not piece:
            break
        shown += piece
    shown = shown.decode()
    os.close(main)
    assert "\r" in shown and "3/3" in shown and "segment" in shown


def test_the_preview_shows_any_slice_factor_and_the_echo_mode(tmp_path):
    """--preview at K = 2 (it picked its HR slice for K = 5: a traceback) and of 3-D echo volumes."""
    for option, value in (("--factor", 2), ("--modality", "us")):
        out = tmp_path / str(value)
        run = acnn("phantom", "--out", out, "--subjects", 1, option, value, "--preview")
        assert run.returncode == 0, run.stderr
        assert (out / "preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
