"""Identification protocol: CMC and intervals by hand, gallery rules, LightCNN-9 through timm, a short training."""

import numpy as np
import pytest
import torch

from baselines import lightcnn as idm
from bench.data.types import FaceSet
from bench.identification import protocol


def test_cmc_hand_computed_with_identity_max_a_tie_and_an_unknown_identity():
    gallery = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [-1.0, 0.0]])
    gallery_ids = np.array([0, 1, 1, 2])
    probes = np.array([[5.0, 0.0], [0.0, -1.0], [0.6, 0.8], [1.0, 0.0]])  # unnormalised on purpose
    probe_ids = np.array([0, 2, 0, 7])
    # probe 0: id0 1.0 beats id1 0.6, id2 -1                    -> rank 1
    # probe 1: genuine id2 0.0 ties id0 0.0 (counts against)    -> rank 2 (rank 1 if ties were won)
    # probe 2: genuine id0 0.6 < id1 max(0.8, 1.0), > id2 -0.6  -> rank 2 (rank 3 if id1 counted twice)
    # probe 3: identity 7 is not enrolled: never identified     -> no rank, a miss at every k
    ranks = protocol.probe_ranks(probes, probe_ids, gallery, gallery_ids)
    np.testing.assert_array_equal(ranks, [1, 2, 2, np.inf])
    curve = protocol.cmc(probes, probe_ids, gallery, gallery_ids, max_rank=4)
    np.testing.assert_allclose(curve, [1 / 4, 3 / 4, 3 / 4, 3 / 4])


def test_a_zero_or_nan_embedding_is_never_a_hit():
    gallery, gallery_ids = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), np.array([0, 1, 2])
    probes = np.array([[0.0, 0.0], [np.nan, 1.0], [1.0, 0.0], [1.0, 0.1]])
    # probes 0, 1: no finite score for their own identity -> a miss; probe 2 (id 2, a zero gallery image) too;
    # probe 3 (id 0) scores 0.995 but the zero gallery image of id 2 outranks every probe -> rank 2
    ranks = protocol.probe_ranks(probes, np.array([0, 1, 2, 0]), gallery, gallery_ids)
    np.testing.assert_array_equal(ranks, [np.inf, np.inf, np.inf, 2])


def test_cluster_interval_resamples_identities_not_probes():
    assert protocol.cluster_interval(np.ones(6), np.array([0, 0, 1, 1, 2, 2])) == (1.0, 1.0)
    # person 0 always identified, person 1 never: a resample holds 0, 1 or 2 copies of person 0 among two
    # people, so its rate is 0, 1/2 or 1, each with probability 1/4, 1/2, 1/4: the 95% interval is [0, 1]
    low, high = protocol.cluster_interval(np.array([1, 1, 1, 0]), np.array([0, 0, 0, 1]))
    assert (low, high) == (0.0, 1.0)
    # 20 people, 19 always identified: rate 0.95; the interval holds it and is not the binomial one over probes
    hits, people = np.repeat(np.arange(20) > 0, 5).astype(float), np.repeat(np.arange(20), 5)
    low, high = protocol.cluster_interval(hits, people)
    assert low < 0.95 < high == 1.0 and low < 0.87  # a binomial interval over 100 probes starts near 0.89


def test_gallery_is_one_clean_image_per_identity_never_a_probe_of_itself():
    faces = _pattern_faces(3, 4, 16, seed=0)
    gallery = protocol.choose_gallery(faces, seed=5)
    assert sorted(gallery.identities.tolist()) == [0, 1, 2]
    assert gallery.ids == [faces.ids[i] for i in gallery.index]
    assert gallery.ids == protocol.choose_gallery(faces, seed=5).ids  # seeded
    probes = protocol.eligible(faces, gallery)
    assert len(probes) == 9 and not set(gallery.index.tolist()) & set(probes.tolist())
    stranger = FaceSet(**{**faces.__dict__, "identities": faces.identities + 10, "ids": [f"x{i}" for i in range(12)]})
    assert len(protocol.eligible(stranger, gallery)) == 0  # not enrolled: left out, reported by n


