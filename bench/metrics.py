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

import functools
import math

import numpy as np
import torch

SSIM_KERNEL = 11
SSIM_SIGMA = 1.5
SSIM_CONVENTION = {
    "ssim": "Wang et al. valid windows: Gaussian 11x11, sigma 1.5, K=(0.01,0.03), 5 px border of the map dropped "
    "(= scikit-image gaussian_weights, use_sample_covariance=False; mmagic)",
    "ssim_padded": "torchmetrics default: the same window over images mirror-padded by 5 px, every pixel averaged",
}


def _to01(images: np.ndarray) -> torch.Tensor:
    """uint8 [N,H,W,3] -> float32 [N,3,H,W] in [0,1]. float32 SSIM is ~9x faster on a CPU than float64 and
    within 2e-7 of it on textured images; on flat or smooth ones float32 cancellation in E[x^2] - E[x]^2 moves
    SSIM by up to ~7e-5 (the golden tests against skimage hold to 1e-6 and 1e-4 respectively)."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0


def _psnr(mse: torch.Tensor) -> np.ndarray:
    """10 log10(1 / MSE) per image (data range 1); inf for an exact match."""
    mse = mse.numpy().astype(np.float64)
    with np.errstate(divide="ignore"):
        return np.where(mse > 0, 10 * np.log10(1 / np.maximum(mse, 1e-300)), math.inf)


def psnr(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    return _psnr(((_to01(pred) - _to01(target)) ** 2).mean(dim=(1, 2, 3)))


def _gaussian_window() -> torch.Tensor:
    """The normalised 1-D Gaussian of the SSIM window (torchmetrics' and scikit-image's taps)."""
    d = torch.arange(SSIM_KERNEL, dtype=torch.float32) - (SSIM_KERNEL - 1) / 2
    g = torch.exp(-((d / SSIM_SIGMA) ** 2) / 2)
    return g / g.sum()


@functools.lru_cache(maxsize=8)
def _band(padded: int) -> torch.Tensor:
    """The 1-D Gaussian blur of a line of ``padded`` pixels as a banded [padded, padded - 10] matrix: blurring is
    then one matrix product, which a CPU runs several times faster than a depthwise convolution (2.3x at 64 px,
    7x at 128, measured on one thread), equal to it to float rounding (SSIM within 4e-7 per image)."""
    g = _gaussian_window()
    out = padded - (SSIM_KERNEL - 1)
    band = torch.zeros(padded, out)
    for j in range(out):
        band[j : j + SSIM_KERNEL, j] = g
    return band


def _ssim_map(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The SSIM map [N,3,H,W] of images mirror-padded by 5 px (torchmetrics' construction), with the 11x11
    Gaussian applied as two 1-D passes (22 taps per pixel instead of 121), each one matrix product."""
    r = (SSIM_KERNEL - 1) // 2
    p, t = (torch.nn.functional.pad(x, (r, r, r, r), mode="reflect") for x in (p, t))
    stack = torch.cat((p, t, p * p, t * t, p * t))
    s, c, ph, pw = stack.shape
    h, w = ph - 2 * r, pw - 2 * r
    rows = (stack.reshape(-1, pw) @ _band(pw)).view(s * c, ph, w)
    blur = torch.matmul(_band(ph).t(), rows).view(s, c, h, w)
    mu_p, mu_t, e_pp, e_tt, e_pt = blur.split(p.shape[0])
    var_p = (e_pp - mu_p**2).clamp(min=0.0)
    var_t = (e_tt - mu_t**2).clamp(min=0.0)
    cov = e_pt - mu_p * mu_t
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2))


def ssim(pred: np.ndarray, target: np.ndarray, crop: bool = False) -> np.ndarray:
    """Per-image SSIM: over valid windows (``crop=True``, the headline) or over the padded image."""
    valid, padded = ssim_pair(pred, target)
    return valid if crop else padded


def ssim_pair(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(valid-window SSIM, padded SSIM) per image from one SSIM map: the headline and the second column."""
    return _ssim_pair(_to01(pred), _to01(target))


def _ssim_pair(p: torch.Tensor, t: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    full = _ssim_map(p, t)
    r = (SSIM_KERNEL - 1) // 2
    valid = full[..., r:-r, r:-r].mean(dim=(1, 2, 3))
    return valid.numpy().astype(np.float64), full.mean(dim=(1, 2, 3)).numpy().astype(np.float64)


def region_psnr(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """PSNR over the pixels where ``mask`` is 1 (all channels); NaN where the mask is empty."""
    return _region_psnr((_to01(pred) - _to01(target)) ** 2, mask)


def _region_psnr(squared_error: torch.Tensor, mask: np.ndarray) -> np.ndarray:
    m = torch.from_numpy(np.ascontiguousarray(mask).astype(np.float32))[:, None].expand_as(squared_error)
    se = (squared_error * m).sum(dim=(1, 2, 3))
    n = m.sum(dim=(1, 2, 3))
    out = []
    for s, c in zip(se.tolist(), n.tolist(), strict=True):
        if c == 0:
            out.append(math.nan)
        elif s == 0:
            out.append(math.inf)
        else:
            out.append(10 * math.log10(c / s))
    return np.array(out, dtype=np.float64)


def image_scores(pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """``psnr``, ``ssim``, ``ssim_padded`` and (with a non-empty ``mask``) ``region_psnr`` of one batch, from one
    conversion to float: what the evaluator scores per image."""
    p, t = _to01(pred), _to01(target)
    squared_error = (p - t) ** 2
    out = {"psnr": _psnr(squared_error.mean(dim=(1, 2, 3)))}
    out["ssim"], out["ssim_padded"] = _ssim_pair(p, t)
    if mask is not None and mask.any():
        out["region_psnr"] = _region_psnr(squared_error, mask)
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
