"""Volume geometry and file I/O: round trips, an independent affine check, every bad input."""

import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from ACNNCore.errors import InputError
from ACNNCore.dicom import (dicom_studies, is_dicom_file, is_dicom_folder, is_dicom_seg, read_dicom, read_dicom_seg,
                            read_dicom_stacks)
from ACNNCore.io import (format_of, read_frames, read_labels, read_segmentation, read_volume, write_frames,
                         write_segmentation, write_volume)
from ACNNCore.labels import SEGMENTS
from ACNNCore.volume import Geometry, Volume


def oblique_direction():
    """A proper rotation, not axis-aligned (about 30 degrees about a skew axis)."""
    axis = np.array([1.0, 2.0, 0.5]) / np.linalg.norm([1.0, 2.0, 0.5])
    a = np.deg2rad(30)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


@pytest.fixture
def oblique_volume():
    rng = np.random.default_rng(0)
    array = rng.normal(size=(7, 9, 5)).astype(np.float32)
    return Volume.from_array(array, (1.25, 0.9, 7.5), (-12.5, 30.25, 4.0), oblique_direction())


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd", ".mha", ".mhd"])
def test_round_trip_keeps_array_and_geometry(tmp_path, oblique_volume, suffix):
    path = write_volume(oblique_volume, tmp_path / f"v{suffix}")
    back = read_volume(path)
    np.testing.assert_array_equal(back.array, oblique_volume.array)
    assert back.geometry.same_as(oblique_volume.geometry, atol=1e-5)


def test_affine_matches_nibabel(tmp_path, oblique_volume):
    """nibabel computes the NIfTI affine on its own (RAS); ours must agree with it."""
    path = write_volume(oblique_volume, tmp_path / "v.nii.gz")
    nii = nib.load(str(path))
    np.testing.assert_allclose(nii.affine, oblique_volume.geometry.ijk_to_ras, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(nii.dataobj), oblique_volume.array)  # same (i, j, k) order
    # a voxel's physical position by hand: origin + R @ diag(spacing) @ ijk (LPS)
    ijk = np.array([3, 4, 2])
    g = oblique_volume.geometry
    by_hand = np.asarray(g.origin) + g.direction @ (np.asarray(g.spacing) * ijk)
    np.testing.assert_allclose(g.index_to_physical(ijk), by_hand)
    np.testing.assert_allclose(g.physical_to_index(by_hand), ijk, atol=1e-9)


def test_segmentation_file_round_trip(tmp_path, oblique_volume):
    labels = oblique_volume.with_array((np.abs(oblique_volume.array) > 0.7).astype(np.uint8)
                                       + (oblique_volume.array > 1.2))
    path = write_segmentation(labels, tmp_path / "s.seg.nrrd", {v: SEGMENTS[v] for v in (1, 2)})
    header = path.read_bytes()[:4000].decode("latin-1")
    assert "Segment0_Name:=LV blood pool" in header and "Segment1_Name:=LV myocardium" in header
    back, names = read_segmentation(path)
    np.testing.assert_array_equal(back.array, labels.array)
    assert names == {1: "LV blood pool", 2: "LV myocardium"}
    assert back.geometry.same_as(labels.geometry, atol=1e-5)
    # one drawn in Slicer numbers its segments in the order they were added: read (acnn evaluate, the encoder)
    # by their names into our values, a segment of another name left out
    from ACNNCore.evaluation import read_label_map

    drawn = {1: ("LV myocardium", (1, 1, 0)), 2: ("Aorta", (1, 0, 0)), 3: ("LV blood pool", (1, 0, 0))}
    other = labels.with_array(np.choose(labels.array, [0, 3, 1]).astype(np.uint8))
    other.array[0, 0, 0] = 2  # a voxel of the aorta
    ours = read_label_map(write_segmentation(other, tmp_path / "drawn.seg.nrrd", drawn))
    expected = labels.array.copy()
    expected[0, 0, 0] = 0
    np.testing.assert_array_equal(ours.array, expected)


def test_4d_cine_reads_as_frames(tmp_path):
    frames = [sitk.GetImageFromArray(np.full((4, 5, 6), t, np.float32)) for t in range(3)]
    cine = sitk.JoinSeries(frames)
    cine.SetSpacing((1.5, 1.5, 8.0, 1.0))
    sitk.WriteImage(cine, str(tmp_path / "cine.nii.gz"))
    out = read_frames(tmp_path / "cine.nii.gz")
    assert len(out) == 3
    assert all(f.shape == (6, 5, 4) for f in out)
    assert [float(f.array.mean()) for f in out] == [0.0, 1.0, 2.0]
    assert out[1].spacing == (1.5, 1.5, 8.0)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_frames_written_as_a_cine_read_back_as_they_were(tmp_path, suffix):
    geometry = Geometry((5, 6, 3), (1.5, 1.2, 8.0), (10.0, -20.0, 5.0), oblique_direction())
    rng = np.random.default_rng(0)
    frames = [Volume(rng.integers(0, 4, (5, 6, 3)).astype(np.uint8), geometry) for _ in range(4)]
    path = write_frames(frames, tmp_path / f"cine{suffix}")
    back = read_frames(path)
    assert len(back) == 4 and all(b.geometry.same_as(geometry, atol=1e-5) for b in back)
    assert all(np.array_equal(a.array, b.array) and b.array.dtype == np.uint8 for a, b in zip(frames, back))
    with pytest.raises(InputError, match="exists"):
        write_frames(frames, path)
    with pytest.raises(InputError, match="another grid"):
        write_frames([frames[0], Volume(frames[1].array, Geometry((5, 6, 3), (1.0, 1.0, 8.0)))],
                     tmp_path / f"mixed{suffix}")
    with pytest.raises(InputError, match="seg.nrrd holds one"):
        write_frames(frames, tmp_path / "cine.seg.nrrd")
    write_frames(frames[:1], tmp_path / f"one{suffix}")
    assert sitk.ReadImage(str(tmp_path / f"one{suffix}")).GetDimension() == 3  # one frame: a 3-D file


# --- bad input: a clear InputError each -------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_volume(tmp_path / "nothing.nii.gz")


def test_unsupported_format(tmp_path):
    (tmp_path / "x.png").write_bytes(b"\x89PNG")
    with pytest.raises(InputError, match="unsupported file format"):
        read_volume(tmp_path / "x.png")
    with pytest.raises(InputError, match=r"result has no file type: end its name in one of \.seg\.nrrd, \.nii\.gz"):
        format_of(tmp_path / "result")  # "--out result"


def test_2d_image(tmp_path):
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((5, 6), np.float32)), str(tmp_path / "flat.nii.gz"))
    with pytest.raises(InputError, match="2-D image; a 3-D volume is needed"):
        read_volume(tmp_path / "flat.nii.gz")


def test_rgb_image(tmp_path):
    rgb = sitk.GetImageFromArray(np.zeros((3, 4, 5, 3), np.uint8), isVector=True)
    sitk.WriteImage(rgb, str(tmp_path / "rgb.nrrd"))
    with pytest.raises(InputError, match="multi-component"):
        read_volume(tmp_path / "rgb.nrrd")


