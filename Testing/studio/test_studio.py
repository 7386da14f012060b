"""ACNN Studio end to end: the server started as a user starts it (`acnn studio --demo`), driven in a real
headless Chromium (Debian's, through Playwright). Screenshots go to Testing/artifacts/studio/."""

import contextlib
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)",
                allow_module_level=True)

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "studio"
VIEW_3D = ".layout-grid-item:not(:has(.slice-slider-gutter))"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_studio(out: Path, *args):
    """`acnn studio ARGS` on a free loopback port, its home and its --output (``saved``) in ``out`` as a user's
    (the Save folder field shows ``~/acnn-studio-output``); yields its URL, ``saved`` and the process."""
    port = free_port()
    (out / "server-tmp").mkdir()  # where the server keeps uploads
    saved = out / "home" / "acnn-studio-output"
    saved.parent.mkdir()
    env = {**os.environ, "VTK_DEFAULT_OPENGL_WINDOW": "vtkEGLRenderWindow", "PYTHONUNBUFFERED": "1",
           "TMPDIR": str(out / "server-tmp"), "HOME": str(saved.parent)}
    log = open(out / "server.log", "w", encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "ACNNCore.cli", "studio", *map(str, args), "--port", str(port),
                             "--output", str(saved)], stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"studio exited: {(out / 'server.log').read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("studio did not start within 120 s")
    try:
        yield {"url": url, "saved": saved, "proc": proc}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (Debian's), one per module: Playwright's sync API runs one at a time."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield browser
        browser.close()


@contextlib.contextmanager
def browser_page(browser, url: str):
    """A page on ``url``, once the four views show their first frames."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        page.goto(url)
        page.wait_for_selector(f"{VIEW_3D} img.image-display-area", timeout=60_000)
        page.wait_for_function("document.querySelectorAll('img.image-display-area').length >= 4", timeout=60_000)
        time.sleep(2)  # the first frames
        yield page
    finally:
        page.close()


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """`acnn studio --demo`: the phantom cine."""
    with running_studio(tmp_path_factory.mktemp("studio_out"), "--demo") as studio:
        yield studio


@pytest.fixture(scope="module")
def page(browser, studio):
    with browser_page(browser, studio["url"]) as page:
        yield page


def view_3d(page) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(page.locator(VIEW_3D).screenshot())).convert("L"), float)


def slice_view(page) -> np.ndarray:
    from PIL import Image

    view = page.locator(".layout-grid-item:has(.slice-slider-gutter)").first
    return np.asarray(Image.open(io.BytesIO(view.screenshot())).convert("L"), float)


def coloured(page) -> tuple[float, np.ndarray]:
    """The share of the 3D view's pixels in colour (segments), not the grey background, and where they lie
    (their centre as a fraction of the view's width and height)."""
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(page.locator(VIEW_3D).screenshot())).convert("RGB"), int)
    mask = (rgb.max(-1) - rgb.min(-1)) > 40
    centre = np.argwhere(mask).mean(0)[::-1] / mask.shape[::-1] if mask.any() else np.full(2, np.nan)
    return float(mask.mean()), centre


def wait_until_changed(page, before: np.ndarray, timeout: float = 20.0) -> float:
    """Mean absolute difference of the 3D view from ``before`` once it has changed (or after the timeout)."""
    deadline = time.time() + timeout
    diff = 0.0
    while time.time() < deadline:
        now = view_3d(page)
        diff = float(np.abs(now - before).mean()) if now.shape == before.shape else 255.0
        if diff > 1.0:
            time.sleep(1.0)  # let the stream settle, then measure again
            now = view_3d(page)
            return float(np.abs(now - before).mean())
        time.sleep(0.5)
    return diff


def test_views_and_demo_data_appear(page):
    assert page.locator("img.image-display-area").count() == 4  # axial, sagittal, coronal, 3D
    assert "phantom cine" in page.inner_text("body")
    page.screenshot(path=ARTIFACTS / "studio-start.png")


