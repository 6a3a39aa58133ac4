"""The plugin guides, exactly as written: the full guide in docs/plugins.md and the README's quick start. Their
files are cut from the pages' own text, installed with pip as a real distribution, found through the entry point
and run end to end by ``bench`` in a subprocess, so neither page can show code that does not run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"```(\w+)\n(.*?)```", re.S)
# Each guide: the page and the heading of the section that holds the whole example.
GUIDES = {
    "guide": (REPO / "docs" / "plugins.md", "## Writing a method plugin"),
    "quickstart": (REPO / "README.md", "## Plugin quick start"),
}


def guide(name: str) -> str:
    path, heading = GUIDES[name]
    text = path.read_text()
    start = text.index(heading)
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def guide_files(name: str) -> dict[str, str]:
    """Each fenced block whose first line is a comment naming a path: {path: text}."""
    out = {}
    for _, body in FENCE.findall(guide(name)):
        first, _, rest = body.partition("\n")
        if first.startswith("# ") and "/" in first:
            out[first[2:].strip()] = body
    return out


def guide_commands(name: str) -> list[list[str]]:
    """The shell block's commands, split into words."""
    blocks = [body for lang, body in FENCE.findall(guide(name)) if lang == "bash"]
    assert len(blocks) == 1, f"the {name} has one shell block: install, list, run"
    return [line.split() for line in blocks[0].splitlines() if line.strip()]


def install_and_run(name: str, tmp_path: Path, steps: int | None) -> tuple[str, Path]:
    """Write the guide's files, pip-install them, run its list and (made small) run commands; the listing's
    stdout and the run folder."""
    for path, text in guide_files(name).items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    install, listing, run = guide_commands(name)
    # The guide's install, into a folder of its own so the venv stays as it was (no network: the build backend
    # is the venv's setuptools, and the harness it depends on is this checkout).
    site = tmp_path / "site"
    target = install[install.index("-e") + 1]
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site)]
    done = subprocess.run([*pip, str(tmp_path / target)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    distribution = target.removeprefix("./").replace("-", "_")
    assert list(site.glob(f"{distribution}-0.1.0.dist-info/entry_points.txt"))

    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="100")
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO), env.get("PYTHONPATH", "")])
    bench = [sys.executable, "-m", "bench.cli"]

    done = subprocess.run([*bench, *listing[1:]], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    listed = done.stdout

    # The guide's run, made small: the test's budget, not the guide's, is what changes.
    out = tmp_path / "results"
    small = ["--limit", "8", "--data-limit", "100", "--output", str(out), "--json"]
    small += ["--steps", str(steps)] if steps is not None else []
    done = subprocess.run(
        [*bench, *run[1:], *small], capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "complete"
    return listed, next(out.glob("runs/*"))


def scored_rows(run: Path, label: str) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics" / f"{label}.jsonl").open()]


def test_the_guide_names_its_three_files_and_three_commands():
    assert sorted(guide_files("guide")) == [
        "my-deocc/my_deocc/methods.py",
        "my-deocc/my_deocc/plugin.py",
        "my-deocc/pyproject.toml",
    ]
    commands = guide_commands("guide")
    assert [c[:2] for c in commands] == [
        [".venv/bin/pip", "install"],
        [".venv/bin/bench", "list"],
        [".venv/bin/bench", "run"],
    ]


def test_the_quick_start_names_its_three_files_and_three_commands():
    assert sorted(guide_files("quickstart")) == [
        "grey-fill/grey_fill/method.py",
        "grey-fill/grey_fill/plugin.py",
        "grey-fill/pyproject.toml",
    ]
    commands = guide_commands("quickstart")
    assert [c[:2] for c in commands] == [
        [".venv/bin/pip", "install"],
        [".venv/bin/bench", "list"],
        [".venv/bin/bench", "run"],
    ]
    assert "docs/plugins.md" in guide("quickstart"), "the quick start links to the full guide"


@pytest.mark.slow
def test_the_guide_installs_and_runs_as_written(tmp_path):
    listed, run = install_and_run("guide", tmp_path, steps=4)
    for name in ("width", "lr", "beta1", "batch_size"):
        assert name in listed
    manifest = json.loads((run / "manifest.json").read_text())
    assert {manifest["methods"][label]["status"] for label in ("convfill@gt", "meanfill@gt")} == {"evaluated"}
    trained = manifest["training"]
    assert trained["convfill"]["steps_trained"] == 4 and trained["convfill"]["code"]["distribution"] == "my-deocc"
    assert trained["meanfill"]["trained"] == "not trainable"
    for label in ("convfill@gt", "meanfill@gt"):
        rows = scored_rows(run, label)
        assert rows and all(row["psnr"] > 5 for row in rows if row["split"] == "test_paired")


@pytest.mark.slow
def test_the_quick_start_installs_and_runs_as_written(tmp_path):
    listed, run = install_and_run("quickstart", tmp_path, steps=None)
    assert "greyfill" in listed and "grey-fill" in listed, listed
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["methods"]["greyfill@gt"]["status"] == "evaluated"
    assert manifest["training"]["greyfill"]["trained"] == "not trainable"
    rows = [row for row in scored_rows(run, "greyfill@gt") if row["split"] == "test_paired"]
    assert len(rows) == 8 and all(row["psnr"] > 5 for row in rows)
    # Grey fills only the hole: the pixels outside it are the input's, so the occluded region scores far below
    # the whole image.
    assert all(row["region_psnr"] < row["psnr"] for row in rows)


def test_an_unimplemented_hook_names_what_to_set():
    from bench.method import Method, MethodContext

    class Forgot(Method):
        pass

    method = Forgot(MethodContext(image_size=64, profile="quick", device=None, seed=0))
    with pytest.raises(
        NotImplementedError, match=r"Forgot\.setup_training is not implemented: set `trainable = False`"
    ):
        method.setup_training(None)
    with pytest.raises(NotImplementedError, match=r"Forgot\.train_step is not implemented: set `trainable = False`"):
        method.train_step(0)
    with pytest.raises(
        NotImplementedError, match=r"Forgot\.restore is not implemented: define restore\(images, masks\)"
    ):
        method.restore(None, None)
