"""Shared fixtures: small phantom data sets made once per test session."""

import os
import sys
from pathlib import Path

import pytest

ACDC = Path(__file__).resolve().parents[2] / "shared" / "data" / "acdc"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """The test run ends with its own status and no interpreter teardown: clean-clone runs have three times
    passed every test and then died with a segmentation fault while the interpreter tore down the native
    libraries (rc 139; Python's fault handler never saw it). gdb found one cause, since fixed (a studio's
    displayable managers left listening to its scene: ``Studio.close``; two full runs under gdb without this
    guard ended normally since); the guard stays for whatever other native object the teardown may meet.
    Registered first, this cleanup runs last, after pytest's own, once every report is written."""
    config.add_cleanup(lambda: _exit(config))


EXIT_STATUS = pytest.StashKey[int]()


def pytest_sessionfinish(session, exitstatus):
    session.config.stash[EXIT_STATUS] = int(exitstatus)


def _exit(config):
    status = config.stash.get(EXIT_STATUS, None)
    if status is None:  # the session never ran (--help, a usage error): leave pytest to end it
        return
    coverage = sys.modules.get("coverage")  # `coverage run -m pytest` saves its data at exit, which this skips
    measuring = coverage.Coverage.current() if coverage is not None else None
    if measuring is not None:
        measuring.stop()
        measuring.save()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


@pytest.fixture(scope="session")
def acdc_root():
    if not (ACDC / "README.md").is_file():
        pytest.skip(f"ACDC data not found at {ACDC} (see README: real-data tests need ../shared/data/acdc)")
    return ACDC


@pytest.fixture(scope="session")
def acdc_network():
    """The first network of the bundled real-data ensemble acnn-seg-acdc: a quarter of the ensemble's work, for
    tests of what lies around the network (file formats, a benchmark's bookkeeping, the orientation search)."""
    from ACNNCore.bundle import available, members

    if "acnn-seg-acdc" not in available():
        pytest.skip("acnn-seg-acdc is not bundled")
    return str(members("acnn-seg-acdc")[0])


@pytest.fixture(scope="session")
def phantom_mr(tmp_path_factory):
    """Six MR subjects (two per group) with 2 mm slice motion, written by the library."""
    from ACNNCore.phantom.population import PhantomConfig, with_motion, write_population

    out = tmp_path_factory.mktemp("phantom_mr")
    infos = write_population(out, 6, seed=11, config=with_motion(PhantomConfig(), 2.0))
    return out, infos


TINY_GRID = {"hr_shape": (32, 32, 20), "hr_spacing": (3.75, 3.75, 6.0)}  # the same 120 mm cube, coarse


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """Eight small MR subjects (16 cases) on a coarse grid: models train on it in seconds."""
    from ACNNCore.phantom.population import PhantomConfig, with_motion, write_population

    out = tmp_path_factory.mktemp("tiny_data")
    write_population(out, 8, seed=3, config=with_motion(PhantomConfig(**TINY_GRID), 2.0))
    return out


@pytest.fixture(scope="session")
def tiny_models(tiny_data, tmp_path_factory):
    """Tiny AE, T-L, ACNN-Seg and ACNN-SR runs (two epochs each: fast, not accurate)."""
    from ACNNCore.training import TrainConfig, train

    root = tmp_path_factory.mktemp("tiny_models")
    small = dict(epochs=2, batch_size=4)
    ae = train(TrainConfig(task="ae", **small), tiny_data, root / "ae", progress=False)
    tl = train(TrainConfig(task="tl", tl_predictor_epochs=1, network={"predictor_features": [4, 8, 8, 8]}, **small),
               tiny_data, root / "tl", prior=ae, progress=False)
    seg = train(TrainConfig(task="seg", **small), tiny_data, root / "seg", prior=ae, progress=False)
    sr = train(TrainConfig(task="sr", **small), tiny_data, root / "sr", prior=tl, progress=False)
    return {"ae": ae, "tl": tl, "seg": seg, "sr": sr}


