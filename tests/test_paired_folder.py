"""A user's paired test set (``--paired-folder DIR``: input/, gt/, mask/): the embedded paired split written out in
that layout and read back scores exactly as the built-in split, for the input, an inpainter fed the true masks
and OA-GAN; masks derived from the pairs; the layout's bad inputs are one line each."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from bench.data.paired import load_paired, split_name
from bench.errors import DataError
from tests.util import finished_run

RUN = ["run", "--methods", "oagan,telea", "--mask-source", "gt", "--steps", "2", "--limit", "4", "--data-limit", "16"]
SCORED = ("psnr", "ssim", "ssim_padded", "region_psnr", "mask_iou", "mask_f1", "area")


def _by_sample(run, label: str, split: str) -> dict[str, dict]:
    rows = [json.loads(line) for line in (run / "metrics" / f"{label}.jsonl").read_text().splitlines()]
    return {r["sample"]: {k: r.get(k) for k in SCORED} for r in rows if r["split"] == split}


@pytest.mark.slow
def test_the_embedded_paired_split_read_back_as_a_folder_scores_exactly_as_built_in(tmp_path):
    out = tmp_path / "out"
    first = finished_run(out, RUN)
    folder = tmp_path / "My Set"  # the run's own stored test inputs: input/, gt/ and mask/ as the layout wants
    shutil.copytree(first / "inputs" / "test_paired", folder)
    shutil.rmtree(out / "runs")
    run = finished_run(out, [*RUN, "--paired-folder", str(folder)])
    name = split_name(folder)
    assert name == "paired_my_set"
    for label in ("oagan", "telea@gt", "identity"):
        built_in, read_back = _by_sample(run, label, "test_paired"), _by_sample(run, label, name)
        assert len(built_in) == 4 and read_back == built_in, label
    assert _by_sample(run, "oagan", name)["test_paired-00000"]["mask_iou"] is not None  # masks given: IoU scored
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["data"]["splits"][name] == 4
    assert manifest["data"]["info"]["paired"][name]["masks"].startswith("given")
    assert manifest["training"]["oagan"]["cached"]  # a test set keys no model (bench.data.types.training_fingerprint)
    assert f"identity,identity,own,{name},4," in (run / "summary.csv").read_text()
    from bench.report import render_report

    page = render_report([run], tmp_path / "report.html", examples=2).path.read_text()
    assert f"your paired set {name} ({folder.resolve()}; masks: given" in page  # its own table, pairs and grid
    assert page.count(f"{name}") >= 4
    assert f'id="chart-{run.name}-area_{name}"' in page  # the synthetic split's area chart, named by the folder


def _pair(root, name: str, size: int = 48, gt_size: int | None = None, value: int = 0) -> None:
    rng = np.random.default_rng(len(name))
    clean = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    occluded = clean.copy()
    occluded[: size // 2, : size // 2] = value  # the top-left quarter occluded
    for kind, image in (("input", occluded), ("gt", clean if gt_size is None else clean[:gt_size, :gt_size])):
        (root / kind).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / kind / f"{name}.png")


def test_masks_derived_from_the_pairs_mark_what_differs(tmp_path):
    for name in ("a", "b"):
        _pair(tmp_path, name)
    faces, facts = load_paired(tmp_path, 48, derive_mask=0.02)
    assert faces.ids == ["a", "b"] and facts["masks"] == "derived: |input - gt| > 0.02 in any channel"
    expected = np.zeros((48, 48), np.uint8)
    expected[:24, :24] = 1
    # a random clean pixel can equal the paste (0) in every channel: at most a few of the 576 stay unmarked
    assert all(((m == expected) | (expected == 1)).all() and m[:24, :24].sum() >= 570 for m in faces.masks)
    without, facts = load_paired(tmp_path, 32)
    assert without.masks is None and facts["masks"].startswith("none")
    assert without.images.shape == (2, 32, 32, 3) and without.clean.shape == (2, 32, 32, 3)


def test_a_zero_one_mask_and_a_zero_255_mask_are_the_same_mask(tmp_path):
    _pair(tmp_path, "a")
    _pair(tmp_path, "b")
    mask = np.zeros((48, 48), np.uint8)
    mask[:24, :24] = 1
    (tmp_path / "mask").mkdir()
    Image.fromarray(mask).save(tmp_path / "mask" / "a.png")  # 0/1 in 8 bits
    Image.fromarray(mask.astype(bool)).save(tmp_path / "mask" / "b.png")  # 1-bit
    faces, _ = load_paired(tmp_path, 48)
    np.testing.assert_array_equal(faces.masks[0], mask)
    np.testing.assert_array_equal(faces.masks[1], mask)


BAD = [
    ("no-gt", lambda r: (_pair(r, "a"), shutil.rmtree(r / "gt")), {}, "needs input/ and gt/ sub-folders"),
    ("gt-missing", lambda r: (_pair(r, "a"), _pair(r, "b"), (r / "gt" / "b.png").unlink()), {}, "1 file(s) missing"),
    ("extra-gt", lambda r: (_pair(r, "a"), _pair(r, "b"), (r / "input" / "b.png").unlink()), {}, "without an image"),
    ("not-aligned", lambda r: _pair(r, "a", gt_size=40), {}, "a pair must be pixel-aligned (the same size)"),
    ("not-square", lambda r: _pair_wide(r), {}, "not a square face crop (sides may differ by 5%)"),
    ("mask-and-derive", lambda r: (_pair(r, "a"), _mask(r, "a")), {"derive_mask": 0.1}, "drop one of them"),
    ("empty", lambda r: ((r / "input").mkdir(), (r / "gt").mkdir()), {}, "input/ holds no images"),
]


def _pair_wide(root) -> None:
    for kind in ("input", "gt"):
        (root / kind).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(root / kind / "w.png")


def _mask(root, name: str) -> None:
    (root / "mask").mkdir(exist_ok=True)
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(root / "mask" / f"{name}.png")


@pytest.mark.parametrize(("make", "options", "cause"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_a_bad_paired_folder_is_one_line_naming_the_cause(tmp_path, make, options, cause):
    make(tmp_path)
    with pytest.raises(DataError, match=cause.replace("(", r"\(").replace(")", r"\)")):
        load_paired(tmp_path, 32, **options)
