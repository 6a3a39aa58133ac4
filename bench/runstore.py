"""The run folder: manifest, stored test inputs, predictions, append-only metrics, summary.

Layout (design.md "Run store")::

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

from bench.training import atomic_write_bytes

METRIC_COLUMNS = ("psnr", "ssim", "region_psnr", "mask_iou", "mask_f1", "occluded_fraction", "seconds")


def write_png(path: Path, image: np.ndarray) -> None:
    """uint8 [H,W,3] or [H,W] -> PNG, atomically."""
    import cv2

    if image.ndim == 3:
        image = image[..., ::-1]  # RGB -> BGR for OpenCV
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image))
    if not ok:
        raise OSError(f"could not encode {path}")
    atomic_write_bytes(path, buf.tobytes())


def read_png(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise OSError(f"cannot read image {path}: missing or corrupt; delete it and run again to recompute")
    return image[..., ::-1].copy() if image.ndim == 3 else image


def png_data_uri(path: Path) -> str | None:
    """A saved PNG inlined as a ``data:`` URI (self-contained HTML), or None when it does not exist."""
    import base64

    if not path.exists():
        return None
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def read_json(path: Path) -> Any | None:
    """A JSON file's content, or None when it does not exist."""
    return json.loads(path.read_text()) if path.exists() else None


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n").encode())


def _json_default(obj: Any) -> Any:
    """numpy scalars as numbers; anything else (paths, devices) as its string."""
    return obj.item() if isinstance(obj, np.generic) else str(obj)


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
            raise ValueError(f"{self.manifest_path} is corrupt ({exc}); delete the run folder") from exc

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

    def read_rows(self, label: str) -> list[dict[str, Any]]:
        """Rows of one label from every rank's file; a truncated last line (killed mid-write) is dropped."""
        folder = self.root / "metrics"
        paths = [folder / f"{label}.jsonl", *sorted(folder.glob(f"{glob.escape(label)}.rank*.jsonl"))]
        rows = []
        for path in paths:
            if not path.exists():
                continue
            for line in path.read_text().splitlines():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return rows

    def done_ids(self, label: str, split: str) -> set[str]:
        return {r["sample"] for r in self.read_rows(label) if r.get("split") == split}

    def append_rows(self, label: str, rows: Iterable[dict[str, Any]]) -> None:
        path = self.metrics_path(label)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps({k: _clean(v) for k, v in r.items()}) + "\n" for r in rows)
        if path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
            text = "\n" + text  # finish a line a kill cut short, so the new rows stay parseable
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
