"""Optional speed paths of a run: bf16 autocast, channels-last memory format, ``torch.compile`` for inference.

The harness applies them to every network a method names in ``parts()``, so methods need not know them. Each is
declared on ``bench run`` / ``bench perf``, recorded in the manifest, and, where it changes what training produces
(precision, memory format: other kernels, other rounding), part of the checkpoint cache key. ``compile`` is for
inference only: the critics' gradient penalties need double backward, which compiled graphs do not support, and a
compiled restore equals the eager one to float rounding (measured per method by ``bench perf``). Under bf16 the
WGAN-GP penalty is computed in float32 (:func:`bench.nn.losses.gradient_penalty`). docs/design.md "Scale".
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

PRECISIONS = ("fp32", "bf16")


def autocast(device, precision: str):
    """bf16 autocast on ``device`` for ``precision == "bf16"``, else nothing."""
    if precision == "fp32":
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device.type, dtype=torch.bfloat16)


@dataclass(frozen=True)
class Acceleration:
    """The speed paths of a run; ``Acceleration()`` is the eager float32 reference that ``bench perf`` times
    every path against (``bench run``'s own default, RunConfig's, is channels-last)."""

    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")

    def training_key(self) -> dict[str, Any]:
        """What changes the trained weights (the cache key's part)."""
        return {"precision": self.precision, "channels_last": self.channels_last}

    def record(self) -> dict[str, Any]:
        return {**self.training_key(), "compile": self.compile}

    @staticmethod
    def networks(method) -> list:
        """The networks a method names in ``parts()`` and any other it holds (a frozen loss network such as
        VGG-16, built by ``setup_training``): a format applied to some of them only would reorder tensors at every
        boundary between them."""
        from torch import nn

        found = [part for part in method.parts().values() if isinstance(part, nn.Module)]
        held = [v for v in vars(method).values() if isinstance(v, nn.Module) and all(v is not f for f in found)]
        return found + held

    def prepare(self, method) -> None:
        """Before training or loading: the networks in channels-last memory format (values unchanged)."""
        if self.channels_last:
            import torch

            for net in self.networks(method):
                net.to(memory_format=torch.channels_last)

    def for_inference(self, method) -> bool:
        """After training or loading: compile the networks' forward passes (the first call pays the compile).
        Returns whether it compiled: a method that is not ``compilable`` stays eager."""
        if not (self.compile and method.compilable):
            return False
        for net in self.networks(method):
            net.compile()
        return True
