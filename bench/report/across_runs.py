"""Several runs side by side: runs of one configuration that differ only in ``--seed`` are pooled into mean ±
std across seeds; runs of different configurations (dataset, profile, options...) are separate columns, and
the manifest entries that set them apart are spelled out."""

from __future__ import annotations

import json
import math
from typing import Any

from bench import stats
from bench.report.context import summary_value

IGNORED = ("seed", "output", "device", "batch_size")  # what does not make two runs a different configuration
METRICS = (("psnr", "PSNR (dB)", 2), ("ssim", "SSIM", 3), ("region_psnr", "occluded-region PSNR (dB)", 2))


def _configuration(manifest: dict[str, Any]) -> dict[str, Any]:
    config = {k: v for k, v in manifest.get("config", {}).items() if k not in IGNORED}
    config["data"] = (manifest.get("data") or {}).get("name")
    return config


def _flat(manifest: dict[str, Any]) -> dict[str, str]:
    """What can tell configurations apart, as ``key: value`` strings (config, data, versions, code)."""
    out = {
        k: json.dumps(v, sort_keys=True) if not isinstance(v, str) else v for k, v in _configuration(manifest).items()
    }
    out.update({f"version {k}": v for k, v in (manifest.get("versions") or {}).items()})
    out["git"] = (manifest.get("git") or "?")[:10]
    return out


def _cell(runs: list[dict[str, Any]], label: str, metric: str, split: str, digits: int) -> str:
    """One run's mean, or mean ± std across the runs (number of runs in parentheses)."""
    means = [summary_value(r["summary"], label, split, f"{metric}_mean") for r in runs]
    values = [v for v in means if v is not None and math.isfinite(v)]
    if not values:
        return "–"
    mean, std = stats.spread(values)
    return f"{mean:.{digits}f} ± {std:.{digits}f} ({len(values)})" if len(values) > 1 else f"{mean:.{digits}f}"


def side_by_side(runs: list[dict[str, Any]], split: str = "test_paired") -> dict[str, Any] | None:
    """Groups of runs and their per-label metrics; ``runs`` items hold ``id``, ``manifest`` and ``summary``.
    None for a single run."""
    if len(runs) < 2:
        return None
    groups: list[dict[str, Any]] = []
    for run in runs:
        key = json.dumps(_configuration(run["manifest"]), sort_keys=True, default=str)
        group = next((g for g in groups if g["key"] == key), None)
        if group is None:
            group = {"key": key, "runs": [], "flat": _flat(run["manifest"])}
            groups.append(group)
        group["runs"].append(run)
    keys = sorted({k for g in groups for k in g["flat"]})
    differences = [
        {"key": k, "values": [g["flat"].get(k, "–") for g in groups]}
        for k in keys
        if len({g["flat"].get(k) for g in groups}) > 1
    ]
    labels = sorted({label for run in runs for label in run["labels"]})
    rows = []
    for label in labels:
        cells = [[_cell(g["runs"], label, metric, split, digits) for metric, _, digits in METRICS] for g in groups]
        if any(c != "–" for per_group in cells for c in per_group):
            rows.append({"label": label, "cells": cells})
    return {
        "split": split,
        "groups": [
            {
                "name": f"configuration {i + 1}" if len(groups) > 1 else "all runs",
                "runs": [r["id"] for r in g["runs"]],
                "seeds": [r["manifest"].get("seed") for r in g["runs"]],
            }
            for i, g in enumerate(groups)
        ],
        "differences": differences,
        "metrics": [title for _, title, _ in METRICS],
        "rows": rows,
    }
