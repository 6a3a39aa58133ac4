"""What a face recognizer plugin provides: a spec to register (torch-free) and a class to build.

Recognizers are pluggable the way methods are (the ``register_recognizers`` hook), so a third party adds one,
e.g. an ArcFace network from a local weights file given by ``--id-weights``, without editing the harness.
A recognizer maps aligned uint8 RGB faces to embedding vectors; the protocol compares them by cosine
similarity. A trainable one (LightCNN-9 without weights) is trained by the harness on faces it is handed
and cached like any checkpoint (``bench.cache``).
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from bench.data.types import FaceSet

RECOGNIZER_NAME = re.compile(r"[a-z][a-z0-9_]*")
WEIGHTS = ("none", "optional", "required")  # whether the recognizer reads --id-weights


@dataclass(frozen=True)
class RecognizerSpec:
    """One registered recognizer. ``requires`` names the importable modules it needs and ``install`` says how
    to get them, so a missing optional extra is one line at planning time, not a traceback mid-run."""

    name: str
    factory: str  # "package.module:Class", a subclass of Recognizer, imported only when used
    summary: str
    paper: str = ""
    weights: str = "none"
    requires: tuple[str, ...] = ()
    install: str = ""
    plugin: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not RECOGNIZER_NAME.fullmatch(self.name):
            raise ValueError(f"recognizer name {self.name!r}: lowercase letters, digits, '_', starting with a letter")
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

    def load(self) -> type[Recognizer]:
        module, _, attr = self.factory.partition(":")
        return getattr(importlib.import_module(module), attr)


@dataclass
class RecognizerContext:
    image_size: int
    device: Any  # torch.device or "cpu"
    seed: int = 0
    profile: str = "quick"
    weights: Path | None = None


class Recognizer:
    """Subclass and implement :meth:`embed`; a trainable one also :meth:`fit`, :meth:`state_dict` and
    :meth:`load_state_dict`. ``default_steps`` are its training steps per profile (``--id-steps`` overrides)."""

    default_steps: dict[str, int] = {}

    def __init__(self, ctx: RecognizerContext) -> None:
        self.ctx = ctx

    @property
    def trainable(self) -> bool:
        """Whether the harness must train it (Fig. 12's variants a and b) before it can embed."""
        return False

    def describe(self) -> str:
        """One line for the report: the network and where its weights come from."""
        return type(self).__name__

    def fit(self, faces: FaceSet, steps: int) -> None:
        raise NotImplementedError(f"{type(self).__name__} is not trainable")

    def embed(self, images: np.ndarray) -> np.ndarray:
        """uint8 RGB faces [N,H,W,3], aligned as the benchmark aligns them -> float32 embeddings [N,D]."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
