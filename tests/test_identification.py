"""Identification protocol: CMC by hand, LightCNN-9 through timm's registry, a short training."""

import numpy as np
import pytest
import torch

from bench import identification as idm
from bench.data.types import FaceSet


def test_cmc_hand_computed_with_identity_max_and_a_tie():
    gallery = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [-1.0, 0.0]])
    gallery_ids = np.array([0, 1, 1, 2])
    probes = np.array([[5.0, 0.0], [0.0, -1.0], [0.6, 0.8]])  # unnormalised on purpose
    probe_ids = np.array([0, 2, 0])
    # probe 0: id0 1.0 beats id1 0.6, id2 -1                    -> rank 1
    # probe 1: genuine id2 0.0 ties id0 0.0 (counts against)    -> rank 2 (rank 1 if ties were won)
    # probe 2: genuine id0 0.6 < id1 max(0.8, 1.0), > id2 -0.6  -> rank 2 (rank 3 if id1 counted twice)
    curve = idm.cmc(probes, probe_ids, gallery, gallery_ids, max_rank=3)
    np.testing.assert_allclose(curve, [1 / 3, 1.0, 1.0])
    with pytest.raises(ValueError, match="no gallery entry"):
        idm.cmc(probes, np.array([0, 2, 5]), gallery, gallery_ids)


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
    scrambled = FaceSet(**{**held_out.__dict__, "images": held_out.images[::-1].copy()})
    result = idm.identification_protocol(model, held_out, {"clean": held_out, "scrambled": scrambled}, seed=0)
    # one gallery image per identity; those four samples are not probes of themselves
    assert result["clean"]["gallery"] == 4 and result["clean"]["probes"] == 12
    assert result["clean"]["rank1"] > 0.5 and result["clean"]["rank4"] == 1.0
    assert result["scrambled"]["rank1"] < result["clean"]["rank1"]
    ranks = [result["clean"][f"rank{k}"] for k in range(1, 6)]
    assert ranks == sorted(ranks)