def test_every_browser_on_one_studio_shares_its_scene(browser, studio, page):
    """A studio is one scene: a second browser on its URL sees what the first loaded and what it sets (the
    README says so: one studio per user)."""
    tta = "Test-time augmentation: the network's output averaged over nine views"
    with browser_page(browser, studio["url"]) as second:
        assert "phantom cine" in second.inner_text("body")
        assert not second.get_by_label(tta).is_checked()
        page.get_by_label(tta).check()
        playwright.expect(second.get_by_label(tta)).to_be_checked(timeout=10_000)  # pushed to the second
        page.get_by_label(tta).uncheck()


def test_segment_lists_segments_and_changes_the_3d_view(page):
    before = view_3d(page)
    assert "acnn-seg-phantom" in page.inner_text("body")  # the model chosen for the phantom's stacks
    # the clean-up and the closing of the myocardium, on
    page.get_by_label("Clean up: each structure's largest connected part, LV blood pool without holes").check()
    page.get_by_label("Close the myocardium: the clean-up, and the ring closed where it is open").check()
    page.click("#segment")
    page.wait_for_selector("#results", timeout=120_000)
    page.get_by_text("Scene").click()
    page.wait_for_selector(".segment-item", timeout=20_000)
    segments = page.inner_text("#segments")
    assert "phantom ED" in page.inner_text("#volumes")
    assert "LV blood pool" in segments and "LV myocardium" in segments
    assert "phantom cine ACNN segmentation (every frame, 2 frames)" in segments  # the one that plays
    assert wait_until_changed(page, before) > 1.0
    results = page.inner_text("#results")
    assert "ED" in results and "ES" in results and "RV" not in results  # the phantom model has no RV
    assert re.search(r"EF \d+\.\d %", page.inner_text("#status"))
    assert len(re.findall(r"\d+", page.inner_text("#curve").split(":")[1])) == 2  # the cine's two frames
    assert page.locator("#rv-curve").count() == 0  # the phantom model has no RV
    assert "IMPLAUSIBLE" not in page.inner_text("#status")  # the ring closed: every phase passes the checks
    page.screenshot(path=ARTIFACTS / "studio-segment.png")
    # the cine's ED frame under the views, and a slider through its frames
    assert page.inner_text("#frame").startswith("Frame ")
    ed = page.inner_text("#frame")
    before, before_3d = slice_view(page), view_3d(page)
    page.locator("#frame .v-slider-thumb").focus()
    page.keyboard.press("ArrowRight" if ed == "Frame 1 of 2" else "ArrowLeft")
    page.wait_for_function(f"document.querySelector('#frame').innerText != '{ed}'", timeout=10_000)
    time.sleep(2)  # the views' next frames
    assert np.abs(slice_view(page) - before).mean() > 1.0  # the other frame shown
    assert wait_until_changed(page, before_3d) > 0.5  # and its segmentation in 3-D: the heart contracts
    page.screenshot(path=ARTIFACTS / "studio-segment-es.png")
    # ED and ES given instead of found (from 1, as the slider counts): swapped, the EF turns negative; one frame
    # for both is refused, saying why
    found = float(re.search(r"EF (\S+) %", page.inner_text("#status")).group(1))
    ed_frame = int(re.match(r"Frame (\d) of 2", ed).group(1))
    page.get_by_label("Find ED and ES from the LV volume curve").uncheck()
    for given, said in ((ed_frame, "ED and ES are the same frame"), (3 - ed_frame, None)):
        page.locator("#ed-frame").fill(str(given))
        page.locator("#es-frame").fill(str(ed_frame))
        page.click("#segment")
        if said:
            page.wait_for_selector("#error", timeout=60_000)
            assert said in page.inner_text("#error")
        else:
            page.wait_for_function("/EF -/.test(document.querySelector('#status').innerText)", timeout=60_000)
    swapped = float(re.search(r"EF (\S+) %", page.inner_text("#status")).group(1))
    assert swapped < 0 < found  # the two frames the other way round, and said so
    assert f"Note: the LV blood pool is larger at ES (frame {ed_frame}) than at ED (frame {3 - ed_frame}): are the " \
           f"two the wrong way round?" in page.inner_text("#status")
    page.screenshot(path=ARTIFACTS / "studio-segment-frames.png")


