"""ACNNSlicer/README.md's scripting example runs as written on the Slicer core, on a real ACDC image."""

import re
from pathlib import Path

from ACNNCore.io import read_volume
from ACNNCore.labels import ACDC_TO_OURS, remap
from ACNNCore.metrics import dice

README = Path(__file__).resolve().parents[2] / "ACNNSlicer" / "README.md"


def test_the_scripting_example_segments_a_real_image_and_saves_it(acdc_root, tmp_path, monkeypatch):
    from ACNNSlicerLib import mrml

    (code,) = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    monkeypatch.chdir(tmp_path)
    ns: dict = {"__name__": "__readme__"}
    exec(compile(code.replace("../shared/data/acdc", str(acdc_root)), "ACNNSlicer/README.md", "exec"), ns)
    result = ns["result"]
    assert result.model == "acnn-seg-acdc"  # chosen for a real image
    assert result.summary().startswith(f"Segmented on {result.device}; ")
    saved = mrml.labels_from_segmentation(mrml.load_node(tmp_path / "patient001_ED.seg.nrrd", ns["scene"],
                                                         "segmentation"))
    expert = read_volume(acdc_root / "patient001" / "patient001_frame01_gt.nii.gz")
    expert = expert.with_array(remap(expert.array, ACDC_TO_OURS))
    scores = dice(saved, expert, (1, 2, 3))
    assert scores[1] > 0.95 and scores[2] > 0.85 and scores[3] > 0.9, scores  # a patient it trained on
