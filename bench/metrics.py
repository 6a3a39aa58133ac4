"""Per-image metrics on what was saved (uint8), as the design's conventions fix them.

PSNR: 10 log10(1 / MSE), ``data_range=1.0``, one value per image (torchmetrics with ``dim=(1,2,3)``; scikit-image),
never the pooled MSE of a batch.
SSIM: Gaussian window 11, sigma 1.5, K=(0.01, 0.03), ``data_range=1.0``, per image, mean over RGB.
The headline SSIM is the field's convention (``SSIM_CONVENTION``): the map over valid windows only, i.e. the
5 px border dropped, which is scikit-image with Wang et al.'s settings and mmagic (``ssim(..., crop=True)``).
torchmetrics' default mirror-pads the images by (k-1)/2 = 5 px and averages the map over every pixel, border
included; it is kept as the second column ``ssim_padded``. The two differ by up to ~0.1 on small images with
structure at the edges (docs/design.md, Conventions: Metrics; tests/test_metrics.py).
Region PSNR scores the occluded pixels only; mask IoU/F1 score predicted masks.
"""

from __future__ import annotations

import math

import numpy as np

SSIM_KERNEL = 11
SSIM_SIGMA = 1.5
SSIM_CONVENTION = {
    "ssim": "Wang et al. valid windows: Gaussian 11x11, sigma 1.5, K=(0.01,0.03), 5 px border of the map dropped "
    "(= scikit-image gaussian_weights, use_sample_covariance=False; mmagic)",
    "ssim_padded": "torchmetrics default: the same window over images mirror-padded by 5 px, every pixel averaged",
}


