"""The method protocol: what a de-occlusion method offers the harness.

A method is a class built from a :class:`MethodContext`. The harness owns the training loop
(budget, checkpoints, resume, NaN guard; see :mod:`bench.training`); the method owns one step.
Images cross this API as float32 ``[B,3,H,W]`` in [0,1]; masks as float32 ``[B,1,H,W]`` in [0,1]
with **1 = occluded**. Methods convert to their own ranges internally.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import torch

    from bench.data.types import TrainData

TRAINING_DATA = ("paired", "natural", "clean")


@dataclass(frozen=True)
class MethodSpec:
    """What a plugin registers. Cheap to build: nothing is imported until :meth:`load`."""

    name: str  # "oagan", or a variant "oagan:no_style"
    factory: str  # "package.module:Class", a subclass of Method
    summary: str
    paper: str = ""  # short citation, shown in the report
    needs_mask: bool = False  # fed a mask by the harness (OA-GAN's binarized mask, or the oracle)
    predicts_mask: bool = False  # returns its own occlusion mask (scored with IoU/F1)
    trains_on: tuple[str, ...] = ()  # subset of TRAINING_DATA
    reported: Mapping[str, float] = field(default_factory=dict)  # the seed paper's numbers, e.g. psnr/ssim
    options: Mapping[str, Any] = field(default_factory=dict)  # passed to the method (variants differ here)
    plugin: str = ""  # set by the plugin manager

    def __post_init__(self) -> None:
        if ":" not in self.factory:
            raise ValueError(f"method {self.name!r}: factory must be 'module:attr', got {self.factory!r}")
        unknown = set(self.trains_on) - set(TRAINING_DATA)
        if unknown:
            raise ValueError(f"method {self.name!r}: unknown training data {sorted(unknown)}")

    def load(self) -> type[Method]:
        module, _, attr = self.factory.partition(":")
        return getattr(importlib.import_module(module), attr)


@dataclass
class MethodContext:
    """Everything a method may know about the run it is built for."""

    image_size: int
    profile: str  # "quick" (CPU, small) or "paper" (the paper's settings)
    device: torch.device
    seed: int
    options: dict[str, Any] = field(default_factory=dict)  # spec options, then user --opt overrides
    attribute_names: tuple[str, ...] = ()
    weights_dir: Path | None = None  # local pretrained files (e.g. vgg16), never a hub
    amp: bool = False

    def option(self, key: str, default: Any) -> Any:
        """An option cast to the type of its default (CLI overrides arrive as strings)."""
        value = self.options.get(key, default)
        if isinstance(default, bool) and isinstance(value, str):
            return value.lower() in ("1", "true", "yes", "on")
        if default is not None and not isinstance(default, str) and isinstance(value, str):
            return type(default)(value)
        return value


class Restoration(NamedTuple):
    images: torch.Tensor  # [B,3,H,W] in [0,1]
    masks: torch.Tensor | None = None  # [B,1,H,W] in [0,1], 1 = occluded; None if not predicted


def require_hole(method: str, masks: torch.Tensor | None, device: torch.device | None = None) -> torch.Tensor:
    """The hole a mask-requiring method fills: ``masks`` binarised at 0.5 (1 = occluded), on ``device`` if given.
    A call without a mask gets one clear error naming the method."""
    if masks is None:
        raise ValueError(f"{method} needs a mask (1 = occluded)")
    return ((masks if device is None else masks.to(device)) > 0.5).float()


def paste(pred: torch.Tensor, images: torch.Tensor, hole: torch.Tensor) -> Restoration:
    """The prediction inside the hole, the input's own pixels everywhere else."""
    return Restoration(hole * pred + (1 - hole) * images)


class Method:
    """Base class of every method. Override what applies; the harness calls, in order:

    ``__init__(ctx)`` (build networks) -> ``setup_training(data)`` (optimisers, samplers; only when
    training) -> ``train_step(step)`` repeatedly -> ``restore(images, masks)`` in eval mode.
    ``state_dict`` / ``load_state_dict`` must round-trip networks and, once training is set up,
    optimisers too (that is what makes a killed run resumable).
    """

    trainable: bool = True

    def __init__(self, ctx: MethodContext) -> None:
        self.ctx = ctx

    def default_steps(self) -> int:
        """Training steps for ``ctx.profile`` when the user gives none."""
        return 0

    def setup_training(self, data: TrainData) -> None:
        raise NotImplementedError

    def train_step(self, step: int) -> dict[str, float]:
        """One optimisation step; returns the named losses (floats) for logging and the NaN guard."""
        raise NotImplementedError

    def parts(self) -> dict[str, Any]:
        """Named networks and optimisers (None before ``setup_training``) that make up the state.

        The default ``state_dict``/``load_state_dict`` round-trip exactly these, so most methods only
        name their parts; a network missing from a checkpoint is an error, an optimiser is optional.
        """
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {key: part.state_dict() for key, part in self.parts().items() if part is not None}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        from torch import nn

        for key, part in self.parts().items():
            if part is None:
                continue
            if key in state:
                part.load_state_dict(state[key])
            elif isinstance(part, nn.Module):
                raise KeyError(f"{type(self).__name__}: checkpoint has no {key!r}; it was saved by another method")

    def restore(self, images: torch.Tensor, masks: torch.Tensor | None) -> Restoration:
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        """Facts for the run manifest (preset, backbone weights used, ...)."""
        return {}
