"""A run's dataset from plain values: which loader, its on-disk cache key, the user's natural test faces.

Takes a :class:`DataConfig` (data fields only, no run configuration), so ``bench run`` and ``bench data preview``
resolve data the same way. What the run does with the data afterwards (the identity re-split of
``--identification``, then the user's natural faces as ``test_natural``) is the runner's flow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.data.celebamask import PARTS
from bench.data.types import Benchmark, FaceSet, Occluder


@dataclass(frozen=True)
class DataConfig:
    """What decides a run's decoded data."""

    dataset: str  # "synthetic" or a CelebA folder ("celeba:" prefix optional)
    image_size: int
    seed: int = 0
    data_limit: int | None = None  # at most this many images per split
    occluders: Path | None = None  # extra RGBA PNG occluders
    natural_folder: Path | None = None  # the user's own occluded faces, scored as test_natural
    mask_parts: list[str] = field(default_factory=lambda: list(PARTS))  # CelebAMask-HQ's occluder parts
    paired_folder: list[Path] = field(default_factory=list)  # the user's paired test sets (bench.data.paired)
    derive_mask: float | None = None  # their masks from |input - gt| where a folder has no mask/
    align: str = "none"  # how the user's folders become faces: the fixed crop or dlib (bench.data.align)
    allow_partial: bool = False  # CelebA: accept annotation files and images that disagree
    cache: Path = Path("results/cache/data")  # where decoded datasets are memory-mapped


@dataclass
class ResolvedData:
    bench: Benchmark
    occluder: Occluder  # what paired training draws its occlusions from
    natural: FaceSet | None  # the user's natural faces, read first (a bad file fails before the data is built)
    paired: dict[str, tuple[FaceSet, dict[str, Any]]] = field(default_factory=dict)  # split -> faces, facts
    natural_facts: dict[str, Any] = field(default_factory=dict)  # the natural folder's alignment, skipped files


def resolve_data(cfg: DataConfig) -> ResolvedData:
    """The benchmark and the occluder used for paired training. The decoded dataset comes from the on-disk
    cache (memory-mapped) when one describes it, else it is built and stored."""
    from bench.data.cache import cached_benchmark
    from bench.data.embedded import default_occluder

    occluder = default_occluder(cfg.image_size, user_dir=cfg.occluders)
    natural, natural_facts = None, {}
    if cfg.natural_folder is not None:
        from bench.data.folder import read_folder

        natural, natural_facts = read_folder(cfg.natural_folder, cfg.image_size, cfg.mask_parts, cfg.align)
    paired = {}
    if cfg.paired_folder:
        from bench.data.paired import load_paired, split_name

        paired = {split_name(f): load_paired(f, cfg.image_size, cfg.derive_mask, cfg.align) for f in cfg.paired_folder}
    key, build = _loader(cfg, occluder)
    bench, hit = cached_benchmark(cfg.cache, key, build)
    bench.info = {**bench.info, "cache": "loaded (memory-mapped)" if hit else "built and stored"}
    return ResolvedData(bench, occluder, natural, paired, natural_facts)


def _loader(cfg: DataConfig, occluder: Occluder) -> tuple[dict[str, Any], Any]:
    """The cache key that describes the decoded data, and the function that builds it."""
    from bench.identity import files_identity, source_closure
    from bench.io import config_hash

    key: dict[str, Any] = {
        "size": cfg.image_size,
        "seed": cfg.seed,
        "limit": cfg.data_limit,
        "occluders": files_identity(cfg.occluders),
    }
    if cfg.dataset == "synthetic":
        from bench.data.embedded import build_synthetic

        key |= {"loader": "synthetic", "code": config_hash(source_closure(("bench.data.embedded",), ("bench",)))}

        def build() -> Benchmark:
            return build_synthetic(size=cfg.image_size, seed=cfg.seed, user_dir=cfg.occluders, limit=cfg.data_limit)

        return key, build
    from bench.data.celeba import load_celeba, source_signature

    root = Path(cfg.dataset.removeprefix("celeba:")).expanduser().resolve()
    key |= {
        "loader": "celeba",
        "root": str(root),
        "files": source_signature(root),
        "code": config_hash(source_closure(("bench.data.celeba",), ("bench",))),
    }
    if cfg.allow_partial:  # only when set, so the keys of every existing complete dataset stay as they were
        key["allow_partial"] = True

    def build() -> Benchmark:
        return load_celeba(
            root,
            size=cfg.image_size,
            seed=cfg.seed,
            limit=cfg.data_limit,
            occluder=occluder,
            allow_partial=cfg.allow_partial,
        )

    return key, build


def with_user_sets(bench: Benchmark, data: ResolvedData, natural_folder: Path | None) -> Benchmark:
    """``bench`` with the user's test sets (after any re-split, so they are never pooled into training): the
    natural faces as its ``test_natural``, each paired folder as one more test split."""
    for name, (faces, facts) in data.paired.items():
        bench.paired[name] = faces
        bench.info.setdefault("paired", {})[name] = facts
    if data.natural is not None and data.natural_facts:
        bench.info["test_natural_facts"] = data.natural_facts
    return with_natural(bench, data.natural, natural_folder)


def data_notes(bench: Benchmark) -> list[str]:
    """The one-line notes the user's folders left (files skipped as not images), for the terminal."""
    facts = [bench.info.get("test_natural_facts") or {}, *(bench.info.get("paired") or {}).values()]
    return [f["skipped"] for f in facts if f.get("skipped")]


def with_natural(bench: Benchmark, natural: FaceSet | None, folder: Path | None) -> Benchmark:
    """``bench`` with the user's natural faces as its ``test_natural`` (after any re-split, so they are never
    pooled into training)."""
    if natural is not None:
        bench.test_natural = natural
        bench.known_fingerprints.pop("test_natural", None)  # a different natural test set: hash it again
        bench.info["test_natural"] = f"folder {folder}"
    return bench
