"""Two tiny methods registered like a third-party plugin, so end-to-end tests of the harness's trust
mechanisms (cache keys, resume, output checks, mask sources) train in seconds.

``tinyfill`` needs a mask and learns a 3x3 convolution that fills the hole; every step reads the torch,
numpy and Python generators and the data sampler, so a resume that loses any of them shows. ``tinymask``
predicts a mask (dark pixels) and can be another method's mask source.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from bench import hookimpl
from bench.method import Method, MethodSpec, Restoration, paste, require_hole
from bench.options import Options, option


@dataclass(frozen=True)
class TinyOptions(Options):
    lr: float = option(0.05, "Adam learning rate", min=0.0)
    batch_size: int = option(4, "training batch size", min=1)
    poison: str = option(
        "", "make restore() return nan, inf or values far outside [0, 1]", choices=("", "nan", "inf", "big")
    )
    step_sleep: float = option(0.0, "seconds to sleep per training step (lets a test kill mid-training)", min=0.0)
    restore_sleep: float = option(0.0, "seconds to sleep per restore() call (lets a test kill mid-evaluation)", min=0.0)

    profiles = {"quick": {"batch_size": 2}}


class TinyFill(Method):
    Options = TinyOptions
    default_steps = {"quick": 6, "paper": 6}

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.cfg: TinyOptions = ctx.config
        self.net = nn.Conv2d(3, 3, 3, padding=1)
        self.opt: torch.optim.Adam | None = None
        self.data = None

    def setup_training(self, data) -> None:
        self.data = data
        self.opt = torch.optim.Adam(self.net.parameters(), lr=self.cfg.lr)

    def train_step(self, step: int) -> dict[str, float]:
        time.sleep(self.cfg.step_sleep)
        batch = self.data.paired(self.cfg.batch_size)
        jitter = 0.01 * (torch.randn(()) + float(np.random.standard_normal()) + random.gauss(0, 1))
        pred = self.net(batch.occluded * (1 - batch.mask)) + jitter
        loss = ((pred - batch.clean).abs() * batch.mask).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"l1": loss.item()}

    def parts(self):
        return {"net": self.net, "opt": self.opt}

    @torch.no_grad()
    def restore(self, images, masks) -> Restoration:
        time.sleep(self.cfg.restore_sleep)
        hole = require_hole("tinyfill", masks)
        out = paste(self.net(images), images, hole).images
        if self.cfg.poison == "nan":
            out[0, 0, 0, 0] = float("nan")
        elif self.cfg.poison == "inf":
            out[-1, -1, -1, -1] = float("inf")
        elif self.cfg.poison == "big":
            out = out * 3 - 1
        return Restoration(out)


class TinyMask(Method):
    """Marks dark pixels as occluded and leaves the image as it is: a mask source without training."""

    trainable = False

    def restore(self, images, masks) -> Restoration:
        return Restoration(images, (images.mean(1, keepdim=True) < 0.25).float())


@hookimpl
def register_methods(register):
    register(
        MethodSpec(
            name="tinyfill",
            factory="tests.tiny_plugin:TinyFill",
            summary="test",
            needs_mask=True,
            trains_on=("paired",),
        )
    )
    register(MethodSpec(name="tinymask", factory="tests.tiny_plugin:TinyMask", summary="test", predicts_mask=True))