def test_shape_explorer_slider_changes_the_shape(page):
    page.click("#load-shape")
    page.wait_for_selector(".latent-slider .v-slider-thumb", timeout=60_000)
    time.sleep(2)
    info = page.inner_text("#shape-info")
    voxels = int(re.search(r"decoded: (\d+) voxels", info).group(1))
    assert info.endswith("; plausible")  # ae-phantom's mean shape, checked as a segmentation is
    before = view_3d(page)
    thumb = page.locator(".latent-slider .v-slider-thumb").first
    thumb.focus()
    for _ in range(40):  # towards mean + 2 std
        page.keyboard.press("ArrowRight")
    page.wait_for_function(f"!document.querySelector('#shape-info').innerText.includes('decoded: {voxels} ')",
                           timeout=30_000)
    moved = int(re.search(r"decoded: (\d+) voxels", page.inner_text("#shape-info")).group(1))
    assert moved != voxels  # the decoded label map changed
    assert wait_until_changed(page, before) > 1.0  # and the 3D view with it
    page.screenshot(path=ARTIFACTS / "studio-shape-explorer.png")
    page.click("#reset-shape")
    page.wait_for_function(f"document.querySelector('#shape-info').innerText.includes('decoded: {voxels} ')",
                           timeout=30_000)


def test_superresolve_adds_a_volume_and_a_cine_of_hr_frames(page):
    """SuperResolve on the demo's ED stack: a new HR volume in the scene, and no note (the bundled model
    learnt the phantom's own stacks); on the demo's cine, a cine of HR frames that the frame slider steps."""
    page.get_by_text("SuperResolve", exact=True).click()
    page.click("#superresolve")
    page.wait_for_function("document.querySelector('#status').innerText.startsWith('Super-resolved')",
                           timeout=120_000)
    status = page.inner_text("#status")
    assert re.search(r"Super-resolved: .* ACNN SR \(96x96x60\)\.$", status) and "Note" not in status, status
    page.get_by_text("Scene").click()
    page.wait_for_function("document.querySelector('#volumes').innerText.includes('ACNN SR')", timeout=10_000)
    page.get_by_text("Scene").click()
    # the cine: its frames super-resolved into a cine of HR frames under the views, stepped by the frame slider
    page.locator(".v-select:has(#sr-input) .v-field").click()
    page.get_by_role("option", name="phantom cine (cine, 2 frames)").click()
    page.click("#superresolve")
    page.wait_for_function("document.querySelector('#status').innerText.startsWith('Super-resolved: phantom cine')",
                           timeout=120_000)
    assert page.inner_text("#status") == "Super-resolved: phantom cine ACNN SR (2 frames of 96x96x60)."
    frame = page.inner_text("#frame")
    assert frame.startswith("Frame ")
    before = slice_view(page)
    page.locator("#frame .v-slider-thumb").focus()
    page.keyboard.press("ArrowRight" if frame == "Frame 1 of 2" else "ArrowLeft")
    page.wait_for_function(f"document.querySelector('#frame').innerText != '{frame}'", timeout=10_000)
    time.sleep(2)  # the views' next frame
    assert np.abs(slice_view(page) - before).mean() > 1.0  # the other HR frame shown
    page.screenshot(path=ARTIFACTS / "studio-superresolve-cine.png")
    page.get_by_text("SuperResolve", exact=True).click()


