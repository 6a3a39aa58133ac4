"""What a number rests on: the checkpoint cache serves only what its key describes, training and evaluation
resume bit-exactly after a kill, non-finite outputs fail loudly, and any mask-predicting method is a mask source.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bench.identity import source_closure

RUN = ["run", "--methods", "tinyfill", "--mask-source", "gt", "--limit", "6", "--data-limit", "40"]


def _manifest(out: Path) -> dict:
    """The manifest of the run that finished last under ``out``."""
    latest = max(out.glob("runs/*/manifest.json"), key=lambda p: p.stat().st_mtime_ns)
    return json.loads(latest.read_text())


def _rows(run: Path) -> dict:
    rows = {}
    for path in sorted((run / "metrics").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            r = json.loads(line)
            rows[(r["label"], r["split"], r["sample"])] = {k: v for k, v in r.items() if k != "seconds"}
    return rows


def _predictions(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted((run / "predictions").rglob("*.png"))}


def test_a_time_budget_never_stores_an_unfinished_model_as_finished(tiny_plugin, bench_main, tmp_path):
    out = str(tmp_path)
    code, _, err = bench_main(*RUN, "--steps", "5", "--time-budget", "1e-9", "--output", out)
    assert code == 0, err
    training = _manifest(tmp_path)["training"]["tinyfill"]
    assert training["finished"] is False and training["steps_trained"] == 0 and training["steps_requested"] == 5
    assert "stopped by --time-budget after 0 of 5 steps" in err
    assert not list(tmp_path.glob("checkpoints/tinyfill/*/model.pt"))
    code, _, err = bench_main(*RUN, "--steps", "5", "--output", out)  # the same key: trains, not loads
    training = _manifest(tmp_path)["training"]["tinyfill"]
    assert code == 0 and training["cached"] is False and training["finished"] and training["steps_trained"] == 5
    assert training["torch_threads"] == torch.get_num_threads()  # CPU float results depend on it: recorded
    code, _, err = bench_main(*RUN, "--steps", "5", "--output", out)
    training = _manifest(tmp_path)["training"]["tinyfill"]
    assert code == 0 and training["cached"] is True and training["steps_trained"] == 5
    assert "loaded cached checkpoint" in err


def test_a_changed_default_or_option_is_a_new_cache_key(tiny_plugin, bench_main, tmp_path, monkeypatch):
    out = str(tmp_path)
    assert bench_main(*RUN, "--output", out)[0] == 0
    first = _manifest(tmp_path)["training"]["tinyfill"]
    monkeypatch.setattr(tiny_plugin.TinyOptions, "profiles", {"quick": {"batch_size": 3}})  # a default edited in code
    assert bench_main(*RUN, "--output", out)[0] == 0
    second = _manifest(tmp_path)["training"]["tinyfill"]
    assert second["cached"] is False and second["cache_key"] != first["cache_key"]
    assert bench_main(*RUN, "--opt", "tinyfill.batch_size=2", "--output", out)[0] == 0  # == the first's resolved
    third = _manifest(tmp_path)["training"]["tinyfill"]
    assert third["cache_key"] != second["cache_key"]
    monkeypatch.undo()
    assert bench_main(*RUN, "--opt", "batch_size=2", "--output", out)[0] == 0  # spelled out, same resolved options
    assert _manifest(tmp_path)["training"]["tinyfill"]["cached"] is True


def test_changed_code_changes_the_code_identity(tmp_path, monkeypatch):
    pkg = tmp_path / "deocc_codeid"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "model.py").write_text("from deocc_codeid import layers\nfrom .loss import l1\n")
    (pkg / "layers.py").write_text("WIDTH = 8\n")
    (pkg / "loss.py").write_text("def l1(): pass\n")
    (pkg / "unused.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = source_closure(("deocc_codeid.model",), ("deocc_codeid",))
    assert set(before) == {"deocc_codeid", "deocc_codeid.model", "deocc_codeid.layers", "deocc_codeid.loss"}
    (pkg / "unused.py").write_text("X = 2\n")  # not reached from the factory: no change
    assert source_closure(("deocc_codeid.model",), ("deocc_codeid",)) == before
    (pkg / "layers.py").write_text("WIDTH = 16\n")  # reached: the identity changes
    after = source_closure(("deocc_codeid.model",), ("deocc_codeid",))
    assert after["deocc_codeid.layers"] != before["deocc_codeid.layers"]


def test_builtin_methods_hash_their_own_sources_and_the_training_harness():
    from bench.identity import HARNESS_TRAINING_MODULES

    files = source_closure(("baselines.pconv", *HARNESS_TRAINING_MODULES), ("baselines", "bench"))
    assert {"baselines.pconv", "bench.nn.vgg", "bench.training", "bench.data.occluders"} <= set(files)
    assert "baselines.gfc" not in files and "bench.report" not in files


def _wait_for(pattern: str, root: Path, proc: subprocess.Popen, timeout: float = 120) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        found = [p for p in root.glob(pattern) if p.stat().st_size > 0]
        if found:
            return found[0]
        time.sleep(0.02)
    raise AssertionError(f"{pattern} never appeared (exit {proc.poll()})")


@pytest.mark.slow
def test_kill_during_training_and_evaluation_resumes_bit_identically(tiny_env, tmp_path):
    """SIGKILL after the first training checkpoint; the rerun resumes training and is killed again mid-evaluation;
    a last rerun finishes: the run's model, PNGs and metrics equal those of a run that was never killed."""
    # restore_sleep slows evaluation enough to kill it mid-way (the run that is never killed has it too: one key)
    args = [*RUN, "--steps", "120", "--batch-size", "1", "--opt", "tinyfill.step_sleep=0.01"]
    args += ["--opt", "tinyfill.restore_sleep=0.05"]
    bench = [sys.executable, "-m", "bench.cli"]
    whole = tmp_path / "whole"
    ok = subprocess.run([*bench, *args, "--output", str(whole)], env=tiny_env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr[-2000:]

    killed = tmp_path / "killed"
    proc = subprocess.Popen([*bench, *args, "--output", str(killed)], env=tiny_env, stderr=subprocess.DEVNULL)
    _wait_for("checkpoints/tinyfill/*/last.pt", killed, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not any(p.stat().st_size for p in killed.glob("runs/*/metrics/*.jsonl"))  # killed before any row
    log = tmp_path / "resumed.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([*bench, *args, "--output", str(killed)], env=tiny_env, stderr=err)
        rows = _wait_for("runs/*/metrics/tinyfill@gt.jsonl", killed, proc, timeout=300)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert "resumed training from step 50" in log.read_text()
    n_before = len(rows.read_text().splitlines())
    (run_killed,) = (killed / "runs").iterdir()
    assert json.loads((run_killed / "manifest.json").read_text())["training"]["tinyfill"]["resumed_from"] == 50
    again = subprocess.run([*bench, *args, "--output", str(killed)], env=tiny_env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    (run_whole,) = (whole / "runs").iterdir()
    assert [p.name for p in (killed / "runs").iterdir()] == [run_killed.name]  # the same folder, resumed
    assert 0 < n_before < len(_rows(run_killed)) == len(_rows(run_whole))
    assert _predictions(run_killed) == _predictions(run_whole)
    assert _rows(run_killed) == _rows(run_whole)
    sha = lambda run: json.loads((run / "manifest.json").read_text())["training"]["tinyfill"]["model"]  # noqa: E731
    assert sha(run_killed) == sha(run_whole)


@pytest.mark.parametrize("poison", ["nan", "inf"])
def test_non_finite_output_fails_the_method_and_scores_nothing(tiny_plugin, bench_main, tmp_path, poison):
    code, _, err = bench_main(*RUN, "--opt", f"tinyfill.poison={poison}", "--output", str(tmp_path))
    assert code == 1
    assert "tinyfill@gt failed: tinyfill@gt: restore() returned NaN or inf in its images" in err
    manifest = _manifest(tmp_path)
    assert manifest["status"] == "failed" and manifest["methods"]["tinyfill@gt"]["status"] == "failed"
    assert not list(tmp_path.glob("runs/*/metrics/tinyfill@gt.jsonl"))


def test_out_of_range_output_is_counted_and_reported(tiny_plugin, bench_main, tmp_path):
    code, _, err = bench_main(*RUN, "--opt", "tinyfill.poison=big", "--output", str(tmp_path))
    assert code == 0, err
    (run,) = (tmp_path / "runs").iterdir()
    shares = {label: [] for label in ("tinyfill@gt", "identity")}
    for (label, _, _), row in _rows(run).items():
        shares[label].append(row["out_of_range"])
    assert all(0 < s <= 1 for s in shares["tinyfill@gt"]) and not any(shares["identity"])
    assert bench_main("report", str(run))[0] == 0
    assert "Outputs outside [0, 1]" in (run / "report.html").read_text()


def test_any_mask_predicting_method_is_a_mask_source(tiny_plugin, bench_main, tmp_path):
    code, _, err = bench_main(
        "run",
        "--methods",
        "tinyfill",
        "--mask-source",
        "gt,tinymask",
        "--limit",
        "4",
        "--data-limit",
        "40",
        "--output",
        str(tmp_path),
    )
    assert code == 0, err
    manifest = _manifest(tmp_path)
    # tinymask is not named in --methods: it is added, and evaluated first (tinyfill@tinymask reads its masks);
    # identity, the reference, is scored in every run
    assert {k: v["status"] for k, v in manifest["methods"].items()} == dict.fromkeys(
        ["tinymask", "tinyfill@gt", "tinyfill@tinymask", "identity"], "evaluated"
    )
    (run,) = (tmp_path / "runs").iterdir()
    rows = _rows(run)
    assert {label for label, _, _ in rows} == {"tinymask", "tinyfill@gt", "tinyfill@tinymask", "identity"}
    assert any(r["mask_iou"] >= 0 for (label, _, _), r in rows.items() if label == "tinymask" and "mask_iou" in r)


def test_the_default_mask_source_path_feeds_oagan_masks(bench_main, tmp_path):
    """`--mask-source oagan` (the default, Fig. 10): OA-GAN is trained first and telea is fed its binarised masks;
    the second run serves OA-GAN from the cache."""
    args = [
        "run",
        "--methods",
        "telea",
        "--steps",
        "2",
        "--limit",
        "3",
        "--data-limit",
        "40",
        "--output",
        str(tmp_path),
    ]
    args += ["--opt", "oagan.width=8", "--opt", "oagan.d_width=8", "--opt", "oagan.batch_size=2"]
    code, _, err = bench_main(*args)
    assert code == 0, err
    manifest = _manifest(tmp_path)
    assert set(manifest["methods"]) == {"oagan", "telea@oagan", "identity"}
    assert manifest["training"]["oagan"]["cached"] is False and manifest["training"]["oagan"]["steps_trained"] == 2
    (run,) = (tmp_path / "runs").iterdir()
    assert len(list((run / "predictions" / "oagan" / "test_paired" / "masks").glob("*.png"))) == 3
    code, _, err = bench_main(*args, "--seed", "0")  # a new run (the first is complete), the same model key
    assert code == 0, err
    assert _manifest(tmp_path)["training"]["oagan"]["cached"] is True


def test_a_checkpoint_copied_in_from_another_key_is_refused(tiny_plugin, bench_main, tmp_path):
    out = str(tmp_path)
    assert bench_main(*RUN, "--opt", "tinyfill.lr=0.01", "--output", out)[0] == 0
    assert bench_main(*RUN, "--output", out)[0] == 0
    a, b = (tmp_path / "checkpoints" / "tinyfill").iterdir()
    (b / "model.pt").write_bytes((a / "model.pt").read_bytes())  # copied over by hand
    code, _, err = bench_main(*RUN, "--output", out)
    code_a, _, err_a = bench_main(*RUN, "--opt", "tinyfill.lr=0.01", "--output", out)
    said = " ".join((err + err_a).split())  # the console wraps long lines
    assert {code, code_a} == {0, 2} and f"checkpoint {b / 'model.pt'} changed since it was stored" in said
    (b / "key.json").write_text((a / "key.json").read_text())  # its recorded sha256 copied in too
    code, _, err = bench_main(*RUN, "--output", out)
    code_a, _, err_a = bench_main(*RUN, "--opt", "tinyfill.lr=0.01", "--output", out)
    said = " ".join((err + err_a).split())
    assert {code, code_a} == {0, 2} and "was not trained under its folder's cache key; delete" in said


def _weights_at(path: Path) -> int:
    """Where the bytes of the network's weight tensor start in a checkpoint file."""
    weight = torch.load(path, weights_only=True)["model"]["net"]["weight"]
    at = path.read_bytes().find(bytes(weight.untyped_storage()))  # as stored: channels-last, not C order
    assert at > 0
    return at


@pytest.fixture(scope="module")
def three_steps(tmp_path_factory) -> Path:
    """The output root of one finished ``RUN --steps 3`` through the real entry point, the tiny plugin
    registered in this process (as ``tiny_plugin`` does): tests that damage its cache or checkpoint folder work
    on a copy, so the model is trained once, not once a case."""
    from bench import plugins
    from bench.cli import main
    from tests import tiny_plugin

    out = tmp_path_factory.mktemp("three-steps")
    plugins.reset()
    plugins.get_manager().register(tiny_plugin, name="tiny")
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(sys, "argv", ["bench", *RUN, "--steps", "3", "--output", str(out)])
            try:
                main()
            except SystemExit as exc:
                assert exc.code in (0, None), exc.code
    finally:
        plugins.reset()
    return out


def _flip_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[_weights_at(path) + 5] ^= 0x01
    path.write_bytes(bytes(data))


def _overwrite_64_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    at = _weights_at(path)
    data[at : at + 64] = bytes(range(64))
    path.write_bytes(bytes(data))


def _negate_weights(path: Path) -> None:
    """A well-formed checkpoint whose weights changed sign but whose stored digest was kept."""
    state = torch.load(path, weights_only=True)
    for value in state["model"]["net"].values():
        value.neg_()
    torch.save(state, path)


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("damage", [_flip_bit, _overwrite_64_bytes, _negate_weights])
@pytest.mark.parametrize("recorded", [True, False], ids=["key-json-sha", "digest-only"])
def test_a_damaged_cached_model_is_refused_and_the_finished_run_is_unchanged(
    three_steps, tiny_plugin, bench_main, tmp_path, damage, recorded
):
    out = str(tmp_path)
    shutil.copytree(three_steps, tmp_path, dirs_exist_ok=True)
    (finished,) = (tmp_path / "runs").iterdir()
    before = {p: p.read_bytes() for p in finished.rglob("*") if p.is_file()}
    (model,) = tmp_path.glob("checkpoints/tinyfill/*/model.pt")
    if not recorded:  # the file's own digest alone must catch it
        key = json.loads((model.parent / "key.json").read_text())
        del key["model_sha256"]
        (model.parent / "key.json").write_text(json.dumps(key))
    damage(model)
    code, _, err = bench_main(*RUN, "--steps", "3", "--output", out)
    line = _one_error_line(err)
    assert code == 2 and str(model) in line and f"delete {model.parent} to retrain" in line
    assert "loaded cached checkpoint" not in err
    assert {p: p.read_bytes() for p in finished.rglob("*") if p.is_file()} == before


def test_a_damaged_resume_checkpoint_is_refused(tiny_plugin, bench_main, tmp_path):
    out = str(tmp_path)
    args = [*RUN, "--steps", "100000", "--time-budget", "0.5", "--output", out]
    assert bench_main(*args)[0] == 0
    (last,) = tmp_path.glob("checkpoints/tinyfill/*/last.pt")
    _negate_weights(last)
    code, _, err = bench_main(*args)
    line = _one_error_line(err)
    assert code == 2 and f"checkpoint {last} is damaged" in line and "to retrain" in line


def test_stray_temporary_files_of_a_killed_write_are_removed(three_steps, tiny_plugin, bench_main, tmp_path):
    out = str(tmp_path)
    shutil.copytree(three_steps, tmp_path, dirs_exist_ok=True)
    (folder,) = tmp_path.glob("checkpoints/tinyfill/*")
    stray = folder / ".model.pt.k1ll3d.tmp"
    stray.write_bytes(b"half a checkpoint")
    code, _, err = bench_main(*RUN, "--steps", "3", "--output", out)
    assert code == 0, err
    assert not stray.exists() and (folder / "model.pt").exists()
