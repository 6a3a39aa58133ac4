"""Losses shared by the methods, written once: Gram/style, perceptual, total variation, WGAN-GP."""

from __future__ import annotations

import torch
from torch import nn


def gram(features: torch.Tensor) -> torch.Tensor:
    """Gram matrix normalised by C*H*W (PConv Eq. 4 / OA-GAN Eq. 5's K_n)."""
    b, c, h, w = features.shape
    f = features.reshape(b, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


def perceptual_loss(feats_out: list[torch.Tensor], feats_gt: list[torch.Tensor]) -> torch.Tensor:
    """Sum over layers of the mean L1 distance between feature maps."""
    return sum(torch.mean(torch.abs(a - b)) for a, b in zip(feats_out, feats_gt, strict=True))


def style_loss(feats_out: list[torch.Tensor], feats_gt: list[torch.Tensor]) -> torch.Tensor:
    """Sum over layers of the mean L1 distance between Gram matrices."""
    return sum(torch.mean(torch.abs(gram(a) - gram(b))) for a, b in zip(feats_out, feats_gt, strict=True))


def total_variation(x: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Anisotropic TV: |x[i,j+1]-x[i,j]| + |x[i+1,j]-x[i,j]|, averaged (or summed) over elements."""
    dx = torch.abs(x[..., :, 1:] - x[..., :, :-1])
    dy = torch.abs(x[..., 1:, :] - x[..., :-1, :])
    if reduction == "sum":
        return dx.sum() + dy.sum()
    if reduction == "mean":
        return dx.mean() + dy.mean()
    raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")


def gradient_penalty(
    critic: nn.Module | callable, real: torch.Tensor, fake: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al.): E[(||grad D(x_hat)||_2 - 1)^2] on random interpolates.

    ``critic`` returns the critic score (any shape; summed per sample). With ``mask`` the norm counts
    only the masked pixels (GnIpt v1's ``gradients_penalty``, which penalises the hole only). Always in float32,
    also under bf16 autocast: the penalty's second-order gradient is where reduced precision breaks first.
    """
    from bench.distributed import global_draw

    real, fake = real.detach().float(), fake.detach().float()
    alpha = global_draw(lambda n: torch.rand(n, 1, 1, 1, device=real.device, dtype=real.dtype), real.size(0))
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    with torch.autocast(real.device.type, enabled=False):
        score = critic(x_hat)
        (grad,) = torch.autograd.grad(score.float().sum(), x_hat, create_graph=True)
    if mask is None:
        slopes = grad.flatten(1).norm(2, dim=1)
    else:
        slopes = torch.sqrt((grad**2 * mask).flatten(1).sum(1) + 1e-12)
    return ((slopes - 1) ** 2).mean()
