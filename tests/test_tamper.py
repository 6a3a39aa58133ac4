"""Tamper evidence, class by class: a run folder whose images, rows, digests or manifest were changed, deleted or
replaced is refused by ``bench report`` (and ``bench study export``) with one ``error:`` line naming the file and
the fix, and nothing is written; a finished run beside it stays byte-for-byte unchanged. Also: a lost manifest is
recovered (the run is found again and resumed, no row recomputed), and the last bad inputs of the report and the
user study.

Each case runs the real console entry point (``bench.cli.main``) in this process, on a copy of one finished run.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from bench import hookimpl
from bench.method import Method, MethodSpec
from tests.test_bad_input import _check_one_line, _tree
from tests.util import finished_run

RUN = ["run", "--methods", "identity,telea", "--mask-source", "gt", "--limit", "3", "--data-limit", "8"]
LABEL = "telea@gt"


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> SimpleNamespace:
    """A complete run (identity and telea fed the true masks) and a folder of stray files."""
    root = tmp_path_factory.mktemp("tamper")
    out = root / "results"
    run = finished_run(out, RUN)
    files = root / "files"
    files.mkdir()
    (files / "note.txt").write_text("a file, not a folder")
    return SimpleNamespace(out=out, run=run, files=files, root=root)


def _first_png(run: Path) -> Path:
    return sorted((run / "predictions" / LABEL / "test_paired").glob("*.png"))[0]


def _flip_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _edit_row(run: Path) -> None:
    """The tester's edit: one row's PSNR set to 99.0, still a valid row."""
    path = run / "metrics" / f"{LABEL}.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    row = json.loads(lines[0])
    row["psnr"] = 99.0
    path.write_text(json.dumps(row) + "\n" + "".join(lines[1:]))


def _drop_row(run: Path) -> None:
    path = run / "metrics" / f"{LABEL}.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:1] + lines[2:]))


def _add_row(run: Path) -> None:
    """A row for a sample that was never scored, appended by hand."""
    path = run / "metrics" / f"{LABEL}.jsonl"
    row = json.loads(path.read_text().splitlines()[0])
    row["sample"] = "made-up"
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def _as_folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _swap_labels(run: Path) -> None:
    """The two labels' metrics, digests and predictions swapped: each file verifies on its own, but the images
    shown under one label would be the other's."""
    for folder, suffix in (("metrics", ".jsonl"), ("digests", ".sha256"), ("predictions", "")):
        a, b = run / folder / f"identity{suffix}", run / folder / f"{LABEL}{suffix}"
        a.rename(run / "swap")
        b.rename(a)
        (run / "swap").rename(b)


def _extra_label(run: Path) -> None:
    """A label file of its own holding a copy of one telea row, its digest and its image: the row would count
    twice in telea's mean."""
    row = (run / "metrics" / f"{LABEL}.jsonl").read_text().splitlines()[0]
    (run / "metrics" / "zz.jsonl").write_text(row + "\n")
    (run / "digests" / "zz.sha256").write_text((run / "digests" / f"{LABEL}.sha256").read_text().splitlines()[0] + "\n")
    shutil.copytree(run / "predictions" / LABEL, run / "predictions" / "zz")


def _relabelled_label(run: Path) -> None:
    """The same, with the copied row relabelled to its file's label: a label the run never evaluated."""
    from bench.runstore import row_digest

    row = json.loads((run / "metrics" / f"{LABEL}.jsonl").read_text().splitlines()[0])
    line = json.dumps({**row, "label": "zz"})
    (run / "metrics" / "zz.jsonl").write_text(line + "\n")
    (run / "digests" / "zz.sha256").write_text(f"{row_digest(line)} {row['split']}/{row['sample']}\n")
    shutil.copytree(run / "predictions" / LABEL, run / "predictions" / "zz")


