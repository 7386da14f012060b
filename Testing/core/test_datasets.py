"""Data set readers: phantom, ACDC (real data, skipped where absent), plain folders."""

import numpy as np
import pytest
import SimpleITK as sitk

from ACNNCore.datasets import read_acdc_info, read_acdc_patient, read_dataset, read_folder, read_phantom
from ACNNCore.errors import InputError
from ACNNCore.io import write_volume
from ACNNCore.labels import LV_BLOOD_POOL, LV_MYOCARDIUM, RV_BLOOD_POOL
from ACNNCore.volume import Volume


def test_phantom_reader(phantom_mr):
    root, _ = phantom_mr
    cases = read_dataset(root)
    assert len(cases) == 12
    c = cases[0]
    assert c.name == "subject000_ED" and c.meta["group"] == "NOR" and c.meta["phase"] == "ED"
    assert c.image.spacing == (1.25, 1.25, 10.0) and c.labels.spacing == (1.25, 1.25, 2.0)
    assert c.image.shape[2] * 5 == c.labels.shape[2]
    sr = read_phantom(root, hr_image=True)
    assert sr[0].hr_image.array.dtype == np.float32 and sr[0].hr_image.geometry.same_as(sr[0].labels.geometry)


def test_acdc_patient_labels_are_mapped(acdc_root):
    folder = acdc_root / "patient001"
    info = read_acdc_info(folder / "Info.cfg")
    assert info["Group"] == "DCM" and info["ED"] == 1 and info["ES"] == 12
    ed, es = read_acdc_patient(folder)
    raw = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "patient001_frame01_gt.nii.gz"))).transpose(2, 1, 0)
    np.testing.assert_array_equal(ed.labels.array == LV_BLOOD_POOL, raw == 3)
    np.testing.assert_array_equal(ed.labels.array == RV_BLOOD_POOL, raw == 1)
    np.testing.assert_array_equal(ed.labels.array == LV_MYOCARDIUM, raw == 2)
    assert ed.meta["group"] == "DCM" and es.meta["frame"] == 12
    assert ed.image.geometry.same_as(ed.labels.geometry)
    # DCM: a large LV blood pool at ED, much smaller at ES
    v = ed.labels.geometry.voxel_volume_ml
    edv, esv = (ed.labels.array == 1).sum() * v, (es.labels.array == 1).sum() * v
    assert edv > 200 and (edv - esv) / edv < 0.4


def test_acdc_reader_reads_all_patients(acdc_root):
    cases = read_dataset(acdc_root)
    assert len(cases) == 140
    assert {c.meta["group"] for c in cases} == {"DCM", "HCM", "MINF", "NOR", "RV"}


def _vol(value=1):
    return Volume.from_array(np.full((4, 4, 3), value, np.float32), (1, 1, 5))


def test_folder_of_pairs(tmp_path):
    write_volume(_vol(), tmp_path / "a.nii.gz")
    write_volume(_vol(1).with_array(np.ones((4, 4, 3), np.uint8)), tmp_path / "a_gt.nii.gz")
    write_volume(_vol(), tmp_path / "b.nrrd")
    cases = read_folder(tmp_path)
    assert [c.name for c in cases] == ["a", "b"]
    assert cases[0].labels is not None and cases[1].labels is None
    with pytest.raises(InputError, match="b.nrrd has no label map"):
        read_folder(tmp_path, labels_required=True)


def test_a_subjects_phases_in_a_folder_are_one_subject(tmp_path):
    """Validation holds out subjects, both phases together: in a plain folder the phase ending a name, as
    `acnn segment` writes them, is not part of the subject."""
    for name in ("p1_ED", "p1_ES", "p2_frame01", "p2_frame12", "p3"):
        write_volume(_vol(), tmp_path / f"{name}.nii.gz")
    assert [c.meta["subject"] for c in read_folder(tmp_path)] == ["p1", "p1", "p2", "p2", "p3"]


