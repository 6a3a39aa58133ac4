"""Results computed elsewhere: ``bench export`` writes a run's test sets, ``bench import`` scores restorations made
outside under the same protocol. The round trip: the identity label's own outputs, imported under another label,
give that label exactly identity's rows."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.util import finished_run

RUN = ["run", "--methods", "identity,telea", "--mask-source", "gt", "--limit", "3", "--data-limit", "8"]
SCORED = ("psnr", "ssim", "ssim_padded", "region_psnr", "split", "sample", "occluder", "family", "area")


@pytest.fixture
def run(tmp_path) -> Path:
    return finished_run(tmp_path / "out", RUN)


def _rows(run: Path, label: str) -> dict[tuple[str, str], dict]:
    rows = [json.loads(line) for line in (run / "metrics" / f"{label}.jsonl").read_text().splitlines()]
    return {(r["split"], r["sample"]): {k: r.get(k) for k in SCORED} for r in rows}


def _restore_as_identity(run: Path, exported: Path, folder: Path) -> None:
    """What an outside method that returns its input writes: one PNG per exported input, named as the input."""
    for png in exported.glob("*/input/*.png"):
        split = png.parent.parent.name
        (folder / split).mkdir(parents=True, exist_ok=True)
        shutil.copy(run / "predictions" / "identity" / split / png.name, folder / split)


def test_export_then_import_of_the_identity_outputs_gives_identitys_rows(run, tmp_path, bench_main):
    exported = tmp_path / "exported"
    code, out, _ = bench_main("export", str(run), str(exported))
    assert code == 0 and "test_paired 3" in out
    index = list(csv.DictReader((exported / "index.csv").open()))
    assert len(index) == 9 and {r["split"] for r in index} == {"test_paired", "test_natural", "test_clean"}
    assert all(r["size"] == "64x64" for r in index)
    paired = [r for r in index if r["split"] == "test_paired"]
    assert all(r["mask"] == "1" and r["family"] for r in paired)  # synthetic pastes: a true mask and a family
    assert not list(exported.glob("*/gt"))  # the ground truth stays in the run
    restored = tmp_path / "restored"
    _restore_as_identity(run, exported, restored)
    code, out, err = bench_main("import", str(run), str(restored), "--label", "mine")
    assert code == 0, err
    assert _rows(run, "mine") == _rows(run, "identity")
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["methods"]["mine"]["status"] == "evaluated"
    assert manifest["methods"]["mine"]["spec"]["plugin"] == "external"
    assert manifest["training"]["mine"]["trained"] == "external"
    assert "mine,mine,own,test_paired,3," in (run / "summary.csv").read_text()
    code, _, err = bench_main("report", str(run), "-o", str(tmp_path / "r.html"))  # the report verifies its rows
    assert code == 0, err
    assert "mine" in (tmp_path / "r.html").read_text()
    before = (run / "metrics" / "mine.jsonl").read_bytes()
    assert bench_main("import", str(run), str(restored), "--label", "mine")[0] == 0  # the same files: nothing new
    assert (run / "metrics" / "mine.jsonl").read_bytes() == before


def test_changed_files_replace_the_labels_rows_and_never_mix_two_imports(run, tmp_path, bench_main):
    from bench.io import write_png

    exported, restored = tmp_path / "exported", tmp_path / "restored"
    assert bench_main("export", str(run), str(exported))[0] == 0
    _restore_as_identity(run, exported, restored)
    assert bench_main("import", str(run), str(restored), "--label", "mine")[0] == 0
    first = json.loads((run / "manifest.json").read_text())["methods"]["mine"]["model"]
    changed = sorted((restored / "test_paired").glob("*.png"))[0]
    write_png(changed, np.full((64, 64, 3), 128, np.uint8))
    code, _, err = bench_main("import", str(run), str(restored), "--label", "mine")
    assert code == 0, err
    rows, reference = _rows(run, "mine"), _rows(run, "identity")
    assert len(rows) == len(reference) == 9
    key = ("test_paired", changed.stem)
    assert rows[key]["psnr"] != reference[key]["psnr"]
    assert {k: v for k, v in rows.items() if k != key} == {k: v for k, v in reference.items() if k != key}
    assert json.loads((run / "manifest.json").read_text())["methods"]["mine"]["model"] != first


def test_an_import_into_a_run_that_is_running_is_refused(run, tmp_path, bench_main):
    from bench.io import FolderLock

    exported, restored = tmp_path / "exported", tmp_path / "restored"
    assert bench_main("export", str(run), str(exported))[0] == 0
    _restore_as_identity(run, exported, restored)
    with FolderLock(run, "run folder"):  # what a running `bench run` holds
        code, _, err = bench_main("import", str(run), str(restored), "--label", "mine")
    assert code == 2 and "another bench run" in err and "is using run folder" in err
    assert not (run / "metrics" / "mine.jsonl").exists()
