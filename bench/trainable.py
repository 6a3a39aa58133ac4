"""The training contract methods and recognizers share: the harness loop (:func:`bench.training.fit`) trains
anything that offers it, so budget, bit-exact resume, the NaN guard, data parallelism and the checkpoint cache
are written once.

``setup_training(data)`` (optimisers, samplers; only when the harness trains) -> ``train_step(step)``
repeatedly. ``state_dict`` / ``load_state_dict`` must round-trip the networks and, once training is set up,
the optimisers and any other state a step reads (counters, image pools, private random generators): that is
what makes a killed and resumed run bit-identical to an uninterrupted one. The global torch, numpy and Python
generators and the training data's sampler are saved by the harness.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.data.types import TrainData


class Trainable:
    """Base of :class:`bench.method.Method` and :class:`bench.identification.recognizer.Recognizer`. A subclass
    has ``ctx.device`` (where its steps run) and names its networks and optimisers in :meth:`parts`."""

    ctx: Any

    def setup_training(self, data: TrainData) -> None:
        """Optimisers and samplers over ``data``; called once, only when the harness trains."""
        raise NotImplementedError(
            f"{type(self).__name__}.setup_training is not implemented: set `trainable = False` on a plugin that "
            "does not train, or implement setup_training(data) and train_step(step)"
        )

    def train_step(self, step: int) -> dict[str, float]:
        """One optimisation step; returns the named losses (floats) for logging and the NaN guard."""
        raise NotImplementedError(
            f"{type(self).__name__}.train_step is not implemented: set `trainable = False` on a plugin that "
            "does not train, or implement train_step(step) returning its losses"
        )

    def parts(self) -> dict[str, Any]:
        """Named networks and optimisers (None before ``setup_training``) that make up the state.

        The default ``state_dict``/``load_state_dict`` round-trip exactly these, so most subclasses only
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
                raise KeyError(f"{type(self).__name__}: checkpoint has no {key!r}; it was saved by another plugin")