def _manifest(change: Callable[[dict], object]) -> Callable[[Path], None]:
    def apply(run: Path) -> None:
        manifest = json.loads((run / "manifest.json").read_text())
        new = change(manifest)
        (run / "manifest.json").write_text(json.dumps(manifest if new is None else new))

    return apply


def _unlink(*parts: str) -> Callable[[Path], None]:
    return lambda run: [(run / p).unlink() for p in parts]


# (case id, what is done to a copy of the finished run, the text the one error line must hold)
TAMPERED = [
    # -- prediction images
    ("png-deleted", lambda r: _first_png(r).unlink(), ".png is missing, but"),
    ("png-bit-flipped", lambda r: _flip_bit(_first_png(r)), ".png has changed since it was scored"),
    # -- metrics rows and their digests
    ("row-edited", _edit_row, f"{LABEL}.jsonl:1 is not the row that was written"),
    ("row-deleted", _drop_row, f"{LABEL}.jsonl lacks 1 row(s) that {LABEL}.sha256 records as written"),
    ("row-added", _add_row, f"is not the row that was written (its sha256 is not in {LABEL}.sha256)"),
    ("row-bit-flipped", lambda r: _flip_bit(r / "metrics" / f"{LABEL}.jsonl"), f"{LABEL}.jsonl:"),
    ("digests-deleted", _unlink(f"digests/{LABEL}.sha256"), f"{LABEL}.sha256 is missing, so the rows of"),
    ("metrics-a-folder", lambda r: _as_folder(r / "metrics" / f"{LABEL}.jsonl"), ".jsonl is a folder, not a metrics"),
    ("digests-a-folder", lambda r: _as_folder(r / "digests" / f"{LABEL}.sha256"), ".sha256 is a folder, not a digest"),
    ("manifest-a-folder", lambda r: _as_folder(r / "manifest.json"), "manifest.json is a folder, not a run manifest"),
    (
        "manifest-nested",
        lambda r: (r / "manifest.json").write_text("[" * 200_000 + "]" * 200_000),
        "manifest.json is corrupt",
    ),
    ("labels-swapped", _swap_labels, "identity.jsonl:1 is a row of 'telea@gt' in the metrics file of 'identity'"),
    ("extra-label-file", _extra_label, "zz.jsonl holds rows of 'zz', which this run never evaluated"),
    ("unknown-label", _relabelled_label, "zz.jsonl holds rows of 'zz', which this run never evaluated"),
    (
        "metrics-deleted",
        _unlink(f"metrics/{LABEL}.jsonl", f"digests/{LABEL}.sha256"),
        f"{LABEL}.jsonl is missing, but the manifest says {LABEL} was evaluated",
    ),
    # -- the manifest, checked against its schema
    ("manifest-empty", _manifest(lambda m: {}), "manifest.json has no 'run_id' field"),
    ("manifest-list", _manifest(lambda m: []), "manifest.json holds a list, not a run manifest"),
    (
        "manifest-methods-string",
        _manifest(lambda m: m.update(methods="identity,telea")),
        "manifest.json: field 'methods' is a string, not an object",
    ),
    (
        "manifest-method-entry",
        _manifest(lambda m: m["methods"].update({LABEL: "evaluated"})),
        f"manifest.json: methods['{LABEL}'] is a string, not an object",
    ),
    ("manifest-seed-text", _manifest(lambda m: m.update(seed="0")), "field 'seed' is a string, not a whole number"),
    (
        "manifest-and-copy-deleted",
        _unlink("manifest.json", "manifest.copy.json"),
        "is not a run folder (no manifest.json, nor manifest.copy.json)",
    ),
]


@pytest.mark.parametrize(("tamper", "text"), [c[1:] for c in TAMPERED], ids=[c[0] for c in TAMPERED])
def test_a_tampered_run_is_refused_in_one_line_naming_the_file(finished, bench_main, tmp_path, tamper, text):
    before = _tree(finished.out)
    run = tmp_path / "run"
    shutil.copytree(finished.run, run)
    tamper(run)
    damaged = _tree(run)
    got, _, err = bench_main("report", str(run), "-o", str(tmp_path / "r.html"))
    _check_one_line(got, err, 2, text)
    assert "Traceback" not in err
    assert _tree(run) == damaged and not (tmp_path / "r.html").exists()  # nothing written from a damaged run
    assert _tree(finished.out) == before


