"""The README's Python examples run as written (the ACDC ones where ../shared/data/acdc is present), and do
what their comments say; its contents list, and benchmarks/ACDC.md's, names every section; the citation file
agrees with the package."""

import re
from pathlib import Path

import numpy as np
import pytest

from ACNNCore.io import read_labels, read_volume

ROOT = Path(__file__).resolve().parents[2]
ACDC_PATH = "../shared/data/acdc"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def run_block(code: str, folder: Path, monkeypatch) -> dict:
    monkeypatch.chdir(folder)
    namespace: dict = {"__name__": "__readme__"}
    exec(compile(code, "README.md", "exec"), namespace)
    return namespace


def block_with(marker: str) -> str:
    """The README's one Python example that holds ``marker``."""
    (block,) = [b for b in python_blocks() if marker in b]
    return block


def test_the_readme_has_the_three_examples():
    assert len(python_blocks()) == 3
    assert block_with("Segmenter(") != block_with("acnn_seg_loss") != block_with("codes.csv")


def test_segment_and_encode_a_real_image(acdc_root, tmp_path, monkeypatch):
    code = block_with("Segmenter(").replace(ACDC_PATH, str(acdc_root))
    ns = run_block(code, tmp_path, monkeypatch)
    image = read_volume(acdc_root / "patient001" / "patient001_frame01.nii.gz")
    written = read_labels(tmp_path / "patient001_ED_seg.nii.gz", allowed=(0, 1, 2, 3))
    assert written.geometry.same_as(image.geometry)  # on the image's own grid
    np.testing.assert_array_equal(written.array, ns["result"].labels.array)
    volumes = ns["result"].volumes_ml()
    assert set(volumes) == {"LV blood pool", "LV myocardium", "RV blood pool"}
    assert 150 < volumes["LV blood pool"] < 400  # patient 001 (DCM): a large LV at ED
    assert ns["result"].correction  # says what the shape model did
    assert ns["code"].shape == (64,) and np.isfinite(ns["code"]).all()


def test_the_acnn_seg_loss_in_a_loop_of_your_own(tmp_path, monkeypatch):
    ns = run_block(block_with("acnn_seg_loss"), tmp_path, monkeypatch)
    terms, net, prior = ns["terms"], ns["net"], ns["prior"]
    assert set(terms) == {"loss", "ce", "prior"} and terms["prior"].item() > 0
    assert all(p.grad is not None for p in net.parameters())  # the loss trains the network...
    assert all(p.grad is None and not p.requires_grad for p in prior.parameters())  # ...not the prior
    assert not prior.training


def test_the_citation_file_names_the_paper_and_this_version():
    """CITATION.cff (GitHub's "Cite this repository"): valid YAML, the package's version, the paper first."""
    import yaml

    import ACNNCore

    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["version"] == ACNNCore.__version__
    paper = cff["preferred-citation"]
    assert paper["title"].startswith("Anatomically Constrained Neural Networks (ACNN)")
    assert paper["authors"][0]["family-names"] == "Oktay" and paper["year"] == 2018
    (acdc,) = cff["references"]  # the data the real-data models learnt from
    assert acdc["authors"][0]["family-names"] == "Bernard" and "acnn-seg-acdc" in acdc["notes"]


def test_classify_the_codes_acnn_encode_wrote(acdc_root, tmp_path, monkeypatch, capsys):
    """The `acnn encode` example and the forest on its codes print the figure the README gives."""
    from ACNNCore.cli import main

    assert main(["encode", str(acdc_root), "--out", str(tmp_path / "codes.csv")]) == 0
    run_block(block_with("codes.csv"), tmp_path, monkeypatch)
    assert "NOR / DCM / HCM from ED codes: 88.5% of 42 patients" in capsys.readouterr().out


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


@pytest.mark.parametrize("document, depth, unlisted", [
    ("README.md", 3, ("Quick start", "Contents")),
    ("benchmarks/ACDC.md", 2, ()),
])
def test_the_contents_list_every_section_and_link_to_it(document, depth, unlisted):
    """The document's first list of links (README: under "Contents") names its sections down to ``depth``
    (## = 2), in order and nested as they are, each linked by its GitHub anchor."""
    text = (ROOT / document).read_text()
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # a "# comment" in a code block is not a heading
    headings = re.findall(r"^(##+) (.+)$", text, re.M)
    contents = re.search(r"(?:^ *- \[.+\]\(#.+\)\n)+", text, re.M).group(0)
    listed = re.findall(r"^( *)- \[(.+)\]\(#(.+)\)$", contents, re.M)
    sections = [(len(level) - 2, title) for level, title in headings
                if len(level) <= depth and title not in unlisted]
    assert [(len(indent) // 2, title) for indent, title, _ in listed] == sections
    assert all(link == anchor(title) for _, title, link in listed)
