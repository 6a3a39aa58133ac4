"""Weight initialisation the official GAN codes share (pix2pix/CycleGAN ``init_weights('normal', 0.02)``, DCGAN)."""

from __future__ import annotations

from torch import nn


def normal_init(module: nn.Module) -> None:
    """N(0, 0.02) conv and deconv weights, zero biases; norms keep their (1, 0) affine init. Use with ``.apply``."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
