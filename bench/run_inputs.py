"""What one ``bench run`` works on once it is resolved (the plan, the data, the run folder, the device): handed
by the runner to its job loop and to the identification step, which both read it and neither changes it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.data.types import Benchmark, FaceSet, Occluder
    from bench.planning import Plan, Planned
    from bench.runstore import RunStore


@dataclass
class RunInputs:
    """What the job loop and the identification step work on, resolved before they start."""

    store: RunStore
    plan: Plan
    planned: dict[str, Planned]
    bench: Benchmark
    occluder: Occluder
    device: Any  # torch.device
    splits: dict[str, FaceSet]  # the evaluated test splits, cut to --limit
    fingerprint: str  # the data's hash: what the rows were computed on
    training_fingerprint: str  # the training splits' hash: keys every trained model