def test_load_an_image_from_the_browser(page, tmp_path):
    from ACNNCore.io import write_frames, write_volume
    from ACNNCore.phantom.population import PhantomConfig, generate_subject

    write_volume(generate_subject(1, 77, PhantomConfig()).phases["ES"]["lr"], tmp_path / "uploaded_stack.nrrd")
    page.set_input_files("#upload", str(tmp_path / "uploaded_stack.nrrd"))
    page.wait_for_function("document.querySelector('#status').innerText.includes('Loaded uploaded_stack.nrrd')",
                           timeout=30_000)
    page.get_by_text("Scene").click() if not page.locator("#volumes").is_visible() else None
    page.wait_for_function("document.querySelector('#volumes').innerText.includes('uploaded_stack')", timeout=10_000)
    # what `acnn segment` writes (CASE.nii.gz, label values): a segmentation, not an image to segment
    write_volume(generate_subject(1, 77, PhantomConfig()).phases["ES"]["hr_gt"], tmp_path / "case7.nii.gz")
    page.set_input_files("#upload", str(tmp_path / "case7.nii.gz"))
    page.wait_for_function("document.querySelector('#segments').innerText.includes('case7')", timeout=30_000)
    assert "case7" not in page.inner_text("#volumes")
    # a 4-D cine: offered to Segment as a cine, and its first frame shown in the slice views (not black)
    subject = generate_subject(2, 78, PhantomConfig())
    write_frames([subject.phases[p]["lr"] for p in ("ED", "ES")], tmp_path / "cine2.nii.gz")
    before = slice_view(page)
    page.set_input_files("#upload", str(tmp_path / "cine2.nii.gz"))
    page.wait_for_function("document.querySelector('#status').innerText.includes('Loaded cine2.nii.gz')",
                           timeout=30_000)
    time.sleep(2)
    after = slice_view(page)
    assert np.abs(after - before).mean() > 1.0 and after.std() > 10  # the cine's frame, an image
    assert "cine2 (cine, 2 frames)" in page.inner_text("body")


def test_load_dicom_files_or_a_zip_of_them_from_the_browser(page, tmp_path, write_dicom, phantom_cine):
    """DICOM has no single file to choose: the files chosen together, or a zip of their folder, load as a cine;
    a zip of several patients' exports loads each, offered to Segment; a full study's cines load each, the
    short-axis cine offered to Segment."""
    import zipfile

    from ACNNCore.volume import Geometry, Volume

    frames = phantom_cine(3, 79)
    folder = write_dicom(frames, tmp_path / "scanner", per_slice_series=True)
    page.set_input_files("#upload", sorted(str(f) for f in folder.iterdir()))
    page.wait_for_function("document.querySelector('#status').innerText.includes('Loaded DICOM.')", timeout=30_000)
    assert "DICOM (cine, 2 frames)" in page.inner_text("body")
    f = frames[0]
    long_axis = Volume(f.array[:, :, :1], Geometry((*f.shape[:2], 1), f.spacing, f.origin,
                                                    np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]])))
    write_dicom([long_axis], tmp_path / "la", description="cine_2ch")

    def upload_zip(name, folders):
        """The folders' files zipped, each folder under its name in the zip, uploaded and loaded."""
        with zipfile.ZipFile(tmp_path / f"{name}.zip", "w") as z:
            for inside, source in folders.items():
                for f in source.iterdir():
                    z.write(f, f"{inside}/{f.name}")
        page.set_input_files("#upload", str(tmp_path / f"{name}.zip"))
        page.wait_for_function(f"document.querySelector('#status').innerText.includes('Loaded {name}.')",
                               timeout=30_000)

    upload_zip("study", {"sax_cine": folder, "la_2ch": tmp_path / "la"})  # the short-axis cine, a long-axis view
    assert "study (cine, 2 frames)" in page.inner_text("body")
    assert "left out 1 image of other orientations, grids or series (1 slice position, 1 image (cine_2ch in " \
           "study/la_2ch))" in page.inner_text("#status")
    page.screenshot(path=ARTIFACTS / "studio-dicom.png")
    write_dicom(frames[:1], tmp_path / "p2", study="1.2.3.2")  # two patients' exports: a node each
    upload_zip("exports", {"p1": folder, "p2/sax": tmp_path / "p2"})
    assert "p1 (cine, 2 frames)" in page.inner_text("body")  # the cine chosen for Segment
    page.get_by_text("Scene").click() if not page.locator("#volumes").is_visible() else None
    page.wait_for_function("document.querySelector('#volumes').innerText.includes('p2')", timeout=10_000)
    g = frames[0].geometry  # a full study: the short-axis cine beside perfusion (three slices, three times)
    perfusion = Volume(frames[0].array[:, :, 2:5], Geometry((*g.shape[:2], 3), g.spacing,
                                                            g.index_to_physical((0, 0, 2)), g.direction))
    write_dicom([perfusion] * 3, tmp_path / "perf", times=[0, 400, 800], series=70, description="perfusion")
    upload_zip("full", {"sax_cine": folder, "perfusion": tmp_path / "perf"})
    assert "full cine_sax (cine, 2 frames)" in page.inner_text("body")  # chosen for Segment: the short-axis cine
    page.wait_for_function("document.querySelector('#volumes').innerText.includes('full perfusion')",
                           timeout=10_000)
    page.screenshot(path=ARTIFACTS / "studio-full-study.png")


