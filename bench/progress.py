"""What ``bench run`` says while it trains and scores: a rich bar on a terminal, plain lines in a log.

A rich bar draws nothing when stderr is a file or a pipe, so a long training under ``nohup`` or a scheduler
would leave an empty log. Off a terminal, :class:`TrainingLines` writes one line per method per tenth of its
steps or per minute, whichever comes first; :func:`training_progress` picks by ``console.is_terminal``. The
clock is a parameter so the throttle is tested with a fake one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from bench.data.types import TrainData
    from bench.trainable import Trainable
    from bench.training import Budget, FitResult

Clock = Callable[[], float]
LINE_SHARE = 10  # off a terminal: a line each time another 1/LINE_SHARE of the steps is done ...
LINE_SECONDS = 60.0  # ... or when this long has passed since the last line, whichever comes first


def duration(seconds: float) -> str:
    """``12.3s``, ``4m07s`` or ``2h05m``: short enough for a progress line, exact enough for a log."""
    seconds = round(seconds, 1)  # 59.97 is "1m00s", never "60.0s" or "0m59s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes}m{int(seconds % 60):02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def main_loss(losses: Mapping[str, float]) -> tuple[str, float] | None:
    """The loss a line shows: the total where a method logs one (``g_total``, ``total``), else ``loss`` or a
    ``loss_*`` term, else the first one logged. Chosen by the logged names, so no method is known by name."""
    names = list(losses)
    for wanted in (
        lambda k: k == "total" or k.endswith("_total"),
        lambda k: k == "loss",
        lambda k: k.startswith("loss"),
    ):
        found = next((k for k in names if wanted(k)), None)
        if found is not None:
            return found, losses[found]
    return (names[0], losses[names[0]]) if names else None


class TrainingLines:
    """Off a terminal: a line at each tenth of ``total`` steps and whenever a minute passed without one.

    The tenths and the s/step count from :meth:`begin` (the step training starts or resumes at, once the
    method is set up), so neither a resume nor the setup skews them. Each line shows the newest value of the
    main loss (a generator's total logged only on its own steps stays shown through the critic steps)."""

    def __init__(self, console: Console, name: str, total: int, *, clock: Clock = time.monotonic) -> None:
        self.console, self.name, self.total, self.clock = console, name, total, clock
        self.latest: dict[str, float] = {}

    def __enter__(self) -> TrainingLines:
        self.console.print(f"{self.name}: training {self.total} steps", highlight=False, soft_wrap=True)
        self.begin(0)
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def begin(self, start: int) -> None:
        self.start, self.share = start, start * LINE_SHARE // self.total
        self.t0 = self.last_line = self.clock()

    def step(self, step: int, losses: Mapping[str, float]) -> None:
        now = self.clock()
        self.latest.update(losses)
        share = step * LINE_SHARE // self.total
        if step >= self.total or (share <= self.share and now - self.last_line < LINE_SECONDS):
            return  # the last step is told by the closing line
        self.share, self.last_line = share, now
        per_step = (now - self.t0) / (step - self.start)
        loss = main_loss(self.latest)
        parts = [
            f"{self.name}: step {step}/{self.total} ({100 * step // self.total}%)",
            *([f"{loss[0]}={loss[1]:.4g}"] if loss else []),
            f"{per_step:.3g} s/step",
            f"{duration(per_step * (self.total - step))} left",
        ]
        self.console.print(", ".join(parts), highlight=False, soft_wrap=True)


class TrainingBar:
    """On a terminal: rich's bar with the step count, the time left and the step's first three losses."""

    def __init__(self, console: Console, name: str, total: int, *, show: bool = True) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[loss]}"),
            console=console,
            disable=not show,
        )
        self.task = self.bar.add_task(f"train {name}", total=total, loss="")

    def __enter__(self) -> TrainingBar:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)

    def begin(self, start: int) -> None:
        self.bar.update(self.task, completed=start)

    def step(self, step: int, losses: Mapping[str, float]) -> None:
        shown = " ".join(f"{k}={v:.3g}" for k, v in list(losses.items())[:3])
        self.bar.update(self.task, completed=step, loss=shown)


def training_progress(console: Console, name: str, total: int, *, show: bool = True) -> TrainingBar | TrainingLines:
    """The reporter for ``console``: a bar on a terminal, lines in a file or pipe. ``show`` is off on the ranks
    after the first under torchrun: their progress is rank 0's, told once."""
    if console.is_terminal or not show:
        return TrainingBar(console, name, total, show=show)
    return TrainingLines(console, name, total)


def reported_fit(
    console: Console, name: str, trainee: Trainable, data: TrainData, budget: Budget, workdir: Path, **fit_options: Any
) -> FitResult:
    """:func:`bench.training.fit` with the progress of ``name`` told on ``console`` (rank 0 alone under torchrun),
    the interrupt line after the bar is gone (so it stands on its own) and the resume line; one way for every
    trainee, methods and recognizers alike. ``fit_options`` go to ``fit``."""
    from bench.distributed import Dist
    from bench.training import TrainingInterrupted, fit

    main = fit_options.get("dist", Dist()).main
    try:
        with training_progress(console, name, budget.steps, show=main) as progress:
            result = fit(trainee, data, budget, workdir, on_start=progress.begin, on_step=progress.step, **fit_options)
    except TrainingInterrupted as stop:
        if main:
            console.print(f"{name}: {stop}", markup=False, highlight=False)
        raise
    if result.resumed_from and main:
        console.print(f"{name}: resumed training from step {result.resumed_from}", markup=False)
    return result


def trained_line(name: str, result: FitResult, stored: Path | None) -> str:
    """The closing line of a method's training: steps done in this process, wall time, s/step, where the model
    went (``stored`` is None when no checkpoint exists: a time budget spent before the first step)."""
    done = result.steps - result.resumed_from
    span = f" ({result.resumed_from + 1}-{result.steps})" if result.resumed_from and done else ""
    rate = f" ({result.seconds / done:.3g} s/step)" if done else ""
    where = f"model stored at {stored}" if stored is not None else "nothing stored"
    return f"{name}: trained {done} steps{span} in {duration(result.seconds)}{rate}; {where}"


@contextmanager
def evaluation_progress(
    console: Console, label: str, *, show: bool = True, clock: Clock = time.monotonic
) -> Iterator[None]:
    """Off a terminal, a line when scoring ``label`` starts and one when it is done (on a terminal the lines
    would only push the table up; a failure is told by the runner's own line)."""
    if not show or console.is_terminal:
        yield
        return
    t0 = clock()
    console.print(f"{label}: scoring", highlight=False, soft_wrap=True)
    yield
    console.print(f"{label}: scored in {duration(clock() - t0)}", highlight=False, soft_wrap=True)
