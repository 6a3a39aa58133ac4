"""The StarGAN critic with a label head, shared by OA-GAN (its Table II) and GANimation (its official critic).

Strided 4x4 convs (LeakyReLU 0.01, no normalisation: WGAN-GP forbids batch statistics) halve the
image until a 2x2 map remains (6 layers at 128 px, 5 at 64 px), doubling channels from ``width``
(64 -> 2048 at 128 px). Heads: a 3x3 conv to one channel (the critic's patch map) and a conv whose kernel
covers the whole final map, giving one value per label (OA-GAN's attributes, GANimation's condition).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn


class CriticOutput(NamedTuple):
    adv: torch.Tensor  # [B,1,k,k] patch scores (the critic value is their mean)
    attr: torch.Tensor | None  # [B,A] label regressions; None when A = 0


def critic_layers(image_size: int) -> int:
    """Number of stride-2 layers that leaves a 2x2 map (e.g. 6 at 128 px, 5 at 64 px)."""
    return max(1, int(math.log2(image_size)) - 1)


class LabelCritic(nn.Module):
    """Patch critic plus a regression head over ``n_attributes`` labels (none when 0)."""

    def __init__(self, image_size: int = 128, width: int = 64, n_attributes: int = 10) -> None:
        super().__init__()
        n_layers = critic_layers(image_size)
        layers: list[nn.Module] = []
        cin = 3
        for i in range(n_layers):
            cout = width * 2**i
            layers += [nn.Conv2d(cin, cout, 4, 2, 1), nn.LeakyReLU(0.01, inplace=True)]
            cin = cout
        self.features = nn.Sequential(*layers)
        final = image_size // 2**n_layers
        self.adv_head = nn.Conv2d(cin, 1, 3, 1, 1, bias=False)
        self.attr_head = nn.Conv2d(cin, n_attributes, final, 1, 0, bias=False) if n_attributes > 0 else None

    def forward(self, x: torch.Tensor) -> CriticOutput:
        h = self.features(x)
        attr = self.attr_head(h).flatten(1) if self.attr_head is not None else None
        return CriticOutput(self.adv_head(h), attr)

    def critic(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample WGAN critic value: the mean of the patch map."""
        return self.adv_head(self.features(x)).mean(dim=(1, 2, 3))
