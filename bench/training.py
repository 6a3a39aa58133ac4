"""Training utilities every method shares: seeding, device, budget, checkpoints, resume, NaN guard.

The harness owns the loop (:func:`fit`); a method owns one step. A training checkpoint
(``last.pt``) is written atomically every ``checkpoint_every`` steps and holds the networks *and*
optimisers, so a killed run resumes where it stopped; a non-finite loss stops training with a
clear error and leaves the last good checkpoint untouched.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.errors import CheckpointError, TrainingDiverged
from bench.io import atomic_write_bytes

if TYPE_CHECKING:
    import torch

    from bench.acceleration import Acceleration
    from bench.data.types import TrainData
    from bench.distributed import Dist
    from bench.method import Method


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during :func:`fit`. Still a KeyboardInterrupt (the run ends as interrupted), and it
    says what a user restarting wants to know: the step it stopped at and the step the next run resumes
    from, that of the last checkpoint written (0 when none was)."""

    def __init__(self, step: int, checkpoint: int) -> None:
        self.step, self.checkpoint = step, checkpoint
        resume = (
            f"resumes from step {checkpoint} (last checkpoint)"
            if checkpoint
            else "starts again from step 0 (no checkpoint was written yet)"
        )
        super().__init__(f"stopped at step {step}; the same command {resume}")


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


DIGEST = "digest"  # the entry of every checkpoint that holds the state_digest of all its other entries


def save_checkpoint(path: Path, state: Mapping[str, Any]) -> None:
    """Atomic ``torch.save``: a kill mid-write never leaves a truncated checkpoint behind. The file is
    self-verifying: it holds the :func:`state_digest` of everything else in it, which :func:`load_checkpoint`
    recomputes, so a flipped bit is refused instead of served."""
    import io

    import torch

    body = dict(state)
    body.pop(DIGEST, None)
    buffer = io.BytesIO()
    torch.save({**body, DIGEST: state_digest(body)}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path, sha256: str | None = None) -> dict[str, Any]:
    """The state :func:`save_checkpoint` wrote at ``path``, verified: a file that cannot be read, holds no digest
    (an older version's) or whose contents disagree with its digest, or whose sha256 is not the ``sha256``
    recorded when it was stored, is refused with one line naming the file and the fix."""
    import torch

    fix = f"delete {path.parent} to retrain"
    if sha256 is not None:
        from bench.io import file_sha256

        if file_sha256(path) != sha256:
            raise CheckpointError(f"checkpoint {path} changed since it was stored (its sha256 differs); {fix}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or foreign file
        raise CheckpointError(
            f"cannot read checkpoint {path}: corrupt, truncated or not weights-only ({type(exc).__name__}); {fix}"
        ) from exc
    if not isinstance(state, dict) or DIGEST not in state:
        raise CheckpointError(f"checkpoint {path} holds no digest (written by an older version); {fix}")
    digest = state.pop(DIGEST)
    if digest != state_digest(state):
        raise CheckpointError(f"checkpoint {path} is damaged: its contents disagree with its digest; {fix}")
    return state


def state_digest(state: Any) -> str:
    """sha256 of a (nested) state dict's keys, tensor and array bytes and other values: the model's identity,
    equal for bit-identical weights (a checkpoint file's own hash is not: torch.save writes a fresh serialization
    id each time). Arrays are hashed by their bytes, never their ``repr`` (which elides large ones)."""
    import hashlib

    import torch

    h = hashlib.sha256()

    def walk(value: Any) -> None:
        if isinstance(value, Mapping):
            for key in sorted(value, key=str):
                h.update(str(key).encode())
                walk(value[key])
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)
        elif isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(value, np.ndarray):
            h.update(f"{value.dtype.str}{value.shape}".encode())
            h.update(np.ascontiguousarray(value).tobytes())
        else:
            h.update(repr(value).encode())

    walk(state)
    return h.hexdigest()


