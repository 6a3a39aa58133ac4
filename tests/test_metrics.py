import math

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio as sk_psnr
from skimage.metrics import structural_similarity as sk_ssim

from bench import metrics


def _pairs() -> list:
    """(pred, target, SSIM tolerance) image pairs: random textures, and structured images where float32 hurts.

    bench.metrics computes in float32; skimage in float64. On textured images the two agree to ~2e-7. On flat
    or smooth images the variances are E[x^2] - E[x]^2 of nearly equal numbers, and float32 cancellation moves
    SSIM by up to ~7e-5 (measured: flat vs flat 6.4e-5, brightened gradient 1.8e-5), hence 1e-4 there.
    """
    rng = np.random.default_rng(0)
    out = []
    for sigma in (2, 10, 25, 50):
        target = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
        noisy = np.clip(target + sigma * rng.standard_normal(target.shape), 0, 255).astype(np.uint8)
        out.append(pytest.param(noisy, target, 1e-6, id=f"noise-sigma{sigma}"))
    target = rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)
    out.append(
        pytest.param(
            np.clip(target + 25 * rng.standard_normal(target.shape), 0, 255).astype(np.uint8),
            target,
            1e-6,
            id="noise-non-square-64x48",
        )
    )
    out.append(pytest.param(target, target.copy(), 1e-6, id="identical"))
    yy, xx = np.mgrid[0:40, 0:40]
    gradient = np.stack([xx * 255 / 39, yy * 255 / 39, (xx + yy) * 255 / 78], -1).astype(np.uint8)
    checker = ((xx // 8 + yy // 8) % 2 * 255).astype(np.uint8)[..., None].repeat(3, -1)
    flat = np.full((40, 40, 3), 128, np.uint8)
    out += [
        pytest.param(gradient, checker, 1e-6, id="gradient-vs-checkerboard"),
        pytest.param(np.roll(checker, 3, axis=1), checker, 1e-6, id="checkerboard-shifted-3px"),
        pytest.param(flat, rng.integers(0, 256, (40, 40, 3), dtype=np.uint8), 1e-6, id="flat-vs-noise"),
        pytest.param(np.clip(gradient.astype(int) + 20, 0, 255).astype(np.uint8), gradient, 1e-4, id="gradient+20"),
        pytest.param(flat, np.full((40, 40, 3), 100, np.uint8), 1e-4, id="flat-vs-flat"),
    ]
    return out


PAIRS = _pairs()
PAD = (metrics.SSIM_KERNEL - 1) // 2


def _sk_ssim_wang(pred: np.ndarray, target: np.ndarray) -> float:
    """skimage with Wang et al.'s settings: the reference docs/design.md names."""
    return sk_ssim(
        target,
        pred,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
        channel_axis=-1,
    )


@pytest.mark.parametrize("pred, target, tol", PAIRS)
def test_psnr_per_image_equals_skimage_and_the_formula(pred, target, tol):
    ours = metrics.psnr(pred[None], target[None])[0]
    if np.array_equal(pred, target):
        assert ours == math.inf
        return
    mse = np.mean((pred / 255.0 - target / 255.0) ** 2)
    assert ours == pytest.approx(10 * math.log10(1 / mse), abs=1e-5)  # float32: measured within 4e-6 dB
    assert ours == pytest.approx(sk_psnr(target, pred, data_range=255), abs=1e-5)


def test_psnr_is_the_mean_of_per_image_values_not_the_pooled_mse():
    batch = [p.values for p in PAIRS if p.id.startswith("noise-sigma")]
    pred, target = np.stack([b[0] for b in batch]), np.stack([b[1] for b in batch])
    ours = metrics.psnr(pred, target)
    np.testing.assert_allclose(
        ours, [sk_psnr(t, p, data_range=255) for p, t in zip(pred, target, strict=True)], atol=1e-5
    )
    pooled = 10 * math.log10(1 / np.mean((pred / 255.0 - target / 255.0) ** 2))
    assert ours.mean() > pooled + 1  # the pooled-MSE pitfall gives a different, lower number


def test_psnr_hand_value():
    a = np.zeros((1, 4, 4, 3), np.uint8)
    b = np.full((1, 4, 4, 3), 51, np.uint8)  # error 0.2 everywhere -> 10*log10(1/0.04)
    assert metrics.psnr(b, a)[0] == pytest.approx(13.9794, abs=1e-4)


@pytest.mark.parametrize("pred, target, tol", PAIRS)
def test_ssim_crop_equals_skimage_wang(pred, target, tol):
    """``crop=True`` drops the (k-1)/2 = 5 px border of the SSIM map, exactly as skimage does."""
    assert metrics.ssim(pred[None], target[None], crop=True)[0] == pytest.approx(_sk_ssim_wang(pred, target), abs=tol)


@pytest.mark.parametrize("pred, target, tol", PAIRS)
def test_ssim_default_equals_skimage_on_mirror_padded_images(pred, target, tol):
    """The default (torchmetrics) mirror-pads the image by 5 px and averages the map over every original pixel:
    skimage on the same mirror-padded images (numpy's "reflect" = torch's) gives that number."""
    width = ((PAD, PAD), (PAD, PAD), (0, 0))
    padded = _sk_ssim_wang(np.pad(pred, width, mode="reflect"), np.pad(target, width, mode="reflect"))
    assert metrics.ssim(pred[None], target[None])[0] == pytest.approx(padded, abs=tol)


@pytest.mark.parametrize("pair_id, at_least", [("checkerboard-shifted-3px", 0.1), ("gradient+20", 0.04)])
def test_ssim_default_is_not_skimage_where_the_border_matters(pair_id, at_least):
    """The padded default scores the border too, so on a 40 px image with structure at the edges it is not
    skimage's number (by 0.107 and 0.048 here); compare with papers that use skimage via ``crop=True``."""
    pred, target, _ = next(p.values for p in PAIRS if p.id == pair_id)
    assert abs(metrics.ssim(pred[None], target[None])[0] - _sk_ssim_wang(pred, target)) > at_least


def test_ssim_falls_with_noise_and_is_one_for_identical_images():
    batch = [p.values for p in PAIRS if p.id.startswith("noise-sigma")]
    pred, target = np.stack([b[0] for b in batch]), np.stack([b[1] for b in batch])
    for crop in (False, True):
        assert np.all(np.diff(metrics.ssim(pred, target, crop=crop)) < 0)  # more noise, lower SSIM
        assert metrics.ssim(target, target, crop=crop) == pytest.approx(np.ones(4))


def test_region_psnr_only_scores_the_mask():
    target = np.zeros((1, 8, 8, 3), np.uint8)
    pred = target.copy()
    pred[0, :4] = 51  # error only in the top half
    mask = np.zeros((1, 8, 8), np.uint8)
    mask[0, 4:] = 1  # the occluded region is the bottom half: perfect there
    assert metrics.region_psnr(pred, target, mask)[0] == math.inf
    mask[0] = 0
    mask[0, :4] = 1
    assert metrics.region_psnr(pred, target, mask)[0] == pytest.approx(13.9794, abs=1e-4)
    assert math.isnan(metrics.region_psnr(pred, target, np.zeros((1, 8, 8), np.uint8))[0])


def test_mask_scores():
    true = np.zeros((2, 4, 4), np.uint8)
    true[0, :2] = 1  # 8 pixels
    pred = np.zeros((2, 4, 4), np.uint8)
    pred[0, :1] = 255  # 4 pixels, all inside
    s = metrics.mask_scores(pred, true)
    assert s["mask_iou"][0] == pytest.approx(0.5)
    assert s["mask_f1"][0] == pytest.approx(2 * 4 / 12)
    assert s["mask_iou"][1] == 1.0  # nothing to find, nothing found
    assert s["occluded_fraction"].tolist() == [0.25, 0.0]


def test_area_bins():
    assert metrics.area_bin(0.05) == "0-10%"
    assert metrics.area_bin(0.25) == "20-30%"
    assert metrics.area_bin(0.9) == "50-100%"


def test_ssim_pair_is_the_valid_window_headline_and_the_padded_second_column():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (4, 48, 48, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 40, a.shape), 0, 255).astype(np.uint8)
    valid, padded = metrics.ssim_pair(a, b)
    np.testing.assert_allclose(valid, metrics.ssim(a, b, crop=True), atol=1e-7)
    np.testing.assert_allclose(padded, metrics.ssim(a, b), atol=1e-6)
    assert set(metrics.SSIM_CONVENTION) == {"ssim", "ssim_padded"}


def test_scores_of_strided_views_equal_those_of_contiguous_copies():
    """The evaluator scores ``tensor.numpy().transpose(0, 2, 3, 1)``, a strided view: the same values."""
    rng = np.random.default_rng(3)
    planar = rng.integers(0, 256, (3, 3, 24, 20), dtype=np.uint8)
    target = rng.integers(0, 256, (3, 24, 20, 3), dtype=np.uint8)
    mask = (rng.random((3, 24, 20)) > 0.5).astype(np.uint8)
    view = planar.transpose(0, 2, 3, 1)
    assert not view.flags.c_contiguous
    strided, copied = metrics.image_scores(view, target, mask), metrics.image_scores(view.copy(), target, mask)
    assert strided.keys() == copied.keys() == {"psnr", "ssim", "ssim_padded", "region_psnr"}
    for key in strided:
        np.testing.assert_array_equal(strided[key], copied[key])
