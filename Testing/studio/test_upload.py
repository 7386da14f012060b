"""What a user uploads to the studio, as the studio loads it: DICOM files chosen together, a zip of a DICOM
folder, images as they are (real files; the browser's part is in test_studio)."""

import zipfile

import numpy as np
import pytest

from ACNNCore.errors import InputError
from ACNNCore.io import read_frames, write_volume

app = pytest.importorskip("ACNNStudio.app", reason="trame-slicer is not installed")
uploaded_items, write_uploads = app.uploaded_items, app.write_uploads


@pytest.fixture(scope="module")
def cine(phantom_cine):
    return phantom_cine(0, 5)


def test_dicom_files_chosen_together_load_as_one_cine(cine, write_dicom, tmp_path):
    source = write_dicom(cine, tmp_path / "scanner", per_slice_series=True)
    upload = tmp_path / "upload"
    upload.mkdir()
    for f in source.iterdir():  # what the browser sends: the files, no folder
        (upload / f.name).write_bytes(f.read_bytes())
    write_volume(cine[0], upload / "other.nii.gz")
    (upload / "DICOMDIR").write_bytes(bytes(128) + b"DICM" + b"their index, chosen with them")
    items = uploaded_items(sorted(upload.iterdir()), upload)
    assert [p.name for p in items] == ["DICOM", "other.nii.gz"]
    frames = read_frames(items[0])
    assert len(frames) == 2 and all(np.array_equal(f.array, c.array) for f, c in zip(frames, cine))


def test_a_zip_of_a_dicom_folder_loads_its_stack(cine, write_dicom, tmp_path):
    source = write_dicom(cine, tmp_path / "scanner")
    upload = tmp_path / "upload"
    upload.mkdir()
    with zipfile.ZipFile(upload / "study.zip", "w") as z:
        for f in source.iterdir():
            z.write(f, f"patient7/cine_sax/{f.name}")
        z.writestr("__MACOSX/patient7/cine_sax/._IM0000", b"resource fork")  # what macOS's zip adds
        z.writestr("patient7/notes.txt", "not an image")
    items = uploaded_items([upload / "study.zip"], upload)
    assert [p.name for p in items] == ["study"]
    assert len(read_frames(items[0])) == 2


def test_an_upload_with_nothing_to_load_is_refused_by_name(tmp_path):
    with zipfile.ZipFile(tmp_path / "empty.zip", "w") as z:
        z.writestr("readme.txt", "no images")
    with pytest.raises(InputError, match="empty.zip holds no DICOM files and no images"):
        uploaded_items([tmp_path / "empty.zip"], tmp_path)
    (tmp_path / "fake.zip").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="fake.zip is not a zip file"):
        uploaded_items([tmp_path / "fake.zip"], tmp_path)


def test_uploaded_files_stay_in_their_folder_whatever_their_names(tmp_path):
    """A browser sends base names; a client of the studio's websocket may send any: none is written outside the
    upload's folder, and a name sent twice is kept twice."""
    folder = tmp_path / "upload"
    folder.mkdir()
    outside = tmp_path / "outside.nii.gz"
    sent = [{"name": name, "content": content} for name, content in
            (("../outside.nii.gz", b"1"), (str(outside), b"2"), ("..\\outside.nii.gz", b"3"), ("IM0001", b"4"),
             ("IM0001", b"5"))]
    paths = write_uploads(sent, folder)
    assert not outside.exists()
    assert [p.name for p in paths] == ["outside.nii.gz", "outside-1.nii.gz", "outside-2.nii.gz", "IM0001",
                                       "IM0001-1"]
    assert all(p.parent == folder for p in paths) and [p.read_bytes() for p in paths] == [b"1", b"2", b"3", b"4",
                                                                                          b"5"]
    for name in ("..", "dir/.."):
        with pytest.raises(InputError, match="cannot take a file named"):
            write_uploads([{"name": name, "content": b"x"}], folder)
