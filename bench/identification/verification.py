"""Verification (1:1) beside identification: TAR at fixed FAR from every probe-gallery pair, and the ROC.

Each probe is compared with each gallery image by cosine similarity; a pair of one identity is genuine, any other
pair an impostor. A pair is accepted when its score is strictly above the threshold t. For a target FAR the
threshold is the smallest t whose impostor acceptance is at most FAR: with the N impostor scores sorted from the
highest, t is the (k+1)-th of them, k = floor(FAR x N) (so at most k impostors score above it; ties at t are all
rejected, which can only lower the achieved FAR). TAR is the share of genuine pairs above t. With fewer than
1/FAR impostor pairs no threshold can show an impostor acceptance of FAR: the value is absent, "not enough
impostor pairs", never extrapolated. A non-finite score is no evidence: a genuine one is rejected, an impostor
one accepted (as in ``protocol.probe_ranks``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

FARS = (1e-2, 1e-3)
ROC_FARS = tuple(float(f) for f in np.logspace(-4, 0, 17))  # four points per decade, 1e-4 .. 1
CONVENTION = (
    "all probe x gallery pairs by cosine similarity (genuine: same identity); accepted when the score is above t, "
    "t = the (k+1)-th highest impostor score, k = floor(FAR x impostor pairs): the smallest threshold whose impostor "
    "acceptance is <= FAR; absent ('not enough impostor pairs') when there are fewer than 1/FAR impostor pairs"
)


def _unit(x: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return x / np.linalg.norm(x, axis=1, keepdims=True)


def pair_scores(
    probe_feats: np.ndarray, probe_ids: np.ndarray, gallery_feats: np.ndarray, gallery_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(genuine, impostor) cosine scores of every probe against every gallery image."""
    scores = _unit(probe_feats) @ _unit(gallery_feats).T
    same = np.asarray(probe_ids)[:, None] == np.asarray(gallery_ids)[None, :]
    genuine = np.where(np.isfinite(scores), scores, -np.inf)[same]
    impostor = np.where(np.isfinite(scores), scores, np.inf)[~same]
    return genuine, impostor


def tar_at_far(genuine: np.ndarray, impostor: np.ndarray, far: float) -> dict[str, Any]:
    """TAR at ``far`` with its threshold and the FAR it reaches; ``tar`` None with a note when not measurable."""
    n = len(impostor)
    out: dict[str, Any] = {"far": far, "tar": None, "threshold": None, "far_achieved": None}
    if not len(genuine):
        return out | {"note": "no genuine pairs"}
    if n * far < 1 - 1e-9:
        return out | {"note": f"not enough impostor pairs ({n} < {math.ceil(1 / far - 1e-9)})"}
    k = math.floor(far * n + 1e-9)
    ranked = np.sort(impostor)[::-1]
    t = float(ranked[k]) if k < n else -math.inf
    return out | {
        "tar": float((genuine > t).mean()),
        "threshold": t,
        "far_achieved": float((impostor > t).mean()),
    }


def verify(
    probe_feats: np.ndarray, probe_ids: np.ndarray, gallery_feats: np.ndarray, gallery_ids: np.ndarray
) -> dict[str, Any]:
    """Pair counts, TAR at each of :data:`FARS`, and the ROC as ``[FAR, TAR]`` points at :data:`ROC_FARS` (those
    the impostor pairs can measure)."""
    genuine, impostor = pair_scores(probe_feats, probe_ids, gallery_feats, gallery_ids)
    roc = [[far, tar_at_far(genuine, impostor, far)["tar"]] for far in ROC_FARS]
    return {
        "genuine": int(len(genuine)),
        "impostor": int(len(impostor)),
        "at": [tar_at_far(genuine, impostor, far) for far in FARS],
        "roc": [point for point in roc if point[1] is not None],
    }
