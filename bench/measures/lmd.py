"""Landmark distance (LMD) per image: the mean Euclidean distance, in pixels at the benchmark size, between the 5
landmarks of the restored face and those of its ground truth, both found by :mod:`bench.landmarks` (dlib's
5-point predictor on the fixed box of aligned crops). The ground truth's landmarks are found once per image: every
label is compared with the same faces, so they are kept by the image's bytes."""

from __future__ import annotations

import hashlib

import numpy as np


def unavailable() -> str | None:
    """Why LMD cannot be computed here, or None."""
    try:
        from bench import landmarks
    except ImportError as exc:
        return f"no landmark detector (bench.landmarks does not import: {exc})"
    return landmarks.unavailable()


class LMD:
    name = "lmd"

    def __init__(self) -> None:
        self._truth: dict[bytes, np.ndarray] = {}

    def _points(self, images: np.ndarray) -> np.ndarray:
        from bench import landmarks

        return landmarks.five_points(np.ascontiguousarray(images))

    def _truth_points(self, target: np.ndarray) -> np.ndarray:
        keys = [hashlib.sha1(np.ascontiguousarray(t).tobytes()).digest() for t in target]
        todo = [j for j, k in enumerate(keys) if k not in self._truth]
        if todo:
            for j, points in zip(todo, self._points(target[todo]), strict=True):
                self._truth[keys[j]] = points
        return np.stack([self._truth[k] for k in keys])

    def scores(self, pred: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
        distance = np.linalg.norm(self._points(pred) - self._truth_points(target), axis=-1)  # [N,5] px
        return {self.name: distance.mean(axis=1).astype(np.float64)}
