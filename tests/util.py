"""Small helpers several test modules share."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def render_in_chromium(page: Path, workdir: Path, window: str) -> tuple[str, np.ndarray]:
    """``page`` in headless Debian Chromium (offline, a fresh profile under ``workdir``): the DOM after its
    scripts ran, and a screenshot of a ``window`` ("W,H") as RGB pixels (int)."""
    from PIL import Image

    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={workdir / 'chromium-profile'}"]
    dom = subprocess.run(["chromium", *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    shot = workdir / "screenshot.png"
    args = ["chromium", *flags, f"--screenshot={shot}", f"--window-size={window}", page.as_uri()]
    subprocess.run(args, capture_output=True, timeout=120)
    return dom.stdout, np.asarray(Image.open(shot).convert("RGB")).astype(int)


def same_state(a, b) -> bool:
    """Nested state dicts equal to the bit (tensors compared with torch.equal)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_state(x, y) for x, y in zip(a, b, strict=True))
    return torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b


def check_bit_exact_resume(cls, options: dict, total: int, kill_at: int, workdir, make_context, train_data):
    """Train ``cls`` for ``total`` steps in one go, and again killed after ``kill_at`` steps and resumed in a
    fresh "process" (reseeded, rebuilt, a fresh data sampler): both end with bit-identical state. Returns the
    resumed method for further checks."""
    from bench.training import Budget, fit, seed_everything

    def train(budgets: tuple[int, ...], folder):
        done = 0
        for steps in budgets:  # each call is a fresh process: seed, build, fit (resuming from last.pt)
            seed_everything(0)
            method = cls(make_context(cls, 32, total_steps=total, **options))
            result = fit(method, train_data(), Budget(steps), folder, checkpoint_every=100)
            assert result.resumed_from == done  # the second call really resumed
            done = steps
        return method

    whole = train((total,), workdir / "once")
    resumed = train((kill_at, total), workdir / "resumed")
    assert same_state(whole.state_dict(), resumed.state_dict())
    return resumed


def finished_run(out: Path, args: list[str]) -> Path:
    """``bench run ARGS --output OUT`` in a subprocess, which must succeed: its one run folder."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.cli", *args, "--output", str(out)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (run,) = (out / "runs").iterdir()
    return run


def tiny_plugin_env(root: Path, **extra: str) -> dict[str, str]:
    """Environment for a ``bench`` subprocess that finds ``tests.tiny_plugin`` through a real entry point (a
    dist-info written under ``root``); module-scoped fixtures call it directly."""
    site = root / "site"
    info = site / "deocc_tiny-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: deocc_tiny\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[deocc_bench]\ntiny = tests.tiny_plugin\n")
    env = dict(os.environ, OMP_NUM_THREADS="1", **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO), env.get("PYTHONPATH", "")])
    return env
