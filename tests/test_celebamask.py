"""CelebAMask-HQ's official layout as a natural set with real masks: a stand-in built here in that layout (no
CelebAMask-HQ image is on these machines), faces chosen by their occluder parts, masks their union, the parts as
occluder families, so OA-GAN's mask IoU is measured per part."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from bench.data.celebamask import IMAGES, MASKS, load_celebamask
from bench.errors import DataError

PARTS = {0: ("eye_g",), 1: ("hat",), 2: ("eye_g", "hat"), 3: ("hair",), 2001: ("eye_g",)}  # 3: no occluder part


def _standin(root, size: int = 128, mask_size: int = 64) -> None:
    """Faces of ``size`` px (CelebA-HQ: 1024) with part masks of ``mask_size`` (512), in folders of 2,000 ids."""
    rng = np.random.default_rng(0)
    (root / IMAGES).mkdir(parents=True)
    for i, parts in PARTS.items():
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / IMAGES / f"{i}.jpg")
        for part in parts:
            mask = np.zeros((mask_size, mask_size), np.uint8)
            rows = slice(0, mask_size // 4) if part == "hat" else slice(mask_size // 4, mask_size // 2)
            mask[rows] = 255
            folder = root / MASKS / str(i // 2000)
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask).save(folder / f"{i:05d}_{part}.png")


def test_the_run_option_defaults_to_the_loaders_parts():
    from bench.data.celebamask import PARTS
    from bench.data.resolve import DataConfig
    from bench.planning import field_default

    assert field_default("mask_parts") == DataConfig("synthetic", 64).mask_parts == list(PARTS) == ["eye_g", "hat"]


def test_faces_with_occluder_parts_their_union_as_mask_and_the_parts_as_family(tmp_path):
    _standin(tmp_path)
    faces = load_celebamask(tmp_path, 32)
    assert faces.ids == ["00000", "00001", "00002", "02001"]  # 3 has hair only: not occluded
    assert faces.families == ["celebamask/eye_g", "celebamask/hat", "celebamask/eye_g+hat", "celebamask/eye_g"]
    assert faces.clean is None and faces.images.shape == (4, 32, 32, 3)
    assert faces.masks[0][8:16].all() and not faces.masks[0][:8].any() and not faces.masks[0][16:].any()
    assert faces.masks[2][:16].all() and not faces.masks[2][16:].any()  # hat over eyeglasses: the union
    hats = load_celebamask(tmp_path, 32, ("hat",))
    assert hats.ids == ["00001", "00002"]


@pytest.mark.parametrize(
    ("break_it", "parts", "cause"),
    [
        (
            lambda r: (r / IMAGES / "1.jpg").unlink(),
            ("eye_g", "hat"),
            "1 image(s) of annotated faces missing, e.g. 1.jpg",
        ),
        (lambda r: None, ("glasses",), "part(s) glasses unknown; the parts are skin"),
        (lambda r: None, ("neck",), "no annotation of neck"),
    ],
    ids=["image-missing", "unknown-part", "no-such-annotation"],
)
def test_a_broken_celebamask_folder_is_one_line(tmp_path, break_it, parts, cause):
    _standin(tmp_path)
    break_it(tmp_path)
    with pytest.raises(DataError, match=re.escape(cause)):
        load_celebamask(tmp_path, 32, parts)


def test_oagan_mask_iou_per_part_on_a_celebamask_layout(tmp_path, bench_main):
    from bench.report.context import run_context
    from bench.runstore import RunStore

    _standin(tmp_path / "hq")
    out = tmp_path / "out"
    argv = ["run", "--methods", "oagan", "--steps", "2", "--limit", "4", "--data-limit", "8", "--output", str(out)]
    code, _, err = bench_main(*argv, "--natural-folder", str(tmp_path / "hq"))
    assert code == 0, err
    (run,) = (out / "runs").iterdir()
    rows = [json.loads(line) for line in (run / "metrics" / "oagan.jsonl").read_text().splitlines()]
    natural = {r["sample"]: r for r in rows if r["split"] == "test_natural"}
    assert set(natural) == {"00000", "00001", "00002", "02001"}
    assert all(0 <= r["mask_iou"] <= 1 for r in natural.values())
    by_part = run_context(RunStore(run), 2)["iou_by_family"]  # the report's mask IoU by occluder family
    shown = {row["label"] for row in by_part["rows"]}
    assert {"celebamask/eye_g (n=2)", "celebamask/hat (n=1)", "celebamask/eye_g+hat (n=1)"} <= shown
    code, _, err = bench_main(*argv[:-2], "--output", str(tmp_path / "o2"), "--mask-parts", "nosuch")
    assert code == 2 and "--mask-parts nosuch: name CelebAMask-HQ parts from skin" in err
