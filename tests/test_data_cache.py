"""The decoded-dataset cache: a second run opens the arrays memory-mapped, identical to a fresh build, under a
key that changes with what was loaded; every file is verified when read back, and a damaged entry is rebuilt
(saying why)."""

from __future__ import annotations

import json

import numpy as np
import pytest

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
    stored = dict(second.known_fingerprints)  # stored per split, and equal to hashing the arrays again
    assert stored == fresh.split_fingerprints() and second.fingerprint() == fresh.fingerprint()
    (entry,) = (tmp_path / "cache" / "data").iterdir()
    assert len(list(entry.glob("*.npy"))) >= 10


def test_the_key_follows_what_was_loaded(tmp_path):
    resolve_dataset(_config(tmp_path))
    resolve_dataset(_config(tmp_path, seed=1))
    resolve_dataset(_config(tmp_path, data_limit=7))
    assert len(list((tmp_path / "cache" / "data").iterdir())) == 3


def _flip_a_byte(path, at=-100):
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def _edit_info(entry):
    meta = json.loads((entry / "benchmark.json").read_text())
    meta["info"]["seed"] = 1  # still valid JSON, still loadable: only the checksum can tell
    (entry / "benchmark.json").write_text(json.dumps(meta))


# (case id, damage to the stored entry, what the reason for rebuilding names)
DAMAGE = [
    ("npy-garbage", lambda e: (e / "train_clean.images.npy").write_bytes(b"\x93NUMPY garbage"), "train_clean.images"),
    ("npy-one-bit-flipped", lambda e: _flip_a_byte(e / "test_paired.masks.npy"), "test_paired.masks.npy: its content"),
    (
        "npy-truncated",
        lambda e: (e / "test_clean.images.npy").write_bytes((e / "test_clean.images.npy").read_bytes()[:-64]),
        "test_clean.images.npy: its content",
    ),
    ("npy-missing", lambda e: (e / "train_natural.landmarks.npy").unlink(), "train_natural.landmarks.npy"),
    ("file-added", lambda e: (e / "notes.txt").write_text("hello"), "notes.txt"),
    ("json-edited", _edit_info, "benchmark.json: its content"),
    ("checksums-not-json", lambda e: (e / "sha256.json").write_text("{"), "Expecting"),
    ("checksums-missing", lambda e: (e / "sha256.json").unlink(), "sha256.json"),
]


@pytest.mark.parametrize("damage, reason", [c[1:] for c in DAMAGE], ids=[c[0] for c in DAMAGE])
def test_a_damaged_entry_is_rebuilt_saying_why(tmp_path, damage, reason):
    resolve_dataset(_config(tmp_path))
    (entry,) = (tmp_path / "cache" / "data").iterdir()
    damage(entry)
    again, _ = resolve_dataset(_config(tmp_path))
    assert again.info["cache"] == "built and stored" and reason in again.info["cache_rebuilt"]
    fresh, _ = resolve_dataset(_config(tmp_path))
    assert fresh.info["cache"] == "loaded (memory-mapped)" and "cache_rebuilt" not in fresh.info
    _same(again, fresh)
    from bench.data.embedded import build_synthetic

    _same(fresh, build_synthetic(size=64, seed=0, limit=6))


def test_celeba_sample_is_cached(shared_data, tmp_path):
    root = shared_data / "celeba-sample"
    config = RunConfig(methods=["identity"], dataset=str(root), data_limit=300, output=tmp_path)
    first, _ = resolve_dataset(config)
    second, _ = resolve_dataset(config)
    assert second.info["cache"] == "loaded (memory-mapped)"
    _same(first, second)


def test_a_change_in_any_block_of_a_large_file_is_found(tmp_path):
    """Files over one block are hashed block by block (in parallel): every block counts, and so does the length."""
    from bench.data.cache import BLOCK, CHECKSUMS, _digests, verify

    path = tmp_path / "x.npy"
    data = np.random.default_rng(0).integers(0, 256, 2 * BLOCK + 1000, dtype=np.uint8).tobytes()
    path.write_bytes(data)
    (tmp_path / CHECKSUMS).write_text(json.dumps(_digests(tmp_path, ["x.npy"])))
    verify(tmp_path)
    for at in (5, BLOCK + 7, 2 * BLOCK + 999):
        _flip_a_byte(path, at)
        with pytest.raises(ValueError, match=r"x\.npy: its content is not what was stored"):
            verify(tmp_path)
        path.write_bytes(data)
    for size in (2 * BLOCK, len(data) + 1):
        path.write_bytes((data + b"\0")[:size])
        with pytest.raises(ValueError, match="sha256 differs"):
            verify(tmp_path)
