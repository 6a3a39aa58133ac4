"""Small helpers several test modules share."""

from __future__ import annotations

import torch


def same_state(a, b) -> bool:
    """Nested state dicts equal to the bit (tensors compared with torch.equal)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_state(x, y) for x, y in zip(a, b, strict=True))
    return torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b


def check_bit_exact_resume(cls, options: dict, total: int, kill_at: int, workdir, make_context, train_data):
    """Train ``cls`` for ``total`` steps in one go, and again killed after ``kill_at`` steps and resumed in a
    fresh "process" (reseeded, rebuilt, a fresh data sampler): both end with bit-identical state. Returns the
    resumed method for further checks."""
    from bench.training import Budget, fit, seed_everything

    def train(budgets: tuple[int, ...], folder):
        done = 0
        for steps in budgets:  # each call is a fresh process: seed, build, fit (resuming from last.pt)
            seed_everything(0)
            method = cls(make_context(cls, 32, total_steps=total, **options))
            result = fit(method, train_data(), Budget(steps), folder, checkpoint_every=100)
            assert result.resumed_from == done  # the second call really resumed
            done = steps
        return method

    whole = train((total,), workdir / "once")
    resumed = train((kill_at, total), workdir / "resumed")
    assert same_state(whole.state_dict(), resumed.state_dict())
    return resumed
