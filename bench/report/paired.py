"""Paired comparisons of one run's labels per split: differences, significance groups and mean ranks.

Splits with a ground truth (synthetic paired and, where known, natural occlusions) are compared on PSNR and
SSIM, and on LPIPS and LMD where the run computed them (lower is better for those); all pairs of a (split, metric)
are one Holm family. See :mod:`bench.stats` for the tests.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench import stats

SPLITS = ("test_paired", "test_natural")
METRICS = {"psnr": ("PSNR", 2), "ssim": ("SSIM", 3)}  # name, digits shown
# bench.measures' per-image columns, where a run computed them; lower is better for each
METRICS |= {"lpips": ("LPIPS-VGG", 3), "lpips_alex": ("LPIPS-Alex", 3), "lmd": ("LMD (px)", 2)}
LOWER_IS_BETTER = frozenset({"lpips", "lpips_alex", "lmd"})


def _scores(df, split: str, metric: str) -> dict[str, np.ndarray]:
    """Per label, ``metric`` on the split's samples (NaN where a label has no row), best mean first (the lowest for
    LPIPS and LMD)."""
    part = df[(df["split"] == split)] if metric in df else df.iloc[0:0]
    if part.empty:
        return {}
    wide = part.pivot_table(index="sample", columns="label", values=metric, aggfunc="first", dropna=False)
    means = {label: wide[label][np.isfinite(wide[label])].mean() for label in wide.columns}
    labels = [label for label in wide.columns if np.isfinite(means[label])]
    sign = 1 if metric in LOWER_IS_BETTER else -1
    labels.sort(key=lambda label: (sign * means[label], label))
    return {label: wide[label].to_numpy(dtype=np.float64) for label in labels}


def compare(df, split: str, metric: str) -> dict[str, Any] | None:
    """Holm-corrected pairs, letters and mean ranks of one (split, metric), or None with fewer than 2 labels."""
    scores = _scores(df, split, metric)
    if len(scores) < 2:
        return None
    pairs = stats.compare_all(scores)
    different = {frozenset((d.a, d.b)) for d in pairs if d.significant}
    complete = np.all(np.isfinite(np.column_stack(list(scores.values()))), axis=1)
    return {
        "labels": list(scores),
        "pairs": pairs,
        "letters": stats.compact_letters(list(scores), different),
        "ranks": stats.mean_ranks(scores, higher_is_better=metric not in LOWER_IS_BETTER),
        "n_complete": int(complete.sum()),
    }


def comparisons(df, splits: tuple[str, ...] = SPLITS) -> dict[str, dict[str, dict[str, Any]]]:
    """``{split: {metric: compare(...)}}`` for every split (with a ground truth) and metric with at least two
    labels."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    if df.empty:
        return out
    for split in splits:
        found = {m: c for m in METRICS if (c := compare(df, split, m)) is not None}
        if found:
            out[split] = found
    return out


def _signed(value: float, digits: int) -> str:
    return "–" if not np.isfinite(value) else f"{round(value, digits) + 0.0:+.{digits}f}"  # + 0.0: no "-0.000"


def pair_rows(per_metric: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One display row per pair of labels, each metric side by side (the pair order of the PSNR ranking)."""
    order = next(iter(per_metric.values()))["labels"]
    rank = {label: k for k, label in enumerate(order)}
    by_pair: dict[tuple[str, str], dict[str, Any]] = {}
    for metric, result in per_metric.items():
        digits = METRICS[metric][1]
        for d in result["pairs"]:
            a, b, sign = (d.a, d.b, 1) if rank.get(d.a, 99) <= rank.get(d.b, 99) else (d.b, d.a, -1)
            row = by_pair.setdefault((a, b), {"a": a, "b": b, "n": d.n, "cells": {}})
            mean, low, high = sign * d.mean, *sorted((sign * d.low, sign * d.high))
            row["cells"][metric] = {
                "diff": _signed(mean, digits),
                "ci": f"[{_signed(low, digits)}, {_signed(high, digits)}]",
                "p": "–" if not np.isfinite(d.p_holm) else (f"{d.p_holm:.3f}" if d.p_holm >= 0.001 else "<0.001"),
                "significant": d.significant,
            }
    return sorted(by_pair.values(), key=lambda r: (rank.get(r["a"], 99), rank.get(r["b"], 99)))
