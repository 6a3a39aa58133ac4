"""The identity measures beside rank-k: the angle ("Deg.") on hand vectors, TAR@FAR against hand-computed ROC points
and a brute-force threshold search, the Fréchet distance against SciPy's matrix square root and a closed form, and
the ROC chart."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from scipy import linalg

from bench.identification import protocol, verification
from bench.identification.frechet import frechet_distance


def test_angle_is_degrees_of_arccos_of_the_cosine_on_hand_vectors():
    feats = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0], [-3.0, 0.0], [1.0, math.sqrt(3)]])
    reference = np.array([[2.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    sim = protocol.similarity(feats, reference, np.arange(5))
    np.testing.assert_allclose(sim["values"], [1.0, math.sqrt(0.5), 0.0, -1.0, 0.5], atol=1e-12)
    np.testing.assert_allclose(sim["degrees"], [0.0, 45.0, 90.0, 180.0, 60.0], atol=1e-6)
    assert sim["angle"]["mean"] == pytest.approx(75.0)  # the mean of the angles ...
    assert math.degrees(math.acos(sim["mean"])) != pytest.approx(75.0)  # ... not the angle of the mean cosine
    assert protocol.angle(np.array([1.0 + 1e-7, -1.0 - 1e-7])).tolist() == [0.0, 180.0]  # round-off clipped


def test_tar_at_far_matches_hand_computed_roc_points():
    genuine = np.array([0.9, 0.8, 0.7, 0.4])
    impostor = np.array([0.85, 0.75, 0.5] + [0.1] * 97)  # 100 impostor pairs
    # FAR 1e-2: k = floor(0.01 x 100) = 1 impostor may pass; t = the 2nd highest impostor score, 0.75;
    # genuine above 0.75: 0.9 and 0.8 -> TAR 2/4; impostors above: 0.85 -> FAR 1/100
    at = verification.tar_at_far(genuine, impostor, 1e-2)
    assert (at["tar"], at["threshold"], at["far_achieved"]) == (0.5, 0.75, 0.01)
    # FAR 3e-2: k = 3, t = 0.1 (the 4th highest); genuine above it: all four
    assert verification.tar_at_far(genuine, impostor, 3e-2)["tar"] == 1.0
    # 100 impostor pairs cannot show a FAR of 1e-3: no number, a reason
    low = verification.tar_at_far(genuine, impostor, 1e-3)
    assert low["tar"] is None and low["note"] == "not enough impostor pairs (100 < 1000)"
    # ties at the threshold are all rejected: two impostors at 0.85, k = 1 -> t = 0.85, nothing above it passes
    tied = verification.tar_at_far(genuine, np.array([0.85, 0.85] + [0.1] * 98), 1e-2)
    assert (tied["tar"], tied["threshold"], tied["far_achieved"]) == (0.25, 0.85, 0.0)
    assert verification.tar_at_far(np.array([]), impostor, 1e-2)["note"] == "no genuine pairs"


def brute_force(genuine: np.ndarray, impostor: np.ndarray, far: float) -> float:
    """Try every threshold (each score, and below all of them); keep the smallest whose impostor acceptance (score
    strictly above it) is at most ``far``; its genuine acceptance."""
    candidates = sorted({-math.inf, *impostor.tolist(), *genuine.tolist()})
    t = min(c for c in candidates if (impostor > c).mean() <= far)
    return float((genuine > t).mean())


@pytest.mark.parametrize("seed", range(5))
def test_tar_at_far_is_the_brute_force_threshold_search(seed):
    rng = np.random.default_rng(seed)
    genuine = np.round(rng.normal(0.6, 0.2, 60), 2)  # rounded: ties between and within the two sets
    impostor = np.round(rng.normal(0.1, 0.2, 1500), 2)
    for far in (1e-2, 1e-3, 0.05, 0.3):
        assert verification.tar_at_far(genuine, impostor, far)["tar"] == brute_force(genuine, impostor, far)


def test_pairs_are_every_probe_against_every_gallery_image():
    gallery = np.array([[1.0, 0.0], [0.0, 1.0]])
    probes = np.array([[1.0, 0.1], [0.1, 1.0], [1.0, 1.0], [0.0, 0.0]])  # the last embeds as zero: no evidence
    genuine, impostor = verification.pair_scores(probes, np.array([0, 1, 1, 0]), gallery, np.array([0, 1]))
    np.testing.assert_allclose(genuine[:3], [1 / math.sqrt(1.01), 1 / math.sqrt(1.01), math.sqrt(0.5)])
    assert genuine[3] == -math.inf and impostor[3] == math.inf  # rejected as genuine, accepted as impostor
    assert len(impostor) == 4
    out = verification.verify(probes, np.array([0, 1, 1, 0]), gallery, np.array([0, 1]))
    assert (out["genuine"], out["impostor"]) == (4, 4)
    assert [a["note"] for a in out["at"]] == [
        "not enough impostor pairs (4 < 100)",
        "not enough impostor pairs (4 < 1000)",
    ]
    assert [far for far, _ in out["roc"]] == [f for f in verification.ROC_FARS if f * 4 >= 1 - 1e-9]


def scipy_frechet(a: np.ndarray, b: np.ndarray) -> float:
    """pytorch-fid's formula: SciPy's matrix square root of the covariance product (on unit vectors, as ours)."""
    a, b = (x / np.linalg.norm(x, axis=1, keepdims=True) for x in (a, b))
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = np.real(linalg.sqrtm(s_a @ s_b))
    diff = a.mean(0) - b.mean(0)
    return float(diff @ diff + np.trace(s_a + s_b - 2 * root))


def test_frechet_distance_agrees_with_scipys_square_root_and_a_closed_form():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, (300, 8)), rng.normal(0.3, 1.5, (250, 8))
    assert frechet_distance(a, b) == pytest.approx(scipy_frechet(a, b), rel=1e-9)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)

    # unit vectors (cos t, sin t) with all four sign patterns: mean 0, covariance diag(4 cos^2 t, 4 sin^2 t) / 3
    # (ddof 1); two such sets commute, so d^2 = sum of (sqrt(var_a) - sqrt(var_b))^2 over the axes
    def cross(t: float) -> np.ndarray:
        return np.array([[i * math.cos(t), j * math.sin(t)] for i in (-1, 1) for j in (-1, 1)])

    ta, tb = 0.3, 1.1
    closed = (4 / 3) * ((math.cos(ta) - math.cos(tb)) ** 2 + (math.sin(ta) - math.sin(tb)) ** 2)
    assert frechet_distance(cross(ta), 7 * cross(tb)) == pytest.approx(closed, rel=1e-9)  # scale: normalised away
    many = rng.normal(0, 1, (20, 64))  # fewer faces than dimensions: singular covariances, still a finite value
    assert np.isfinite(frechet_distance(many, rng.normal(0, 1, (30, 64))))
    with pytest.raises(ValueError, match="at least 2 embeddings"):
        frechet_distance(a[:1], b)


def test_roc_chart_is_self_contained_svg_one_line_per_probe_set():
    from bench.report import charts

    def row(probes: str, tar: float) -> dict:
        roc = [[far, min(1.0, tar + far)] for far in verification.ROC_FARS[4:]]
        return {
            "recognizer": "dlib",
            "variant": "pretrained",
            "set": "synthetic",
            "probes": probes,
            "n": 6,
            "verification": {"genuine": 6, "impostor": 234, "at": [], "roc": roc},
        }

    svg = charts.roc({"results": [row("occluded input", 0.2), row("oagan", 0.5)]})
    assert svg.startswith("<svg") and 'aria-label="roc"' in svg and "<text" not in svg
    assert all(i.startswith("roc-") for i in re.findall(r'id="([^"]+)"', svg))
    assert charts.roc({"results": [{**row("x", 0.1), "verification": {"roc": []}}]}) is None
    assert charts.roc(None) is None