def test_every_file_of_a_finished_run_is_covered(finished, bench_main, tmp_path):
    """A flipped bit in any prediction or metrics file is refused (each one tried in turn)."""
    files = sorted(p.relative_to(finished.run) for p in (finished.run / "predictions").rglob("*.png"))
    files += sorted(p.relative_to(finished.run) for d in ("metrics", "digests") for p in (finished.run / d).iterdir())
    assert len(files) > 20
    run = tmp_path / "run"
    for name in files:
        shutil.copytree(finished.run, run)
        _flip_bit(run / name)
        got, _, err = bench_main("report", str(run), "-o", str(tmp_path / "r.html"))
        assert got == 2 and "Traceback" not in err and err.startswith("error: "), (name, err)
        shutil.rmtree(run)


def test_report_summary_and_results_come_from_the_same_rows(finished, bench_main, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished.run, run)
    (run / "summary.csv").write_text("label,split,n\nstale,test_paired,1\n")
    got, _, err = bench_main("report", str(run), "-q")
    assert got == 0, err
    assert (run / "summary.csv").read_bytes() == (finished.run / "summary.csv").read_bytes()
    html = (run / "report.html").read_text()
    results = json.loads((run / "results.json").read_text())
    psnr = results["methods"][LABEL]["splits"]["test_paired"]["metrics"]["psnr"]["mean"]
    assert f"{psnr:.2f} ± " in html


def test_a_lost_manifest_is_read_from_its_copy(finished, bench_main, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished.run, run)
    assert (run / "manifest.copy.json").read_bytes() == (run / "manifest.json").read_bytes()
    (run / "manifest.json").unlink()
    got, _, err = bench_main("report", str(run), "-q")
    assert got == 0, err
    assert (run / "results.json").read_bytes() == (finished.run / "results.json").read_bytes()


