import math

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio as sk_psnr
from skimage.metrics import structural_similarity as sk_ssim

from bench import metrics


@pytest.fixture
def pairs():
    rng = np.random.default_rng(0)
    target = (rng.random((4, 40, 40, 3)) * 255).astype(np.uint8)
    noise = np.array([2, 10, 25, 50])[:, None, None, None] * rng.standard_normal(target.shape)
    pred = np.clip(target + noise, 0, 255).astype(np.uint8)
    return pred, target


def test_psnr_is_per_image_and_matches_hand_and_skimage(pairs):
    pred, target = pairs
    ours = metrics.psnr(pred, target)
    for i in range(len(pred)):
        mse = np.mean((pred[i] / 255.0 - target[i] / 255.0) ** 2)
        assert ours[i] == pytest.approx(10 * math.log10(1 / mse), abs=1e-4)
        assert ours[i] == pytest.approx(sk_psnr(target[i] / 255.0, pred[i] / 255.0, data_range=1.0), abs=1e-4)
    pooled = 10 * math.log10(1 / np.mean((pred / 255.0 - target / 255.0) ** 2))
    assert ours.mean() > pooled + 1  # the pooled-MSE pitfall gives a different, lower number


def test_psnr_hand_value():
    a = np.zeros((1, 4, 4, 3), np.uint8)
    b = np.full((1, 4, 4, 3), 51, np.uint8)  # error 0.2 everywhere -> 10*log10(1/0.04)
    assert metrics.psnr(b, a)[0] == pytest.approx(13.9794, abs=1e-4)


def test_ssim_cropped_equals_skimage_wang(pairs):
    pred, target = pairs
    ours = metrics.ssim(pred, target, crop=True)
    for i in range(len(pred)):
        ref = sk_ssim(
            target[i] / 255.0,
            pred[i] / 255.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
            channel_axis=-1,
        )
        assert ours[i] == pytest.approx(ref, abs=1e-6)


def test_ssim_default_is_close_to_skimage_and_ordered(pairs):
    pred, target = pairs
    ours = metrics.ssim(pred, target)
    assert np.all(np.diff(ours) < 0)  # more noise, lower SSIM
    assert metrics.ssim(target, target) == pytest.approx(np.ones(4))


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
