"""Closed-set identification (the paper's Fig. 12): a clean gallery, probe sets, CMC with intervals.

The gallery holds one clean image per identity (seeded choice); a probe set is scored against all of it by
cosine similarity. A probe never meets its own source image: probes whose sample id is a gallery image are
left out of every set, so clean, occluded and restored probes are the very same faces. Probes of one person
are not independent, so the 95% interval of each rank is a percentile bootstrap over identities (the cluster
bootstrap), not a binomial interval over probes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.data.types import FaceSet
from bench.stats import RESAMPLES


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def probe_ranks(
    probe_feats: np.ndarray, probe_ids: np.ndarray, gallery_feats: np.ndarray, gallery_ids: np.ndarray
) -> np.ndarray:
    """Rank (1 = best) of each probe's true identity among the gallery identities, by cosine similarity; an
    identity scores its best gallery image. Ties count against the probe (as ``bob.measure.cmc``): its rank
    is 1 + the number of other identities scoring at least its genuine score. A probe whose identity is not
    enrolled can never be identified: its rank is infinite. A non-finite score (a zero or NaN embedding) is no
    evidence: a probe's own is a miss, a gallery image's outranks every probe."""
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = _unit(probe_feats) @ _unit(gallery_feats).T
    scores = np.where(np.isfinite(scores), scores, np.inf)
    identities = np.unique(gallery_ids)
    per_identity = np.stack([scores[:, gallery_ids == i].max(1) for i in identities], 1)
    column = np.searchsorted(identities, probe_ids).clip(0, len(identities) - 1)
    known = identities[column] == probe_ids
    rows = np.arange(len(probe_ids))
    genuine = per_identity[rows, column].copy()
    per_identity[rows, column] = -np.inf
    ranks = 1 + (per_identity >= genuine[:, None]).sum(1)
    return np.where(known & np.isfinite(genuine), ranks, np.inf)


def cmc(
    probe_feats: np.ndarray,
    probe_ids: np.ndarray,
    gallery_feats: np.ndarray,
    gallery_ids: np.ndarray,
    max_rank: int = 5,
) -> np.ndarray:
    """Closed-set CMC: the share of probes identified within rank k, k = 1..max_rank."""
    ranks = probe_ranks(probe_feats, probe_ids, gallery_feats, gallery_ids)
    return np.array([(ranks <= k).mean() for k in range(1, max_rank + 1)])


def cluster_interval(
    hits: np.ndarray, groups: np.ndarray, level: float = 0.95, resamples: int = RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of ``hits`` resampling whole ``groups`` (identities) with
    replacement: each resample's rate is its probes' hits over its probes."""
    labels, inverse = np.unique(groups, return_inverse=True)
    if len(labels) == 0:
        return float("nan"), float("nan")
    sums = np.bincount(inverse, weights=np.asarray(hits, np.float64), minlength=len(labels))
    counts = np.bincount(inverse, minlength=len(labels)).astype(np.float64)
    draw = np.random.default_rng(seed).integers(0, len(labels), (resamples, len(labels)))
    rates = sums[draw].sum(1) / counts[draw].sum(1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(rates, [tail, 100 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class Gallery:
    """One clean image per identity: its row in the source set, identity and sample id."""

    index: np.ndarray
    identities: np.ndarray
    ids: list[str]


def choose_gallery(faces: FaceSet, seed: int) -> Gallery:
    rng = np.random.default_rng(seed)
    chosen = np.array(
        [rng.choice(np.flatnonzero(faces.identities == i)) for i in np.unique(faces.identities)], np.int64
    )
    return Gallery(chosen, faces.identities[chosen], [faces.ids[i] for i in chosen])


def eligible(faces: FaceSet, gallery: Gallery) -> np.ndarray:
    """Rows of ``faces`` that are fair probes: enrolled identity, not a gallery image's own sample."""
    taken, enrolled = set(gallery.ids), set(gallery.identities.tolist())
    return np.array(
        [i for i in range(len(faces)) if faces.ids[i] not in taken and int(faces.identities[i]) in enrolled], np.int64
    )


def score(
    probe_feats: np.ndarray,
    probe_ids: np.ndarray,
    gallery_feats: np.ndarray,
    gallery: Gallery,
    max_rank: int = 5,
    seed: int = 0,
) -> dict[str, float]:
    """Rank-1..max_rank of one probe set with n, identities and a 95% interval per rank."""
    row: dict[str, float] = {"n": int(len(probe_ids)), "identities": int(len(np.unique(probe_ids)))}
    ranks = probe_ranks(probe_feats, probe_ids, gallery_feats, gallery.identities) if len(probe_ids) else None
    for k in range(1, max_rank + 1):
        if ranks is None:
            row[f"rank{k}"] = row[f"rank{k}_low"] = row[f"rank{k}_high"] = float("nan")
            continue
        hits = ranks <= k
        row[f"rank{k}"] = float(hits.mean())
        row[f"rank{k}_low"], row[f"rank{k}_high"] = cluster_interval(hits, probe_ids, seed=seed)
    return row


def angle(cosine: np.ndarray) -> np.ndarray:
    """The angle in degrees between embeddings of cosine similarity ``cosine``: degrees(arccos(cos)), the
    face-restoration papers' identity distance "Deg." (cosines a rounding step outside [-1, 1] clipped)."""
    return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


def similarity(feats: np.ndarray, reference: np.ndarray, groups: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Cosine similarity of each embedding to its own reference (a restored face to its clean ground truth):
    per image values and their mean with a 95% interval over identities; ``angle`` the same for the angle in
    degrees (the mean of the per-image angles, as "Deg." is reported, not the angle of the mean cosine)."""
    values = (_unit(feats) * _unit(reference)).sum(1)
    degrees = angle(values)
    low, high = cluster_interval(values, groups, seed=seed)
    deg_low, deg_high = cluster_interval(degrees, groups, seed=seed)
    return {
        "mean": float(values.mean()),
        "low": low,
        "high": high,
        "n": int(len(values)),
        "angle": {"mean": float(degrees.mean()), "low": deg_low, "high": deg_high},
        "values": values,
        "degrees": degrees,
    }