@pytest.mark.parametrize("size, flat", [(64, 128 * 4 * 4), (128, 8192)])
def test_lightcnn9_shapes(size, flat):
    model = idm.LightCNN9(num_classes=7, img_size=size).eval()
    assert model.fc1.filter.weight.shape == (512, flat)
    assert model.features[0].filter.weight.shape == (96, 1, 5, 5)
    x = torch.rand(2, 1, size, size)
    with torch.no_grad():
        assert model(x).shape == (2, 7)
        assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (2, 256)
    feats = idm.embed(model, np.random.default_rng(0).integers(0, 256, (3, size // 2, size // 2, 3), np.uint8))
    assert feats.shape == (3, 256) and feats.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)


def test_official_checkpoint_layout_loads_through_timm(tmp_path):
    import timm

    source = idm.LightCNN9(num_classes=11, img_size=32).eval()
    path = tmp_path / "LightCNN_9Layers_checkpoint.pth.tar"
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    torch.save({"epoch": 80, "arch": "LightCNN-9", "state_dict": state, "prec1": 0.9}, path)
    idm.register_timm()
    idm.register_timm()  # idempotent
    assert "lightcnn9" in timm.list_models("lightcnn*") and not timm.list_pretrained("lightcnn*")
    model = timm.create_model(
        "lightcnn9", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), num_classes=0, img_size=32
    ).eval()
    x = torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        expected = source.forward_head(source.forward_features(x), pre_logits=True)
        torch.testing.assert_close(model(x), expected, rtol=0, atol=0)
    assert torch.equal(idm.embedder(path, image_size=32).fc1.filter.weight, source.fc1.filter.weight)
    with pytest.raises(ValueError, match="image_size=64"):
        idm.embedder(path, image_size=64)


def test_released_weights_serve_a_64_px_benchmark(tmp_path):
    from bench.identification.recognizer import RecognizerContext

    source = idm.LightCNN9(num_classes=3, img_size=128).eval()  # the released network's geometry
    path = tmp_path / "LightCNN_9Layers_checkpoint.pth.tar"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    recognizer = idm.LightCNNRecognizer(RecognizerContext(image_size=64, device="cpu", weights=path))
    faces = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    feats = recognizer.embed(faces)
    with torch.no_grad():  # the faces are resized to 128 px, the released input, before the network
        expected = source.forward_head(source.forward_features(idm.to_gray(faces, 128)), pre_logits=True)
    np.testing.assert_allclose(feats, torch.nn.functional.normalize(expected, dim=1).numpy(), atol=1e-5)
    assert not recognizer.trainable


def _pattern_faces(identities: int, per_identity: int, size: int, seed: int) -> FaceSet:
    """Each identity a fixed symmetric 4x4 grey pattern; images vary in contrast and noise."""
    half = np.random.default_rng(123).random((identities, 4, 2))
    patterns = np.concatenate([half, half[:, :, ::-1]], 2)
    rng = np.random.default_rng(seed)
    block = np.ones((size // 4, size // 4))
    images = [
        np.kron(patterns[i], block) * rng.uniform(0.7, 1.0) + rng.normal(0, 0.05, (size, size))
        for i in range(identities)
        for _ in range(per_identity)
    ]
    n = identities * per_identity
    return FaceSet(
        images=np.repeat((np.clip(np.stack(images), 0, 1)[..., None] * 255).astype(np.uint8), 3, -1),
        identities=np.repeat(np.arange(identities), per_identity),
        attributes=np.zeros((n, 10), np.float32),
        landmarks=np.zeros((n, 5, 2), np.float32),
        ids=[f"s{seed}_{i}" for i in range(n)],
    )


def _trained(train: FaceSet, steps: int, workdir, batch_size: int = 12) -> idm.LightCNNRecognizer:
    """A LightCNN-9 trained on ``train`` through the harness loop (bench.training.fit), as identification does."""
    from bench.data.types import TrainData
    from bench.identification.recognizer import RecognizerContext
    from bench.training import Budget, fit

    recognizer = idm.LightCNNRecognizer(RecognizerContext(image_size=train.size, device="cpu", steps=steps))
    recognizer.batch_size = batch_size
    assert recognizer.trainable
    fit(recognizer, TrainData(train, train, None, ()), Budget(steps), workdir, checkpoint_every=5)
    return recognizer


def test_short_training_learns_identities_and_protocol_scores_them(tmp_path):
    train, held_out = _pattern_faces(4, 8, 16, seed=0), _pattern_faces(4, 4, 16, seed=1)
    model = _trained(train, 12, tmp_path).model.eval()
    with torch.no_grad():
        predicted = model(idm.to_gray(train.images, 16)).argmax(1).numpy()
    assert (predicted == train.identities).mean() >= 0.6  # chance: 0.25
    gallery = protocol.choose_gallery(held_out, seed=0)
    keep = protocol.eligible(held_out, gallery)  # one gallery image per identity, not a probe of itself
    gallery_feats = idm.embed(model, held_out.images[gallery.index])
    ids = held_out.identities[keep]
    clean = protocol.score(idm.embed(model, held_out.images[keep]), ids, gallery_feats, gallery, max_rank=4)
    scrambled = protocol.score(idm.embed(model, held_out.images[keep][::-1]), ids, gallery_feats, gallery, 4)
    assert (clean["n"], clean["identities"]) == (12, 4)
    assert clean["rank1"] > 0.5 and clean["rank4"] == 1.0 and scrambled["rank1"] < clean["rank1"]
    ranks = [clean[f"rank{k}"] for k in range(1, 5)]
    assert ranks == sorted(ranks)
    assert all(clean[f"rank{k}_low"] <= clean[f"rank{k}"] <= clean[f"rank{k}_high"] for k in range(1, 5))


def test_training_resumes_bit_exact_and_a_cached_state_embeds_alike(tmp_path):
    """Killed after a checkpoint (the loop stopped at step 5 of 12 by a budget of 5), then resumed: the weights
    equal those of an uninterrupted run; the stored state round-trips into a fresh recognizer (the cache)."""
    from bench.data.types import TrainData
    from bench.identification.recognizer import RecognizerContext
    from bench.training import Budget, fit, state_digest

    train = _pattern_faces(4, 4, 16, seed=0)
    whole = _trained(train, 12, tmp_path / "whole")
    ctx = RecognizerContext(image_size=16, device="cpu", steps=12)
    first = idm.LightCNNRecognizer(ctx)
    first.batch_size = 12
    fit(first, TrainData(train, train, None, ()), Budget(5), tmp_path / "cut", checkpoint_every=5)
    resumed = idm.LightCNNRecognizer(ctx)
    resumed.batch_size = 12
    result = fit(resumed, TrainData(train, train, None, ()), Budget(12), tmp_path / "cut", checkpoint_every=5)
    assert result.resumed_from == 5 and result.steps == 12
    assert state_digest(resumed.state_dict()) == state_digest(whole.state_dict())
    served = idm.LightCNNRecognizer(ctx)
    served.load_state_dict(whole.state_dict())
    np.testing.assert_array_equal(served.embed(train.images), whole.embed(train.images))


@pytest.mark.parametrize(
    "state, cause",
    [
        ({"features.0.filter.weight": torch.zeros(96, 1, 5, 5)}, r"missing 19 keys \(features.0.filter.bias, "),
        ("extra", r"unexpected 1 key \(extra\)"),
        ("shape", r"1 of another shape, e.g. fc1.filter.weight \[512, 2048\] where LightCNN-9 at image_size=128"),
        ({"state_dict": [1, 2]}, r"not a state dict of tensors"),
    ],
    ids=["missing-keys", "unexpected-key", "wrong-shape", "not-a-state-dict"],
)
def test_weights_that_do_not_fit_name_the_real_cause(tmp_path, state, cause):
    full = idm.LightCNN9(num_classes=5, img_size=128).state_dict()
    if state == "extra":
        state = {**full, "extra": torch.zeros(1)}
    elif state == "shape":
        state = {**full, "fc1.filter.weight": torch.zeros(512, 2048)}  # a 64 px network's fc1
    path = tmp_path / "w.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=cause):
        idm.check_weights(path)
    torch.save({"state_dict": {f"module.{k}": v for k, v in full.items()}}, path)
    idm.check_weights(path)  # the released layout, any class count: fits
