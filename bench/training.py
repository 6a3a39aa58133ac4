"""Training utilities every method shares: seeding, device, budget, checkpoints, resume, NaN guard.

The harness owns the loop (:func:`fit`); a method owns one step. A training checkpoint
(``last.pt``) is written atomically every ``checkpoint_every`` steps and holds the networks *and*
optimisers, so a killed run resumes where it stopped; a non-finite loss stops training with a
clear error and leaves the last good checkpoint untouched.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from bench.data.types import TrainData
    from bench.method import Method


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite."""


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available; under torchrun, the local rank's GPU."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for but no CUDA device is visible; use --device cpu")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if name == "cpu":
        return torch.device("cpu")
    raise ValueError(f"unknown device {name!r}; use auto, cpu or cuda")


@dataclass(frozen=True)
class Budget:
    steps: int
    seconds: float | None = None  # wall-clock cap; training stops early (and says so) when reached


def config_hash(config: Mapping[str, Any]) -> str:
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(path: Path, state: Mapping[str, Any]) -> None:
    """Atomic ``torch.save``: a kill mid-write never leaves a truncated checkpoint behind."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path) -> dict[str, Any]:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or foreign file
        raise RuntimeError(
            f"cannot read checkpoint {path}: corrupt, truncated or not weights-only ({type(exc).__name__}); "
            "delete it to retrain"
        ) from exc


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class FitResult:
    steps: int  # steps completed in total
    seconds: float  # wall time of this call
    resumed_from: int  # 0 when training started fresh
    stopped_by_time: bool
    last_losses: dict[str, float]


def fit(
    method: Method,
    data: TrainData,
    budget: Budget,
    workdir: Path,
    *,
    checkpoint_every: int = 50,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> FitResult:
    """Train ``method`` for ``budget`` steps, resuming from ``workdir/last.pt`` if present."""
    name = type(method).__name__
    last = workdir / "last.pt"
    method.setup_training(data)
    start = 0
    if last.exists():
        state = load_checkpoint(last)
        method.load_state_dict(state["method"])
        start = int(state["step"])
        data.rng = np.random.default_rng([data.seed, start])
    t0 = time.perf_counter()
    losses: dict[str, float] = {}
    step = start
    stopped_by_time = False
    while step < budget.steps:
        if budget.seconds is not None and time.perf_counter() - t0 > budget.seconds:
            stopped_by_time = True
            break
        losses = method.train_step(step)
        bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
        if bad:
            key, value = next(iter(bad.items()))
            kept = f"last good checkpoint kept at {last}" if last.exists() else "no checkpoint was written yet"
            raise TrainingDiverged(
                f"{name}: loss '{key}' became {value} at step {step}; {kept}. "
                "Lower the learning rate (--opt lr=...) or the batch size and run again to resume."
            )
        step += 1
        if on_step is not None:
            on_step(step, losses)
        if step % checkpoint_every == 0 or step == budget.steps:
            save_checkpoint(last, {"step": step, "method": method.state_dict()})
    if stopped_by_time and step > start:
        save_checkpoint(last, {"step": step, "method": method.state_dict()})
    return FitResult(step, time.perf_counter() - t0, start, stopped_by_time, losses)
