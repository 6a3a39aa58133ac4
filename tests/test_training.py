import json
import math
import random

import numpy as np
import pytest
import torch

from bench.errors import CheckpointError
from bench.method import Method, MethodContext, Restoration
from bench.training import (
    Budget,
    TrainingDiverged,
    TrainingInterrupted,
    fit,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
    state_digest,
)


class Tiny(Method):
    """A one-parameter regression: loss falls as training proceeds; ``nan_at`` injects a divergence and
    ``kill_at`` a crash. Each step reads every random generator the harness must carry across a resume."""

    batch_size = 4

    def __init__(self, ctx: MethodContext, nan_at: int | None = None, kill_at: int | None = None) -> None:
        super().__init__(ctx)
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.nan_at = nan_at
        self.kill_at = kill_at
        self.steps_run: list[int] = []

    def setup_training(self, data) -> None:
        self.data = data
        self.opt = torch.optim.Adam([self.w], lr=0.05)

    def train_step(self, step: int) -> dict[str, float]:
        if step == self.kill_at:
            raise KeyboardInterrupt
        self.steps_run.append(step)
        batch = self.data.clean_batch(self.batch_size)
        noise = 0.01 * (torch.randn(1) + float(np.random.standard_normal()) + random.gauss(0, 1))
        loss = ((batch.images.mean() + self.w + noise - 1.0) ** 2).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"loss": math.nan if step == self.nan_at else loss.item()}

    def state_dict(self):
        return {"w": self.w.detach().clone(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state):
        with torch.no_grad():
            self.w.copy_(state["w"])
        self.opt.load_state_dict(state["opt"])

    def restore(self, images, masks):
        return Restoration(images)


def test_fit_trains_and_resumes_after_a_kill(tmp_path, make_train_data, make_context):
    data = make_train_data()
    first = Tiny(make_context(Method))
    r1 = fit(first, data, Budget(steps=20), tmp_path, checkpoint_every=10)
    assert r1.steps == 20 and r1.resumed_from == 0
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 20
    # "kill" = a new process: a fresh method object continues from the checkpoint, not from scratch
    second = Tiny(make_context(Method))
    r2 = fit(second, data, Budget(steps=30), tmp_path, checkpoint_every=10)
    assert r2.resumed_from == 20 and second.steps_run == list(range(20, 30))
    assert second.w.item() != 0.0 and r2.last_losses["loss"] < 0.5


def test_kill_and_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path, make_train_data, make_context):
    def train(folder, kill_at=None):
        seed_everything(0)  # what the runner does before building a method, in every process
        method = Tiny(make_context(Method), kill_at=kill_at)
        result = fit(method, make_train_data(), Budget(steps=30), folder, checkpoint_every=10)
        return method, result

    whole, whole_result = train(tmp_path / "a")
    with pytest.raises(TrainingInterrupted) as stop:  # a KeyboardInterrupt that says where the rerun resumes
        train(tmp_path / "b", kill_at=25)  # killed after the checkpoint of step 20
    assert str(stop.value) == "stopped at step 25; the same command resumes from step 20 (last checkpoint)"
    resumed, result = train(tmp_path / "b")  # a new process: fresh objects, fresh data sampler, reseeded
    assert result.resumed_from == 20 and resumed.steps_run == list(range(20, 30))
    assert torch.equal(resumed.w, whole.w)
    assert result.last_losses == whole_result.last_losses
    # the loss curve has each step once, cut back to the checkpoint at the resume
    curve = [json.loads(line) for line in (tmp_path / "b" / "losses.jsonl").read_text().splitlines()]
    assert [c["step"] for c in curve] == list(range(1, 31))
    assert (tmp_path / "b" / "losses.jsonl").read_text() == (tmp_path / "a" / "losses.jsonl").read_text()


def test_an_interrupt_names_the_checkpoint_the_rerun_resumes_from(tmp_path, make_train_data, make_context):
    data = make_train_data()
    with pytest.raises(TrainingInterrupted) as before:  # before the first checkpoint: nothing to resume from
        fit(Tiny(make_context(Method), kill_at=7), data, Budget(steps=30), tmp_path, checkpoint_every=10)
    assert (before.value.step, before.value.checkpoint) == (7, 0) and not (tmp_path / "last.pt").exists()
    assert (
        str(before.value)
        == "stopped at step 7; the same command starts again from step 0 (no checkpoint was written yet)"
    )
    fit(Tiny(make_context(Method)), data, Budget(steps=10), tmp_path, checkpoint_every=10)
    with pytest.raises(TrainingInterrupted) as resumed:  # resumed at 10, stopped before its next checkpoint
        fit(Tiny(make_context(Method), kill_at=13), data, Budget(steps=30), tmp_path, checkpoint_every=10)
    assert (resumed.value.step, resumed.value.checkpoint) == (13, 10)
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 10


def test_nan_stops_with_clear_error_and_keeps_last_good_checkpoint(tmp_path, make_train_data, make_context):
    method = Tiny(make_context(Method), nan_at=13)
    with pytest.raises(TrainingDiverged, match=r"loss 'loss' became nan at step 13; last good checkpoint kept"):
        fit(method, make_train_data(), Budget(steps=40), tmp_path, checkpoint_every=5)
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 10


def test_time_budget_stops_early_and_saves(tmp_path, make_train_data, make_context):
    result = fit(Tiny(make_context(Method)), make_train_data(), Budget(steps=10**6, seconds=0.3), tmp_path)
    assert result.stopped_by_time and 0 < result.steps < 10**6 and not result.finished
    assert load_checkpoint(tmp_path / "last.pt")["step"] == result.steps


def test_corrupt_checkpoint_gives_one_clear_error(tmp_path):
    bad = tmp_path / "last.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=f"cannot read checkpoint {bad}: corrupt.*delete {tmp_path} to retrain"):
        load_checkpoint(bad)


def test_a_checkpoint_verifies_itself(tmp_path):
    """The stored digest covers everything in the file; a changed value or a checkpoint without one is refused."""
    import numpy as np
    import torch

    path = tmp_path / "model.pt"
    state = {"step": 3, "model": {"w": torch.arange(4.0)}, "pool": torch.zeros(100_000)}
    save_checkpoint(path, state)
    loaded = load_checkpoint(path)
    assert loaded["step"] == 3 and torch.equal(loaded["model"]["w"], state["model"]["w"])
    raw = torch.load(path, weights_only=True)
    raw["pool"][50_000] = 1.0  # deep inside a tensor whose repr elides it
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match=f"checkpoint {path} is damaged: its contents disagree with its digest"):
        load_checkpoint(path)
    del raw["digest"]
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="holds no digest .written by an older version.; delete"):
        load_checkpoint(path)
    save_checkpoint(path, state)
    with pytest.raises(CheckpointError, match="changed since it was stored"):
        load_checkpoint(path, sha256="0" * 64)
    a, b = np.zeros(100_000, np.float32), np.zeros(100_000, np.float32)
    b[50_000] = 1.0  # numpy's repr elides the middle: the digest hashes the bytes
    assert repr(a) == repr(b) and state_digest({"x": a}) != state_digest({"x": b})
