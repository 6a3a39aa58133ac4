"""VGG-16 features (pool1..pool3) for perceptual and style losses, from local weights only.

OA-GAN, PConv and CSA all use ImageNet VGG-16. Weights come from timm's registry with
``pretrained_cfg_overlay=dict(file=...)`` (a timm or torchvision state dict both load; timm's filter
converts torchvision's classifier). Looked up, in order: the ``vgg_weights`` method option, the
``BENCH_VGG16_WEIGHTS`` environment variable, ``<weights_dir>/vgg16.{safetensors,pth}``. Without a
file the backbone is VGG-16 with a fixed random initialisation (seed 0): random conv features still
carry texture statistics, so the losses stay meaningful, but the numbers are not the paper's. A warning
says so once, and :attr:`VGGFeatures.source` records it for the run manifest.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

from bench.io import file_sha256

# Slices of torchvision/timm ``vgg16.features`` ending at pool1, pool2, pool3 (PConv and OA-GAN code).
POOL_SLICES = ((0, 5), (5, 10), (10, 17))
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_warned = False


def find_vgg_weights(option: str | None = None, weights_dir: Path | None = None) -> Path | None:
    candidates = [option, os.environ.get("BENCH_VGG16_WEIGHTS")]
    if weights_dir is not None:
        candidates += [str(weights_dir / "vgg16.safetensors"), str(weights_dir / "vgg16.pth")]
    for c in candidates:
        if c:
            path = Path(c).expanduser()
            if path.is_file():
                return path
            if c in (option, os.environ.get("BENCH_VGG16_WEIGHTS")):
                raise FileNotFoundError(f"VGG-16 weights file {path} does not exist; fix the path or drop it")
    return None


class VGGFeatures(nn.Module):
    """Frozen VGG-16 up to pool3; ``forward`` returns the three pooled feature maps.

    ``input_range``: "imagenet" normalises [0,1] images with ImageNet statistics (what pretrained
    weights expect); "pm1" feeds [-1,1] without normalisation (the official OA-GAN code's quirk).
    """

    def __init__(self, weights: Path | None = None, input_range: str = "imagenet") -> None:
        super().__init__()
        import timm

        global _warned
        if weights is not None:
            model = timm.create_model("vgg16", pretrained=True, pretrained_cfg_overlay=dict(file=str(weights)))
            self.source = {"backbone": "timm:vgg16", "weights": str(weights), "sha256": file_sha256(weights)}
        else:
            # Build on the meta device (the 100M-parameter classifier costs seconds to initialise and is
            # never used), then materialise and seed only the convolutions up to pool3.
            with torch.device("meta"):
                model = timm.create_model("vgg16", pretrained=False)
            model.features = model.features[: POOL_SLICES[-1][1]].to_empty(device="cpu")
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                for m in model.features.modules():
                    if isinstance(m, nn.Conv2d):  # timm's VGG init
                        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                        nn.init.zeros_(m.bias)
            self.source = {"backbone": "timm:vgg16", "weights": "random-init(seed=0)", "sha256": None}
            if not _warned:
                warnings.warn(
                    "no VGG-16 weights file configured (option vgg_weights, BENCH_VGG16_WEIGHTS or "
                    "<weights-dir>/vgg16.pth): perceptual/style losses use a fixed random VGG-16",
                    stacklevel=2,
                )
                _warned = True
        if input_range not in ("imagenet", "pm1"):
            raise ValueError(f"input_range must be 'imagenet' or 'pm1', got {input_range!r}")
        self.input_range = input_range
        self.slices = nn.ModuleList(nn.Sequential(*model.features[a:b]) for a, b in POOL_SLICES)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGGFeatures:  # always frozen, always eval
        return super().train(False)

    def forward(self, images01: torch.Tensor) -> list[torch.Tensor]:
        x = (images01 - self.mean) / self.std if self.input_range == "imagenet" else images01 * 2 - 1
        feats = []
        for block in self.slices:
            x = block(x)
            feats.append(x)
        return feats