def test_bad_file_shows_an_error_and_the_server_stays_up(page, studio, tmp_path):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"this is not a NIfTI file")
    page.set_input_files("#upload", str(bad))
    page.wait_for_selector("#error", timeout=30_000)
    error = page.inner_text("#error")
    assert error.startswith("Cannot load: broken.nii.gz: cannot read broken.nii.gz") and "server-tmp" not in error
    page.screenshot(path=ARTIFACTS / "studio-error.png")
    assert studio["proc"].poll() is None
    page.click("#save")  # still answering: results are saved where --output said
    page.wait_for_function("document.querySelector('#status').innerText.startsWith('Saved')", timeout=30_000)
    saved = sorted(p.name for p in studio["saved"].iterdir())
    assert any(n.endswith(".seg.nrrd") for n in saved) and any(n.endswith("ACNN_SR.nii.gz") for n in saved), saved
    measures = [n for n in saved if n.endswith("measures.csv")]  # the result table, for a spreadsheet
    assert measures and "LV blood pool (ml)" in (studio["saved"] / measures[0]).read_text()
    assert not any(n.startswith("case7") for n in saved)  # loaded from a file: not written again
    page.click("#save")  # again: new names, nothing overwritten
    deadline = time.time() + 30
    while len(list(studio["saved"].iterdir())) < 2 * len(saved) and time.time() < deadline:
        time.sleep(0.5)
    again = sorted(p.name for p in studio["saved"].iterdir())
    assert len(again) == 2 * len(saved) and measures[0].replace(".csv", "-1.csv") in again, again


def test_download_gives_the_results_as_a_zip(page, studio, tmp_path):
    """Download: the files Save results writes, zipped, to the browser's downloads (for a studio served from
    another machine); nothing more in the server's save folder."""
    import zipfile

    saved = sorted(studio["saved"].iterdir())
    with page.expect_download(timeout=60_000) as download:
        page.click("#download")
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    assert path.name == "acnn-results.zip"
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        assert "LV blood pool (ml)" in next(z.read(n).decode() for n in names if n.endswith("measures.csv"))
    assert all(n.startswith("acnn-results/") for n in names), names
    assert any(n.endswith(".seg.nrrd") for n in names) and any(n.endswith("ACNN_SR.nii.gz") for n in names), names
    assert "acnn-results/scene.mrb" in names  # the whole scene, for 3D Slicer
    assert not any(n.startswith("acnn-results/case7") for n in names)  # loaded from a file: not written again
    page.wait_for_function("document.querySelector('#status').innerText.startsWith('Downloading')", timeout=10_000)
    assert sorted(studio["saved"].iterdir()) == saved


