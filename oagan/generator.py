"""OA-GAN generator (paper Table I); the two-path generator it is compared with (Fig. 4a) is shared with
GANimation and Self-regularization in :mod:`bench.nn.two_path`.

The occlusion-aware module predicts a keep-mask ``M`` (1 = visible, 0 = occluded) and an
intermediate face feature ``F``; the face-completion module synthesises a face from ``M * F``
(Eq. 1); the output keeps visible input pixels: ``x_final = M * x + (1 - M) * x_synth`` (Eq. 2).
Images are in [-1, 1]. ``width`` is the stem's channel count (64 in the paper).
"""

from __future__ import annotations

import torch
from torch import nn

from bench.nn.init import normal_init
from bench.nn.two_path import GeneratorOutput, Trunk, TwoPathGenerator, conv_in_relu, mask_head, rgb_head


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


def build_generator(kind: str, width: int, res_blocks: int) -> nn.Module:
    if kind == "oagan":
        return OAGANGenerator(width, res_blocks)
    if kind == "two_path":
        return TwoPathGenerator(width, res_blocks)
    raise ValueError(f"generator must be 'oagan' or 'two_path', got {kind!r}")
