"""What ``bench run`` tells a log off a terminal: the throttle on a fake clock, then real runs of the tiny plugin
with stderr in a file (progress lines, the closing line, a Ctrl-C or SIGTERM that says where it resumes)."""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from bench.progress import (
    TrainingBar,
    TrainingLines,
    duration,
    evaluation_progress,
    main_loss,
    trained_line,
    training_progress,
)
from bench.training import FitResult


class FakeClock:
    """Seconds that pass only when a test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _log() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=80), out


def _train(lines: TrainingLines, clock: FakeClock, steps: range, seconds: float, losses) -> list[str]:
    """Drive ``lines`` as fit would: a 30 s setup, then each step takes ``seconds`` of the fake clock."""
    with lines:
        clock.now += 30.0  # the setup (networks built, checkpoint loaded) counts in no s/step
        lines.begin(steps.start - 1)
        for step in steps:
            clock.now += seconds
            lines.step(step, losses(step))
    return lines.console.file.getvalue().splitlines()


def test_a_line_at_each_tenth_of_the_steps_and_none_for_the_last():
    console, _ = _log()
    clock = FakeClock()
    lines = _train(TrainingLines(console, "m", 100, clock=clock), clock, range(1, 101), 1.0, lambda s: {"l1": 0.5})
    left = {10: "1m30s", 20: "1m20s", 30: "1m10s", 40: "1m00s", 50: "50.0s", 60: "40.0s", 70: "30.0s", 80: "20.0s"}
    left[90] = "10.0s"
    assert lines == ["m: training 100 steps"] + [
        f"m: step {k}/100 ({k}%), l1=0.5, 1 s/step, {left[k]} left" for k in range(10, 100, 10)
    ]


def test_a_line_each_minute_when_a_tenth_takes_longer():
    console, _ = _log()
    clock = FakeClock()
    lines = _train(TrainingLines(console, "m", 1000, clock=clock), clock, range(1, 121), 5.0, lambda s: {"l1": 0.5})
    # 5 s a step: a minute is 12 steps; the tenth (step 100) comes 20 s after the line at step 96 and restarts
    # the minute, so the next line is at 112, not 108
    steps = [int(re.search(r"step (\d+)/", line)[1]) for line in lines[1:]]
    assert steps == [12, 24, 36, 48, 60, 72, 84, 96, 100, 112]
    assert lines[1] == "m: step 12/1000 (1%), l1=0.5, 5 s/step, 1h22m left"  # 988 steps x 5 s = 82.3 min


def test_a_resumed_training_counts_from_its_resume_and_shows_the_newest_total():
    console, _ = _log()
    clock = FakeClock()

    def losses(step: int) -> dict[str, float]:  # a generator total logged every third step, as with critic steps
        return {"d_adv": 1.0, "g_total": float(step)} if step % 3 == 0 else {"d_adv": 1.0}

    lines = _train(TrainingLines(console, "m", 400, clock=clock), clock, range(301, 401), 1.0, losses)
    assert lines == [
        "m: training 400 steps",
        "m: step 320/400 (80%), g_total=318, 1 s/step, 1m20s left",  # 20 steps in 20 s since the resume at 300
        "m: step 360/400 (90%), g_total=360, 1 s/step, 40.0s left",
    ]


def test_main_loss_prefers_a_total_then_loss_then_the_first_logged():
    assert main_loss({"d_adv": 1.0, "g_adv": 2.0, "g_total": 3.0}) == ("g_total", 3.0)
    assert main_loss({"l1": 1.0, "loss": 2.0, "loss_d": 3.0}) == ("loss", 2.0)
    assert main_loss({"l1": 1.0, "loss_g": 2.0}) == ("loss_g", 2.0)
    assert main_loss({"d": 1.0, "g": 2.0}) == ("d", 1.0)
    assert main_loss({}) is None


def test_durations():
    assert [duration(s) for s in (0.04, 12.34, 59.97, 247.0, 3599.0, 7500.0)] == [
        "0.0s",
        "12.3s",
        "1m00s",
        "4m07s",
        "59m59s",
        "2h05m",
    ]


def test_the_closing_line_counts_the_steps_of_this_process():
    resumed = FitResult(steps=200, requested=200, seconds=50.0, resumed_from=100, stopped_by_time=False, last_losses={})
    assert trained_line("m", resumed, Path("/c/model.pt")) == (
        "m: trained 100 steps (101-200) in 50.0s (0.5 s/step); model stored at /c/model.pt"
    )
    fresh = FitResult(steps=40, requested=40, seconds=130.0, resumed_from=0, stopped_by_time=False, last_losses={})
    assert trained_line("m", fresh, Path("/c/model.pt")) == (
        "m: trained 40 steps in 2m10s (3.25 s/step); model stored at /c/model.pt"
    )
    spent = FitResult(steps=0, requested=5, seconds=0.01, resumed_from=0, stopped_by_time=True, last_losses={})
    assert trained_line("m", spent, None) == "m: trained 0 steps in 0.0s; nothing stored"  # a budget spent at once


def test_the_reporter_follows_the_console():
    assert isinstance(training_progress(Console(file=io.StringIO()), "m", 10), TrainingLines)
    assert isinstance(training_progress(Console(file=io.StringIO(), force_terminal=True), "m", 10), TrainingBar)
    assert isinstance(training_progress(Console(file=io.StringIO()), "m", 10, show=False), TrainingBar)  # rank > 0
    quiet = io.StringIO()  # --quiet and --json: the console is quiet, so nothing is written
    with training_progress(Console(file=quiet, quiet=True), "m", 10) as progress:
        for step in range(1, 11):
            progress.step(step, {"l1": 1.0})
    assert quiet.getvalue() == ""


def test_evaluation_lines_off_a_terminal_only_and_no_done_line_on_a_failure():
    console, out = _log()
    clock = FakeClock()
    with evaluation_progress(console, "m@gt", clock=clock):
        clock.now += 3.5
    with pytest.raises(ValueError), evaluation_progress(console, "bad", clock=clock):
        raise ValueError
    assert out.getvalue().splitlines() == ["m@gt: scoring", "m@gt: scored in 3.5s", "bad: scoring"]
    terminal = io.StringIO()
    with evaluation_progress(Console(file=terminal, force_terminal=True), "m@gt", clock=clock):
        pass
    assert terminal.getvalue() == ""


# real runs ---------------------------------------------------------------------------------------------------

BENCH = [sys.executable, "-m", "bench.cli", "run", "--methods", "tinyfill", "--mask-source", "gt", "--limit", "3"]


def _args(out: Path, steps: int, *extra: str) -> list[str]:
    return [*BENCH, "--data-limit", "40", "--steps", str(steps), "--output", str(out), *extra]


@pytest.mark.slow
def test_a_run_logged_to_a_file_shows_progress_and_where_the_model_went(tiny_env, tmp_path):
    out, log = tmp_path / "results", tmp_path / "stderr.log"
    with open(log, "w") as err:
        done = subprocess.run(_args(out, 30), env=tiny_env, stdout=subprocess.DEVNULL, stderr=err, timeout=300)
    text = log.read_text()
    assert done.returncode == 0, text[-2000:]
    assert "\x1b" not in text and "\r" not in text  # plain lines, no bar drawn into the file
    lines = text.splitlines()
    assert "tinyfill: training 30 steps" in lines
    shown = [re.fullmatch(r"tinyfill: step (\d+)/30 \(\d+%\), l1=\S+, \S+ s/step, \S+s left", line) for line in lines]
    assert [int(m[1]) for m in shown if m] == list(range(3, 30, 3)), text
    (closing,) = [line for line in lines if line.startswith("tinyfill: trained ")]
    stored = re.fullmatch(r"tinyfill: trained 30 steps in [\d.]+s \(\S+ s/step\); model stored at (.+)", closing)
    assert stored and Path(stored[1]).is_file() and Path(stored[1]).parent.parent == out / "checkpoints" / "tinyfill"
    assert "tinyfill@gt: scoring" in lines and any(re.fullmatch(r"tinyfill@gt: scored in [\d.]+s", x) for x in lines)

    again = subprocess.run(_args(out, 30), env=tiny_env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"tinyfill: loaded cached checkpoint {stored[1]}" in again.stderr.splitlines()
    assert "tinyfill: training" not in again.stderr

    as_json = subprocess.run(_args(out, 12, "--json"), env=tiny_env, capture_output=True, text=True, timeout=300)
    assert as_json.returncode == 0, as_json.stderr[-2000:]
    assert json.loads(as_json.stdout)["status"] == "complete"  # stdout is the JSON alone
    assert "tinyfill" not in as_json.stderr  # trained (a new step count), and said nothing


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupt_says_the_step_it_stopped_at_and_the_step_the_rerun_resumes_from(tiny_env, tmp_path, signum):
    from bench.training import load_checkpoint

    out, log = tmp_path / "results", tmp_path / "stderr.log"
    steps = 120  # room past the checkpoint of step 50 for the 0.3 s before the signal (at most 15 steps)
    args = _args(out, steps, "--opt", "tinyfill.step_sleep=0.02")
    # As from a terminal: a suite started in the background (``pytest &``) hands its children SIGINT ignored.
    default = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    with open(log, "w") as err:
        proc = subprocess.Popen(args, env=tiny_env, stdout=subprocess.DEVNULL, stderr=err, preexec_fn=default)
        deadline = time.time() + 120
        while time.time() < deadline and not list(out.glob("checkpoints/tinyfill/*/last.pt")):
            time.sleep(0.02)
        time.sleep(0.3)  # past the checkpoint of step 50, short of the end
        proc.send_signal(signum)
        assert proc.wait(timeout=60) == 130
    lines = log.read_text().splitlines()
    said = [m for m in (re.fullmatch(r"tinyfill: stopped at step (\d+); the same command (.*)", x) for x in lines) if m]
    assert len(said) == 1, lines
    stopped, resume = int(said[0][1]), (int(said[0][1]) // 50) * 50  # checkpoints every 50 steps
    assert 50 <= resume <= stopped < steps
    assert said[0][2] == f"resumes from step {resume} (last checkpoint)"
    (last,) = out.glob("checkpoints/tinyfill/*/last.pt")
    assert load_checkpoint(last)["step"] == resume  # what the line says is what is on disk
    assert lines.index(said[0][0]) < lines.index(next(x for x in lines if x.startswith("interrupted: ")))

    again = subprocess.run(args, env=tiny_env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"tinyfill: resumed training from step {resume}" in again.stderr.splitlines()
    assert f"tinyfill: trained {steps - resume} steps ({resume + 1}-{steps}) in " in again.stderr
