"""The evaluator: every test image through one protocol (mask, restore, save the uint8 PNG, score it, append).

Batches are fixed chunks of each rank's shard and the global torch generator is re-seeded per batch from
(seed, label, split, batch), so a killed evaluation that resumes produces the very bytes an uninterrupted
one would. A method whose ``restore`` returns NaN or inf fails with one line and nothing of that batch is
scored; values outside [0, 1] are clamped for the saved PNG and counted per image (``out_of_range``).

Scoring is pipelined: while the method restores batch k+1, one worker thread scores batch k, writes its PNGs and
appends its rows (rows only once every PNG is on disk; each row records its PNGs' sha256), so on a GPU the
metrics cost no wall time and on a CPU they fill the cores the forward pass leaves idle (measured against
scoring in turn between forwards: as fast or faster, docs/speed.md, "Harness overhead"). At most one batch is in
flight; each split ends with a flush, which re-raises a failed write (a full disk) before the next split reads
what is done.
"""

from __future__ import annotations

import time
import warnings
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from bench.data.types import Benchmark, FaceSet
from bench.errors import BenchError
from bench.io import read_png, write_png
from bench.planning import ORACLE, Job, RunError
from bench.runstore import RunStore

EVAL_SPLITS = ("test_paired", "test_natural", "test_clean")
_WRITER = ThreadPoolExecutor(max_workers=4, thread_name_prefix="bench-png")  # cv2 and fsync release the GIL
_SCORER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-score")  # one batch scored at a time, in order


class MethodOutputError(BenchError):
    """A method returned something the protocol cannot score (NaN, inf, a wrong shape)."""


def limit_splits(bench: Benchmark, limit: int | None) -> dict[str, FaceSet]:
    """The evaluated test splits (the built-in ones, then the user's paired folders), each cut to its first
    ``limit`` samples."""
    every, out = bench.splits(), {}
    for split in (*EVAL_SPLITS, *bench.paired):
        faces = every[split]
        out[split] = faces.subset(np.arange(limit)) if limit is not None and len(faces) > limit else faces
    return out


def store_inputs(store: RunStore, splits: dict[str, FaceSet]) -> None:
    """Save the fixed test sets (input, ground truth, mask) once, so every method and report sees them."""
    for split, faces in splits.items():
        for i, sid in enumerate(faces.ids):
            path = store.input_path(split, "input", sid)
            if path.exists():
                continue
            if faces.clean is not None:
                write_png(store.input_path(split, "gt", sid), faces.clean[i])
            if faces.masks is not None:
                write_png(store.input_path(split, "mask", sid), faces.masks[i] * 255)
            write_png(path, faces.images[i])


def check_output(label: str, images, masks, expected: tuple[int, ...]) -> None:
    """Refuse what cannot be scored: a wrong shape, or a non-finite value anywhere."""
    import torch

    if tuple(images.shape) != expected:
        raise MethodOutputError(
            f"{label}: restore() returned images of shape {tuple(images.shape)}, expected {expected}"
        )
    if masks is not None and tuple(masks.shape) != (expected[0], 1, *expected[2:]):
        raise MethodOutputError(f"{label}: restore() returned masks of shape {tuple(masks.shape)}, expected [B,1,H,W]")
    for what, tensor in (("images", images), ("masks", masks)):
        if tensor is not None and not bool(torch.isfinite(tensor).all()):
            raise MethodOutputError(
                f"{label}: restore() returned NaN or inf in its {what}; the method is failed and nothing of it is "
                "scored (retrain it, or fix the method)"
            )


def batch_seed(seed: int, label: str, split: str, batch_number: int) -> int:
    """The fixed seed of one batch's restore(): stochastic methods (noise fills, latents) repeat exactly."""
    return zlib.crc32(f"{seed}/{label}/{split}/{batch_number}".encode())


def seeded_restore(method, x, m, device, seed: int, precision: str = "fp32"):
    """``method.restore(x, m)`` without gradients under ``seed`` (and bf16 autocast for ``precision="bf16"``),
    leaving the global random state untouched."""
    import torch

    from bench.acceleration import autocast
    from bench.method import Restoration

    with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        if device.type == "cuda":
            torch.manual_seed(seed)
        else:  # the CPU generator alone: torch.manual_seed would also queue a lazy CUDA seeding that formats a stack
            torch.default_generator.manual_seed(seed)  # trace (~0.3 ms a batch) and outlives fork_rng
        with autocast(device, precision):
            out = method.restore(x, m)
    if not isinstance(out, Restoration) or not isinstance(out.images, torch.Tensor):
        got = type(out).__name__ if not isinstance(out, Restoration) else f"images of type {type(out.images).__name__}"
        raise MethodOutputError(
            f"{type(method).__name__}.restore() returned {got}; it must return bench.method.Restoration(images, "
            "masks): images a [B,3,H,W] tensor in [0, 1], masks a [B,1,H,W] tensor or None (fix the method)"
        )
    return out


