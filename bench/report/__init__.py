"""``bench report``: one self-contained HTML page from run folders alone (no model needed).

Sections mirror the paper: Table III (PSNR/SSIM per method beside the reported numbers, per mask
protocol), Table IV (OA-GAN ablation variants), mask quality and the Fig. 9 property (clean faces
left alone), breakdowns by occluder family and occluded-area bin, and qualitative grids like
Figs. 6 and 10 (input, predicted mask, output, ground truth). Images are inlined as data URIs.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.io import atomic_write_bytes, png_data_uri, read_json
from bench.metrics import area_bin
from bench.runstore import RunStore, summarize

SPLIT_TITLES = {
    "test_paired": "synthetic paired occlusions",
    "test_natural": "natural occlusions",
    "test_clean": "faces without occlusion",
}


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def _metric_cell(row, col: str, digits: int) -> str:
    mean = row.get(f"{col}_mean")
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    std = row.get(f"{col}_std", 0.0)
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _table(summary, split: str, columns: list[tuple[str, str, int]], reported: dict[str, dict]) -> dict:
    rows, seen = [], set()
    part = summary[summary["split"] == split] if not summary.empty else summary
    for _, r in part.iterrows():
        r = r.to_dict()
        cells = [_metric_cell(r, col, d) for col, _, d in columns]
        if all(c == "–" for c in cells):
            continue  # e.g. mask scores of a method that predicts no mask
        paper = reported.get(r["method"], {}) if r["method"] not in seen else {}  # once per method
        seen.add(r["method"])
        rows.append(
            {
                "label": r["label"],
                "method": r["method"],
                "mask": r["mask_source"],
                "n": int(r["n"]),
                "cells": cells,
                "paper": [_fmt(paper.get(c), d) if c in paper else "" for c, _, d in columns],
            }
        )
    return {"headers": [h for _, h, _ in columns], "rows": rows}


def _breakdown(df, key: str, metric: str = "psnr") -> dict:
    """Mean ``metric`` on the paired test set: one row per ``key`` value, one column per method."""
    part = df[(df["split"] == "test_paired") & df[metric].notna()] if metric in df else df.iloc[0:0]
    part = part[part[metric] != math.inf] if not part.empty else part
    if part.empty:
        return {"columns": [], "rows": []}
    table = part.pivot_table(index=key, columns="label", values=metric, aggfunc="mean")
    counts = part.groupby(key)["sample"].nunique()
    lo, hi = float(table.min().min()), float(table.max().max())
    rows = []
    for value, means in table.iterrows():
        cells = []
        for label in table.columns:
            v = means[label]
            width = 0 if math.isnan(v) or hi == lo else 100 * (v - lo) / (hi - lo)
            cells.append({"text": _fmt(v, 2), "width": round(width)})
        rows.append({"label": f"{value} (n={counts[value]})", "cells": cells})
    return {"columns": [str(c) for c in table.columns], "rows": rows}


def _grid(store: RunStore, df, split: str, labels: list[str], examples: int) -> dict:
    samples = sorted(df[df["split"] == split]["sample"].unique())[:examples] if not df.empty else []
    if not samples:
        return {"columns": [], "rows": []}
    columns = ["input"]
    for label in labels:
        columns.append(label)
    has_gt = (store.root / "inputs" / split / "gt").exists()
    if has_gt:
        columns.append("ground truth")
    rows = []
    for sid in samples:
        cells = [
            {
                "img": png_data_uri(store.input_path(split, "input", sid)),
                "mask": png_data_uri(store.input_path(split, "mask", sid)),
            }
        ]
        for label in labels:
            cells.append(
                {
                    "img": png_data_uri(store.prediction_path(label, split, sid)),
                    "mask": png_data_uri(store.prediction_path(label, split, sid, mask=True)),
                }
            )
        if has_gt:
            cells.append({"img": png_data_uri(store.input_path(split, "gt", sid)), "mask": None})
        rows.append({"sample": sid, "cells": cells})
    return {"columns": columns, "rows": rows}


def run_context(store: RunStore, examples: int) -> dict[str, Any]:
    manifest = store.manifest()
    df = store.frame()
    summary = summarize(df)
    if not df.empty and "area" in df:
        df["area_bin"] = df["area"].map(lambda a: area_bin(a) if a is not None and not math.isnan(a) else "")
    reported = {}
    for label, facts in manifest.get("methods", {}).items():
        spec = facts.get("spec", {})
        reported[label.split("@")[0]] = spec.get("reported", {})
    labels = store.labels()
    quality = [("psnr", "PSNR (dB)", 2), ("ssim", "SSIM", 3)]
    table3 = _table(summary, "test_paired", quality + [("region_psnr", "occluded-region PSNR", 2)], reported)
    variant_of = {
        label.split("@")[0]: facts.get("spec", {}).get("variant_of", "")
        for label, facts in manifest.get("methods", {}).items()
    }
    ablations = []
    for base in sorted({v for v in variant_of.values() if v}):
        rows = [r for r in table3["rows"] if base in (r["method"], variant_of.get(r["method"]))]
        if len(rows) > 1:
            ablations.append({"base": base, "headers": table3["headers"], "rows": rows})
    out_of_range = {}
    if "out_of_range" in df:
        means = df.groupby("label")["out_of_range"].mean()
        out_of_range = {label: float(v) for label, v in means.items() if v > 0}
    mask_cols = [("mask_iou", "mask IoU", 3), ("mask_f1", "mask F1", 3)]
    return {
        "id": manifest.get("run_id", store.root.name),
        "manifest": manifest,
        "table3": table3,
        "ablations": ablations,
        "out_of_range": out_of_range,
        "natural": _table(summary, "test_natural", quality + mask_cols, {}),
        "clean": _table(summary, "test_clean", quality + [("occluded_fraction", "pixels marked occluded", 4)], {}),
        "masks": _table(summary, "test_paired", mask_cols, {}),
        "by_family": _breakdown(df, "family") if not df.empty else {"columns": [], "rows": []},
        "by_area": _breakdown(df, "area_bin") if not df.empty else {"columns": [], "rows": []},
        "grids": [
            {"split": s, "title": SPLIT_TITLES[s], **_grid(store, df, s, labels, examples)} for s in SPLIT_TITLES
        ],
        "study": read_json(store.root / "user_study" / "results.json"),
        "identification": read_json(store.root / "identification.json"),
        "failed": {k: v.get("error") for k, v in manifest.get("methods", {}).items() if v.get("status") == "failed"},
    }


def render_report(runs: list[Path], output: Path | None = None, examples: int = 8) -> Path:
    import jinja2

    stores = [RunStore(Path(r)) for r in runs]
    contexts = [run_context(s, examples) for s in stores]
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=jinja2.select_autoescape(["html", "jinja"]),
    )
    html = env.get_template("report.html.jinja").render(runs=contexts, split_titles=SPLIT_TITLES)
    path = output or stores[0].root / "report.html"
    atomic_write_bytes(Path(path), html.encode())
    return Path(path)


def summary_table(store: RunStore) -> None:
    """Print the run's Table III to the terminal."""
    from rich.console import Console
    from rich.table import Table

    summary = summarize(store.frame())
    table = Table(title=f"run {store.root.name}")
    for col in ("method", "mask", "split", "n", "PSNR", "SSIM", "mask IoU"):
        table.add_column(col)
    if not summary.empty:
        for _, r in summary.iterrows():
            r = r.to_dict()
            table.add_row(
                r["method"],
                r["mask_source"],
                r["split"],
                str(int(r["n"])),
                _fmt(r.get("psnr_mean"), 2),
                _fmt(r.get("ssim_mean"), 3),
                _fmt(r.get("mask_iou_mean"), 3),
            )
    Console(stderr=True).print(table)
    Console(stderr=True).print(f"results: {store.root}")
