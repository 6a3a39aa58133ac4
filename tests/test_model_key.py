"""A trained model is keyed by what its training read (the training splits), never by the test sets: adding a
folder of test faces serves every cached model, while other training data trains anew."""

from __future__ import annotations

import json
import shutil

from bench.data.embedded import build_synthetic


def _manifest(out) -> list[dict]:
    return [json.loads((run / "manifest.json").read_text()) for run in sorted((out / "runs").iterdir())]


def test_a_new_test_set_serves_the_cached_model_and_new_training_data_retrains(tmp_path, bench_main):
    out = tmp_path / "out"
    run = ["run", "--methods", "pconv", "--mask-source", "gt", "--steps", "2", "--limit", "2", "--output", str(out)]
    code, _, err = bench_main(*run, "--data-limit", "16")
    assert code == 0 and "pconv: trained 2 steps" in err
    (first,) = (out / "runs").iterdir()
    natural = tmp_path / "natural"  # a user's folder of occluded faces: the first run's natural inputs, renamed
    natural.mkdir()
    for i, png in enumerate(sorted((first / "inputs" / "test_natural").rglob("*.png"))):
        shutil.copy(png, natural / f"face{i}.png")
    code, _, err = bench_main(*run, "--data-limit", "16", "--natural-folder", str(natural))
    assert code == 0 and "pconv: loaded cached checkpoint" in err and "trained" not in err
    code, _, err = bench_main(*run, "--data-limit", "20")  # more training faces: another model
    assert code == 0 and "pconv: trained 2 steps" in err
    manifests = _manifest(out)
    data = [m["data"] for m in manifests]
    assert data[0]["training_fingerprint"] == data[1]["training_fingerprint"] != data[2]["training_fingerprint"]
    assert len({d["fingerprint"] for d in data}) == 3  # each run's rows were computed on other test sets
    keys = [m["training"]["pconv"]["cache_key"] for m in manifests]
    assert keys[0] == keys[1] != keys[2]


def test_the_training_fingerprint_covers_the_training_splits_alone():
    bench = build_synthetic(size=32, identities=4, train_clean=8, train_natural=4, test_paired=8, test_natural=4)
    training, whole = bench.training_fingerprint(), bench.fingerprint()
    bench.test_paired = bench.test_paired.subset(list(range(4)))
    bench.known_fingerprints.pop("test_paired")
    assert bench.training_fingerprint() == training and bench.fingerprint() != whole
    bench.train_clean = bench.train_clean.subset(list(range(4)))
    bench.known_fingerprints.pop("train_clean")
    assert bench.training_fingerprint() != training