def _write_dicom(frames, folder, per_slice_series=False, times=None, description="cine_sax",
                 study="1.2.826.0.1.3680043.2.1125.77", patient="", series=1):
    """Frames (3-D volumes on one grid) as classic 2-D MR DICOM files, written the way scanners lay out a cine:
    one series, or one series per slice position (``per_slice_series``); files named in no useful order,
    instance numbers counting slices first, the trigger time (``times``, ms) giving each image's phase; one
    study (its UID ``study``, of patient ``patient``), series numbered from ``series`` (their UIDs from it)."""
    import random

    import numpy as np
    import SimpleITK as sitk

    g = frames[0].geometry
    names = list(range(len(frames) * g.shape[2]))
    random.Random(0).shuffle(names)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(frames):
        for k in range(g.shape[2]):
            image = sitk.GetImageFromArray(np.ascontiguousarray(frame.array[:, :, k].T.astype(np.int16)))
            image.SetSpacing(g.spacing[:2])
            uid = f"{study}.{series + k if per_slice_series else series}"
            position = g.index_to_physical(np.array([0, 0, k]))
            for tag, value in (("0020|000d", study), ("0020|000e", uid), ("0008|0060", "MR"), ("0010|0020", patient),
                               ("0020|0052", f"{study}.0"),
                               ("0020|0011", str(series + k if per_slice_series else series)),
                               ("0008|103e", description),
                               ("0020|0032", "\\".join(f"{v:.6f}" for v in position)),
                               ("0020|0037", "\\".join(f"{v:.8f}" for v in (*g.direction[:, 0], *g.direction[:, 1]))),
                               ("0020|0013", str(k * len(frames) + t + 1)),
                               ("0018|1060", f"{(times or range(len(frames)))[t] * 1.0:.1f}"),
                               ("0008|0018", f"{uid}.{k}.{t}")):
                image.SetMetaData(tag, value)
            name = folder / f"IM{names[t * g.shape[2] + k]:04d}"  # no suffix, as scanners write them
            writer.SetFileName(str(name) + ".dcm")
            writer.Execute(image)
            Path(str(name) + ".dcm").rename(name)
    return folder


def _to_enhanced(classic, folder, transfer_syntax="1.2.840.10008.1.2.1"):
    """Each series of a folder of classic MR DICOM files as one enhanced (multi-frame) file, by highdicom's
    standard conversion (Legacy Converted Enhanced MR: per-frame positions, the trigger time among each frame's
    converted attributes) -- how newer scanners write a cine: one file a series; its pixels uncompressed
    (explicit VR little endian) or as ``transfer_syntax`` says."""
    import logging

    import highdicom
    import pydicom

    logging.getLogger("highdicom").setLevel(logging.ERROR)  # what our classic files lack (window, thickness)
    series = {}
    for p in sorted(classic.iterdir()):
        ds = pydicom.dcmread(p)
        series.setdefault(ds.SeriesInstanceUID, []).append(ds)
    folder.mkdir(parents=True, exist_ok=True)
    for n, (uid, images) in enumerate(series.items(), 1):
        enhanced = highdicom.legacy.LegacyConvertedEnhancedMRImage(
            images, series_instance_uid=uid + ".1", series_number=n, sop_instance_uid=f"{uid}.1.{n}",
            instance_number=1, transfer_syntax_uid=transfer_syntax)
        enhanced.save_as(folder / f"EN{n:03d}")
    return folder


@pytest.fixture(scope="session")
def to_enhanced():
    """``to_enhanced(classic, folder, transfer_syntax=EXPLICIT_VR_LE)``: each series of a classic DICOM folder as
    one enhanced file in folder."""
    return _to_enhanced


@pytest.fixture(autouse=True)
def _locale_kept():
    """GDCM's DICOM writer (tests write DICOM files) sets the C locale for the whole process, after which Python
    reads text files as ASCII: each test leaves the locale as it found it."""
    import locale

    saved = locale.setlocale(locale.LC_ALL)
    yield
    locale.setlocale(locale.LC_ALL, saved)


def _phantom_cine(index, seed):
    """Phantom subject ``index`` of ``seed``: its ED and ES LR stacks in integers, as a scanner stores them."""
    import numpy as np

    from ACNNCore.phantom.population import PhantomConfig, generate_subject

    subject = generate_subject(index, seed, PhantomConfig())
    return [subject.phases[p]["lr"].with_array(np.round(subject.phases[p]["lr"].array * 1000).astype(np.int16))
            for p in ("ED", "ES")]


@pytest.fixture(scope="session")
def phantom_cine():
    """``phantom_cine(index, seed)``: a phantom subject's ED and ES stacks in integers, to write as DICOM."""
    return _phantom_cine


@pytest.fixture(scope="session")
def write_dicom():
    """``write_dicom(frames, folder, per_slice_series=False, times=None, description="cine_sax", study=UID,
    patient="", series=1)``: frames as a folder of DICOM files."""
    return _write_dicom


def _rezipped(bundle, to, leave_out: str = "", scene_text=lambda text: text):
    """A copy of a Slicer scene bundle (.mrb) without its file named ``leave_out``, its .mrml changed by
    ``scene_text``."""
    import zipfile

    with zipfile.ZipFile(bundle) as source, zipfile.ZipFile(to, "w") as copy:
        for item in source.infolist():
            data = source.read(item)
            if item.filename.endswith(".mrml"):
                data = scene_text(data.decode()).encode()
            if not leave_out or not item.filename.endswith("/" + leave_out):
                copy.writestr(item, data)
    return to


@pytest.fixture(scope="session")
def rezipped():
    """``rezipped(bundle, to, leave_out="", scene_text=...)``: a scene bundle copied with a data file left out or
    its scene changed, as a broken or foreign .mrb."""
    return _rezipped
