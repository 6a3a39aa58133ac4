"""GAN parts several methods share, written once (in the spirit of the CycleGAN repo's ``networks.py``).

- :class:`GANLoss`: the adversarial objective by mode: ``lsgan`` (least squares, CycleGAN), ``vanilla``
  (BCE on logits: DCGAN, GFC) and ``wgangp`` (the Wasserstein critic; add :func:`bench.nn.losses.gradient_penalty`).
- :class:`ImagePool`: the history of generated images a critic also sees (Shrivastava et al. 2017; CycleGAN
  keeps 50), with a state dict so a resumed run draws the same images.
- :func:`patch_discriminator`: the pix2pix / CycleGAN 70x70 PatchGAN (``NLayerDiscriminator``).
"""

from __future__ import annotations

import random
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.nn.norm import InstanceNorm2d

GAN_MODES = ("lsgan", "vanilla", "wgangp")


class GANLoss(nn.Module):
    """``loss(prediction, real)``: how far the critic's ``prediction`` is from saying real (True) or fake.

    ``lsgan``: mean (p - 1)^2 or p^2. ``vanilla``: BCE with logits against 1 or 0. ``wgangp``: -mean p for real,
    mean p for fake. ``reduction="per_sample"`` sums over each sample's elements and averages over the batch
    (GFC's generator terms); the default averages over all elements.
    """

    def __init__(self, mode: str) -> None:
        super().__init__()
        if mode not in GAN_MODES:
            raise ValueError(f"GAN mode must be one of {', '.join(GAN_MODES)}, got {mode!r}")
        self.mode = mode

    def forward(self, prediction: torch.Tensor, real: bool, reduction: str = "mean") -> torch.Tensor:
        if self.mode == "wgangp":
            values = -prediction if real else prediction
        else:
            target = torch.full_like(prediction, 1.0 if real else 0.0)
            if self.mode == "lsgan":
                values = (prediction - target) ** 2
            else:
                values = F.binary_cross_entropy_with_logits(prediction, target, reduction="none")
        if reduction == "mean":
            return values.mean()
        if reduction == "per_sample":
            return values.sum() / len(values)
        raise ValueError(f"reduction must be 'mean' or 'per_sample', got {reduction!r}")


class ImagePool:
    """Up to ``size`` earlier fakes. ``query(images)`` returns, per image, with probability 1/2 a stored one
    (replacing it by the new image) and otherwise the new image, once the pool is full (CycleGAN's rule).
    Draws use Python's global generator, which the harness checkpoints."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif random.uniform(0, 1) > 0.5:
                index = random.randint(0, self.size - 1)
                out.append(self.images[index].to(image.device).clone())  # loaded pools live on the CPU
                self.images[index] = image.clone()
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state_dict(self) -> dict[str, Any]:
        stacked = torch.cat(self.images, 0) if self.images else torch.empty(0)
        return {"size": self.size, "images": stacked.cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["size"]) != self.size:
            raise ValueError(f"image pool of size {state['size']} cannot be loaded into one of size {self.size}")
        images = state["images"]
        self.images = [img.unsqueeze(0) for img in images] if images.numel() else []


NORMS = {
    "instance": lambda c: InstanceNorm2d(c),  # CycleGAN's default: no affine parameters
    "instance_affine": lambda c: InstanceNorm2d(c, affine=True),
    "batch": lambda c: nn.BatchNorm2d(c),
}


def patch_discriminator(in_ch: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "instance") -> nn.Sequential:
    """pix2pix / CycleGAN ``NLayerDiscriminator``: conv4 s2 + LeakyReLU, ``n_layers - 1`` more stride-2 convs
    with norm, one stride-1, then a 1-channel conv: a 70x70 receptive field for ``n_layers=3``. Raw scores."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    norm_layer = NORMS[norm]
    layers: list[nn.Module] = [nn.Conv2d(in_ch, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
    mult = 1
    for n in range(1, n_layers + 1):
        prev, mult = mult, min(2**n, 8)
        stride = 2 if n < n_layers else 1
        conv = nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1, bias=norm != "batch")  # BN has its own shift
        layers += [conv, norm_layer(ndf * mult), nn.LeakyReLU(0.2, True)]
    layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
    return nn.Sequential(*layers)
