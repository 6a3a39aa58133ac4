"""Learning-rate schedules the methods share: a value per step, then set on the optimisers.

Each is a function of the step alone (never of a counter the method keeps), so a killed and resumed run sets the
same rate at every step as an uninterrupted one. The training loop (:mod:`bench.training`) knows none of them:
a method applies its schedule at the top of its ``train_step``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def linear_decay(step: int, total: int, lr: float, decay_start: float) -> float:
    """``lr`` for the first ``decay_start`` share of ``total`` steps, then linear to 0 at ``total``: the schedule
    OA-GAN, GANimation and Self-regularization share. A function of the step alone, so a resumed run agrees."""
    start = decay_start * total
    if decay_start >= 1 or step < start:
        return lr
    return lr * max(0.0, (total - step) / max(1.0, total - start))


def set_lr(lr: float, *optimizers: torch.optim.Optimizer) -> None:
    """Every parameter group of ``optimizers`` at ``lr`` (a schedule's value for this step)."""
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["lr"] = lr
