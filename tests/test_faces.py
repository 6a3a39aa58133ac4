"""The procedural face renderer, the embedded synthetic benchmark and its preview sheet."""

from dataclasses import replace

import numpy as np
import pytest

from bench.data.embedded import build_synthetic, default_occluder
from bench.data.faces import NATURAL_KINDS, FaceRenderer, make_identity
from bench.data.preview import preview_grid
from bench.data.types import PAPER_ATTRIBUTES


@pytest.fixture(scope="module")
def renderer() -> FaceRenderer:
    return FaceRenderer(64)


def _render(renderer, ident, seed=3, natural=None):
    return renderer.render(ident, np.random.default_rng(seed), natural=natural)


def _find(predicate, seed=0):
    return next(make_identity(seed, i) for i in range(500) if predicate(make_identity(seed, i)))


def test_render_shapes_and_determinism(renderer):
    a, b = _render(renderer, make_identity(0, 5)), _render(renderer, make_identity(0, 5))
    assert a.clean.shape == (64, 64, 3) and a.clean.dtype == np.uint8
    assert a.landmarks.shape == (5, 2) and a.landmarks.dtype == np.float32
    assert a.mask.shape == (64, 64) and not a.mask.any() and a.occluder == ""
    assert np.array_equal(a.clean, b.clean) and np.array_equal(a.landmarks, b.landmarks)
    assert not np.array_equal(a.clean, _render(renderer, make_identity(0, 5), seed=4).clean)


def test_landmarks_ordered_inside_and_exact_across_sizes(renderer):
    big = FaceRenderer(128)
    for i in range(20):
        ident = make_identity(1, i)
        lm = _render(renderer, ident, seed=i).landmarks
        (lex, ley), (rex, rey), (nx, ny), (lmx, lmy), (rmx, rmy) = lm
        assert lex < nx < rex and lmx < nx < rmx
        assert max(ley, rey) < ny < min(lmy, rmy)
        assert (lm >= 0).all() and (lm < 64).all()
        # Same face at twice the size: landmarks scale exactly (pixel centres at integers).
        lm128 = _render(big, ident, seed=i).landmarks
        np.testing.assert_allclose(lm128, (lm + 0.5) * 2 - 0.5, atol=1e-3)


def test_eye_landmark_sits_on_the_eye(renderer):
    ident = replace(_find(lambda f: not f.makeup), shadow=False)
    out = _render(renderer, ident)
    skin = np.array(ident.skin)
    for x, y in out.landmarks[:2]:
        patch = out.clean[int(round(y)) - 1 : int(round(y)) + 2, int(round(x)) - 1 : int(round(x)) + 2]
        assert np.abs(patch.reshape(-1, 3) - skin).sum(1).max() > 60  # eye white / iris, not skin


def _patch(img, centre, r=3):
    x, y = (int(round(v)) for v in centre)
    return img[y - r : y + r + 1, x - r : x + r + 1].astype(np.float64)


def test_lipstick_reddens_the_mouth(renderer):
    woman = _find(lambda f: not f.male and f.lipstick)
    with_, without = _render(renderer, woman), _render(renderer, replace(woman, lipstick=False))
    mouth = with_.landmarks[3:].mean(0)
    red = lambda img: (lambda p: (p[..., 0] - p[..., 1:].mean(-1)).mean())(_patch(img, mouth, 2))  # noqa: E731
    assert red(with_.clean) > red(without.clean) + 15


@pytest.mark.parametrize("kind", ["goatee", "shadow"])
def test_beard_darkens_the_chin(renderer, kind):
    man = replace(_find(lambda f: f.male), shadow=False, goatee=False, mustache=False, sideburns=False)
    bearded = replace(man, **{kind: True})
    assert man.attributes()[PAPER_ATTRIBUTES.index("No_Beard")] == 1
    assert bearded.attributes()[PAPER_ATTRIBUTES.index("No_Beard")] == 0
    a, b = _render(renderer, man), _render(renderer, bearded)
    chin = a.landmarks[3:].mean(0) + (0, 7)
    assert _patch(b.clean, chin).mean() < _patch(a.clean, chin).mean() - 8