def random_state(data: TrainData) -> dict[str, Any]:
    """Every random generator a training step may read: torch (CPU and CUDA), numpy's and Python's global
    ones, and the training data's sampler. Non-tensor states travel as one JSON string, which
    ``torch.load(weights_only=True)`` reads back without unpickling arbitrary objects."""
    import torch

    kind, key, pos, has_gauss, gauss = np.random.get_state()
    version, internal, py_gauss = random.getstate()
    plain = {
        "numpy": [kind, key.tolist(), pos, has_gauss, gauss],
        "python": [version, list(internal), py_gauss],
        "data": data.rng.bit_generator.state,
    }
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "plain": json.dumps(plain)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_random_state(state: Mapping[str, Any], data: TrainData) -> None:
    """Put back what :func:`random_state` saved."""
    import torch

    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    plain = json.loads(state["plain"])
    kind, key, pos, has_gauss, gauss = plain["numpy"]
    np.random.set_state((kind, np.asarray(key, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, py_gauss = plain["python"]
    random.setstate((version, tuple(internal), py_gauss))
    data.rng.bit_generator.state = plain["data"]


LOSSES = "losses.jsonl"  # one line per training step: {"step": n, "<loss>": value, ...}


class LossHistory:
    """The losses the loop sees, one JSON line per step, written at each checkpoint. A resumed run first cuts
    the file back to the checkpoint's step, so the curve has each step once."""

    def __init__(self, path: Path, start: int, write: bool = True) -> None:
        self.path = path
        self.write = write
        self.pending: list[str] = []
        if write and path.exists():
            kept = [
                line for line in path.read_text().splitlines() if _step_of(line) is not None and _step_of(line) <= start
            ]
            atomic_write_bytes(path, "".join(line + "\n" for line in kept).encode())

    def append(self, step: int, losses: Mapping[str, float]) -> None:
        self.pending.append(json.dumps({"step": step, **{k: float(v) for k, v in losses.items()}}))

    def flush(self) -> None:
        if self.pending and self.write:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as f:
                f.write("".join(line + "\n" for line in self.pending))
            self.pending = []


def _step_of(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None


@dataclass
class FitResult:
    steps: int  # steps completed in total
    requested: int  # steps asked for
    seconds: float  # wall time of this call
    resumed_from: int  # 0 when training started fresh
    stopped_by_time: bool
    last_losses: dict[str, float]

    @property
    def finished(self) -> bool:
        return self.steps >= self.requested


def fit(
    method: Method,
    data: TrainData,
    budget: Budget,
    workdir: Path,
    *,
    checkpoint_every: int = 50,
    on_start: Callable[[int], None] | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    dist: Dist | None = None,
    stamp: str = "",
    accel: Acceleration | None = None,
) -> FitResult:
    """Train ``method`` for ``budget`` steps, resuming from ``workdir/last.pt`` if present. (One function on
    purpose: resume, the NaN guard, checkpoints and the interrupt read in the order they happen.)

    ``last.pt`` holds the step, the method's state (networks, optimisers, whatever else a step reads) and
    every random state, so a run killed after a checkpoint and started again ends bit-identical to one
    that was never killed (on CPU; GPU kernels may not be deterministic). The caller stores the final
    model only when :attr:`FitResult.finished`. ``stamp`` (the cache key's hash) is written into ``last.pt`` and
    must match on resume: a checkpoint copied in from another configuration is refused, not continued.
    ``on_start(step)`` is called once the setup is done, with the step the loop starts (or resumes) at, so a
    progress report times the steps alone; ``on_step(step, losses)`` after each step. Ctrl-C or SIGTERM in the
    loop raises :class:`TrainingInterrupted` (the step reached, the last checkpoint's).
    ``accel`` (bench.acceleration): each step under its autocast, and its memory format applied to the method's
    networks once ``setup_training`` has built them all (loss networks included).

    Under ``torchrun`` (``dist.world > 1``) every rank runs this loop on its share of each batch; the
    optimisers the method names in ``parts()`` average gradients over the ranks, the logged losses are the
    ranks' mean, all ranks stop at the same step, and only rank 0 writes.
    """
    from bench.acceleration import Acceleration, autocast
    from bench.distributed import Dist, average_gradients

    dist = dist or Dist()
    accel = accel or Acceleration()
    name = type(method).__name__
    last = workdir / "last.pt"
    method.setup_training(data)
    accel.prepare(method)
    start = 0
    if last.exists():
        state = load_checkpoint(last)
        if "random" not in state:
            raise CheckpointError(f"{last} predates bit-exact resume (no random state); delete it to retrain")
        if state.get("key", "") != stamp:
            raise CheckpointError(f"{last} was written under another cache key than its folder's; delete it to retrain")
        method.load_state_dict(state["model"])
        set_random_state(state["random"], data)
        start = int(state["step"])
    history = LossHistory(workdir / LOSSES, start, write=dist.main)
    if dist.world > 1:
        import torch

        optimizers = [p for p in method.parts().values() if isinstance(p, torch.optim.Optimizer)]
        average_gradients(optimizers, dist.world)

    saved = start  # the step in last.pt: where the next run resumes

    def checkpoint(step: int) -> None:
        nonlocal saved
        history.flush()
        if dist.main:
            state = {"step": step, "key": stamp, "model": method.state_dict(), "random": random_state(data)}
            save_checkpoint(last, state)
        saved = step

    if on_start is not None:
        on_start(start)
    t0 = time.perf_counter()
    losses: dict[str, float] = {}
    step = start
    stopped_by_time = False
    try:
        while step < budget.steps:
            if dist.any(budget.seconds is not None and time.perf_counter() - t0 > budget.seconds):
                stopped_by_time = True
                break
            with autocast(method.ctx.device, accel.precision):
                losses = dist.mean(method.train_step(step))
            bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
            if bad:
                key, value = next(iter(bad.items()))
                kept = f"last good checkpoint kept at {last}" if last.exists() else "no checkpoint was written yet"
                raise TrainingDiverged(
                    f"{name}: loss '{key}' became {value} at step {step}; {kept}. "
                    "Lower the learning rate (--opt lr=...) or the batch size and run again to resume."
                )
            step += 1
            history.append(step, losses)
            if on_step is not None:
                on_step(step, losses)
            if step % checkpoint_every == 0 or step == budget.steps:
                checkpoint(step)
        if stopped_by_time and step > start:
            checkpoint(step)
    except KeyboardInterrupt as exc:
        raise TrainingInterrupted(step, saved) from exc
    history.flush()
    return FitResult(step, budget.steps, time.perf_counter() - t0, start, stopped_by_time, losses)