def test_a_killed_run_whose_manifest_was_deleted_is_found_again_and_resumed(tiny_env, tmp_path):
    """Killed mid-evaluation (SIGKILL: no handler runs), manifest.json deleted, the same command again: the same
    folder resumes, every row written before the kill is kept as it was, and the run completes."""
    limit = 8  # 3 splits x 8 rows, 0.3 s a batch of 2: a kill at 6 rows leaves the rerun rows to add
    args = [sys.executable, "-m", "bench.cli", "run", "--methods", "tinyfill", "--mask-source", "gt"]
    args += ["--limit", str(limit)]
    args += ["--data-limit", "40", "--steps", "2", "--batch-size", "2", "--output", str(tmp_path)]
    args += ["--opt", "tinyfill.restore_sleep=0.3"]
    proc = subprocess.Popen(args, env=tiny_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    rows = tmp_path / "runs"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        found = list(rows.glob("*/metrics/tinyfill@gt.jsonl"))
        if found and len(found[0].read_text().splitlines()) >= 6:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    (folder,) = rows.iterdir()
    kept = (folder / "metrics" / "tinyfill@gt.jsonl").read_text().splitlines()
    assert 6 <= len(kept) < limit * 3
    (folder / "manifest.json").unlink()
    again = subprocess.run(args, env=tiny_env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert list(rows.iterdir()) == [folder]  # found again, not a new folder
    assert json.loads((folder / "manifest.json").read_text())["status"] == "complete"
    now = (folder / "metrics" / "tinyfill@gt.jsonl").read_text().splitlines()
    assert now[: len(kept)] == kept and len(now) > len(kept)  # nothing finished was recomputed


# -- the last bad inputs of the report and the user study, as in tests/test_bad_input.py
BAD = [
    ("report-onto-a-folder", ["report", "{run}", "-o", "{files}"], "files: is a folder, not a file; give a file name"),
    (
        "report-under-a-file",
        ["report", "{run}", "-o", "{files}/note.txt/r.html"],
        "note.txt is a file, where a folder is needed; choose another path",
    ),
    (
        "study-too-many-items",
        ["study", "export", "{run}", "-m", "identity,telea@gt", "--items", "1000", "--split", "test_paired"],
        "--items 1000: only 3 test_paired samples have predictions of all of identity, telea@gt; pass --items 3",
    ),
    (
        "study-one-option",
        ["study", "export", "{run}", "-m", "telea@gt"],
        "a study compares at least two methods, one option leaves nothing to choose",
    ),
    (
        "study-no-such-split",
        ["study", "export", "{run}", "-m", "identity,telea@gt", "--split", "nosuch"],
        "has no such split; its splits are test_clean, test_natural, test_paired",
    ),
]


@pytest.mark.parametrize(("argv", "text"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_report_and_study_input_is_one_line_and_loses_nothing(finished, bench_main, argv, text):
    before, files = _tree(finished.out), _tree(finished.files)
    got, _, err = bench_main(*[a.format(run=finished.run, files=finished.files) for a in argv])
    _check_one_line(got, err, 2, text)
    assert _tree(finished.out) == before and _tree(finished.files) == files


def test_a_study_of_tampered_predictions_is_refused(finished, bench_main, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished.run, run)
    _flip_bit(_first_png(run))
    got, _, err = bench_main("study", "export", str(run), "-m", f"identity,{LABEL}", "--split", "test_paired")
    _check_one_line(got, err, 2, ".png has changed since it was scored")
    assert not (run / "user_study").exists()


# -- a method whose restore() returns None
class NoneFill(Method):
    trainable = False

    def restore(self, images: torch.Tensor, masks: torch.Tensor | None):
        return None


@hookimpl
def register_methods(register):
    register(MethodSpec(name="nonefill", factory="tests.test_tamper:NoneFill", summary="returns None"))


def test_restore_returning_none_is_one_line_naming_the_method(bench_main, tmp_path):
    from bench import plugins

    plugins.reset()
    plugins.get_manager().register(sys.modules[__name__], name="nonefill")
    try:
        got, _, err = bench_main(
            "run", "--methods", "nonefill", "--limit", "2", "--data-limit", "8", "--output", str(tmp_path)
        )
    finally:
        plugins.reset()
    assert got == 1 and "Traceback" not in err and "AttributeError" not in err, err
    assert "NoneFill.restore() returned NoneType; it must return bench.method.Restoration(images, masks)" in err


@pytest.mark.parametrize("first", [True, False], ids=["first-batch", "later-batch"])
def test_a_kill_between_digests_and_rows_is_repaired_by_the_next_run(tmp_path, first):
    """Digests go first: a kill before the rows leaves digests of rows that were never written, which the next
    run's repair drops (the rows are recomputed), so the folder verifies again."""
    from bench.runstore import RunStore, digests_path

    store = RunStore(tmp_path)
    rows = [{"split": "s", "sample": c, "psnr": 1.0} for c in "abcd"]
    if not first:
        store.append_rows("m", rows[:2])
    digests_path(store.metrics_path("m")).parent.mkdir(exist_ok=True)
    with open(digests_path(store.metrics_path("m")), "a") as f:  # what a kill leaves: digests, no rows
        f.write("0" * 64 + " s/c\n")
    if not first:
        with pytest.raises(ValueError, match="lacks 1 row"):
            store.read_rows("m", verify=True)
    assert store.repair_rows("m") == 0  # nothing of the rows was lost
    store.append_rows("m", rows[2:])
    assert [r["sample"] for r in store.read_rows("m", verify=True)] == ["a", "b", "c", "d"][2 * first :]
