"""Per-image metrics on what was saved (uint8), as the design's conventions fix them.

PSNR: torchmetrics, ``data_range=1.0``, one value per image (``dim=(1,2,3)``), never the pooled MSE.
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


def psnr(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    from torchmetrics.functional.image import peak_signal_noise_ratio

    p, t = _to01(pred), _to01(target)
    out = peak_signal_noise_ratio(p, t, data_range=1.0, dim=(1, 2, 3), reduction="none")
    return out.numpy().astype(np.float64)


def ssim(pred: np.ndarray, target: np.ndarray, crop: bool = False) -> np.ndarray:
    from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

    p, t = _to01(pred), _to01(target)
    kw = dict(gaussian_kernel=True, sigma=SSIM_SIGMA, kernel_size=SSIM_KERNEL, data_range=1.0, k1=0.01, k2=0.03)
    if not crop:
        return tm_ssim(p, t, reduction="none", **kw).numpy().astype(np.float64)
    _, full = tm_ssim(p, t, reduction="none", return_full_image=True, **kw)
    r = (SSIM_KERNEL - 1) // 2
    return full[..., r:-r, r:-r].mean(dim=(1, 2, 3)).numpy().astype(np.float64)


def ssim_pair(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(valid-window SSIM, padded SSIM) per image from one SSIM map: the headline and the second column."""
    from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

    p, t = _to01(pred), _to01(target)
    kw = dict(gaussian_kernel=True, sigma=SSIM_SIGMA, kernel_size=SSIM_KERNEL, data_range=1.0, k1=0.01, k2=0.03)
    _, full = tm_ssim(p, t, reduction="none", return_full_image=True, **kw)
    r = (SSIM_KERNEL - 1) // 2
    valid = full[..., r:-r, r:-r].mean(dim=(1, 2, 3))
    return valid.numpy().astype(np.float64), full.mean(dim=(1, 2, 3)).numpy().astype(np.float64)


def region_psnr(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """PSNR over the pixels where ``mask`` is 1 (all channels); NaN where the mask is empty."""
    p, t = _to01(pred), _to01(target)
    m = torch.from_numpy(np.ascontiguousarray(mask).astype(np.float32))[:, None].expand_as(p)
    se = ((p - t) ** 2 * m).sum(dim=(1, 2, 3))
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
