"""The method protocol: what a de-occlusion method offers the harness.

A method is a class built from a :class:`MethodContext`. The harness owns the training loop
(budget, checkpoints, resume, NaN guard; see :mod:`bench.training`); the method owns one step.
Images cross this API as float32 ``[B,3,H,W]`` in [0,1]; masks as float32 ``[B,1,H,W]`` in [0,1]
with **1 = occluded**. Methods convert to their own ranges internally.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from bench.options import Options, for_profile
from bench.registry import PluginSpec, check_name
from bench.trainable import Trainable

if TYPE_CHECKING:
    import torch

TRAINING_DATA = ("paired", "natural", "clean")


def base_name(name: str) -> str:
    """``oagan`` for ``oagan:no_style``; the name itself when it is not a variant."""
    return name.partition(":")[0]


@dataclass(frozen=True)
class MethodSpec(PluginSpec):
    """What a plugin registers. Cheap to build: nothing is imported until :meth:`load`."""

    kind: ClassVar[str] = "method"
    name: str  # "oagan", or a variant "oagan:no_style" (see bench.registry.check_name)
    factory: str  # "package.module:Class", a subclass of Method
    summary: str
    paper: str = ""  # short citation, shown in the report
    needs_mask: bool = False  # fed a mask by the harness (a mask source's binarized mask, or the oracle)
    predicts_mask: bool = False  # returns its own occlusion mask (scored with IoU/F1; can be a mask source)
    trains_on: tuple[str, ...] = ()  # subset of TRAINING_DATA
    reported: Mapping[str, float] = field(default_factory=dict)  # the seed paper's numbers, e.g. psnr/ssim
    options: Mapping[str, Any] = field(default_factory=dict)  # option overrides (variants differ here)
    variant_of: str = ""  # the method this one ablates ("oagan" for "oagan:no_style"); set from the name
    # Returns its input unchanged: the floor every method must beat. A run scores it always (it costs nothing),
    # so every result sits beside its input's score; the harness finds it by this flag, never by name.
    reference: bool = False
    plugin: str = ""  # set by the plugin manager

    def __post_init__(self) -> None:
        check_name(self.name, "method")
        if ":" in self.name and not self.variant_of:
            object.__setattr__(self, "variant_of", base_name(self.name))
        if self.variant_of and base_name(self.name) != self.variant_of:
            raise ValueError(f"method {self.name!r}: a variant of {self.variant_of!r} is named {self.variant_of}:...")
        if ":" not in self.factory:
            raise ValueError(f"method {self.name!r}: factory must be 'module:attr', got {self.factory!r}")
        unknown = set(self.trains_on) - set(TRAINING_DATA)
        if unknown:
            raise ValueError(f"method {self.name!r}: unknown training data {sorted(unknown)}")

    def facts(self) -> dict[str, Any]:
        """What the run manifest records of the spec beside each evaluated label (the report reads it)."""
        return {
            "plugin": self.plugin,
            "summary": self.summary,
            "paper": self.paper,
            "needs_mask": self.needs_mask,
            "predicts_mask": self.predicts_mask,
            "variant_of": self.variant_of,
            "reference": self.reference,
            "reported": dict(self.reported),
            "options": dict(self.options),
        }


@dataclass
class MethodContext:
    """Everything a method may know about the run it is built for."""

    image_size: int
    profile: str  # "quick" (CPU, minutes), "standard" (CPU, ~25 min per method) or "paper" (the paper's settings)
    device: torch.device
    seed: int
    config: Options = field(default_factory=Options)  # the method's resolved, validated options
    total_steps: int = 0  # the training budget the harness will run (schedules span it)
    attribute_names: tuple[str, ...] = ()
    weights_dir: Path | None = None  # local pretrained files (e.g. vgg16), never a hub


def make_context(
    cls: type[Method],
    *,
    image_size: int,
    profile: str,
    device: torch.device,
    seed: int = 0,
    options: tuple[Mapping[str, Any], ...] = (),
    total_steps: int | None = None,
    name: str = "",
    attribute_names: tuple[str, ...] = (),
    weights_dir: Path | None = None,
) -> MethodContext:
    """The one way to build a context: ``cls.Options`` resolved for ``profile`` with each layer of
    ``options`` (a variant's, then the user's) on top; ``total_steps`` defaults to the profile's budget."""
    config = cls.Options.resolve(profile, *options, method=name or cls.__name__)
    return MethodContext(
        image_size=image_size,
        profile=profile,
        device=device,
        seed=seed,
        config=config,
        total_steps=cls.steps_for(profile) if total_steps is None else total_steps,
        attribute_names=attribute_names,
        weights_dir=weights_dir,
    )


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


class Method(Trainable):
    """Base class of every method. Override what applies; the harness calls, in order:

    ``__init__(ctx)`` (build networks) -> ``setup_training(data)`` (optimisers, samplers; only when
    training) -> ``train_step(step)`` repeatedly -> ``restore(images, masks)`` in eval mode. The training
    half, and what ``state_dict`` must round-trip for a bit-exact resume, is :class:`bench.trainable.Trainable`.
    """

    trainable: ClassVar[bool] = True
    # False where restore() differentiates through a network (a latent search): compiled graphs do not support
    # autograd.grad, so --compile leaves such a method eager (bench.acceleration) and the manifest says so.
    compilable: ClassVar[bool] = True
    Options: ClassVar[type[Options]] = Options  # the declared options (bench.options); resolved into ctx.config
    default_steps: ClassVar[Mapping[str, int]] = {}  # training steps per profile when the user gives none

    def __init__(self, ctx: MethodContext) -> None:
        self.ctx = ctx

    @classmethod
    def steps_for(cls, profile: str) -> int:
        """The default training budget of ``profile``, else of its nearest base (``standard`` -> ``quick``),
        else the ``paper`` one."""
        return int(for_profile(cls.default_steps, profile, cls.default_steps.get("paper", 0)))

    def restore(self, images: torch.Tensor, masks: torch.Tensor | None) -> Restoration:
        """The restored ``images`` (and, for ``predicts_mask=True``, the predicted masks) as a Restoration.
        A mask-fed method (``needs_mask=True``) gets ``images`` with the hole zeroed (Fig. 10(d)) and ``masks``
        (1 = occluded); any other method gets the occluded input and ``masks=None``."""
        raise NotImplementedError(
            f"{type(self).__name__}.restore is not implemented: define restore(images, masks) returning "
            "bench.method.Restoration(images[, masks])"
        )

    def info(self) -> dict[str, Any]:
        """Facts for the run manifest (preset, backbone weights used, ...)."""
        return {}
