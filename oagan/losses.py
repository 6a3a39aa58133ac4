"""OA-GAN losses, section III-C, one small function per term (images in [-1,1], M = keep-mask).

Eq. (8) (paired):   l1*perceptual + l2*style + l3*pixel + l4*smooth + l5*||M||^2 + l6*adv
Eq. (9) (unpaired): l4*smooth + l5*||M||^2 + l6*adv
with (l1..l6) = (0.05, 120, 1, 1e-3, -1, 1). The critic side (Eq. 3) is WGAN-GP plus the attribute MSE.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.nn.losses import perceptual_loss, style_loss, total_variation


def perceptual(feats_synth: list[torch.Tensor], feats_final: list[torch.Tensor], feats_gt: list[torch.Tensor]):
    """Eq. (4): L1 of VGG features, for both the synthesised face and the composited output."""
    return perceptual_loss(feats_synth, feats_gt) + perceptual_loss(feats_final, feats_gt)


def style(feats_synth: list[torch.Tensor], feats_final: list[torch.Tensor], feats_gt: list[torch.Tensor]):
    """Eq. (5): L1 of Gram matrices normalised by 1/(C*H*W), for x_synth and x_final."""
    return style_loss(feats_synth, feats_gt) + style_loss(feats_final, feats_gt)


def pixel(pred: torch.Tensor, gt: torch.Tensor, hole: torch.Tensor, gamma: float, delta: float) -> torch.Tensor:
    """Eq. (6): gamma * |hole*(pred-gt)| + delta * |(1-hole)*(pred-gt)|, each a mean over all elements.

    ``hole`` is 1 where the face is occluded ((1-M) in the paper's notation), broadcast over channels.
    """
    diff = torch.abs(pred - gt)
    return gamma * torch.mean(hole * diff) + delta * torch.mean((1 - hole) * diff)


def smoothness(final: torch.Tensor, keep: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Eq. (7): anisotropic total variation of the output and of the mask."""
    return total_variation(final, reduction) + total_variation(keep, reduction)


def mask_l2(keep: torch.Tensor) -> torch.Tensor:
    """The ||M||^2 term, as the official code computes it: mean(M)^2. With l5 = -1 it rewards keeping
    pixels, which rules out the trivial all-occluded mask (M = 0)."""
    return keep.mean() ** 2


def generator_adv(critic_fake: torch.Tensor) -> torch.Tensor:
    """WGAN generator loss: -E[D(G(x))]."""
    return -critic_fake.mean()


def critic_adv(critic_real: torch.Tensor, critic_fake: torch.Tensor) -> torch.Tensor:
    """WGAN critic loss: E[D(fake)] - E[D(real)] (the gradient penalty is added separately)."""
    return critic_fake.mean() - critic_real.mean()


def attribute(pred: torch.Tensor, target: torch.Tensor, divide_by_batch: bool = False) -> torch.Tensor:
    """Eq. (3)'s L_attr: MSE regression to 0/1 labels; the official code also divides by the batch size."""
    loss = F.mse_loss(pred, target)
    return loss / pred.size(0) if divide_by_batch else loss


def mask_supervision(keep: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
    """BCE plus soft Dice between the predicted occlusion 1-M and the known synthetic mask (an option, off
    in Eq. 8). Dice counts overlap per image, so the ~15% occluded pixels are not drowned by the rest."""
    occ = (1 - keep).clamp(1e-6, 1 - 1e-6)
    inter = (occ * hole).sum(dim=(1, 2, 3))
    dice = 1 - (2 * inter + 1) / (occ.sum(dim=(1, 2, 3)) + hole.sum(dim=(1, 2, 3)) + 1)
    return F.binary_cross_entropy(occ, hole) + dice.mean()
