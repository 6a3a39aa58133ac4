"""End to end: `bench run` in a real process on the embedded set, resume after a kill, the report in Chromium."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.test_plugins import THIRD_PARTY
from tests.util import render_in_chromium

BENCH = [sys.executable, "-m", "bench.cli"]
LIMIT = 24


def _env(**extra):
    env = dict(os.environ)
    env.update(extra)
    return env


def _run(args, env=None, timeout=600):
    return subprocess.run(BENCH + args, capture_output=True, text=True, env=env or _env(), timeout=timeout)


@pytest.fixture(scope="module")
def classical_run(tmp_path_factory):
    """identity + telea (oracle masks) + a third-party plugin from a dist-info on the path, on 40 images a split
    with a one-step recognizer: the tests read the folder, the protocol's shape and telea's margin, none of
    which needs the full set or a trained recognizer."""
    root = tmp_path_factory.mktemp("run")
    site = root / "site"
    site.mkdir()
    (site / "deocc_meanfill.py").write_text(THIRD_PARTY)
    info = site / "deocc_meanfill-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: deocc_meanfill\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text("[deocc_bench]\nmeanfill = deocc_meanfill\n")
    env = _env(PYTHONPATH=f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    out = root / "results"
    result = _run(
        [
            "run",
            "--methods",
            "identity,telea,meanfill",
            "--mask-source",
            "gt",
            "--limit",
            str(LIMIT),
            "--data-limit",
            "40",
            "--output",
            str(out),
            "--identification",
            "--id-steps",
            "1",
        ],
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (out / "runs").iterdir()
    return run_dir


def test_run_writes_the_run_folder(classical_run):
    manifest = json.loads((classical_run / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["data"]["fingerprint"] and manifest["versions"]["torch"]
    assert set(manifest["methods"]) == {"identity", "telea@gt", "meanfill@gt"}
    preds = list((classical_run / "predictions" / "telea@gt" / "test_paired").glob("*.png"))
    assert len(preds) == LIMIT
    summary = pd.read_csv(classical_run / "summary.csv")
    assert set(summary["label"]) == {"identity", "telea@gt", "meanfill@gt"}


def test_identification_protocol_ranks(classical_run):
    results = json.loads((classical_run / "identification.json").read_text())["results"]
    rows = [r for r in results if r["variant"] == "a"]
    assert {"clean", "occluded input", "identity", "telea@gt", "meanfill@gt"} <= {r["probes"] for r in rows}
    for row in rows:
        ranks = [row[f"rank{k}"] for k in range(1, 6)]
        assert row["n"] > 0 and ranks == sorted(ranks) and 0 <= ranks[0] <= ranks[-1] <= 1


def test_telea_beats_identity_and_meanfill_runs(classical_run):
    summary = pd.read_csv(classical_run / "summary.csv").set_index(["label", "split"])
    ident, telea = summary.loc[("identity", "test_paired")], summary.loc[("telea@gt", "test_paired")]
    assert telea["psnr_mean"] > ident["psnr_mean"] + 1.0
    assert telea["ssim_mean"] > ident["ssim_mean"]
    # Clean faces get an empty oracle mask, so mask-requiring methods must leave them untouched.
    assert summary.loc[("telea@gt", "test_clean"), "psnr_mean"] > 60 or pd.isna(
        summary.loc[("telea@gt", "test_clean"), "psnr_mean"]
    )
    assert summary.loc[("meanfill@gt", "test_paired"), "n"] == LIMIT


def test_killed_run_resumes_without_recomputing(tmp_path):
    out = tmp_path / "results"
    args = [
        "run",
        "--methods",
        "identity,telea",
        "--mask-source",
        "gt",
        "--limit",
        "40",
        "--data-limit",
        "40",
        "--batch-size",
        "1",
        "--output",
        str(out),
    ]
    proc = subprocess.Popen(BENCH + args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
    deadline = time.time() + 300
    metrics = None
    while time.time() < deadline and proc.poll() is None:
        found = list(out.glob("runs/*/metrics/telea@gt.jsonl"))
        if found and found[0].stat().st_size > 0:
            metrics = found[0]
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert metrics is not None, "the run ended before it could be killed"
    run_dir = metrics.parents[1]
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "running"
    before = {line for line in metrics.read_text().splitlines() if line.endswith("}")}
    result = _run(args)
    assert result.returncode == 0, result.stderr[-2000:]
    assert [p.name for p in (out / "runs").iterdir()] == [run_dir.name]  # the same run folder, resumed
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip().endswith("}")]
    keys = [(r["split"], r["sample"]) for r in rows]
    assert len(keys) == len(set(keys)) == 3 * 40  # every sample exactly once across the kill
    assert before <= set(metrics.read_text().splitlines())  # rows from before the kill were kept


def test_oagan_mask_source_without_oagan_is_a_clear_error(tmp_path):
    result = _run(["run", "--methods", "telea", "--output", str(tmp_path)], env=_env(DEOCC_DISABLE_PLUGINS="oagan"))
    assert result.returncode == 2
    assert result.stderr.startswith("error: --mask-source 'oagan': unknown method 'oagan'")
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_method_is_a_clear_error(tmp_path):
    result = _run(["run", "--methods", "teleaa", "--output", str(tmp_path)])
    assert result.returncode == 2 and "did you mean telea" in result.stderr


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian chromium is not installed")
def test_report_renders_in_headless_chromium(classical_run, tmp_path):
    result = _run(["report", str(classical_run)])
    assert result.returncode == 0, result.stderr[-2000:]
    html = Path(result.stdout.strip())
    assert html == classical_run / "report.html"
    dom, pixels = render_in_chromium(html, tmp_path, "1200,2000")
    assert "Table III" in dom and "telea@gt" in dom
    assert dom.count("<img") >= 3 * (1 + 3 + 1)  # input, three methods, ground truth per row
    assert (pixels.sum(axis=2) < 600).mean() > 0.01  # text, tables and images, not a blank page


def test_user_study_export_and_tally(classical_run, tmp_path):
    result = _run(
        [
            "study",
            "export",
            str(classical_run),
            "--methods",
            "identity,telea@gt,meanfill@gt",
            "--items",
            "5",
            "--participants",
            "2",
        ]
    )
    assert result.returncode == 0, result.stderr[-2000:]
    folder = classical_run / "user_study"
    key = json.loads((folder / "key.json").read_text())
    page = (folder / "participant_0.html").read_text()
    assert "telea" not in page and page.count("data:image/png") == 5 * 4  # blinded: input + 3 outputs
    # Participant 0 always picks telea, participant 1 always identity.
    files = []
    for p, wanted in (("0", "telea@gt"), ("1", "identity")):
        choices = {
            str(i): next(k for k, v in item["letters"].items() if v == wanted)
            for i, item in enumerate(key["participants"][p])
        }
        path = tmp_path / f"a{p}.json"
        path.write_text(json.dumps({"study": key["study"], "participant": int(p), "choices": choices}))
        files.append(str(path))
    result = _run(["study", "tally", str(classical_run), *files])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "telea@gt: 50.0%" in result.stdout and "meanfill@gt: 0.0%" in result.stdout
    rows = json.loads((folder / "results.json").read_text())
    assert all(r["ci95_low"] <= r["percent"] <= r["ci95_high"] for r in rows)


def test_torchrun_shards_evaluation_across_two_ranks(tmp_path):
    """Two gloo ranks on CPU: each sample is scored exactly once, by the rank its index maps to."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "bench.cli",
        "run",
        "--methods",
        "identity,telea",
        "--mask-source",
        "gt",
        "--limit",
        "9",
        "--data-limit",
        "20",
        "--device",
        "cpu",
        "--output",
        str(tmp_path),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=_env(OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["world_size"] == 2
    files = sorted(p.name for p in (run_dir / "metrics").iterdir())
    assert files == ["identity.jsonl", "identity.rank1.jsonl", "telea@gt.jsonl", "telea@gt.rank1.jsonl"]
    rows = [
        json.loads(line) for f in (run_dir / "metrics").glob("telea@gt*.jsonl") for line in f.read_text().splitlines()
    ]
    keys = [(r["split"], r["sample"]) for r in rows]
    assert len(keys) == len(set(keys)) == 27
    summary = pd.read_csv(run_dir / "summary.csv")
    assert set(summary[summary["label"] == "telea@gt"]["n"]) == {9}
