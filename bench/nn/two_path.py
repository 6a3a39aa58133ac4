"""The StarGAN-style building blocks and the two-path generator (OA-GAN's Fig. 4a), shared by OA-GAN's
generator and ablation, GANimation and Self-regularization.

Conv/deconv + InstanceNorm(affine) + ReLU without bias, as StarGAN, GANimation and OA-GAN's official code use;
images in [-1, 1]; ``keep`` (the attention) is 1 where the input pixel is kept.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from bench.nn.init import normal_init
from bench.nn.norm import InstanceNorm2d


def to_pm1(x: torch.Tensor) -> torch.Tensor:
    """[0,1] (the harness's images) -> [-1,1] (what these generators read and write)."""
    return x * 2 - 1


def to_01(x: torch.Tensor) -> torch.Tensor:
    return (x + 1) / 2


class GeneratorOutput(NamedTuple):
    final: torch.Tensor  # [B,3,H,W] in [-1,1], Eq. (2)
    synth: torch.Tensor  # [B,3,H,W] in [-1,1], the completion module's face
    keep: torch.Tensor  # [B,1,H,W] in [0,1], M: 1 = visible (kept), 0 = occluded


def conv_in_relu(cin: int, cout: int, kernel: int, stride: int, padding: int, up: bool = False) -> nn.Sequential:
    """Conv (or deconv) + InstanceNorm(affine) + ReLU, bias-free as in the official code."""
    conv_cls = nn.ConvTranspose2d if up else nn.Conv2d
    return nn.Sequential(
        conv_cls(cin, cout, kernel, stride, padding, bias=False),
        InstanceNorm2d(cout, affine=True),
        nn.ReLU(inplace=True),
    )


class ResidualBlock(nn.Module):
    """conv3-IN-ReLU-conv3-IN plus identity."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_in_relu(channels, channels, 3, 1, 1),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
            InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Trunk(nn.Module):
    """StarGAN-style encoder / residual blocks / decoder: ``in_channels`` -> width at full resolution."""

    def __init__(self, width: int, res_blocks: int, in_channels: int = 3) -> None:
        super().__init__()
        w = width
        self.encoder = nn.Sequential(
            conv_in_relu(in_channels, w, 7, 1, 3),
            conv_in_relu(w, 2 * w, 4, 2, 1),
            conv_in_relu(2 * w, 4 * w, 4, 2, 1),
        )
        self.residual = nn.Sequential(*(ResidualBlock(4 * w) for _ in range(res_blocks)))
        self.decoder = nn.Sequential(
            conv_in_relu(4 * w, 2 * w, 4, 2, 1, up=True),
            conv_in_relu(2 * w, w, 4, 2, 1, up=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.residual(self.encoder(x)))


def mask_head(width: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(width, 1, 7, 1, 3, bias=False), nn.Sigmoid())


def rgb_head(width: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(width, 3, 7, 1, 3, bias=False), nn.Tanh())


class TwoPathGenerator(nn.Module):
    """GANimation / Self-regularization style (Fig. 4a): one trunk, a colour head (tanh) and an attention head
    (sigmoid) ``A``, blended as ``A * x + (1 - A) * colour`` (A = 1 keeps the input pixel). Used by
    ``oagan:two_path``, ``ganimation`` (with its condition) and ``selfreg``."""

    def __init__(self, width: int = 64, res_blocks: int = 3, condition_dim: int = 0) -> None:
        super().__init__()
        self.condition_dim = condition_dim
        self.trunk = Trunk(width, res_blocks, in_channels=3 + condition_dim)
        self.colour_head = rgb_head(width)
        self.mask_head = mask_head(width)
        self.apply(normal_init)

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> GeneratorOutput:
        """``x`` [B,3,H,W] in [-1,1]; ``condition`` [B,condition_dim] is tiled over the image (StarGAN's way)."""
        inputs = x
        if self.condition_dim:
            if condition is None or condition.shape != (len(x), self.condition_dim):
                raise ValueError(f"this generator takes a condition of shape [B,{self.condition_dim}]")
            maps = condition[:, :, None, None].to(x).expand(-1, -1, *x.shape[2:])
            inputs = torch.cat([x, maps], 1)
        feat = self.trunk(inputs)
        colour, keep = self.colour_head(feat), self.mask_head(feat)
        return GeneratorOutput(keep * x + (1 - keep) * colour, colour, keep)
