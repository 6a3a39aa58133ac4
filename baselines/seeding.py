"""Per-sample random generators for restore-time draws (GFC's noise fill, Yeh's initial latents).

The harness may resume an evaluation mid-split, so a face can land in a different batch, at a different
position, after different calls. A draw that must not change the result is therefore seeded from the run's
seed and what the method sees of that face (its known pixels and its hole), never from a shared stream.
"""

from __future__ import annotations

import hashlib

import torch


def sample_generators(seed: int, images: torch.Tensor, hole: torch.Tensor) -> list[torch.Generator]:
    """One CPU generator per sample, seeded from ``seed``, the sample's known pixels and its binary hole.

    ``images`` [B,C,H,W], ``hole`` [B,1,H,W] (1 = occluded, already binarised). Pixels inside the hole do
    not count (a method never sees them), so the same face with the same hole gets the same draws however
    its hole was pre-filled, whichever batch it is in and whatever ran before.
    """
    hole = hole.detach().to("cpu", torch.float32)
    known = torch.where(hole > 0.5, 0.0, images.detach().to("cpu", torch.float32)).contiguous()  # +0, never -0/NaN
    generators = []
    for pixels, region in zip(known, hole.contiguous(), strict=True):
        digest = hashlib.sha256()
        digest.update(int(seed).to_bytes(8, "little", signed=True))
        digest.update(pixels.numpy().tobytes())
        digest.update(region.numpy().tobytes())
        value = int.from_bytes(digest.digest()[:8], "little") >> 1  # 63 bits: any manual_seed accepts it
        generators.append(torch.Generator().manual_seed(value))
    return generators
