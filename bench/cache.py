"""The checkpoint cache: a trained model is served only under a key that describes what was trained.

The key covers everything that decides the weights: the method and its *resolved* options (not the raw
``--opt`` strings), the method's code identity (its plugin's distribution and version, and a hash of the
source of every module its factory reaches inside its own package and the harness, plus the data
synthesis it trains on), the fingerprint of the training splits (never of the test sets: adding a test set
reuses every model), the user's occluder files, local weight files, seed, image
size, profile, the steps requested, and the torch version. A model is stored as ``model.pt`` only when it
finished those steps; a run cut short (``--time-budget``, a kill) leaves ``last.pt``, which the next run
with the same key resumes bit-exactly.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.identity import code_identity, files_identity
from bench.io import config_hash

if TYPE_CHECKING:
    from bench.planning import Planned, RunConfig

KEY_VERSION = 2  # bump when the key's layout changes


@dataclass(frozen=True)
class CacheEntry:
    """One trained model's folder and the description its key hashes."""

    folder: Path
    key: dict[str, Any]

    @property
    def final(self) -> Path:
        return self.folder / "model.pt"

    @property
    def last(self) -> Path:
        return self.folder / "last.pt"


def cache_entry(
    root: Path,
    *,
    method: str,
    factory: str,
    options: dict[str, Any],
    code: dict[str, Any],
    profile: str,
    image_size: int,
    seed: int,
    steps: int,
    data: str,
    inputs: list[list[Any]],
    acceleration: dict[str, Any],
) -> CacheEntry:
    import torch

    key = {
        "key_version": KEY_VERSION,
        "method": method,
        "factory": factory,
        "options": options,
        "code": code,
        "profile": profile,
        "image_size": image_size,
        "seed": seed,
        "steps": steps,
        "data": data,
        "files": inputs,
        "acceleration": acceleration,
        "torch": torch.__version__,
    }
    return CacheEntry(root / method.replace(":", "_") / config_hash(key), key)


def method_entry(cfg: RunConfig, planned: Planned, info, training_fingerprint: str) -> CacheEntry:
    """The checkpoint-cache entry of a method: everything that decides its trained weights."""
    spec, ctx = planned.spec, planned.ctx
    return cache_entry(
        cfg.output / "checkpoints",
        method=spec.name,
        factory=spec.factory,
        options=ctx.config.as_dict(),
        code=code_identity(
            spec.factory, info.distribution if info else "(registered in process)", info.version if info else "-"
        ),
        profile=cfg.profile,
        image_size=cfg.image_size,
        seed=cfg.seed,
        steps=ctx.total_steps,
        data=training_fingerprint,
        inputs=files_identity(cfg.occluders, cfg.weights_dir, env_weights()),
        acceleration=cfg.acceleration().training_key(),
    )


def env_weights() -> Path | None:
    """The VGG-16 weights file named by ``BENCH_VGG16_WEIGHTS``, which methods read beside --weights-dir."""
    value = os.environ.get("BENCH_VGG16_WEIGHTS")
    return Path(value) if value else None


# The cached-model protocol, one for methods and recognizers --------------------------------------------------
MODEL = "model"  # the checkpoint entry that holds the model's state (model.pt and last.pt alike)
SHA256 = "model_sha256"  # key.json's record of model.pt's sha256, compared on every load


@dataclass
class Served:
    """What :func:`train_or_load` did: the checkpoint served or stored (``model.pt``, or ``last.pt`` when training
    stopped short; it may not exist when a time budget ran out before the first step), its sha256 (None then),
    the model's digest, and the training result when it trained."""

    path: Path
    sha256: str | None
    model: str
    cached: bool
    fit: Any = None  # bench.training.FitResult when trained here


def train_or_load(
    entry: CacheEntry, model: Any, steps: int, train: Callable[[str], Any], *, main: bool = True
) -> Served:
    """``model`` from ``entry``'s ``model.pt`` when it is there, verified (its digest, the sha256 key.json
    recorded, its key and steps), else trained by ``train(stamp)`` (which returns a ``FitResult``; ``stamp`` is
    the key's hash, for ``last.pt``) and, once it finished ``steps``, stored as ``model.pt``. The folder's lock is
    held throughout (on the main rank, which alone writes), and stray temporary files of a killed write are
    removed under it. Every rank calls this: data parallel training needs them all."""
    from bench.errors import CheckpointError
    from bench.io import FolderLock, file_sha256, write_json
    from bench.training import load_checkpoint, save_checkpoint, state_digest

    key = config_hash(entry.key)
    with FolderLock(entry.folder, "checkpoint folder") if main else nullcontext():
        if main:
            for stray in entry.folder.glob(".*.tmp"):  # a kill mid-write (bench.io.atomic_write_bytes)
                stray.unlink(missing_ok=True)
        if entry.final.exists():
            saved = load_checkpoint(entry.final, sha256=_recorded_sha256(entry))
            fix = f"delete {entry.folder} to retrain"
            if saved.get("key") != key:
                raise CheckpointError(f"{entry.final} was not trained under its folder's cache key; {fix}")
            if int(saved.get("step", -1)) != steps:
                raise CheckpointError(f"{entry.final} holds {saved.get('step')} steps, its key says {steps}; {fix}")
            model.load_state_dict(saved[MODEL])
            return Served(entry.final, file_sha256(entry.final), state_digest(saved[MODEL]), True)
        if main:
            write_json(entry.folder / "key.json", entry.key)
        result = train(key)
        state = model.state_dict()
        path = entry.final if result.finished else entry.last
        if result.finished:
            if main:
                save_checkpoint(entry.final, {"step": result.steps, "key": key, MODEL: state})
                write_json(entry.folder / "key.json", {**entry.key, SHA256: file_sha256(entry.final)})
                entry.last.unlink(missing_ok=True)
        sha = file_sha256(path) if main and path.exists() else None
        return Served(path, sha, state_digest(state), False, result)


def _recorded_sha256(entry: CacheEntry) -> str | None:
    from bench.errors import CheckpointError
    from bench.io import read_json

    try:
        recorded = read_json(entry.folder / "key.json") or {}
    except ValueError as exc:
        raise CheckpointError(f"{exc}; or delete {entry.folder} to retrain") from exc
    return recorded.get(SHA256) if isinstance(recorded, dict) else None