def binarise(masks: np.ndarray, threshold: float) -> np.ndarray:
    """uint8 masks (0-255) as the {0, 1} masks fed to a mask-requiring method: above ``threshold`` in [0, 1]."""
    return (masks.astype(np.float32) / 255.0 > threshold).astype(np.uint8)


def fed_mask(
    store: RunStore,
    source: str,
    split: str,
    sample: str,
    threshold: float,
    size: int,
    true_mask: Callable[[], np.ndarray],
) -> np.ndarray:
    """The binary mask (uint8 {0,1}, [H,W]) a mask-requiring method is fed for one sample, the paper's Fig. 10
    protocol, shared by the evaluation and the report's grids: from the oracle, ``true_mask()`` (nothing on clean
    faces); from a mask source, its saved predicted mask binarised at ``threshold``."""
    if source == ORACLE:
        return np.zeros((size, size), np.uint8) if split == "test_clean" else true_mask()
    path = store.prediction_path(source, split, sample, mask=True)
    if not path.exists():
        raise RunError(
            f"mask source {source!r} has no mask for {split}/{sample} ({path}); {source} must be evaluated "
            "(without failing) before the methods it feeds"
        )
    return binarise(read_png(path), threshold)


class Evaluator:
    """Scores methods on fixed test splits into a run folder; ``bench perf`` times :meth:`evaluate_batch`."""

    def __init__(
        self,
        store: RunStore,
        *,
        seed: int,
        mask_threshold: float,
        batch_size: int,
        rank: int = 0,
        world: int = 1,
        precision: str = "fp32",
        measures=None,  # bench.measures.Measures: per-image LPIPS/LMD columns, scored with the metrics
    ):
        self.store = store
        self.precision = precision
        self.measures = measures
        self.seed = seed
        self.mask_threshold = mask_threshold
        self.batch_size = batch_size
        self.rank = rank
        self.world = world
        self._pending: Future | None = None

    def flush(self) -> None:
        """Wait for the batch being scored; re-raises its failure."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def evaluate(self, job: Job, method, splits: dict[str, FaceSet], device) -> dict[str, str]:
        """Every sample of ``splits`` not scored yet; returns the splits that cannot be scored, each with why
        (the caller says so and records it: nothing is skipped in silence)."""
        skipped = {}
        for split, faces in splits.items():
            if len(faces) == 0:
                continue
            if job.spec.needs_mask and job.mask_source == ORACLE and split != "test_clean" and faces.masks is None:
                skipped[split] = (
                    f"its occlusions have no true mask to feed as {ORACLE} (real occluders; or a paired folder "
                    "without mask/ or --derive-mask)"
                )
                continue
            dropped = self.store.repair_rows(job.label)
            if dropped:
                warnings.warn(
                    f"{self.store.metrics_path(job.label)}: {dropped} row(s) cut short, damaged, not matching their "
                    "digests or without their image were dropped; those samples are recomputed",
                    stacklevel=1,
                )
            done = self.store.done_ids(job.label, split)
            mine = np.arange(self.rank, len(faces), self.world)  # strided shard by sample index
            try:
                for number, start in enumerate(range(0, len(mine), self.batch_size)):
                    batch = mine[start : start + self.batch_size]
                    todo = np.array([i for i in batch if faces.ids[i] not in done], dtype=np.int64)
                    if len(todo):
                        self.evaluate_batch(job, method, split, faces, todo, device, batch_number=number)
            finally:
                self.flush()  # the batches restored before a failure keep their rows
        return skipped

    def evaluate_batch(
        self, job: Job, method, split: str, faces: FaceSet, idx: np.ndarray, device, batch_number: int = 0
    ) -> None:
        """One batch through the whole protocol: mask the input, restore, then (on the scoring thread, after the
        previous batch is done) save the uint8 PNGs, score them, append the rows. :meth:`flush` waits for it."""
        from bench.data.types import mask_tensor, to_tensor, to_uint8

        x = to_tensor(faces.images[idx]).to(device)
        m = None
        if job.spec.needs_mask:
            m = mask_tensor(self.masks_for(job, split, faces, idx)).to(device)
            x = x * (1 - m)  # the paper's Fig. 10(d): the hole is zeroed
        t0 = time.perf_counter()
        out = seeded_restore(
            method, x, m, device, batch_seed(self.seed, job.label, split, batch_number), self.precision
        )
        seconds = (time.perf_counter() - t0) / len(idx)
        check_output(job.label, out.images, out.masks, tuple(x.shape))
        outside = ((out.images < 0) | (out.images > 1)).flatten(1).float().mean(1).cpu().numpy()
        pred = to_uint8(out.images)
        pred_mask = to_uint8(out.masks) if out.masks is not None else None
        self.flush()
        self._pending = _SCORER.submit(self._store_batch, job, split, faces, idx, pred, pred_mask, seconds, outside)

    def store_restorations(self, job: Job, split: str, faces: FaceSet, idx: np.ndarray, pred, pred_mask) -> None:
        """Restorations made elsewhere (``bench import``: uint8 images, predicted masks or None) saved and scored
        as :meth:`evaluate_batch` saves and scores a method's; their time per image is unknown (None)."""
        self.flush()
        outside = np.zeros(len(idx))  # uint8 images cannot leave [0, 1]
        self._pending = _SCORER.submit(self._store_batch, job, split, faces, idx, pred, pred_mask, None, outside)

    def _store_batch(self, job, split, faces, idx, pred, pred_mask, seconds, outside) -> None:
        """Write the PNGs, score them, append the rows once every PNG is on disk (a kill never leaves a row
        without its image)."""
        from bench import metrics

        path = self.store.prediction_path
        images = [_WRITER.submit(write_png, path(job.label, split, faces.ids[i]), pred[j]) for j, i in enumerate(idx)]
        masks = []
        if pred_mask is not None:
            masks = [
                _WRITER.submit(write_png, path(job.label, split, faces.ids[i], mask=True), m)
                for m, i in zip(pred_mask, idx, strict=True)
            ]
        rows = self.rows(job, split, faces, idx, pred, pred_mask, seconds, metrics)
        for j, (row, frac) in enumerate(zip(rows, outside, strict=True)):
            row["out_of_range"] = float(frac)
            # .result() re-raises a failed write (a full disk) before any row claims the sample done
            row["png_sha256"] = images[j].result()
            if masks:
                row["mask_sha256"] = masks[j].result()
        self.store.append_rows(job.label, rows)

    def masks_for(self, job: Job, split: str, faces: FaceSet, idx: np.ndarray) -> np.ndarray:
        """The binary masks fed to a mask-requiring method for samples ``idx`` (:func:`fed_mask`)."""
        return np.stack(
            [
                fed_mask(
                    self.store,
                    job.mask_source,
                    split,
                    faces.ids[i],
                    self.mask_threshold,
                    faces.size,
                    lambda i=i: faces.masks[i],
                )
                for i in idx
            ]
        )

    def rows(self, job, split, faces, idx, pred, pred_mask, seconds, metrics) -> list[dict[str, Any]]:
        target = faces.images[idx] if split == "test_clean" else (None if faces.clean is None else faces.clean[idx])
        true_mask = None
        if faces.masks is not None:
            true_mask = faces.masks[idx]
        elif split == "test_clean":
            true_mask = np.zeros(pred.shape[:3], np.uint8)
        scores: dict[str, np.ndarray] = {}
        if target is not None:
            scores.update(metrics.image_scores(pred, target, true_mask))
            if self.measures is not None:
                scores.update(self.measures.scores(pred, target))
        if pred_mask is not None and true_mask is not None:
            scores.update(metrics.mask_scores(pred_mask, true_mask, self.mask_threshold))
        areas = true_mask.reshape(len(idx), -1).mean(1).tolist() if true_mask is not None else [None] * len(idx)
        columns = {k: np.asarray(v).tolist() for k, v in scores.items()}  # Python floats, one conversion per column
        rows = []
        for j, i in enumerate(idx):
            row = {
                "label": job.label,
                "method": job.spec.name,
                "mask_source": job.mask_source,
                "split": split,
                "sample": faces.ids[i],
                "occluder": faces.occluders[i] if faces.occluders else "",
                "family": faces.families[i] if faces.families else "",
                "area": areas[j],
                "seconds": seconds,
            }
            row.update({k: v[j] for k, v in columns.items()})
            rows.append(row)
        return rows
