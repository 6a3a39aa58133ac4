"""The decoded-dataset cache: a second run opens the arrays memory-mapped, identical to a fresh build, under a
key that changes with what was loaded; a damaged entry is rebuilt."""

from __future__ import annotations

import numpy as np

from bench.planning import RunConfig
from bench.runner import resolve_dataset


def _config(tmp_path, **kw) -> RunConfig:
    return RunConfig(methods=["identity"], output=tmp_path, **{"data_limit": 6, **kw})


def _same(a, b) -> None:
    assert a.fingerprint() == b.fingerprint()
    for split, faces in a.splits().items():
        other = b.splits()[split]
        assert faces.ids == other.ids
        for name in ("images", "identities", "attributes", "landmarks", "clean", "masks"):
            x, y = getattr(faces, name), getattr(other, name)
            assert (x is None) == (y is None) and (x is None or np.array_equal(x, y)), (split, name)


def test_second_resolution_is_memory_mapped_and_identical(tmp_path):
    first, _ = resolve_dataset(_config(tmp_path))
    second, _ = resolve_dataset(_config(tmp_path))
    assert first.info["cache"] == "built and stored" and second.info["cache"] == "loaded (memory-mapped)"
    assert isinstance(second.train_clean.images, np.memmap) and not second.train_clean.images.flags.writeable
    from bench.data.embedded import build_synthetic

    fresh = build_synthetic(size=64, seed=0, limit=6)
    _same(second, fresh)
    assert second.known_fingerprint == fresh.fingerprint()  # stored, and equal to hashing the arrays again
    (entry,) = (tmp_path / "cache" / "data").iterdir()
    assert len(list(entry.glob("*.npy"))) >= 10


def test_the_key_follows_what_was_loaded(tmp_path):
    resolve_dataset(_config(tmp_path))
    resolve_dataset(_config(tmp_path, seed=1))
    resolve_dataset(_config(tmp_path, data_limit=7))
    assert len(list((tmp_path / "cache" / "data").iterdir())) == 3


def test_a_damaged_entry_is_rebuilt(tmp_path):
    resolve_dataset(_config(tmp_path))
    (entry,) = (tmp_path / "cache" / "data").iterdir()
    (entry / "train_clean.images.npy").write_bytes(b"\x93NUMPY garbage")
    again, _ = resolve_dataset(_config(tmp_path))
    assert again.info["cache"] == "built and stored"
    fresh, _ = resolve_dataset(_config(tmp_path))
    _same(again, fresh)


def test_celeba_sample_is_cached(shared_data, tmp_path):
    root = shared_data / "celeba-sample"
    config = RunConfig(methods=["identity"], dataset=str(root), data_limit=300, output=tmp_path)
    first, _ = resolve_dataset(config)
    second, _ = resolve_dataset(config)
    assert second.info["cache"] == "loaded (memory-mapped)"
    _same(first, second)
