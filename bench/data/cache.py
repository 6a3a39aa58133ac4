"""Decoded datasets cached once on disk and read back memory-mapped.

Decoding and aligning full CelebA (202,599 JPEGs) takes many minutes and ~10 GB of RAM at 128 px. The first
run writes every array of the resolved :class:`~bench.data.types.Benchmark` as a ``.npy`` file under a key
that describes what was loaded (loader, source files, size, seed, limit, and the loader's code); later runs
open them with ``mmap_mode="r"``, so start-up takes seconds and resident memory grows only with the faces a
run actually touches. The data fingerprint is stored with the arrays, so it is not recomputed either.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from bench.data.types import Benchmark, FaceSet
from bench.io import config_hash

FORMAT = 1
_ARRAYS = ("images", "identities", "attributes", "landmarks", "clean", "masks")
_LISTS = ("ids", "occluders", "families")


def cached_benchmark(root: Path, key: dict[str, Any], build: Callable[[], Benchmark]) -> tuple[Benchmark, bool]:
    """The benchmark ``key`` describes, from ``root/<hash>/`` when it is there, else built and stored first.
    Returns (benchmark, whether it came from the cache). A damaged entry is rebuilt."""
    folder = root / config_hash({"format": FORMAT, **key})
    if (folder / "benchmark.json").exists():
        try:
            return load(folder), True
        except (OSError, ValueError, KeyError):
            shutil.rmtree(folder, ignore_errors=True)  # damaged: rebuilt below from the source
    bench = build()
    save(bench, folder, key)
    return load(folder), False


def save(bench: Benchmark, folder: Path, key: dict[str, Any]) -> None:
    """Every split's arrays as .npy and the rest as JSON, written into a temporary folder renamed at the end."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        meta: dict[str, Any] = {
            "key": key,
            "name": bench.name,
            "attribute_names": list(bench.attribute_names),
            "info": bench.info,
            "fingerprint": bench.fingerprint(),
            "splits": {},
        }
        for split, faces in bench.splits().items():
            entry: dict[str, Any] = {}
            for name in _ARRAYS:
                value = getattr(faces, name)
                if value is not None:
                    np.save(tmp / f"{split}.{name}.npy", np.ascontiguousarray(value))
                entry[name] = value is not None
            for name in _LISTS:
                entry[name] = getattr(faces, name)
            meta["splits"][split] = entry
        (tmp / "benchmark.json").write_text(json.dumps(meta, default=str))
        for path in tmp.iterdir():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        try:
            os.replace(tmp, folder)
        except OSError:
            if not (folder / "benchmark.json").exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process (a torchrun rank) stored it first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load(folder: Path) -> Benchmark:
    """The stored benchmark with every array memory-mapped (read-only) and its stored fingerprint."""
    meta = json.loads((folder / "benchmark.json").read_text())
    splits = {}
    for split, entry in meta["splits"].items():
        values: dict[str, Any] = {}
        for f in fields(FaceSet):
            if f.name in _ARRAYS:
                values[f.name] = np.load(folder / f"{split}.{f.name}.npy", mmap_mode="r") if entry[f.name] else None
            else:
                values[f.name] = entry[f.name]
        splits[split] = FaceSet(**values)
    bench = Benchmark(name=meta["name"], attribute_names=tuple(meta["attribute_names"]), info=meta["info"], **splits)
    bench.known_fingerprint = meta["fingerprint"]
    return bench