def _squared_error_sums(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Exact per-pixel squared errors of uint8 images [N,H,W,C] in units of 1/255^2 (int32): PSNR's and region
    PSNR's sums are then exact integers, whatever the image size."""
    diff = pred.astype(np.int32) - target.astype(np.int32)
    return diff * diff


def _psnr_from(sum_squared: np.ndarray, count: np.ndarray | int) -> np.ndarray:
    """10 log10(1 / MSE) with data range 1 from exact sums in units of 1/255^2: inf for an exact match, NaN
    where nothing is counted (an empty mask)."""
    sse = np.asarray(sum_squared, np.float64)
    count = np.broadcast_to(np.asarray(count, np.float64), sse.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 10 * np.log10(count * 255.0**2 / sse)
    out[sse == 0] = math.inf
    out[count == 0] = math.nan
    return out


def psnr(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-image PSNR of uint8 images [N,H,W,C]."""
    sq = _squared_error_sums(pred, target)
    return _psnr_from(sq.reshape(len(sq), -1).sum(1, dtype=np.int64), sq[0].size)


def _gaussian_window() -> np.ndarray:
    """The normalised 1-D Gaussian of the SSIM window (torchmetrics' and scikit-image's taps), float32."""
    d = np.arange(SSIM_KERNEL, dtype=np.float32) - (SSIM_KERNEL - 1) / 2
    g = np.exp(-((d / np.float32(SSIM_SIGMA)) ** 2) / 2)
    return (g / g.sum()).astype(np.float32)


_WINDOW = _gaussian_window()


def _blur(x: np.ndarray) -> np.ndarray:
    """Each float32 image [H,W,C] of ``x`` [N,H,W,C] under the 11x11 Gaussian, as if mirror-padded by 5 px
    (torchmetrics' construction; OpenCV's BORDER_REFLECT_101 is torch's "reflect"): OpenCV's separable filter,
    two 1-D passes of 11 taps, written in place into one array."""
    import cv2

    x = np.ascontiguousarray(x)
    out = np.empty(x.shape, np.float32)
    for i in range(len(x)):
        cv2.sepFilter2D(x[i], cv2.CV_32F, _WINDOW, _WINDOW, dst=out[i], borderType=cv2.BORDER_REFLECT_101)
    return out


def _ssim_map(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The SSIM map [N,H,W,C] of float32 images in [0,1]. Numpy and OpenCV rather than torch: ~4x fewer
    operations than the banded matrix products it replaced, and no torch thread pool to share with a forward
    pass (docs/speed.md, "Harness overhead")."""
    mu_p, mu_t = _blur(p), _blur(t)
    mu_pt, mu_pp, mu_tt = mu_p * mu_t, mu_p * mu_p, mu_t * mu_t
    c1, c2 = np.float32(0.01**2), np.float32(0.03**2)
    var_p = np.maximum(_blur(p * p) - mu_pp, 0)
    var_t = np.maximum(_blur(t * t) - mu_tt, 0)
    cov = _blur(p * t) - mu_pt
    return ((2 * mu_pt + c1) * (2 * cov + c2)) / ((mu_pp + mu_tt + c1) * (var_p + var_t + c2))


def _to01(images: np.ndarray) -> np.ndarray:
    """uint8 [N,H,W,C] -> float32 in [0,1] (as ``x.float() / 255``). float32 SSIM is within 2e-7 of float64 on
    textured images; on flat or smooth ones float32 cancellation in E[x^2] - E[x]^2 moves SSIM by up to ~7e-5
    (the golden tests against skimage hold to 1e-6 and 1e-4 respectively)."""
    return images.astype(np.float32, order="C") / np.float32(255.0)


def ssim(pred: np.ndarray, target: np.ndarray, crop: bool = False) -> np.ndarray:
    """Per-image SSIM: over valid windows (``crop=True``, the headline) or over the padded image."""
    valid, padded = ssim_pair(pred, target)
    return valid if crop else padded


def ssim_pair(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(valid-window SSIM, padded SSIM) per image from one SSIM map: the headline and the second column."""
    full = _ssim_map(_to01(pred), _to01(target))
    r, n = (SSIM_KERNEL - 1) // 2, len(full)
    valid = full[:, r:-r, r:-r].reshape(n, -1).mean(1, dtype=np.float64)
    return valid, full.reshape(n, -1).mean(1, dtype=np.float64)


def region_psnr(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """PSNR over the pixels where ``mask`` is 1 (all channels); NaN where the mask is empty."""
    return _region_psnr(_squared_error_sums(pred, target), mask)


def _region_psnr(squared: np.ndarray, mask: np.ndarray) -> np.ndarray:
    inside = np.asarray(mask).astype(bool)
    sums = np.einsum("nhwc,nhw->n", squared.astype(np.int64), inside.astype(np.int64))
    return _psnr_from(sums, inside.reshape(len(inside), -1).sum(1) * squared.shape[-1])


def image_scores(pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """``psnr``, ``ssim``, ``ssim_padded`` and (with a non-empty ``mask``) ``region_psnr`` of one batch of uint8
    images [N,H,W,3]: what the evaluator scores per image, PSNR and region PSNR from one exact error map."""
    squared = _squared_error_sums(pred, target)
    out = {"psnr": _psnr_from(squared.reshape(len(squared), -1).sum(1, dtype=np.int64), squared[0].size)}
    out["ssim"], out["ssim_padded"] = ssim_pair(pred, target)
    if mask is not None and mask.any():
        out["region_psnr"] = _region_psnr(squared, mask)
    return out


def mask_scores(pred_mask: np.ndarray, true_mask: np.ndarray, threshold: float = 0.5) -> dict[str, np.ndarray]:
    """IoU and F1 of binarized predicted masks; ``occluded_fraction`` of predicted occluded pixels.

    ``pred_mask`` is uint8 [N,H,W] (0..255, as saved) or float in [0,1]; ``true_mask`` is {0,1}.
    IoU of two empty masks is 1 (nothing to find, nothing found).
    """
    p = pred_mask.astype(np.float64)
    if pred_mask.dtype == np.uint8:
        p = p / 255.0
    pb = p > threshold
    tb = true_mask.astype(bool)
    inter = (pb & tb).sum(axis=(1, 2)).astype(np.float64)
    union = (pb | tb).sum(axis=(1, 2)).astype(np.float64)
    psum = pb.sum(axis=(1, 2)).astype(np.float64)
    tsum = tb.sum(axis=(1, 2)).astype(np.float64)
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    f1 = np.where(psum + tsum > 0, 2 * inter / np.maximum(psum + tsum, 1), 1.0)
    frac = psum / pb[0].size if len(pb) else np.zeros(0)
    return {"mask_iou": iou, "mask_f1": f1, "occluded_fraction": frac}


AREA_BINS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 1.0)


def area_bin(fraction: float) -> str:
    """The occluded-area bin label of a mask fraction, e.g. '10-20%'."""
    for lo, hi in zip(AREA_BINS[:-1], AREA_BINS[1:], strict=True):
        if fraction < hi or hi == AREA_BINS[-1]:
            return f"{round(lo * 100)}-{round(hi * 100)}%"
    raise AssertionError("unreachable")
