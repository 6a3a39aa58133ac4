"""What a face recognizer plugin provides: a spec to register (torch-free) and a class to build.

Recognizers are pluggable the way methods are (the ``register_recognizers`` hook), so a third party adds one,
e.g. an ArcFace network from a local weights file given by ``--id-weights``, without editing the harness.
A recognizer maps aligned uint8 RGB faces to embedding vectors; the protocol compares them by cosine
similarity. A trainable one (LightCNN-9 without weights) is trained by the harness loop on faces it is handed
and cached like any checkpoint (``bench.cache``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from bench.registry import PluginSpec, check_name
from bench.trainable import Trainable

if TYPE_CHECKING:
    import numpy as np

WEIGHTS = ("none", "optional", "required")  # whether the recognizer reads --id-weights


@dataclass(frozen=True)
class RecognizerSpec(PluginSpec):
    """One registered recognizer. ``requires`` names the importable modules it needs and ``install`` says how
    to get them, so a missing optional extra is one line at planning time, not a traceback mid-run."""

    kind: ClassVar[str] = "recognizer"
    name: str  # a plain name (bench.registry.check_name, no variants)
    factory: str  # "package.module:Class", a subclass of Recognizer, imported only when used
    summary: str
    paper: str = ""
    weights: str = "none"
    requires: tuple[str, ...] = ()
    install: str = ""
    plugin: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        check_name(self.name, "recognizer", variants=False)
        if self.weights not in WEIGHTS:
            raise ValueError(f"recognizer {self.name!r}: weights must be one of {', '.join(WEIGHTS)}")

    def missing(self) -> list[str]:
        """The required modules that are not installed here (found without importing them)."""
        out = []
        for module in self.requires:
            try:
                found = importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):  # a parent package missing, or the module blocked in sys.modules
                found = False
            if not found:
                out.append(module)
        return out


def fit_problems(found: Mapping[str, Any], wanted: Mapping[str, Any], network: str, optional: str = "") -> list[str]:
    """How a weights file's tensors ``found`` fail to fit a network's state ``wanted`` (built on the meta device):
    keys missing, keys unexpected, the first key of another shape, each with a count and the first few names; empty
    when they fit. ``network`` names it in the shape message ("LightCNN-9 at image_size=128"); keys ending in
    ``optional`` may be absent. The one check every recognizer's ``check_weights`` reports through."""
    problems = []
    if missing := [k for k in wanted if k not in found and not (optional and k.endswith(optional))]:
        problems.append(f"missing {_few(missing)}")
    if unexpected := [k for k in found if k not in wanted]:
        problems.append(f"unexpected {_few(unexpected)}")
    if shapes := [k for k in wanted if k in found and found[k].shape != wanted[k].shape]:
        k = shapes[0]
        problems.append(
            f"{len(shapes)} of another shape, e.g. {k} {list(found[k].shape)} where {network} has "
            f"{list(wanted[k].shape)}"
        )
    return problems


def _few(keys: list[str], shown: int = 3) -> str:
    more = f" and {len(keys) - shown} more" if len(keys) > shown else ""
    return f"{len(keys)} key{'s' * (len(keys) != 1)} ({', '.join(keys[:shown])}{more})"


@dataclass
class RecognizerContext:
    image_size: int
    device: Any  # torch.device or "cpu"
    seed: int = 0
    profile: str = "quick"
    weights: Path | None = None
    steps: int = 0  # the training budget when the harness trains it (a schedule spans it)


class Recognizer(Trainable):
    """Subclass and implement :meth:`embed`. A trainable one implements the training contract methods have
    (:class:`bench.trainable.Trainable`: ``setup_training`` on the faces in ``data.clean``, ``train_step``,
    ``parts``), so the harness loop trains it: budget, bit-exact resume, the NaN guard and the cache.
    ``default_steps`` are its training steps per profile (``--id-steps`` overrides)."""

    default_steps: ClassVar[dict[str, int]] = {}

    def __init__(self, ctx: RecognizerContext) -> None:
        self.ctx = ctx

    @property
    def trainable(self) -> bool:
        """Whether the harness must train it (Fig. 12's variants a and b) before it can embed."""
        return False

    def describe(self) -> str:
        """One line for the report: the network and where its weights come from."""
        return type(self).__name__

    def embed(self, images: np.ndarray) -> np.ndarray:
        """uint8 RGB faces [N,H,W,3], aligned as the benchmark aligns them -> float32 embeddings [N,D]."""
        raise NotImplementedError

    @classmethod
    def check_weights(cls, path: Path) -> None:
        """Raise ValueError, starting with ``path`` and naming what does not fit (keys, shapes), when the weights
        file cannot be this network's; called at planning time, before any work. The base checks nothing."""


def check_weights_file(path: Path, recognizers: list[type[Recognizer]]) -> None:
    """``--id-weights`` checked before any work, with the real cause: a weights-only file (not some other file,
    not a pickle of objects; bench.io.check_weights_only) whose keys and shapes fit each of ``recognizers`` that
    reads it."""
    from bench.errors import DataError
    from bench.io import check_weights_only

    check_weights_only(path, f"--id-weights {path}", "give the recognizer's released weights file")
    for recognizer in recognizers:
        try:
            recognizer.check_weights(path)
        except ValueError as exc:
            raise DataError(f"--id-weights {exc}") from exc
