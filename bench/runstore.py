"""The run folder: manifest, stored test inputs, predictions, append-only metrics, summary.

Layout (docs/design.md "Run store")::

    runs/<run-id>/manifest.json
    runs/<run-id>/inputs/<split>/{input,gt,mask}/<id>.png     the fixed test sets every method sees
    runs/<run-id>/predictions/<label>/<split>/<id>.png        (+ masks/<id>.png when predicted)
    runs/<run-id>/metrics/<label>.jsonl                       one row per (split, sample), append-only
    runs/<run-id>/summary.csv                                 label x split: n, mean, std, ci95 per metric

Every file is written atomically (temp file + rename); a metrics row is appended only after its
PNG exists, so a killed run resumes by skipping the rows it finds.
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from bench.io import atomic_write_bytes, write_json

METRIC_COLUMNS = (
    "psnr",
    "ssim",
    "ssim_padded",
    "region_psnr",
    "mask_iou",
    "mask_f1",
    "occluded_fraction",
    "out_of_range",
    "seconds",
)


METRIC_LIMIT = 1e6  # no metric the harness writes comes near this (PSNR of uint8 images stays under ~100 dB)


def _check_values(row: dict[str, Any]) -> None:
    """A metric is a finite number within METRIC_LIMIT, "inf"/"-inf" (written for an exact match) or absent;
    anything else (NaN, a string, 1e308) was not written by the harness."""
    for col in METRIC_COLUMNS:
        value = row.get(col)
        if value is None or value in ("inf", "-inf"):
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not abs(value) <= METRIC_LIMIT:
            raise ValueError(f"{col}={value!r}")


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


class RunStore:
    """One run folder. ``rank`` > 0 (a torchrun worker) writes its own metrics file and never the manifest."""

    def __init__(self, root: Path, rank: int = 0) -> None:
        self.root = Path(root)
        self.rank = rank

    # manifest -------------------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            raise FileNotFoundError(f"{self.root} is not a run folder (no manifest.json)")
        try:
            return json.loads(self.manifest_path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"{self.manifest_path} is corrupt ({exc}); restore it from a copy, or delete the run folder"
            ) from exc

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        if self.rank == 0:
            write_json(self.manifest_path, manifest)

    def update_manifest(self, **changes: Any) -> dict[str, Any]:
        if self.rank:
            return {}
        manifest = self.manifest()
        manifest.update(changes)
        manifest["updated"] = now()
        self.write_manifest(manifest)
        return manifest

    def set_status(self, section: str, key: str, **fields: Any) -> None:
        """Merge ``fields`` into ``manifest[section][key]`` ("training" per method, "methods" per label)."""
        if self.rank:
            return
        manifest = self.manifest()
        manifest.setdefault(section, {}).setdefault(key, {}).update(fields)
        manifest["updated"] = now()
        self.write_manifest(manifest)

    def claim_label(self, label: str, model: str) -> bool:
        """Record which model ``label``'s rows come from. Rows and predictions of another model (a run resumed
        after its model changed, e.g. an unfinished one that has since finished) are removed, so a label never
        mixes two models; returns whether anything was removed."""
        if self.rank:
            return False
        previous = self.manifest().get("methods", {}).get(label, {}).get("model")
        stale = previous is not None and previous != model
        if stale:
            import shutil

            for path in self._row_files(label):
                path.unlink()
            shutil.rmtree(self.root / "predictions" / label, ignore_errors=True)
        self.set_status("methods", label, model=model)
        return stale

    # images ---------------------------------------------------------------------------------------
    def input_path(self, split: str, kind: str, sample: str) -> Path:
        return self.root / "inputs" / split / kind / f"{sample}.png"

    def prediction_path(self, label: str, split: str, sample: str, mask: bool = False) -> Path:
        sub = Path(split) / "masks" if mask else Path(split)
        return self.root / "predictions" / label / sub / f"{sample}.png"

    # metrics --------------------------------------------------------------------------------------
    def metrics_path(self, label: str) -> Path:
        suffix = f".rank{self.rank}" if self.rank else ""
        return self.root / "metrics" / f"{label}{suffix}.jsonl"

    def _row_files(self, label: str) -> list[Path]:
        folder = self.root / "metrics"
        paths = [folder / f"{label}.jsonl", *sorted(folder.glob(f"{glob.escape(label)}.rank*.jsonl"))]
        return [p for p in paths if p.exists()]

    def read_rows(self, label: str) -> list[dict[str, Any]]:
        """Rows of one label from every rank's file.

        An unterminated last line is a write a kill cut short and is skipped (the run recomputes it). Any
        other line that is not a JSON row, or a second row for one (split, sample), is damage: one error
        naming the file and line, never a row that silently disappears from the report.
        """
        rows = []
        seen: dict[tuple[str, str], str] = {}
        for path in self._row_files(label):
            text = path.read_text(errors="replace")
            lines = text.split("\n")
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                if number == len(lines):  # no newline after it: an interrupted append
                    continue
                try:
                    row = json.loads(line)
                    key = (row["split"], row["sample"])
                    _check_values(row)
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    raise ValueError(
                        f"{where} is a damaged metrics row; run the same `bench run` again to recompute it"
                    ) from None
                if key in seen:
                    raise ValueError(
                        f"{where} repeats the row of {seen[key]}; run the same `bench run` again to repair"
                    )
                seen[key] = where
                rows.append(row)
        return rows

    def repair_rows(self, label: str) -> int:
        """Drop damaged, duplicate and interrupted lines of ``label``'s own file (atomically), so the run
        recomputes those samples; returns how many lines were dropped."""
        path = self.metrics_path(label)
        if not path.exists():
            return 0
        kept, dropped, seen = [], 0, set()
        for line in path.read_text(errors="replace").split("\n")[:-1]:
            try:
                row = json.loads(line)
                key = (row["split"], row["sample"])
                _check_values(row)
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                dropped += bool(line.strip())
                continue
            if key in seen:
                dropped += 1
                continue
            seen.add(key)
            kept.append(line + "\n")
        tail = path.read_bytes()
        dropped += not tail.endswith(b"\n") and bool(tail)
        if dropped:
            atomic_write_bytes(path, "".join(kept).encode())
        return dropped

    def done_ids(self, label: str, split: str) -> set[str]:
        return {r["sample"] for r in self.read_rows(label) if r.get("split") == split}

    def append_rows(self, label: str, rows: Iterable[dict[str, Any]]) -> None:
        path = self.metrics_path(label)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps({k: _clean(v) for k, v in r.items()}) + "\n" for r in rows)
        if path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
            self.repair_rows(label)  # drop the line a kill cut short, so the new rows stay parseable
        with open(path, "a") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    def labels(self) -> list[str]:
        folder = self.root / "metrics"
        if not folder.exists():
            return []
        return sorted({re.sub(r"\.rank\d+$", "", p.stem) for p in folder.glob("*.jsonl")})

    def frame(self):
        """All rows of all labels as one pandas DataFrame."""
        import pandas as pd

        rows = [r for label in self.labels() for r in self.read_rows(label)]
        df = pd.DataFrame(rows)
        for col in METRIC_COLUMNS:
            if col in df:
                df[col] = pd.to_numeric(df[col].replace({"inf": math.inf, "-inf": -math.inf}), errors="coerce")
        return df


def summarize(df):
    """label x split: n, mean, std and 95% CI half-width of each metric.

    Infinite values (PSNR of an unchanged image) are left out of the mean; a metric that is infinite
    for every image is reported as infinite.
    """
    import pandas as pd

    if df.empty:
        return pd.DataFrame()
    records = []
    keys = ["label", "method", "mask_source", "split"]
    for key, group in df.groupby(keys, sort=True, dropna=False):
        rec = dict(zip(keys, key, strict=True))
        rec["n"] = len(group)
        for col in METRIC_COLUMNS:
            if col not in group:
                continue
            values = group[col].dropna()
            finite = values[np.isfinite(values)]
            if finite.empty and (values == math.inf).any():  # e.g. PSNR of untouched clean faces
                rec[f"{col}_mean"], rec[f"{col}_std"], rec[f"{col}_ci95"] = math.inf, 0.0, 0.0
                continue
            values = finite
            if values.empty:
                continue
            rec[f"{col}_mean"] = values.mean()
            rec[f"{col}_std"] = values.std(ddof=1) if len(values) > 1 else 0.0
            rec[f"{col}_ci95"] = 1.96 * rec[f"{col}_std"] / math.sqrt(len(values))
        records.append(rec)
    return pd.DataFrame(records)


def write_summary(store: RunStore) -> Path:
    summary = summarize(store.frame())
    path = store.root / "summary.csv"
    atomic_write_bytes(path, summary.to_csv(index=False, float_format="%.6g").encode())
    return path


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
