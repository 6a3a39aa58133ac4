"""OA-GAN generator (paper Table I) and the two-path generator it is compared with (Fig. 4a).

The occlusion-aware module predicts a keep-mask ``M`` (1 = visible, 0 = occluded) and an
intermediate face feature ``F``; the face-completion module synthesises a face from ``M * F``
(Eq. 1); the output keeps visible input pixels: ``x_final = M * x + (1 - M) * x_synth`` (Eq. 2).
Images are in [-1, 1]. ``width`` is the stem's channel count (64 in the paper).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from bench.nn.init import normal_init


class GeneratorOutput(NamedTuple):
    final: torch.Tensor  # [B,3,H,W] in [-1,1], Eq. (2)
    synth: torch.Tensor  # [B,3,H,W] in [-1,1], the completion module's face
    keep: torch.Tensor  # [B,1,H,W] in [0,1], M: 1 = visible (kept), 0 = occluded


def conv_in_relu(cin: int, cout: int, kernel: int, stride: int, padding: int, up: bool = False) -> nn.Sequential:
    """Conv (or deconv) + InstanceNorm(affine) + ReLU, bias-free as in the official code."""
    conv_cls = nn.ConvTranspose2d if up else nn.Conv2d
    return nn.Sequential(
        conv_cls(cin, cout, kernel, stride, padding, bias=False),
        nn.InstanceNorm2d(cout, affine=True),
        nn.ReLU(inplace=True),
    )


class ResidualBlock(nn.Module):
    """conv3-IN-ReLU-conv3-IN plus identity."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_in_relu(channels, channels, 3, 1, 1),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
            nn.InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Trunk(nn.Module):
    """StarGAN-style encoder / residual blocks / decoder: 3 -> width at full resolution."""

    def __init__(self, width: int, res_blocks: int) -> None:
        super().__init__()
        w = width
        self.encoder = nn.Sequential(
            conv_in_relu(3, w, 7, 1, 3),
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


class OcclusionAwareModule(nn.Module):
    """Table I, upper half: returns the intermediate face feature F and the keep-mask M."""

    def __init__(self, width: int = 64, res_blocks: int = 3) -> None:
        super().__init__()
        self.trunk = Trunk(width, res_blocks)
        self.mask_head = mask_head(width)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.trunk(x)
        return feat, self.mask_head(feat)


class FaceCompletionModule(nn.Module):
    """Table I, lower half: 3 strided convs to 8*width, 3 deconvs back, conv7 + tanh; no skips."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        w = width
        self.encoder = nn.Sequential(
            conv_in_relu(w, 2 * w, 4, 2, 1),
            conv_in_relu(2 * w, 4 * w, 4, 2, 1),
            conv_in_relu(4 * w, 8 * w, 4, 2, 1),
        )
        self.decoder = nn.Sequential(
            conv_in_relu(8 * w, 4 * w, 4, 2, 1, up=True),
            conv_in_relu(4 * w, 2 * w, 4, 2, 1, up=True),
            conv_in_relu(2 * w, w, 4, 2, 1, up=True),
        )
        self.to_rgb = rgb_head(w)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.to_rgb(self.decoder(self.encoder(feat)))


class OAGANGenerator(nn.Module):
    """The two-stage generator: completion sees the masked feature M*F, so both stages co-adapt."""

    def __init__(self, width: int = 64, res_blocks: int = 3) -> None:
        super().__init__()
        self.occlusion_aware = OcclusionAwareModule(width, res_blocks)
        self.completion = FaceCompletionModule(width)
        self.apply(normal_init)

    def forward(self, x: torch.Tensor) -> GeneratorOutput:
        feat, keep = self.occlusion_aware(x)
        synth = self.completion(keep * feat)  # Eq. (1)
        return GeneratorOutput(keep * x + (1 - keep) * synth, synth, keep)  # Eq. (2)


class TwoPathGenerator(nn.Module):
    """GANimation / Self-regularization style (Fig. 4a): one trunk, colour and mask heads, the mask
    used only to blend the output. The ablation ``oagan:two_path`` swaps it in."""

    def __init__(self, width: int = 64, res_blocks: int = 3) -> None:
        super().__init__()
        self.trunk = Trunk(width, res_blocks)
        self.colour_head = rgb_head(width)
        self.mask_head = mask_head(width)
        self.apply(normal_init)

    def forward(self, x: torch.Tensor) -> GeneratorOutput:
        feat = self.trunk(x)
        colour, keep = self.colour_head(feat), self.mask_head(feat)
        return GeneratorOutput(keep * x + (1 - keep) * colour, colour, keep)


def build_generator(kind: str, width: int, res_blocks: int) -> nn.Module:
    if kind == "oagan":
        return OAGANGenerator(width, res_blocks)
    if kind == "two_path":
        return TwoPathGenerator(width, res_blocks)
    raise ValueError(f"generator must be 'oagan' or 'two_path', got {kind!r}")
