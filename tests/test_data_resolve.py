"""Data resolution from plain values (``bench.data.resolve``): what decides the decoded data keys its cache, and a
run's configuration reaches it through ``RunConfig.data()`` alone."""

from __future__ import annotations

from bench.data.embedded import default_occluder
from bench.data.resolve import DataConfig, _loader, resolve_data
from bench.planning import RunConfig


def test_allow_partial_keys_the_celeba_cache_only_when_set(shared_data):
    root = shared_data / "celeba-sample"
    occluder = default_occluder(64)
    strict, _ = _loader(DataConfig(str(root), 64), occluder)
    partial, _ = _loader(DataConfig(str(root), 64, allow_partial=True), occluder)
    assert "allow_partial" not in strict and partial == {**strict, "allow_partial": True}


def test_a_run_resolves_its_data_through_a_data_only_config(tmp_path):
    config = RunConfig(methods=["identity"], output=tmp_path, data_limit=6, seed=3)
    data = config.data()
    assert data == DataConfig("synthetic", 64, seed=3, data_limit=6, cache=tmp_path / "cache" / "data")
    resolved = resolve_data(data)
    assert resolved.natural is None and resolved.bench.info["cache"] == "built and stored"
    assert resolve_data(data).bench.fingerprint() == resolved.bench.fingerprint()
