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


def test_short_training_learns_identities_and_protocol_scores_them():
    train, held_out = _pattern_faces(4, 8, 16, seed=0), _pattern_faces(4, 4, 16, seed=1)
    model = idm.train_lightcnn(train, steps=12, batch_size=12)
    assert not model.training
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
