"""Reference points without learning: the occluded input itself, and Telea's fast-marching inpainting.

``identity`` is the floor every method must beat; ``telea`` (OpenCV ``INPAINT_TELEA``, Telea 2004, the
paper's ref. [10]) shows what a purely local, diffusion-like fill achieves when given the mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from bench.data.types import to_tensor, to_uint8
from bench.method import Method, MethodContext, Restoration, require_hole
from bench.options import Options, option


class IdentityMethod(Method):
    """Returns the input unchanged."""

    trainable = False

    def restore(self, images: torch.Tensor, masks: torch.Tensor | None) -> Restoration:
        return Restoration(images.clone())


@dataclass(frozen=True)
class TeleaOptions(Options):
    """Telea's one option; the same under every profile (nothing to train, nothing to shrink)."""

    radius: float | None = option(
        None,
        "neighbourhood radius in pixels at the run's size (None = 3 px at 128 px, scaled with the size)",
        min=0.0,
        max=1024.0,  # wider than any image the harness runs at; OpenCV overflows past 2**31 and runs at ~1 px
    )


class TeleaMethod(Method):
    """Fast-marching inpainting of the masked pixels, one image at a time on uint8 (as OpenCV requires)."""

    trainable = False
    Options = TeleaOptions

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        self.cfg: TeleaOptions = ctx.config
        self.radius = self.cfg.radius if self.cfg.radius is not None else 3.0 * ctx.image_size / 128

    def restore(self, images: torch.Tensor, masks: torch.Tensor | None) -> Restoration:
        holes = require_hole("telea", masks)[:, 0].byte().cpu().numpy()
        pairs = zip(to_uint8(images), holes, strict=True)
        filled = np.stack([cv2.inpaint(img, hole, self.radius, cv2.INPAINT_TELEA) for img, hole in pairs])
        # Known pixels come back exactly as given (cv2 would return them quantised to uint8).
        out = masks * to_tensor(filled).to(images) + (1 - masks) * images
        return Restoration(out)

    def info(self) -> dict[str, float]:
        return {"radius": self.radius}