def test_makeup_and_age_are_visible(renderer):
    woman = replace(_find(lambda f: not f.male and f.young), makeup=False, lipstick=False)
    plain, made_up = _render(renderer, woman), _render(renderer, replace(woman, makeup=True))
    cheek = plain.landmarks[0] + (-1, 9)
    assert np.abs(_patch(made_up.clean, cheek) - _patch(plain.clean, cheek)).mean() > 5
    old = _render(renderer, replace(woman, young=False))
    assert np.abs(old.clean.astype(int) - plain.clean).mean() > 0.3  # wrinkles


def test_attributes_are_consistent_and_all_occur():
    attrs = np.stack([make_identity(0, i).attributes() for i in range(300)])
    beards = attrs[:, [PAPER_ATTRIBUTES.index(a) for a in ("5_o_Clock_Shadow", "Goatee", "Mustache", "Sideburns")]]
    np.testing.assert_array_equal(attrs[:, PAPER_ATTRIBUTES.index("No_Beard")], beards.max(1) == 0)
    male = attrs[:, PAPER_ATTRIBUTES.index("Male")] == 1
    assert not beards[~male].any()
    assert ((attrs == 0).any(0) & (attrs == 1).any(0)).all()


def test_identities_alike_within_distinct_between(renderer):
    imgs = np.stack([[_render(renderer, make_identity(2, i), seed=s).clean for s in (1, 2)] for i in range(10)])
    imgs = imgs.astype(np.float64)
    within = np.abs(imgs[:, 0] - imgs[:, 1]).mean()
    between = np.mean([np.abs(imgs[i, 0] - imgs[(i + 1) % 10, 1]).mean() for i in range(10)])
    assert between > within * 1.3


@pytest.mark.parametrize("kind", NATURAL_KINDS)
def test_natural_occlusion_clean_and_mask_consistent(renderer, kind):
    ident = make_identity(0, 7)
    out = _render(renderer, ident, natural=kind)
    plain = _render(renderer, ident)
    assert np.array_equal(out.clean, plain.clean) and np.array_equal(out.landmarks, plain.landmarks)
    m = out.mask.astype(bool)
    assert 0.01 < m.mean() < 0.5 and out.occluder.startswith(f"natural/{kind}/")
    assert np.abs(out.image[m].astype(int) - out.clean[m]).sum(1).mean() > 10
    seen = (out.image != out.clean).any(-1) & ~m
    if kind != "eyeglasses":
        assert not seen.any()  # everything an opaque occluder changes is in its mask
        return
    # Clear lenses tint the face behind them without hiding it: changed pixels outside the mask (docs/design.md
    # "Data"), faintly (a 14% blend; ~10 levels on average against ~150 under the frame).
    assert seen.mean() > 0.005
    assert np.abs(out.image[seen].astype(int) - out.clean[seen]).mean() < 20


def _small(seed=0, size=32, **counts):
    n = dict(identities=6, train_clean=12, train_natural=6, test_paired=12, test_natural=6, test_clean=6)
    return build_synthetic(size, seed=seed, **{**n, **counts})


def test_benchmark_splits_and_determinism():
    bench = _small()
    assert bench.name == "synthetic" and bench.attribute_names == PAPER_ATTRIBUTES
    assert bench.fingerprint() == _small().fingerprint()
    assert bench.fingerprint() != _small(seed=1).fingerprint()
    tn, tp, te = bench.train_natural, bench.test_paired, bench.test_natural
    assert tn.clean is None and tn.masks is None and len(tn) == 6
    assert len(bench.train_clean) == 12 and bench.train_clean.images.shape[1:] == (32, 32, 3)
    assert set(tp.families) == set(default_occluder(32).families)  # 12 samples, 12 families
    assert all(tp.masks.reshape(12, -1).any(1))
    outside = tp.masks == 0
    assert np.array_equal(tp.images[outside], tp.clean[outside])
    assert all(f.startswith("natural/") for f in te.families)
    opaque = np.array([not f.endswith("eyeglasses") for f in te.families])  # clear lenses tint outside the mask
    assert np.array_equal(te.images[opaque][te.masks[opaque] == 0], te.clean[opaque][te.masks[opaque] == 0])
    assert list(bench.test_clean.identities) == list(range(6))


def test_preview_grid_writes_a_png(tmp_path):
    from PIL import Image

    path = preview_grid(_small(), tmp_path / "grid.png", n=4)
    with Image.open(path) as im:
        assert im.width > 4 * 128 and im.height > 5 * 128
        assert len(np.unique(np.asarray(im).reshape(-1, 3), axis=0)) > 100