def test_images_and_labels_subfolders(tmp_path):
    write_volume(_vol(), tmp_path / "images" / "c1.nii.gz")
    write_volume(_vol().with_array(np.full((4, 4, 3), 2, np.uint8)), tmp_path / "labels" / "c1.nii.gz")
    (case,) = read_dataset(tmp_path)
    assert case.name == "c1" and int(case.labels.array.max()) == 2


def test_a_slicer_segmentation_in_a_folder_is_read_by_its_segments_names(tmp_path):
    """A label map exported from Slicer as NAME_gt.seg.nrrd numbers its segments in the order they were made
    (here the myocardium 1, the blood pool 2): training data reads them by name, as `acnn evaluate` does."""
    from ACNNCore.io import write_segmentation

    ours = np.zeros((4, 4, 3), np.uint8)
    ours[1:3, 1:3] = LV_MYOCARDIUM
    ours[1, 1] = LV_BLOOD_POOL
    in_file = np.choose(ours, [0, 2, 1]).astype(np.uint8)  # the file's values: 1 myocardium, 2 blood pool
    write_volume(_vol(), tmp_path / "a.nii.gz")
    write_segmentation(_vol().with_array(in_file), tmp_path / "a_gt.seg.nrrd",
                       {1: ("LV myocardium", (1, 1, 0)), 2: ("LV blood pool", (1, 0, 0))})
    (case,) = read_dataset(tmp_path)
    np.testing.assert_array_equal(case.labels.array, ours)


def test_empty_or_missing_folder(tmp_path):
    with pytest.raises(InputError, match="no images"):
        read_folder(tmp_path)
    with pytest.raises(InputError, match="no such data folder"):
        read_dataset(tmp_path / "nope")


def test_a_phantom_description_cut_short_or_edited_is_said_in_one_line(phantom_mr, tmp_path):
    """dataset.json and a subject's info.json that are not what `acnn phantom` wrote: an InputError naming the file
    and what it lacks (reading the data set: training, benchmarks, info). A file's group (`acnn encode`) is ""
    where the info.json beside it is not a phantom's."""
    import json
    import shutil

    from ACNNCore.datasets import group_of

    data = tmp_path / "data"
    shutil.copytree(phantom_mr[0], data)
    description = (data / "dataset.json").read_text()
    for text, said in (("{", "is not valid JSON"), ("[1]", "lacks modality, seed, config, subjects"),
                       (json.dumps({**json.loads(description), "subjects": "all"}), "subjects by name")):
        (data / "dataset.json").write_text(text)
        with pytest.raises(InputError, match=f"dataset.json .*{said}"):
            read_dataset(data)
    (data / "dataset.json").write_text(description)
    subject = sorted(data.glob("subject*"))[0]
    (subject / "info.json").write_text('{"group": "NOR"}')
    with pytest.raises(InputError, match=r"info.json lacks ef_pct: not a phantom subject's description"):
        read_phantom(data)
    assert group_of(subject / "ED" / "lr.nii.gz") == "NOR"
    (subject / "info.json").write_text("[]")  # not a phantom's (a file of another program's, say): no group
    assert group_of(subject / "ED" / "lr.nii.gz") == ""


def test_an_acdc_info_file_edited_wrong_is_said_in_one_line(tmp_path):
    (tmp_path / "Info.cfg").write_text("ED: 1\nES: twelve\nGroup: DCM\n")
    with pytest.raises(InputError, match=r"Info.cfg: ES is a frame number, not 'twelve'"):
        read_acdc_info(tmp_path / "Info.cfg")
    (tmp_path / "Info.cfg").write_text("ED: 1\nES: 12\n")
    with pytest.raises(InputError, match=r"Info.cfg lacks \['Group'\]"):
        read_acdc_info(tmp_path / "Info.cfg")
    (tmp_path / "Info.cfg").write_text("ED: 1\nES: 12\nGroup: DCM\nHeight: 184.0\n")
    assert read_acdc_info(tmp_path / "Info.cfg") == {"ED": 1, "ES": 12, "Group": "DCM", "Height": "184.0"}