def test_nan_voxels(tmp_path):
    a = np.ones((4, 4, 4), np.float32)
    a[1, 2, 3] = np.nan
    a[0, 0, 0] = np.inf
    write_volume(Volume.from_array(a, (1, 1, 1)), tmp_path / "nan.nii.gz")
    with pytest.raises(InputError, match="2 NaN or infinite voxels"):
        read_volume(tmp_path / "nan.nii.gz")


def test_nifti_cut_short(tmp_path):
    """ITK's NIfTI reader takes a file cut short without a word, the voxels it lacks as zeros: refused, as an image,
    a cine's frames or a label map, where the file ends in the data or in the header, compressed or not."""
    from ACNNCore.evaluation import read_label_map
    from ACNNCore.io import check_readable

    image = Volume.from_array(np.random.default_rng(0).integers(0, 3, (32, 32, 6), dtype=np.int16), (1.5, 1.5, 8))
    for suffix in (".nii", ".nii.gz"):
        whole = tmp_path / f"whole{suffix}"
        write_volume(image, whole)
        data = whole.read_bytes()
        assert np.array_equal(read_labels(whole).array, image.array)  # whole, it reads
        for n, cut in enumerate((data[:len(data) // 2], data[:-12], data[:len(data) // 20])):
            path = tmp_path / f"cut{n}{suffix}"
            path.write_bytes(cut)
            for read in (read_volume, read_frames, read_labels, check_readable, lambda p: read_label_map(p, "ours")):
                with pytest.raises(InputError, match=f"cannot read .*cut{n}"):
                    read(path)


def test_zero_spacing(tmp_path):
    (tmp_path / "z.raw").write_bytes(np.zeros(27, np.uint8).tobytes())
    (tmp_path / "z.mhd").write_text("ObjectType = Image\nNDims = 3\nDimSize = 3 3 3\nElementSpacing = 0 1 1\n"
                                    "ElementType = MET_UCHAR\nElementDataFile = z.raw\n")
    with pytest.raises(InputError, match="spacing|cannot read"):
        read_volume(tmp_path / "z.mhd")
    with pytest.raises(InputError, match="spacing"):
        Geometry((3, 3, 3), (0.0, 1.0, 1.0))


def test_unexpected_label_values(tmp_path):
    write_volume(Volume.from_array(np.array([0, 1, 2, 7] * 2, np.uint8).reshape(2, 2, 2), (1, 1, 1)),
                 tmp_path / "l.nii.gz")
    with pytest.raises(InputError, match=r"unexpected label values \[7\]"):
        read_labels(tmp_path / "l.nii.gz")
    write_volume(Volume.from_array(np.full((2, 2, 2), 0.5, np.float32), (1, 1, 1)), tmp_path / "f.nii.gz")
    with pytest.raises(InputError, match="non-integer"):
        read_labels(tmp_path / "f.nii.gz")


def test_existing_output_is_not_overwritten(tmp_path, oblique_volume):
    path = write_volume(oblique_volume, tmp_path / "v.nii.gz")
    before = path.read_bytes()
    with pytest.raises(InputError, match="exists; pass --overwrite"):
        write_volume(oblique_volume.with_array(oblique_volume.array * 2), path)
    assert path.read_bytes() == before
    write_volume(oblique_volume.with_array(oblique_volume.array * 2), path, overwrite=True)
    np.testing.assert_array_equal(read_volume(path).array, oblique_volume.array * 2)


def test_outputs_are_readable_as_a_plainly_written_file_is_and_leave_no_temporary_file(tmp_path, oblique_volume):
    """Every file is written to a temporary file first and moved into place (a reader never sees half of it): it
    must still get the permissions ``open()`` gives (a temporary file is its owner's only), so a lab's shared
    folder can read the label maps and models; a write that fails leaves the file that was there."""
    import torch

    from ACNNCore.bundle import save_bundle
    from ACNNCore.io import atomic_target
    from ACNNCore.networks import ConvAutoencoder

    plain = tmp_path / "plain.txt"
    plain.write_text("")
    mode = plain.stat().st_mode & 0o777
    labels = oblique_volume.with_array((oblique_volume.array > 0).astype(np.uint8))
    written = [write_volume(oblique_volume, tmp_path / "v.nii.gz"), write_volume(oblique_volume, tmp_path / "v.nrrd"),
               write_segmentation(labels, tmp_path / "v.seg.nrrd", {1: SEGMENTS[1]}),
               write_frames([oblique_volume, oblique_volume], tmp_path / "cine.nii.gz")]
    folder = save_bundle(ConvAutoencoder(grid_shape=(16, 16, 12)), tmp_path / "ae",
                         {"task": "ae", "architecture": "ConvAutoencoder", "config": {"grid_shape": [16, 16, 12]}})
    written += [folder / "model.safetensors", folder / "model.json"]
    assert mode != 0o600 and {p.name: p.stat().st_mode & 0o777 for p in written} == {p.name: mode for p in written}
    before = written[0].read_bytes()
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_target(written[0], ".nii.gz") as tmp:
            torch.save({}, tmp)
            raise RuntimeError("disk full")
    assert written[0].read_bytes() == before
    assert not [p for p in tmp_path.rglob(".tmp-*")]


def test_non_orthonormal_direction():
    with pytest.raises(InputError, match="orthonormal"):
        Geometry((2, 2, 2), (1, 1, 1), direction=np.diag([1.0, 2.0, 1.0]))


@pytest.mark.parametrize("make, expected", [
    (lambda d: d / "missing.nii.gz", "no such file"),
    (lambda d: (d / "x.txt").write_text("hi") and d / "x.txt", "unsupported file format"),
    (lambda d: sitk.WriteImage(sitk.GetImageFromArray(np.zeros((5, 6), np.float32)), str(d / "f.nii.gz"))
     or d / "f.nii.gz", "3-D volume is needed"),
])
def test_cli_reports_bad_input_in_one_line(tmp_path, make, expected):
    path = make(tmp_path)
    run = subprocess.run([sys.executable, "-m", "ACNNCore.cli", "info", str(path)], capture_output=True, text=True)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("acnn: error:") and expected in lines[0]


def test_a_grid_turned_and_moved_in_its_own_plane():
    g = Volume.from_array(np.zeros((8, 6, 4), np.float32), (1.5, 2.0, 10.0), (3, 4, 5), oblique_direction()).geometry
    turned = g.turned(90.0)
    np.testing.assert_allclose(turned.center, g.center, atol=1e-9)
    np.testing.assert_allclose(turned.direction[:, 0], g.direction[:, 1], atol=1e-12)  # i now runs along j
    np.testing.assert_allclose(turned.direction[:, 1], -g.direction[:, 0], atol=1e-12)
    np.testing.assert_allclose(turned.direction[:, 2], g.direction[:, 2], atol=1e-12)  # the slices stay
    moved = g.turned(0.0, (3.0, -4.0))
    np.testing.assert_allclose(moved.center - g.center, g.direction @ [3.0, -4.0, 0.0], atol=1e-9)
    assert moved.direction.tolist() == g.direction.tolist() and moved.shape == g.shape
    assert g.turned(10.0, (1.0, 2.0)).turned(-10.0).turned(0.0, (-1.0, -2.0)).same_as(g)


def test_in_plane_distance_ignores_the_offset_across_slices():
    g = Volume.from_array(np.zeros((8, 6, 4), np.float32), (1.5, 2.0, 10.0), (3, 4, 5), oblique_direction()).geometry
    a = g.index_to_physical((1, 1, 0))
    # 3 voxels along i (4.5 mm), 2 along j (4 mm), 3 slices across (30 mm, not counted)
    assert g.in_plane_mm(a, g.index_to_physical((4, 3, 3))) == pytest.approx(np.hypot(4.5, 4.0))
    assert g.in_plane_mm(a, g.index_to_physical((1, 1, 2))) == pytest.approx(0.0, abs=1e-9)


def test_label_maps_are_told_from_images_by_their_values():
    from ACNNCore.io import looks_like_labels

    labels = np.zeros((8, 8, 4), np.uint8)
    labels[2:5, 2:5] = 3
    assert looks_like_labels(Volume.from_array(labels, (1, 1, 1)))
    assert not looks_like_labels(Volume.from_array(labels * 0, (1, 1, 1)))  # empty: nothing to tell
    assert not looks_like_labels(Volume.from_array(labels.astype(np.float32), (1, 1, 1)))  # a float image
    assert not looks_like_labels(Volume.from_array(labels.astype(np.int16) * 100, (1, 1, 1)))  # an MR's values


# --- DICOM folders -------------------------------------------------------------------

def test_dicom_stack_reads_with_its_geometry(tmp_path, oblique_volume, write_dicom):
    volume = oblique_volume.with_array(np.round(oblique_volume.array * 300).astype(np.int16))
    back = read_volume(write_dicom([volume], tmp_path / "dicom"))
    np.testing.assert_array_equal(back.array, volume.array)
    assert back.geometry.same_as(volume.geometry, atol=1e-4)
    assert len(read_frames(tmp_path / "dicom")) == 1


def test_a_dicom_folders_headers_are_parsed_once_while_its_files_stay_as_they_are(tmp_path, oblique_volume,
                                                                                 write_dicom, monkeypatch):
    """Loading a folder looks through it several times (its SEGs, its studies, each study's stacks: Slicer's and
    the studio's load, `acnn info`); each file's header is parsed once, and again only once the file is written
    again."""
    import time

    from ACNNCore import dicom

    volume = oblique_volume.with_array(np.round(oblique_volume.array * 300).astype(np.int16))
    folder = write_dicom([volume, volume], tmp_path / "dicom", times=[0, 300])
    parsed = []
    real = dicom._header
    monkeypatch.setattr(dicom, "_header", lambda file: parsed.append(getattr(file, "name", file)) or real(file))
    assert not any(map(is_dicom_seg, folder.iterdir()))
    for study in dicom_studies(folder).values():
        assert len(read_dicom_stacks(*study)[folder.name]) == 2
    assert len(read_frames(folder)) == 2
    assert sorted(map(str, parsed)) == sorted(map(str, folder.iterdir()))  # each file once
    time.sleep(0.05)  # the files written again, on another grid: read again
    moved = Volume(volume.array, Geometry(volume.shape, (1.5, 1.1, 7.5), volume.origin, volume.direction))
    write_dicom([moved, moved], folder, times=[0, 300])
    assert read_frames(folder)[0].geometry.same_as(moved.geometry, atol=1e-4)
    assert len(parsed) == 2 * len(list(folder.iterdir()))


@pytest.mark.parametrize("per_slice_series", [False, True])
def test_dicom_cine_reads_as_frames_in_time(tmp_path, oblique_volume, per_slice_series, write_dicom):
    frames = [oblique_volume.with_array(np.full(oblique_volume.shape, 10 * t + 1, np.int16)) for t in range(4)]
    for f in frames:
        f.array[:, :, 1] += 100  # the slices told apart
    folder = write_dicom(frames, tmp_path / "cine", per_slice_series, times=[0, 40, 80, 120])
    back = read_frames(folder)
    assert len(back) == 4 and all(b.geometry.same_as(oblique_volume.geometry, atol=1e-4) for b in back)
    assert all(np.array_equal(a.array, b.array) for a, b in zip(frames, back))
    with pytest.raises(InputError, match="DICOM cine of 4 frames"):
        read_volume(folder)


def test_a_dicom_cine_written_one_series_per_phase_reads_as_one(tmp_path, oblique_volume, write_dicom):
    """Some exports write a cine one series per phase (each a stack of every slice position), under one series
    description: its phases make the frames. A single-frame stack of another description on the same slices
    (late enhancement) stays apart."""
    frames = [oblique_volume.with_array(np.round(oblique_volume.array * 300 + 50 * t).astype(np.int16))
              for t in range(3)]
    for t, frame in enumerate(frames):
        write_dicom([frame], tmp_path / "cine" / f"phase{t}", times=[40 * (2 - t) + 5], series=10 + t)
    back = read_frames(tmp_path / "cine")
    assert len(back) == 3 and all(np.array_equal(a.array, b.array) for a, b in zip(frames[::-1], back))
    write_dicom([frames[0]], tmp_path / "cine" / "lge", times=[300], series=50, description="lge_sax")
    assert all(np.array_equal(a.array, b.array) for a, b in zip(frames[::-1], read_frames(tmp_path / "cine")))


def test_dicom_files_without_the_part_10_preamble_read_as_the_others(tmp_path, oblique_volume, write_dicom):
    """Older scanners and PACS exports write bare data sets: no 128-byte preamble and "DICM", sometimes no file
    meta either (implicit VR little endian). They are found, read, and labelled by a DICOM SEG as Part-10 files
    are; other files beginning with those bytes' look-alikes are not taken for DICOM."""
    import highdicom
    import pydicom
    from pydicom.filebase import DicomFileLike
    from pydicom.filewriter import write_dataset

    from ACNNCore.dicom import write_dicom_seg

    frames = [oblique_volume.with_array(np.round(oblique_volume.array * 300 + 40 * t).astype(np.int16))
              for t in range(2)]
    source = write_dicom(frames, tmp_path / "part10", times=[0, 300])
    (tmp_path / "bare").mkdir()
    for n, path in enumerate(sorted(source.iterdir())):
        ds = pydicom.dcmread(path)
        if n % 2:  # file meta kept, preamble dropped
            ds.preamble = None
            ds.save_as(tmp_path / "bare" / path.name, enforce_file_format=False)
        else:  # the data set alone, implicit VR little endian
            with DicomFileLike(open(tmp_path / "bare" / path.name, "wb")) as f:
                f.is_little_endian, f.is_implicit_VR = True, True
                write_dataset(f, ds)
    bare = tmp_path / "bare"
    assert all(is_dicom_file(p) and open(p, "rb").read(132)[128:] != b"DICM" for p in bare.iterdir())
    assert is_dicom_folder(bare)
    back = read_frames(bare)
    assert len(back) == 2 and all(np.array_equal(a.array, b.array) and a.geometry.same_as(b.geometry, atol=1e-4)
                                  for a, b in zip(frames, back))
    labels = [f.with_array((f.array > 150).astype(np.uint8)) for f in frames]
    paths = write_dicom_seg(labels, bare, tmp_path / "seg", {1: "LV blood pool"})
    assert len(paths) == 2 and highdicom.seg.segread(paths[1]).NumberOfFrames == frames[0].shape[2]
    for name, head in (("text.txt", b"\x08\x00 not a data set, two bytes alike"), ("short", b"\x08\x00"),
                       ("long", b"\x08\x00\x05\x00" + (10 ** 6).to_bytes(4, "little")),
                       ("nifti.nii", (348).to_bytes(4, "little") + bytes(200))):
        (tmp_path / name).write_bytes(head)
        assert not is_dicom_file(tmp_path / name)


def test_big_endian_dicom_files_read_as_little_endian_ones(tmp_path, oblique_volume, write_dicom):
    """Explicit VR big endian (retired, but in old archives): headers and pixels read as the little endian
    files they were converted from, and a DICOM SEG written on them refers to them."""
    import pydicom
    from pydicom.uid import ExplicitVRBigEndian

    from ACNNCore.dicom import write_dicom_seg

    frame = oblique_volume.with_array(np.round(oblique_volume.array * 300 - 50).astype(np.int16))
    source = write_dicom([frame], tmp_path / "little")
    (tmp_path / "big").mkdir()
    for path in source.iterdir():
        ds = pydicom.dcmread(path)
        ds.PixelData = ds.pixel_array.astype(">i2").tobytes()  # OW values are not swapped by the writer
        ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
        pydicom.dcmwrite(tmp_path / "big" / path.name, ds)
    big = tmp_path / "big"
    assert pydicom.dcmread(next(big.iterdir())).file_meta.TransferSyntaxUID == ExplicitVRBigEndian
    back = read_volume(big)
    assert np.array_equal(back.array, frame.array) and back.geometry.same_as(frame.geometry, atol=1e-4)
    labels = frame.with_array((frame.array > 150).astype(np.uint8))
    (path,) = write_dicom_seg([labels], big, tmp_path / "seg", {1: "LV blood pool"})
    assert np.array_equal(read_dicom_seg(path).array, labels.array)


def test_dicom_folders_that_are_not_one_stack(tmp_path, oblique_volume, write_dicom):
    volume = oblique_volume.with_array(np.round(oblique_volume.array * 300).astype(np.int16))
    uneven = write_dicom([volume], tmp_path / "uneven")
    third = [p for p in uneven.iterdir() if sitk.ReadImage(str(p)).GetMetaData("0020|0013").strip() == "3"]
    third[0].unlink()  # the third slice missing: a gap
    with pytest.raises(InputError, match="unevenly spaced \\(7.50, 15.00, 7.50 mm\\)"):
        read_volume(uneven)
    cine = write_dicom([volume, volume], tmp_path / "cine")
    next(cine.iterdir()).unlink()  # one image of the cine missing
    with pytest.raises(InputError, match="5 slice positions hold different numbers of images \\(1 to 2\\)"):
        read_frames(cine)
    sheared = write_dicom([volume], tmp_path / "sheared")
    path = next(sheared.iterdir())
    image = sitk.ReadImage(str(path))
    moved = np.array(image.GetMetaData("0020|0032").split("\\"), float) + 2.0 * volume.direction[:, 0]
    image.SetMetaData("0020|0032", "\\".join(f"{v:.6f}" for v in moved))  # one slice 2 mm along its rows
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    writer.SetFileName(str(path) + ".dcm")
    writer.Execute(image)
    path.unlink()
    with pytest.raises(InputError, match="shifted against each other in their plane \\(up to 2.0 mm\\)"):
        read_volume(sheared)
    mixed = write_dicom([volume], tmp_path / "mixed")
    turned = Volume(volume.array, Geometry(volume.shape, volume.spacing, volume.origin, np.eye(3)))
    write_dicom([turned], tmp_path / "localizer")
    for p in (tmp_path / "localizer").iterdir():  # another series of another orientation in the same folder
        image = sitk.ReadImage(str(p))
        image.SetMetaData("0020|000e", "1.2.826.0.1.3680043.2.1125.77.9")
        image.SetMetaData("0008|0018", image.GetMetaData("0008|0018") + ".9")
        w = sitk.ImageFileWriter()
        w.KeepOriginalImageUIDOn()
        w.SetFileName(str(mixed / ("L" + p.name + ".dcm")))
        w.Execute(image)
    with pytest.raises(InputError, match="2 stacks \\(of different orientations, grids or series\\): "
                       "5 slice positions, 5 images \\(cine_sax in mixed\\); 5 slice positions"):
        read_volume(mixed)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "IM0").write_bytes(bytes(128) + b"DICM" + b"not a data set")  # DICOM by its magic only
    with pytest.raises(InputError, match="holds DICOM files but no images$"):
        read_volume(tmp_path / "broken")
    from ACNNCore.dicom import read_dicom  # asked of a folder by name (the library's callers, a moved study)

    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty holds no DICOM files$"):
        read_dicom(tmp_path / "empty")
    with pytest.raises(InputError, match="^no such folder: .*gone$"):
        read_dicom(tmp_path / "gone")


def test_a_series_picks_the_stack_of_a_full_study(tmp_path, oblique_volume, write_dicom):
    """A full study's export: the short-axis cine (one series per slice) beside perfusion (its own cine of three
    slices on the same grid) and a late-enhancement stack: two cines, refused, naming the stacks and --series;
    ``series`` reads one by its description (any case) or number; a series not there is refused, naming those
    there. A viewer reads every stack (`read_dicom_stacks`), each named as ``series`` takes it."""
    volume = oblique_volume.with_array(np.round(oblique_volume.array * 300).astype(np.int16))
    cine = [volume.with_array(volume.array + 40 * t) for t in range(3)]
    write_dicom(cine, tmp_path / "study" / "cine", per_slice_series=True, times=[0, 40, 80], series=10)
    g = volume.geometry
    perfusion = [Volume(volume.array[:, :, :3] + 7 * t, Geometry((7, 9, 3), g.spacing, g.origin, g.direction))
                 for t in range(4)]
    write_dicom(perfusion, tmp_path / "study" / "perf", times=[0, 500, 1000, 1500], series=30,
                description="Perfusion")
    write_dicom([volume], tmp_path / "study" / "lge", series=40, description="lge_sax")
    with pytest.raises(InputError, match="holds 3 stacks .*lge_sax in study/lge.*Perfusion in study/perf.*"
                                         "cine_sax in study/cine.*acnn segment --series"):
        read_frames(tmp_path / "study")
    back = read_dicom(tmp_path / "study", series="CINE_SAX")
    assert len(back) == 3 and all(np.array_equal(a.array, b.array) for a, b in zip(cine, back))
    back = read_dicom(tmp_path / "study", series="30")
    assert len(back) == 4 and all(np.array_equal(a.array, b.array) for a, b in zip(perfusion, back))
    (back,) = read_dicom(tmp_path / "study", series="lge_sax")
    np.testing.assert_array_equal(back.array, volume.array)
    with pytest.raises(InputError, match="holds no series 'cine'; its series: Perfusion \\(number 30\\), "
                                         "cine_sax \\(number 10\\), cine_sax \\(number 11\\)"):
        read_dicom(tmp_path / "study", series="cine")
    stacks = read_dicom_stacks(tmp_path / "study")  # what a viewer loads: each, the short-axis cine first
    assert [(name, len(frames)) for name, frames in stacks.items()] == [("cine_sax", 3), ("Perfusion", 4),
                                                                       ("lge_sax", 1)]
    assert all(np.array_equal(a.array, b.array) for a, b in zip(cine, stacks["cine_sax"]))
    assert list(read_dicom_stacks(tmp_path / "study" / "cine")) == ["cine"]  # one stack: by its folder
    # perfusion repeated under the same description: each named by its series number, which --series takes
    write_dicom([f.with_array(f.array + 1000) for f in perfusion], tmp_path / "study" / "perf2",
                times=[0, 500, 1000, 1500], series=31, description="Perfusion")
    stacks = read_dicom_stacks(tmp_path / "study")
    assert [(name, len(frames)) for name, frames in stacks.items()] == [("cine_sax", 3), ("30", 4), ("31", 4),
                                                                       ("lge_sax", 1)]
    for name, frames in stacks.items():
        assert all(np.array_equal(a.array, b.array) for a, b in zip(frames, read_dicom(tmp_path / "study",
                                                                                        series=name)))
    assert all(np.array_equal(a.array + 1000, b.array) for a, b in zip(perfusion, stacks["31"]))


def test_a_folder_of_studies_is_not_read_as_one_stack(tmp_path, oblique_volume, write_dicom):
    """Two patients' stacks on the same grid, one above the other, made one 10-slice stack before: a folder
    holding several studies is refused, naming them (by folder, else patient ID), and each reads by its UID."""
    volume = oblique_volume.with_array(np.round(oblique_volume.array * 300).astype(np.int16))
    above = Volume(volume.array + 1, Geometry(volume.shape, volume.spacing,
                                              volume.origin + 5 * 7.5 * volume.direction[:, 2], volume.direction))
    write_dicom([volume], tmp_path / "studies" / "patientA" / "SE1", study="1.2.3.1", patient="A1")
    write_dicom([above], tmp_path / "studies" / "patientB", study="1.2.3.2", patient="B2")
    root = tmp_path / "studies"
    for read in (lambda: read_frames(root), lambda: read_dicom(root, series="cine_sax")):  # a series: of each
        with pytest.raises(InputError, match="holds 2 studies \\(patientA, patientB\\), not one stack"):
            read()
    studies = dicom_studies(root)
    assert studies == {"patientA": (root / "patientA", "1.2.3.1"), "patientB": (root / "patientB", "1.2.3.2")}
    assert dicom_studies(root / "patientA") == {"patientA": (root / "patientA", "1.2.3.1")}
    for (_, uid), v in zip(studies.values(), (volume, above)):
        (back,) = read_dicom(root, uid)
        assert np.array_equal(back.array, v.array) and back.geometry.same_as(v.geometry, atol=1e-4)
    for f in write_dicom([above], tmp_path / "C", study="1.2.3.3", patient="C3").iterdir():
        f.rename(root / "patientA" / "SE1" / f"C{f.name}")  # two studies' files in one folder
    assert dicom_studies(root) == {"A1": (root, "1.2.3.1"), "patientB": (root / "patientB", "1.2.3.2"),
                                   "C3": (root, "1.2.3.3")}
    (back,) = read_dicom(*dicom_studies(root)["C3"])
    assert np.array_equal(back.array, above.array)


def test_dicom_pixels_are_decoded_one_file_at_a_time(tmp_path, oblique_volume, write_dicom, monkeypatch):
    """GDCM is not thread-safe: decoded in a thread pool from a process's start, SimpleITK's reader crashed it now
    and then (a segmentation fault in the tests; benchmarks/dicom_threads.py, SimpleITK issue #805). A stack's
    files are decoded by the thread that reads it, and reads in several threads at once (the studio's uploads)
    never run two SimpleITK reads at the same time (the real reader, watched)."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    calls, read = [], sitk.ReadImage  # (thread, start, end) of each read

    def watched(*args, **kwargs):
        start = time.perf_counter()
        image = read(*args, **kwargs)
        calls.append((threading.current_thread(), start, time.perf_counter()))
        return image

    folders = [write_dicom([oblique_volume] * 6, tmp_path / f"cine{i}", times=list(range(0, 600, 100)))
               for i in range(2)]
    monkeypatch.setattr(sitk, "ReadImage", watched)
    assert len(read_dicom(folders[0])) == 6 and len(calls) == len(list(folders[0].iterdir()))
    assert {thread for thread, _, _ in calls} == {threading.current_thread()}
    calls.clear()  # two DICOM cines and a NIfTI file (ITK asks GDCM whether it can read it) read at once
    write_frames([oblique_volume] * 6, tmp_path / "cine.nii.gz")
    with ThreadPoolExecutor(3) as pool:
        assert [len(f) for f in pool.map(read_frames, [*folders, tmp_path / "cine.nii.gz"])] == [6, 6, 6]
    assert len({thread for thread, _, _ in calls}) == 3
    spans = sorted((start, end) for _, start, end in calls)
    assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:]))


def test_dicom_threads_benchmark_counts_crashes_per_way_of_decoding(capsys):
    """benchmarks/dicom_threads.py: fresh processes decoding a phantom cine in each of three ways, the crashes
    counted; the way ACNNCore decodes crashes in none."""
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import dicom_threads

    dicom_threads.main(["--runs", "2"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(" of 2 fresh processes crashed decoding 360 files" in line for line in lines)
    assert lines[2] == ("ACNNCore.dicom.read_dicom, one file after another: 0 of 2 fresh processes crashed decoding "
                        "360 files")


def test_a_deflated_dicom_stack_reads_and_a_file_that_cannot_be_parsed_is_named(tmp_path, oblique_volume,
                                                                               write_dicom, caplog):
    """Deflated explicit VR (the whole data set zipped: where its pixels lie in the file cannot be told from the
    bytes) reads as its uncompressed files do; a file whose header cannot be parsed -- a zipped one cut short --
    is left out naming it, before whatever its absence makes of the stack."""
    import pydicom
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    volume = oblique_volume.with_array(np.round(oblique_volume.array * 300).astype(np.int16))
    classic = write_dicom([volume], tmp_path / "classic")
    deflated = tmp_path / "deflated"
    deflated.mkdir()
    for path in classic.iterdir():
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
        ds.save_as(deflated / path.name, enforce_file_format=True)
    assert np.array_equal(read_volume(deflated).array, read_volume(classic).array)
    middle = volume.geometry.index_to_physical([0, 0, volume.shape[2] // 2])  # its file cut short: a gap
    cut = next(p for p in deflated.iterdir()
               if np.allclose(pydicom.dcmread(p).ImagePositionPatient, middle, atol=1e-3))
    cut.write_bytes(cut.read_bytes()[:-50])
    with caplog.at_level("WARNING", logger="ACNNCore.dicom"), pytest.raises(InputError, match="unevenly spaced"):
        read_volume(deflated)
    assert f"{cut}: left out, it cannot be parsed as DICOM (cut short or damaged?)" in caplog.text


@pytest.mark.parametrize("per_slice_series", [False, True])
def test_enhanced_dicom_reads_as_its_classic_files_do(tmp_path, oblique_volume, per_slice_series, write_dicom,
                                                     to_enhanced, caplog):
    """A cine as enhanced (multi-frame) DICOM -- the whole cine in one file, or one file per slice position --
    reads as the same frames on the same grid as the classic files it was converted from (uncompressed, or RLE
    compressed: GDCM decodes; a compressed file cut short is refused); frames stored out of time order, timed by
    the Cardiac Synchronization group, or scaled differently frame by frame read right; a screenshot without a
    position beside the stack is left out, saying so."""
    import copy

    import pydicom

    frames = [oblique_volume.with_array(np.round(oblique_volume.array * 300 + 40 * t).astype(np.int16))
              for t in range(3)]
    classic = write_dicom(frames, tmp_path / "classic", per_slice_series, times=[0, 40, 80])
    enhanced = to_enhanced(classic, tmp_path / "enhanced")
    assert len(list(enhanced.iterdir())) == (5 if per_slice_series else 1)
    expected = read_frames(classic)
    back = read_frames(enhanced)
    assert len(back) == 3 and all(b.geometry.same_as(oblique_volume.geometry, atol=1e-4) for b in back)
    assert all(np.array_equal(a.array, b.array) for a, b in zip(expected, back))
    compressed = to_enhanced(classic, tmp_path / "rle", transfer_syntax="1.2.840.10008.1.2.5")  # RLE lossless
    assert all(np.array_equal(a.array, b.array) for a, b in zip(expected, read_frames(compressed)))
    cut = sorted(compressed.iterdir())[0]  # compressed and cut short: GDCM finds the fragments end too soon
    cut.write_bytes(cut.read_bytes()[:-200])
    with pytest.raises(InputError, match=f"{cut.name}: its pixel data cannot be read"):
        read_frames(compressed)
    path = next(enhanced.iterdir())  # frames reversed in the file, timed as a scanner's enhanced MR times them
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array.reshape(-1, ds.Rows, ds.Columns)
    items = list(ds.PerFrameFunctionalGroupsSequence)
    for item in items:
        timing = pydicom.Dataset()
        timing.NominalCardiacTriggerDelayTime = item.UnassignedPerFrameConvertedAttributesSequence[0].TriggerTime
        item.CardiacSynchronizationSequence = [timing]
        del item.UnassignedPerFrameConvertedAttributesSequence[0].TriggerTime
    ds.PerFrameFunctionalGroupsSequence = items[::-1]
    ds.PixelData = np.ascontiguousarray(pixels[::-1]).tobytes()
    ds.save_as(path)
    assert all(np.array_equal(a.array, b.array) for a, b in zip(expected, read_frames(enhanced)))
    scaling = ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence  # then scaled frame by frame
    del ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence
    for n, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        item.PixelValueTransformationSequence = copy.deepcopy(scaling)
        item.PixelValueTransformationSequence[0].RescaleSlope = 2 + n
        item.PixelValueTransformationSequence[0].RescaleIntercept = -n
    ds.save_as(path)
    scaled = read_frames(enhanced)
    shared = ds.SharedFunctionalGroupsSequence[0]
    for f, item in enumerate(ds.PerFrameFunctionalGroupsSequence):  # file frame f: stored * (2 + f) - f
        t = int(item.CardiacSynchronizationSequence[0].NominalCardiacTriggerDelayTime) // 40
        position = (item if "PlanePositionSequence" in item else shared).PlanePositionSequence[0].ImagePositionPatient
        k = int(np.round(np.linalg.solve(oblique_volume.direction * oblique_volume.spacing,
                                         np.array(position, float) - oblique_volume.origin)[2]))
        np.testing.assert_allclose(scaled[t].array[:, :, k], expected[t].array[:, :, k] * (2 + f) - f)
    others = [k for k in range(5) if not np.array_equal(scaled[0].array[:, :, k], expected[0].array[:, :, k])]
    assert len(others) == (1 if per_slice_series else 5)  # the files not changed read as before
    screenshot = pydicom.dcmread(next(classic.iterdir()))  # a secondary capture: no position, no orientation
    del screenshot.ImagePositionPatient, screenshot.ImageOrientationPatient
    screenshot.SeriesDescription = "report"
    screenshot.save_as(enhanced / "SC0001")
    with caplog.at_level("WARNING", logger="ACNNCore.dicom"):
        assert len(read_frames(enhanced)) == 3
    assert "left out 1 image without a position (report in enhanced)" in caplog.text
    ds.NumberOfFrames, ds.PerFrameFunctionalGroupsSequence = len(items), pydicom.Sequence()
    ds.save_as(path)
    with pytest.raises(InputError, match="a multi-frame DICOM file without per-frame positions"):
        read_frames(enhanced)


def test_a_study_tree_reads_as_its_one_stack(tmp_path, oblique_volume, write_dicom, caplog):
    """A cine written one series per slice, each series in a folder of its own (as exports from a scanner or a
    PACS lay a study out), beside a long-axis cine: the short-axis frames, the long-axis images left out and
    named. Two stacks, or none, are refused."""
    volume = oblique_volume.with_array(np.round(oblique_volume.array * 300).astype(np.int16))
    frames = [volume, volume.with_array(volume.array // 2)]
    study = tmp_path / "study"
    written = write_dicom(frames, tmp_path / "flat", per_slice_series=True, times=[0, 40])
    for p in written.iterdir():  # each series in its folder: study/SE<n>/
        series = sitk.ReadImage(str(p)).GetMetaData("0020|000e").rsplit(".", 1)[1]
        (study / "DICOM" / f"SE{series}").mkdir(parents=True, exist_ok=True)
        p.rename(study / "DICOM" / f"SE{series}" / p.name)
    (study / "DICOMDIR").write_bytes(bytes(128) + b"DICM" + b"a CD's index, not an image")
    assert not is_dicom_file(study / "DICOMDIR") and is_dicom_file(next((study / "DICOM" / "SE1").iterdir()))
    long_axis = Volume(volume.array[:, :, :1], Geometry((*volume.shape[:2], 1), volume.spacing, volume.origin,
                                                        np.eye(3)))
    write_dicom([long_axis, long_axis], study / "DICOM" / "SE99", times=[0, 40], description="cine_4ch")
    assert is_dicom_folder(study)
    data = tmp_path / "data"  # a data set keeping its DICOM originals beside: still a data set
    write_volume(volume, data / "images" / "case1.nii.gz")
    write_dicom([volume], data / "originals" / "case1")
    assert not is_dicom_folder(data) and is_dicom_folder(data / "originals")
    with caplog.at_level("WARNING", logger="ACNNCore.dicom"):
        back = read_frames(study)
    assert len(back) == 2 and all(np.array_equal(a.array, b.array) for a, b in zip(frames, back))
    assert back[0].geometry.same_as(volume.geometry, atol=1e-4)
    assert "left out 2 images of other orientations, grids or series (1 slice position, 2 images (cine_4ch in " \
           "study/DICOM/SE99))" in caplog.text
    # single-frame stacks beside the cine: late enhancement planned on the cine's slices (same grid, positions),
    # a T1 map on another grid -- left out; they were read as frames of the cine before
    write_dicom([volume.with_array(volume.array * 3)], study / "DICOM" / "SE50", times=[300], description="lge_sax",
                series=50)
    coarse = Volume(volume.array, Geometry(volume.shape, (2.0, 2.0, volume.spacing[2]), volume.origin,
                                           volume.direction))
    write_dicom([coarse], study / "DICOM" / "SE98", description="t1_sax", series=98)
    caplog.clear()
    with caplog.at_level("WARNING", logger="ACNNCore.dicom"):
        back = read_frames(study)
    assert len(back) == 2 and all(np.array_equal(a.array, b.array) for a, b in zip(frames, back))
    assert "5 slice positions, 5 images (lge_sax in study/DICOM/SE50)" in caplog.text
    assert "5 slice positions, 5 images (t1_sax in study/DICOM/SE98)" in caplog.text
    write_dicom([coarse, coarse], study / "DICOM" / "SE97", times=[0, 40], series=97)  # a second cine: which?
    with pytest.raises(InputError, match="4 stacks .*cine_sax in study/DICOM/SE1, .*cine_sax in study/DICOM/SE97"):
        read_frames(study)
    two_chamber = Volume(long_axis.array, Geometry(long_axis.shape, volume.spacing, volume.origin,
                                                   np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]])))
    write_dicom([two_chamber, two_chamber], study / "DICOM" / "SE99" / "2ch", times=[0, 40], description="cine_2ch")
    with pytest.raises(InputError, match="SE99 holds no stack: 4 images of 2 orientations or grids, each at one"):
        read_frames(study / "DICOM" / "SE99")


# --- DICOM SEG -------------------------------------------------------------------------

@pytest.mark.parametrize("per_slice_series", [False, True])
@pytest.mark.parametrize("enhanced", [False, True])
def test_labels_are_written_as_dicom_seg_on_the_images_they_label(tmp_path, oblique_volume, per_slice_series,
                                                                 enhanced, write_dicom, to_enhanced):
    """A cine's label maps as DICOM SEG, one object per frame in one series, on the cine's own files (one
    series or one per slice; classic or enhanced): every SEG frame lies where the image it refers to lies, that
    image is of its own phase, and its pixels are that image's labels, segment by segment (the oblique,
    non-square grid catches rows and columns swapped); segments named and coded; the source's study and frame of
    reference kept; each reads back (`read_dicom_seg`) as its label map on the images' grid, and in the images'
    folder is not taken for images. Labels on another grid, or as many maps as frames not given, are refused;
    files there are not overwritten unless asked. `acnn evaluate` pairs SEGs named otherwise (an expert's) with
    ours by the images (and enhanced files' frames) they label; `seg_frame` finds the cine frame each labels."""
    import highdicom
    import pydicom

    from ACNNCore.dicom import _dicom_images, seg_frame, write_dicom_seg
    from ACNNCore.labels import DICOM_CODES, SEGMENTS

    frames = [oblique_volume.with_array(np.round(oblique_volume.array * 300 + 40 * t).astype(np.int16))
              for t in range(3)]
    source = write_dicom(frames, tmp_path / "classic", per_slice_series, times=[0, 40, 80])
    if enhanced:
        source = to_enhanced(source, tmp_path / "enhanced")
    rng = np.random.default_rng(1)
    labels = [oblique_volume.with_array(rng.integers(0, 4, oblique_volume.shape).astype(np.uint8)) for _ in frames]
    names = {v: n for v, (n, _) in SEGMENTS.items()}
    paths = write_dicom_seg(labels, source, tmp_path / "seg", names)
    assert [p.name for p in paths] == ["SEG_001.dcm", "SEG_002.dcm", "SEG_003.dcm"]
    images = {}  # (SOP instance UID, frame number or None) -> (position, trigger time)
    for path in source.iterdir():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        for image in _dicom_images(path, source):
            images[ds.SOPInstanceUID, image.frame + 1 if "NumberOfFrames" in ds else None] = image
    source_header = pydicom.dcmread(next(source.iterdir()), stop_before_pixels=True)
    g = oblique_volume.geometry
    seen, series = set(), highdicom.seg.segread(paths[0]).SeriesInstanceUID
    for t, path in enumerate(paths):
        seg = highdicom.seg.segread(path)
        assert seg.SeriesInstanceUID == series and seg.InstanceNumber == t + 1
        assert seg.StudyInstanceUID == source_header.StudyInstanceUID
        assert seg.FrameOfReferenceUID == source_header.FrameOfReferenceUID
        assert [(s.SegmentNumber, s.SegmentLabel, s.SegmentedPropertyTypeCodeSequence[0].CodeValue)
                for s in seg.SegmentSequence] == [(v, n, DICOM_CODES[n][0]) for v, n in names.items()]
        pixels = seg.pixel_array
        for k, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
            reference = item.DerivationImageSequence[0].SourceImageSequence[0]
            image = images[reference.ReferencedSOPInstanceUID, reference.get("ReferencedFrameNumber")]
            position = np.asarray(item.PlanePositionSequence[0].ImagePositionPatient, float)
            np.testing.assert_allclose(position, image.position, atol=1e-3)
            assert image.order[0] == 40 * t  # the image of this phase
            z = int(round(g.physical_to_index(position)[2]))
            segment = item.SegmentIdentificationSequence[0].ReferencedSegmentNumber
            np.testing.assert_array_equal(pixels[k], labels[t].array[:, :, z].T == segment)
            seen.add((t, z, segment))
    assert len(seen) == 3 * g.shape[2] * 3  # every phase, slice and segment
    for t, path in enumerate(paths):  # read back as label maps: on the images' own grid, slice spacing included
        assert is_dicom_seg(path) and not is_dicom_seg(next(source.iterdir()))
        back = read_dicom_seg(path)
        assert back.geometry.same_as(g, atol=1e-4) and np.array_equal(back.array, labels[t].array)
    import shutil

    for path in paths:  # SEG objects beside their images (written there, or a PACS export's) are not images
        shutil.copy(path, source / path.name)
    assert all(np.array_equal(a.array, b.array) for a, b in zip(frames, read_frames(source)))
    for path in paths:
        (source / path.name).unlink()
    hr = Volume.from_array(np.zeros((7, 9, 10), np.uint8), (1.25, 0.9, 3.75), g.origin, g.direction)
    for maps, says in (([hr] * 3, "not on the grid"), (labels[:2], "2 label maps for")):
        with pytest.raises(InputError, match=says):
            write_dicom_seg(maps, source, tmp_path / "other", names)
        assert not (tmp_path / "other").exists()
    with pytest.raises(InputError, match="exists; pass --overwrite"):
        write_dicom_seg(labels, source, tmp_path / "seg", names)
    assert write_dicom_seg(labels, source, tmp_path / "seg", names, overwrite=True) == paths
    some = write_dicom_seg({2: labels[2], 0: labels[0]}, source, tmp_path / "some", names)  # a cine's ED and ES
    assert [p.name for p in some] == ["SEG_001.dcm", "SEG_003.dcm"]
    assert highdicom.seg.segread(some[1]).InstanceNumber == 3
    assert [seg_frame(p, source) for p in paths + some] == [0, 1, 2, 0, 2]  # the frame each labels, by its images
    with pytest.raises(InputError, match="frames \\[3\\] asked of .*'s 3 frames"):
        write_dicom_seg({3: labels[0]}, source, tmp_path / "other", names)
    from ACNNCore.evaluation import match

    (tmp_path / "expert").mkdir()  # another tool's SEGs of ED and ES, named its way: paired by their images
    for name, path in zip(("ed", "es"), some):
        shutil.copy(path, tmp_path / "expert" / f"{name}.dcm")
    assert match(tmp_path / "seg", tmp_path / "expert") == [("ed", paths[0], tmp_path / "expert" / "ed.dcm"),
                                                             ("es", paths[2], tmp_path / "expert" / "es.dcm")]
    again = write_dicom(frames, tmp_path / "again", per_slice_series, times=[0, 40, 80], study="1.2.3.9")  # new UIDs
    write_dicom_seg(labels, again, tmp_path / "of_others", names)
    assert seg_frame(tmp_path / "of_others" / "SEG_001.dcm", source) is None
    with pytest.raises(InputError, match="no prediction for 2 ground-truth case"):  # SEGs of other images
        match(tmp_path / "of_others", tmp_path / "expert")


def test_a_dicom_seg_reads_as_our_labels_by_its_segments_codes(tmp_path, oblique_volume, write_dicom, caplog):
    """A SEG's segments become our label values by their SNOMED CT codes, else their labels, whatever their
    numbers; a segment that is none of ours (a left atrium) is left out, saying so; another tool's SEG of
    overlapping segments is refused, naming the file. A SEG, or one DICOM image,
    given where an image is read is refused saying what to give."""
    from ACNNCore.dicom import write_dicom_seg

    volume = oblique_volume.with_array(np.round(oblique_volume.array * 300).astype(np.int16))
    source = write_dicom([volume], tmp_path / "dicom")
    a = np.zeros(volume.shape, np.uint8)
    a[1:3], a[3:5], a[5:] = 1, 2, 3  # segment 1: myocardium, 2: left atrium, 3: LV blood pool
    (path,) = write_dicom_seg([volume.with_array(a)], source, tmp_path / "seg",
                              {1: "LV myocardium", 2: "Left atrium", 3: "lv BLOOD pool"})
    with caplog.at_level("WARNING", logger="ACNNCore.dicom"):
        back = read_dicom_seg(path)
    expected = np.zeros_like(a)
    expected[1:3], expected[5:] = 2, 1  # ours: 2 myocardium, 1 LV blood pool (by its label); the atrium gone
    assert np.array_equal(back.array, expected) and back.geometry.same_as(volume.geometry, atol=1e-4)
    assert "left out segments that are none of ours: Left atrium (Tissue)" in caplog.text
    with pytest.raises(InputError, match="cannot be read as one label map"):
        read_dicom_seg(next(source.iterdir()))  # an image, not a SEG
    import highdicom as hd  # another tool's SEG of overlapping segments: one label map cannot hold them
    import pydicom
    from pydicom.sr.codedict import codes

    images = [pydicom.dcmread(f) for f in sorted(source.iterdir())]
    for image in images:
        image.SliceThickness = image.SpacingBetweenSlices = volume.spacing[2]
    masks = np.zeros((len(images), images[0].Rows, images[0].Columns, 2), bool)  # (frame, row, column, segment)
    masks[1:3, 1:4, 1:4, 0] = masks[1:3, 2:5, 2:5, 1] = True
    algorithm = hd.AlgorithmIdentificationSequence("other", codes.cid7162.ArtificialIntelligence, "1")
    segments = [hd.seg.SegmentDescription(n, name, codes.SCT.AnatomicalStructure, hd.sr.CodedConcept(code, "SCT", name),
                                          hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm)
                for n, (name, code) in enumerate((("LV blood pool", "1"), ("LV myocardium", "2")), 1)]
    hd.seg.Segmentation(images, masks, hd.seg.SegmentationTypeValues.BINARY, segments, hd.UID(), 1, hd.UID(), 1,
                        "other", "other", "1", "-").save_as(tmp_path / "overlapping.dcm")
    with pytest.raises(InputError, match="overlapping.dcm: cannot be read as one label map .*segments overlap"):
        read_dicom_seg(tmp_path / "overlapping.dcm")
    with pytest.raises(InputError, match="is a DICOM SEG, a label map: acnn info and acnn evaluate read it"):
        read_volume(path)  # given to segment
    with pytest.raises(InputError, match="is one DICOM file: give the folder holding the stack's"):
        read_frames(next(source.iterdir()))


def test_dicom_seg_of_an_anonymised_export(tmp_path, oblique_volume, write_dicom):
    """Anonymisers drop the patient's and study's type-2 attributes (present, may be empty) that a SEG copies:
    it is written with them empty. Files a SEG cannot refer to (no SOP class) are refused by name, nothing
    written."""
    import highdicom
    import pydicom

    from ACNNCore.dicom import write_dicom_seg

    volume = oblique_volume.with_array(np.round(oblique_volume.array * 300).astype(np.int16))
    source = write_dicom([volume], tmp_path / "anonymised", patient="P7")
    for path in source.iterdir():
        ds = pydicom.dcmread(path)
        for key in ("PatientID", "PatientName", "StudyDate", "StudyTime", "AccessionNumber"):
            delattr(ds, key)
        ds.save_as(path)
    labels = volume.with_array((volume.array > 0).astype(np.uint8))
    (path,) = write_dicom_seg([labels], source, tmp_path / "seg", {1: "LV blood pool"})
    seg = highdicom.seg.segread(path)
    assert seg.PatientID == "" and seg.StudyDate == "" and seg.NumberOfFrames == volume.shape[2]
    for path in source.iterdir():
        ds = pydicom.dcmread(path)
        del ds.SOPClassUID
        ds.save_as(path, enforce_file_format=False)
    with pytest.raises(InputError, match="has no SOPClassUID: a DICOM SEG cannot refer to its images"):
        write_dicom_seg([labels], source, tmp_path / "seg2", {1: "LV blood pool"})
    assert not (tmp_path / "seg2").exists()


def test_an_output_that_cannot_be_written_is_refused_before_the_work(tmp_path):
    """An output under a file, or in a folder nothing can be written into (procfs, even for root): one clear
    error from check_writable, which the commands call before they segment or train."""
    from ACNNCore.io import check_writable

    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="file is a file, not a folder"):
        check_writable(tmp_path / "file" / "sub" / "x.nii.gz")
    if sys.platform.startswith("linux"):
        with pytest.raises(InputError, match=r"cannot write into the folder /proc \("):
            check_writable("/proc/x.nii.gz")
        run = subprocess.run([sys.executable, "-m", "ACNNCore.cli", "phantom", "--out", "/proc/ph", "--subjects", "1"],
                             capture_output=True, text=True)  # a folder the command makes itself: one line too
        assert run.returncode == 2 and run.stderr == "acnn: error: No such file or directory: /proc/ph\n"
    assert check_writable(tmp_path / "new" / "x.nii.gz").parent.is_dir()  # made
    assert list((tmp_path / "new").iterdir()) == []  # the probe leaves nothing
