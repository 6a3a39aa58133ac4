"""The run folder: manifest, stored test inputs, predictions, append-only metrics, summary.

Layout (docs/design.md "Run store")::

    runs/<run-id>/manifest.json                               (+ manifest.copy.json, the same, written after it)
    runs/<run-id>/inputs/<split>/{input,gt,mask}/<id>.png     the fixed test sets every method sees
    runs/<run-id>/predictions/<label>/<split>/<id>.png        (+ masks/<id>.png when predicted)
    runs/<run-id>/metrics/<label>.jsonl                       one row per (split, sample), append-only
    runs/<run-id>/digests/<label>.sha256                      one digest per metrics row, appended before it
    runs/<run-id>/summary.csv                                 label x split: n, mean, std, ci95 per metric

Every file is written atomically (temp file + rename); a metrics row is appended only after its
PNG exists, so a killed run resumes by skipping the rows it finds.

Tamper evidence: each row holds the sha256 of its prediction PNG (and predicted mask), and the row's own line
has its sha256 in the label's digest file, so :meth:`RunStore.verify` finds a missing or changed image, an
edited, added or deleted row, and a label the manifest calls evaluated that has no rows. The manifest is
checked against :data:`MANIFEST_FIELDS` on every read, and a lost ``manifest.json`` is read from its copy.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import re
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from bench.io import MANIFEST, MANIFEST_COPY, atomic_write_bytes, file_sha256, write_json

METRIC_COLUMNS = (
    "psnr",
    "ssim",
    "ssim_padded",
    "region_psnr",
    "lpips",  # bench.measures: per-image LPIPS-VGG, LPIPS-Alex, landmark distance, where their files were found
    "lpips_alex",
    "lmd",
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


# The manifest's schema: each field's JSON type where present (``None``: null allowed); the report and the
# exports read every one of them. Per-label and per-method entries are objects whose "status" is a string.
MANIFEST_FIELDS: dict[str, tuple[type | None, ...]] = {
    "run_id": (str,),
    "status": (str,),
    "created": (str,),
    "updated": (str,),
    "finished": (str,),
    "argv": (list,),
    "config": (dict,),
    "seed": (int,),
    "versions": (dict,),
    "git": (str, None),
    "platform": (str,),
    "device": (str,),
    "world_size": (int,),
    "methods": (dict,),
    "training": (dict,),
    "data": (dict, None),
    "options": (dict,),
    "plugins": (dict,),
    "metrics": (dict,),
    "failed": (list,),
    "error": (str, None),
}
TAMPER_FIX = (
    "restore the run folder from a backup, or run the same `bench run` again (an unfinished run recomputes what "
    "is damaged; a complete one is run anew)"
)
# what every manifest `bench run` writes has from its start, and a report shows
REPORTED_FIELDS = ("run_id", "status", "created", "argv", "config", "seed", "versions", "methods", "training")
_JSON_TYPE = {str: "a string", int: "a whole number", list: "a list", dict: "an object", None: "null"}


def check_manifest(manifest: Any, path: Path, required: tuple[str, ...] = ()) -> None:
    """Refuse a manifest that is not the object ``bench run`` writes: one line naming the field and the fix."""
    fix = f"restore it from {path.parent / MANIFEST_COPY} or a backup, or run the same `bench run` again"

    def kind(value: Any) -> str:
        return "null" if value is None else _JSON_TYPE.get(type(value), type(value).__name__)

    if not isinstance(manifest, dict):
        raise ValueError(f"{path} holds {kind(manifest)}, not a run manifest (an object); {fix}")
    for field in required:
        if field not in manifest:
            raise ValueError(f"{path} has no {field!r} field, so it is not a complete run manifest; {fix}")
    for field, types in MANIFEST_FIELDS.items():
        value = manifest.get(field, ...)
        if value is ... or any(value is None if t is None else type(value) is t for t in types):
            continue
        wanted = " or ".join(_JSON_TYPE[t] for t in types)
        raise ValueError(f"{path}: field {field!r} is {kind(value)}, not {wanted}; {fix}")
    for section in ("methods", "training"):
        for key, entry in manifest.get(section, {}).items():
            if not isinstance(entry, dict):
                raise ValueError(f"{path}: {section}[{key!r}] is {kind(entry)}, not an object; {fix}")
            for field, wanted in (("status", str), ("spec", dict), ("info", dict)):
                if field in entry and not isinstance(entry[field], wanted):
                    raise ValueError(
                        f"{path}: {section}[{key!r}].{field} is {kind(entry[field])}, not {_JSON_TYPE[wanted]}; {fix}"
                    )


def _torn(path: Path) -> bool:
    """Whether ``path`` ends in a line a kill cut short (its last byte is not a newline)."""
    if not path.exists() or not path.stat().st_size:
        return False
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) != b"\n"


def row_digest(line: str) -> str:
    """The sha256 of one metrics row as written (its JSON line without the newline)."""
    return hashlib.sha256(line.encode()).hexdigest()


def digests_path(rows: Path) -> Path:
    """The digest file of a metrics file ``metrics/<label>.jsonl``: ``digests/<label>.sha256`` (per rank likewise)."""
    return rows.parent.parent / "digests" / f"{rows.stem}.sha256"


def _read_digests(path: Path) -> list[tuple[str, str]]:
    """(digest, "split/sample") per complete line of a digest file; a cut-short last line (a kill) is left out."""
    if not path.exists():
        return []
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a digest file; {TAMPER_FIX}")
    out = []
    for line in path.read_text(errors="replace").split("\n")[:-1]:
        digest, _, key = line.partition(" ")
        out.append((digest, key))
    return out


class RunStore:
    """One run folder. ``rank`` > 0 (a torchrun worker) writes its own metrics file and never the manifest."""

    def __init__(self, root: Path, rank: int = 0) -> None:
        self.root = Path(root)
        self.rank = rank

    # manifest -------------------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def manifest(self, required: tuple[str, ...] = ()) -> dict[str, Any]:
        """The manifest, checked against :data:`MANIFEST_FIELDS` (and holding ``required``). A deleted
        ``manifest.json`` is read from its copy, so the run is found again, resumed and reported; the next
        update writes both again."""
        path = self.manifest_path
        if not path.exists():
            path = self.root / MANIFEST_COPY
            if not path.exists():
                raise FileNotFoundError(f"{self.root} is not a run folder (no manifest.json, nor {MANIFEST_COPY})")
        if path.is_dir():
            raise ValueError(f"{path} is a folder, not a run manifest; {TAMPER_FIX}")
        try:
            manifest = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            copy = "" if path.name == MANIFEST_COPY else f"copy it from {MANIFEST_COPY} beside it, "
            raise ValueError(
                f"{path} is corrupt ({exc}); {copy}restore it from a backup, or delete the run folder"
            ) from exc
        check_manifest(manifest, path, required)
        return manifest

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """``manifest.json`` and then its copy, each atomically: a kill or a deletion never loses both."""
        if self.rank == 0:
            write_json(self.manifest_path, manifest)
            write_json(self.root / MANIFEST_COPY, manifest)

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
                digests_path(path).unlink(missing_ok=True)
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

    def _lines(self, path: Path, label: str) -> Iterable[tuple[str, str, dict[str, Any]]]:
        """(where, line, row) of each complete line of ``label``'s metrics file. An unterminated last line is a
        write a kill cut short and is skipped (the run recomputes it); any other line that is not a JSON row is
        damage, and so is a row of another label (a file copied or swapped in: its images would be another's)."""
        if path.is_dir():
            raise ValueError(f"{path} is a folder, not a metrics file; {TAMPER_FIX}")
        lines = path.read_text(errors="replace").split("\n")
        for number, line in enumerate(lines[:-1], 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
                _check_values(row)
                row["split"], row["sample"]  # noqa: B018 - every row names its sample
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                raise ValueError(
                    f"{where} is a damaged metrics row; run the same `bench run` again to recompute it"
                ) from None
            if row.get("label", label) != label:
                raise ValueError(
                    f"{where} is a row of {row.get('label')!r} in the metrics file of {label!r} (moved or copied "
                    f"there); {TAMPER_FIX}"
                )
            yield where, line, row

    def read_rows(self, label: str, verify: bool = False) -> list[dict[str, Any]]:
        """Rows of one label from every rank's file.

        A line that is not a JSON row, or a second row for one (split, sample), is damage: one error naming the
        file and line, never a row that silently disappears from the report. ``verify`` also checks every row
        against its digest file and every image against the digest in its row (:meth:`_verify`).
        """
        rows = []
        seen: dict[tuple[str, str], str] = {}
        for path in self._row_files(label):
            lines = list(self._lines(path, label))
            if verify:
                self._verify(label, path, lines)
            for where, _, row in lines:
                key = (row["split"], row["sample"])
                if key in seen:
                    raise ValueError(
                        f"{where} repeats the row of {seen[key]}; run the same `bench run` again to repair"
                    )
                seen[key] = where
                rows.append(row)
        return rows

    def _image_problem(self, label: str, row: dict[str, Any]) -> str | None:
        """What is wrong with the images a row scores (missing, or bytes other than those it recorded), or None."""
        for field, mask in (("png_sha256", False), ("mask_sha256", True)):
            if field not in row:
                continue
            png = self.prediction_path(label, row["split"], row["sample"], mask=mask)
            if not png.is_file():
                return f"{png} is missing"
            if file_sha256(png) != row[field]:
                return f"{png} has changed since it was scored (its sha256 is not the one its row recorded)"
        return None

    def _verify(self, label: str, path: Path, lines: list[tuple[str, str, dict[str, Any]]]) -> None:
        """Refuse ``path`` unless its rows are exactly those its digest file recorded and each row's images are
        the ones it scored; one line naming the file."""
        digests = digests_path(path)
        if lines and not digests.exists():
            raise ValueError(f"{digests} is missing, so the rows of {path} cannot be verified; {TAMPER_FIX}")
        recorded: dict[str, str] = dict(_read_digests(digests))
        for where, line, row in lines:
            if recorded.pop(row_digest(line), None) is None:
                raise ValueError(
                    f"{where} is not the row that was written (its sha256 is not in {digests.name}); {TAMPER_FIX}"
                )
            problem = self._image_problem(label, row)
            if problem:
                raise ValueError(f"{problem}, but {where} scores it; {TAMPER_FIX}")
        if recorded:
            first = next(iter(recorded.values())) or "a line naming no sample"
            raise ValueError(
                f"{path} lacks {len(recorded)} row(s) that {digests.name} records as written (the first: {first}); "
                f"{TAMPER_FIX}"
            )

    def repair_rows(self, label: str) -> int:
        """Drop damaged, duplicate, interrupted and unverifiable lines of ``label``'s own file (a row its digest
        file does not record, or whose image is missing or changed), and digests of rows that are not there, both
        files atomically, so the run recomputes those samples; returns how many lines were dropped."""
        path = self.metrics_path(label)
        digests = digests_path(path)
        if not path.exists():
            digests.unlink(missing_ok=True)  # digests of a first batch whose rows a kill never let be written
            return 0
        recorded = {digest for digest, _ in _read_digests(digests)}
        kept, keys, dropped, seen = [], [], 0, set()
        text = path.read_text(errors="replace")
        for line in text.split("\n")[:-1]:
            try:
                row = json.loads(line)
                key = (row["split"], row["sample"])
                _check_values(row)
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                dropped += bool(line.strip())
                continue
            foreign = row.get("label", label) != label
            if foreign or key in seen or row_digest(line) not in recorded or self._image_problem(label, row):
                dropped += 1
                continue
            seen.add(key)
            kept.append(line + "\n")
            keys.append(f"{row_digest(line)} {key[0]}/{key[1]}\n")
        dropped += not text.endswith("\n") and bool(text)
        if dropped or len(recorded) != len(kept) or _torn(digests):
            atomic_write_bytes(digests, "".join(keys).encode())
            atomic_write_bytes(path, "".join(kept).encode())
        return dropped

    def done_ids(self, label: str, split: str) -> set[str]:
        return {r["sample"] for r in self.read_rows(label) if r.get("split") == split}

    def append_rows(self, label: str, rows: Iterable[dict[str, Any]]) -> None:
        """Append ``rows``: first each one's digest to the label's digest file, then the rows, so no row is on disk
        without its digest. Only the rows are fsynced: a power loss that takes digests the rows outlived leaves
        rows that do not verify, which the next run drops and recomputes (one fsync per batch, not two)."""
        path = self.metrics_path(label)
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = list(rows)
        lines = [json.dumps({k: _clean(v) for k, v in r.items()}) for r in rows]
        digests = digests_path(path)
        digests.parent.mkdir(exist_ok=True)
        if _torn(path) or _torn(digests):
            self.repair_rows(label)  # drop the line a kill cut short, so the new lines stay parseable
        keys = "".join(f"{row_digest(line)} {r['split']}/{r['sample']}\n" for line, r in zip(lines, rows, strict=True))
        with open(digests, "a") as f:
            f.write(keys)
        with open(path, "a") as f:
            f.write("".join(line + "\n" for line in lines))
            f.flush()
            os.fsync(f.fileno())

    def labels(self) -> list[str]:
        folder = self.root / "metrics"
        if not folder.exists():
            return []
        return sorted({re.sub(r"\.rank\d+$", "", p.stem) for p in folder.glob("*.jsonl")})

    def frame(self, verify: bool = False):
        """All rows of all labels as one pandas DataFrame. ``verify`` (what a report reads) first checks every row
        and image against its digests, and that each label the manifest calls evaluated has rows."""
        import pandas as pd

        if verify:
            methods = self.manifest().get("methods", {})
            for label, facts in methods.items():
                if facts.get("status") == "evaluated" and not self._row_files(label):
                    raise ValueError(
                        f"{self.metrics_path(label)} is missing, but the manifest says {label} was evaluated; "
                        f"{TAMPER_FIX}"
                    )
            for label in self.labels():
                if label not in methods:
                    raise ValueError(
                        f"{self.metrics_path(label)} holds rows of {label!r}, which this run never evaluated (its "
                        f"manifest does not name it); {TAMPER_FIX}"
                    )
        rows = [r for label in self.labels() for r in self.read_rows(label, verify)]
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


def write_summary(store: RunStore, summary=None) -> Path:
    """``summary.csv``: ``summary`` (the report passes the table it renders), else the store's rows summarized."""
    summary = summarize(store.frame()) if summary is None else summary
    path = store.root / "summary.csv"
    atomic_write_bytes(path, summary.to_csv(index=False, float_format="%.6g").encode())
    return path


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# Provenance: what a run folder records about the software that made it ----------------------------------------
def versions() -> dict[str, str]:
    """Python's, this package's and the numeric libraries' versions."""
    import importlib.metadata as md
    import platform

    from bench import __version__

    out = {"python": platform.python_version(), "deocc-bench": __version__}
    for pkg in ("torch", "torchvision", "timm", "torchmetrics", "numpy", "pluggy", "opencv-python-headless"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _git(*args: str) -> str | None:
    import subprocess

    try:
        out = subprocess.run(["git", *args], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def git_hash() -> str | None:
    """HEAD, with "-dirty" when the working tree differs from it (the cache keys hash the sources either way)."""
    head = _git("rev-parse", "HEAD")
    if head and _git("status", "--porcelain", "--untracked-files=no"):
        head += "-dirty"
    return head or None


def find_or_create_run(runs: Path, key: str, config: dict[str, Any], seed: int, argv: list[str]) -> RunStore:
    """Resume the newest unfinished run under ``runs`` whose folder carries ``key`` (the configuration's
    identity hash), else start a new one whose manifest records ``config``, ``argv`` and the provenance."""
    import platform
    import time

    for folder in sorted([*runs.glob(f"*-{key}"), *runs.glob(f"*-{key}-*")], reverse=True):
        store = RunStore(folder)
        try:
            if store.manifest().get("status") != "complete":
                return store
        except (FileNotFoundError, ValueError):
            continue
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    folder, n = runs / f"{stamp}-{key}", 1
    while folder.exists():  # the same configuration again within a second: never reuse a finished run's folder
        n += 1
        folder = runs / f"{stamp}-{key}-{n}"
    store = RunStore(folder)
    store.root.mkdir(parents=True)
    store.write_manifest(
        {
            "run_id": store.root.name,
            "status": "running",
            "created": now(),
            "argv": argv,
            "config": config,
            "seed": seed,
            "versions": versions(),
            "git": git_hash(),
            "platform": platform.platform(),
            "methods": {},
            "training": {},
        }
    )
    return store
