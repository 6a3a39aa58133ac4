"""Paired statistics between methods scored on the very same images.

Every method sees identical test inputs, so the question "is A better than B?" is answered on the per-image
differences A - B, not on two unpaired means: the mean difference with a percentile-bootstrap 95% interval,
a Wilcoxon signed-rank test (SciPy; zero differences dropped, its default), Holm's step-down correction over
all pairs compared together, and a compact letter display that groups methods no test tells apart
(Piepho 2004, insert-and-absorb). Average per-image ranks give the critical-difference style ordering
(Demsar 2006); the groups drawn over it come from the corrected Wilcoxon tests, as Benavoli et al. (2016)
recommend over mean-rank post-hoc tests.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations

import numpy as np

ALPHA = 0.05
RESAMPLES = 2000


@dataclass(frozen=True)
class PairedDifference:
    """``a`` minus ``b`` over the images both scored with a finite value."""

    a: str
    b: str
    n: int
    mean: float
    low: float
    high: float
    p: float
    p_holm: float = float("nan")

    @property
    def significant(self) -> bool:
        return bool(self.p_holm < ALPHA)


@lru_cache(maxsize=8)
def _resample_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """One index matrix per sample size: every pair of a split is resampled identically (and reproducibly)."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n), dtype=np.int32)


def bootstrap_mean_ci(
    values: np.ndarray, level: float = 0.95, resamples: int = RESAMPLES, seed: int = 0
) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap interval of ``values``' mean; a constant sample has a zero-width one."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return (float("nan"),) * 3
    mean = float(values.mean())
    if np.all(values == values[0]):
        return mean, mean, mean
    means = values[_resample_indices(values.size, resamples, seed)].mean(axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return mean, float(low), float(high)


def wilcoxon_p(differences: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value; 1 when every difference is zero (nothing to tell apart).

    SciPy's exact distribution for up to 50 distinct nonzero differences, else its normal approximation with
    the tie correction (SciPy's "auto" would run an exhaustive permutation test for up to 13 differences with
    ties, seconds per pair)."""
    from scipy.stats import wilcoxon

    differences = np.asarray(differences, dtype=np.float64)
    nonzero = differences[differences != 0]
    if nonzero.size == 0:
        return 1.0
    exact = nonzero.size == differences.size and nonzero.size <= 50 and np.unique(np.abs(nonzero)).size == nonzero.size
    return float(wilcoxon(differences, method="exact" if exact else "asymptotic").pvalue)


def holm(pvalues: list[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error), in the input's order."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out


def paired_difference(a: np.ndarray, b: np.ndarray, names: tuple[str, str] = ("a", "b")) -> PairedDifference:
    """``a - b`` per image (pairs where either value is not finite are left out), without correction."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    keep = np.isfinite(a) & np.isfinite(b)
    diff = a[keep] - b[keep]
    if diff.size == 0:
        nan = float("nan")
        return PairedDifference(names[0], names[1], 0, nan, nan, nan, nan)
    mean, low, high = bootstrap_mean_ci(diff)
    return PairedDifference(names[0], names[1], int(diff.size), mean, low, high, wilcoxon_p(diff))


def compare_all(scores: dict[str, np.ndarray]) -> list[PairedDifference]:
    """Every pair of labels (in the given order; arrays aligned on the same images), Holm-corrected together."""
    pairs = [paired_difference(scores[a], scores[b], (a, b)) for a, b in combinations(scores, 2)]
    tested = [i for i, d in enumerate(pairs) if d.n > 0]
    adjusted = holm([pairs[i].p for i in tested])
    out = list(pairs)
    for i, p in zip(tested, adjusted, strict=True):
        d = pairs[i]
        out[i] = PairedDifference(d.a, d.b, d.n, d.mean, d.low, d.high, d.p, float(p))
    return out


def _letter(k: int) -> str:
    letters = string.ascii_lowercase + string.ascii_uppercase
    return letters[k] if k < len(letters) else f"({k + 1})"


def compact_letters(ranked: list[str], different: set[frozenset[str]]) -> dict[str, str]:
    """Compact letter display: labels sharing a letter are not significantly different.

    ``ranked`` lists the labels best first (letter a goes to the group of the best); ``different`` holds the
    significantly different pairs. Insert-and-absorb: every significant pair splits each group holding both,
    and a group contained in another is dropped.
    """
    position = {label: k for k, label in enumerate(ranked)}
    groups: list[frozenset[str]] = [frozenset(ranked)] if ranked else []
    for pair in sorted((p for p in different if p <= position.keys()), key=lambda p: sorted(map(position.get, p))):
        i, j = sorted(pair, key=position.get)
        split: list[frozenset[str]] = []
        for g in groups:
            split.extend([g - {j}, g - {i}] if i in g and j in g else [g])
        groups = [g for k, g in enumerate(split) if not any(g < h or (g == h and m < k) for m, h in enumerate(split))]
    groups.sort(key=lambda g: sorted(position[x] for x in g))
    return {label: "".join(_letter(k) for k, g in enumerate(groups) if label in g) for label in ranked}


def mean_ranks(scores: dict[str, np.ndarray], higher_is_better: bool = True) -> dict[str, float]:
    """Average rank of each label over the images every label scored finitely (1 = best; ties share a rank)."""
    from scipy.stats import rankdata

    labels = list(scores)
    matrix = np.column_stack([np.asarray(scores[label], dtype=np.float64) for label in labels])
    matrix = matrix[np.all(np.isfinite(matrix), axis=1)]
    if matrix.size == 0:
        return {}
    ranks = rankdata(-matrix if higher_is_better else matrix, axis=1)
    return dict(zip(labels, ranks.mean(axis=0).tolist(), strict=True))


def spread(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for a single value) across runs, e.g. seeds."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0