def test_studio_command_refuses_a_missing_data_path_or_a_data_set_root(tmp_path, capsys):
    from ACNNCore.cli import main

    assert main(["studio", "--data", str(tmp_path / "nothing.nii.gz")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    (tmp_path / "root" / "patient001").mkdir(parents=True)  # a data set's root: one subject at a time
    assert main(["studio", "--data", str(tmp_path / "root")]) == 2
    assert "holds folders, not images: load one of them (e.g. " in capsys.readouterr().err
    with socket.socket() as taken:  # a port another server listens on: said at once, no URL printed first
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["studio", "--port", str(port)]) == 2
        out, err = capsys.readouterr()
        assert f"cannot serve on 127.0.0.1:{port}: Address already in use; choose another --port" in err
        assert "http://" not in out
    assert main(["studio", "--host", "no-such-host.invalid"]) == 2
    assert "cannot serve on no-such-host.invalid:8080" in capsys.readouterr().err
    for port in ("99999", "-5", "0"):  # 99999 was an OverflowError's traceback
        assert main(["studio", "--port", port]) == 2
        assert f"acnn: error: --port is a TCP port, 1 to 65535, not {port}\n" in capsys.readouterr().err
    (tmp_path / "a-file").touch()  # --output where nothing can be saved: said before the studio starts
    assert main(["studio", "--output", str(tmp_path / "a-file" / "results")]) == 2
    assert f"cannot write {tmp_path / 'a-file' / 'results'}: {tmp_path / 'a-file'} is a file, not a folder" in \
        capsys.readouterr().err
    assert main(["studio", "--output", "/proc/acnn-results"]) == 2
    assert "cannot write into the folder /proc/acnn-results" in capsys.readouterr().err
    assert main(["studio", "--model", str(tmp_path / "root")]) == 2  # --model: a bundle folder, checked first
    assert f"{tmp_path / 'root'} is not a model bundle (no model.json)" in capsys.readouterr().err


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no hang-up signal on this platform")
def test_a_hang_up_stops_the_studio_and_deletes_what_was_uploaded(tmp_path):
    """The terminal or SSH session of `acnn studio` closed (SIGHUP): the server stops as on Ctrl+C, and the
    uploaded files (a patient's images) go with it rather than stay in the temporary folder."""
    with running_studio(tmp_path) as studio:
        (uploads,) = [p for p in (tmp_path / "server-tmp").iterdir() if p.name.startswith("acnn-studio-uploads-")]
        (uploads / "upload-1").mkdir()
        (uploads / "upload-1" / "patient.dcm").write_bytes(b"an uploaded image")
        studio["proc"].send_signal(signal.SIGHUP)
        assert studio["proc"].wait(30) == 130, (tmp_path / "server.log").read_text()[-2000:]
        assert not uploads.exists()
        assert "acnn: interrupted" in (tmp_path / "server.log").read_text()


def test_a_studio_started_empty_makes_the_phantom_demo_on_a_click(browser, tmp_path):
    """`acnn studio` without --demo: the status says how to begin, Run and Encode wait for an input, and "Phantom
    demo" in the Segment panel gives the cine, chosen as the input with the phantom's model."""
    with running_studio(tmp_path) as studio, browser_page(browser, studio["url"]) as page:
        assert page.inner_text("#status") == "Open an image, or make the phantom demo (Segment)."
        assert "phantom cine" not in page.inner_text("body")
        page.get_by_text("SuperResolve", exact=True).click()  # its panel open too
        assert page.is_disabled("#segment") and page.is_disabled("#superresolve")  # nothing to run on yet
        page.click("#load-shape")
        page.wait_for_selector(".latent-slider .v-slider-thumb", timeout=60_000)
        assert page.is_disabled("#encode-shape")  # nothing to encode yet
        page.click("#demo")
        page.wait_for_function("document.querySelector('#status').innerText.startsWith('Demo:')", timeout=30_000)
        assert "phantom cine (cine, 2 frames)" in page.inner_text("body")
        assert "acnn-seg-phantom" in page.inner_text("body")
        assert page.is_enabled("#segment") and page.is_enabled("#superresolve")


def test_real_cine_mr_segmented_and_encoded_in_its_shape_space(browser, acdc_root, tmp_path):
    """A real ACDC patient's folder given with --data: its images, and its expert label maps as segmentations
    (in ACDC's values: read as such); the real-data model and its shape model are offered for the first image
    (ED), the result is corrected by that shape model, has an RV, and the Shape Explorer encodes it (the decoded
    real shape shown)."""
    folder = acdc_root / "patient031"  # a MINF patient: ED frame 1, ES frame 10
    with running_studio(tmp_path, "--data", folder) as studio, browser_page(browser, studio["url"]) as page:
        body = page.inner_text("body")
        assert "acnn-seg-acdc" in body and "ae-acdc" in body  # the model that suits it, and its prior
        assert page.inner_text("#status") == "Loaded patient031."
        page.get_by_text("Scene").click()
        page.wait_for_selector(".segment-item", timeout=20_000)
        experts = page.locator(".segment-item").all_inner_texts()  # each segmentation, its segments under it
        assert all(any(f"patient031_frame{f}_gt" in e and "LV blood pool, LV myocardium, RV blood pool" in e
                       for e in experts) for f in ("01", "10")), experts
        page.get_by_text("Scene").click()
        page.get_by_label("Correct with the shape model: an implausible output made plausible").check()
        page.get_by_label("Find the in-plane orientation: the surest of eight turns and mirrorings").check()
        page.click("#segment")
        page.wait_for_selector("#results", timeout=120_000)
        status = page.inner_text("#status")
        assert re.search(r"Segmented on (cpu|cuda); result plausible", status)
        assert "Note" not in status  # the real-data model on a real image: nothing to mind
        assert "surest of" not in status  # the orientation searched for, and the image as stored the surest
        header, row = (line.split("\t") for line in page.inner_text("#results").splitlines())
        assert float(row[header.index("RV (ml)")]) > 50  # the RV's volume, too
        dices = re.search(r"Dice against patient031_frame01_gt: LV blood pool (\S+), LV myocardium (\S+), "
                          r"RV blood pool (\S+)\.", status)  # the expert's map loaded beside the image
        assert dices and all(float(d) > 0.8 for d in dices.groups()), status
        page.get_by_text("Scene").click()
        page.wait_for_selector(".segment-item", timeout=20_000)
        segments = page.inner_text("#segments")
        assert all(s in segments for s in ("LV blood pool", "LV myocardium", "RV blood pool"))
        page.get_by_text("Scene").click()
        time.sleep(2)
        share, centre = coloured(page)
        assert share > 0.05, share  # LV, myocardium and RV in 3D, the view fitted to them
        assert np.all(np.abs(centre - 0.5) < 0.2), centre  # in the middle of the view, not at its edge
        page.screenshot(path=ARTIFACTS / "studio-acdc.png")
        page.click("#load-shape")
        page.wait_for_selector(".latent-slider .v-slider-thumb", timeout=60_000)
        mean = int(re.search(r"decoded: (\d+) voxels", page.inner_text("#shape-info")).group(1))
        assert "; IMPLAUSIBLE: more than one connected component" in page.inner_text("#shape-info")  # its apex
        page.locator("#shape-info").scroll_into_view_if_needed()
        time.sleep(2)
        page.screenshot(path=ARTIFACTS / "studio-acdc-mean-shape.png")  # the mean shape: apex down, RV on the right
        page.click("#encode-shape")
        page.wait_for_function("document.querySelector('#status').innerText.startsWith('Encoded patient031')",
                               timeout=30_000)
        page.wait_for_function(f"!document.querySelector('#shape-info').innerText.includes('decoded: {mean} ')",
                               timeout=30_000)  # the patient's shape, not the mean one
        time.sleep(2)
        assert coloured(page)[0] > 0.05  # the 3D view follows the shape to where the patient's heart lies
        page.screenshot(path=ARTIFACTS / "studio-acdc-shape.png")
        page.get_by_text("SuperResolve", exact=True).click()  # the phantom-trained SR model on a real image
        page.click("#superresolve")
        page.wait_for_function("document.querySelector('#status').innerText.startsWith('Super-resolved')",
                               timeout=120_000)
        assert "Note: acnn-sr-phantom learnt from phantom images only" in page.inner_text("#status")
        assert studio["proc"].poll() is None


def test_a_dicom_upload_segmented_and_saved_as_dicom_seg(browser, acdc_root, tmp_path, write_dicom):
    """A real patient's cine uploaded as a zip of DICOM files (one series per slice), segmented by the real-data
    model and saved: beside the .seg.nrrd files, DICOM SEG objects on the uploaded images -- ED's on its frame's,
    ES's on its -- holding the LV the results table measured."""
    import zipfile

    import highdicom

    from ACNNCore.io import read_volume

    folder = acdc_root / "patient031"  # ED frame 1, ES frame 10
    frames = [read_volume(folder / f"patient031_frame{f:02d}.nii.gz") for f in (1, 10)]
    frames = [f.with_array(np.round(f.array * 1000).astype(np.int16)) for f in frames]
    source = write_dicom(frames, tmp_path / "dicom", per_slice_series=True, times=[0, 300])
    with zipfile.ZipFile(tmp_path / "patient031.zip", "w") as z:
        for f in source.iterdir():
            z.write(f, f"patient031/{f.name}")
    with running_studio(tmp_path) as studio, browser_page(browser, studio["url"]) as page:
        page.set_input_files("#upload", str(tmp_path / "patient031.zip"))
        page.wait_for_function("document.querySelector('#status').innerText.includes('Loaded patient031.')",
                               timeout=30_000)
        page.wait_for_function("document.body.innerText.includes('acnn-seg-acdc')", timeout=10_000)  # chosen next
        assert "patient031 (cine, 2 frames)" in page.inner_text("body")
        page.click("#segment")
        page.wait_for_selector("#results", timeout=120_000)
        header, *rows = (line.split("\t") for line in page.inner_text("#results").splitlines())
        lv = {row[header.index("Phase")]: float(row[header.index("LV (ml)")]) for row in rows}
        rv = {row[header.index("Phase")]: float(row[header.index("RV (ml)")]) for row in rows}
        assert [float(v) for v in page.inner_text("#rv-curve").split(": ")[1].split(", ")] == pytest.approx(
            [rv["ED"], rv["ES"]], abs=0.5)  # the RV's volume in every frame, ED's and ES's here
        page.click("#save")
        page.wait_for_function("document.querySelector('#status').innerText.startsWith('Saved')", timeout=60_000)
        saved = studio["saved"] / "patient031_DICOM_SEG"
        assert sorted(p.name for p in saved.iterdir()) == ["SEG_001.dcm", "SEG_002.dcm"], page.inner_text("#status")
        for path, phase in zip(sorted(saved.iterdir()), ("ED", "ES")):
            seg = highdicom.seg.segread(path)
            voxel_ml = np.prod(frames[0].spacing) / 1000
            lv_pixels = sum(int(pixels.sum()) for pixels, item in zip(seg.pixel_array,
                                                                      seg.PerFrameFunctionalGroupsSequence)
                            if item.SegmentIdentificationSequence[0].ReferencedSegmentNumber == 1)
            assert lv_pixels * voxel_ml == pytest.approx(lv[phase], abs=0.1), phase
        page.set_input_files("#upload", [str(p) for p in sorted(saved.iterdir())])  # the SEGs uploaded: loaded
        page.wait_for_function("document.querySelector('#status').innerText.includes('Loaded DICOM.')",
                               timeout=30_000)
        page.get_by_text("Scene").click() if not page.locator("#segments").is_visible() else None
        page.wait_for_function("[...document.querySelectorAll('.segment-item')].some(e => e.innerText.includes("
                               "'DICOM ACNN labels, frame 2 of 2') && e.innerText.includes('RV blood pool'))",
                               timeout=10_000)
        time.sleep(2)  # the views' next frames
        page.screenshot(path=ARTIFACTS / "studio-dicom-seg.png")
        uploads = [p for p in (tmp_path / "server-tmp").iterdir() if p.name.startswith("acnn-studio-uploads-")]
        assert len(uploads) == 1 and len(list(uploads[0].iterdir())) == 2  # the zip's and the SEGs' uploads
        page.locator(".segment-item", has_text="patient031 ED").locator(".eye .mdi-eye-off-outline").wait_for(
            timeout=10_000)  # ED's own result hidden under every frame's, whose eye hides and shows it again
        every = page.locator(".segment-item", has_text="patient031 ACNN segmentation (every frame, 2 frames)")
        every.locator(".eye .mdi-eye").wait_for(timeout=10_000)
        every.locator(".eye").click()
        every.locator(".eye .mdi-eye-off-outline").wait_for(timeout=10_000)
        every.locator(".eye").click()
        every.locator(".eye .mdi-eye").wait_for(timeout=10_000)
        # the uploaded cine removed, once the user has said so: its uploaded files go, the SEGs' stay
        page.locator(".volume-item", has_text="patient031 (cine").locator(".remove").click()
        page.wait_for_selector("#remove-question", timeout=10_000)
        question = page.inner_text("#remove-question")
        assert question.startswith("Remove patient031?") and "files uploaded for it are deleted" in question
        assert "not saved" not in question  # its results were saved
        time.sleep(0.5)  # the dialog faded in
        page.screenshot(path=ARTIFACTS / "studio-remove.png")
        page.click("#remove-confirm")
        page.wait_for_function("document.querySelector('#status').innerText == 'Removed patient031.'",
                               timeout=10_000)
        assert "patient031" not in page.inner_text("#volumes")
        assert len(list(uploads[0].iterdir())) == 1
