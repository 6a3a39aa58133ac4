"""``bench perf``: speed and memory per method, measured, not guessed.

For each method and image size: training-step throughput (images/s; trainable methods), inference
throughput of ``restore`` alone (the bare model) and the fraction of the device's measured 3x3-conv peak it
reaches, the same batches through the harness's own evaluation (``Evaluator``: masking, quantisation, PNG writes,
metrics, rows) to give the harness overhead as a share of the bare forward, with ``--channels-last`` /
``--compile`` / ``--precision`` the speed-up over the eager float32 restore and the largest output difference, and
peak memory (CUDA peak allocation on a GPU; the process's peak RSS on CPU, so run one method per call to isolate
it). Networks are untrained: speed does not depend on the weights. All ratios come from one process.
"""

from __future__ import annotations

import itertools
import json
import resource
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from bench.data.types import Benchmark, FaceSet
    from bench.method import Method


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls after one warm-up call."""
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _alternated(variants: dict[str, Any], device, rounds: int) -> dict[str, list[float]]:
    """Seconds of each of ``variants`` (name -> a call) per round, after one warm-up call each; every round calls
    each once, in turn, so a machine that slows down or speeds up mid-measurement moves all alike and a ratio or
    difference taken round by round cancels it."""
    for fn in variants.values():
        fn()
        _sync(device)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return times


def _median_ratio(slow: list[float], fast: list[float]) -> float:
    """The median over rounds of ``slow / fast`` (times from :func:`_alternated`): the speed-up, drift cancelled."""
    return round(float(np.median([s / f for s, f in zip(slow, fast, strict=True)])), 3)


def conv_peak_flops(device, size: int, repeats: int) -> float:
    """The best FLOP/s of dense 3x3 convolutions (batch 8; 64 channels at ``size`` px, 128 at size/2, 256 at
    size/4, the widths of these encoders) on ``device``: the machine's practical peak for the layers these networks
    are made of, measured in the same run."""
    import torch

    best = 0.0
    for channels, side in ((64, size), (128, size // 2), (256, size // 4)):
        conv = torch.nn.Conv2d(channels, channels, 3, padding=1).to(device)
        x = torch.randn(8, channels, side, side, device=device)

        def once(conv=conv, x=x) -> None:
            with torch.no_grad():
                conv(x)

        flops = 2 * 8 * channels * channels * 9 * side * side
        best = max(best, flops / _timed(once, device, repeats))
    return best


def forward_flops(fn) -> int:
    """Multiply-add FLOPs (x2) of convolutions and matrix products in one call of ``fn``."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def measure(
    spec, size: int, batch_size: int, device, repeats: int, profile: str = "quick", accel=None, peak: float = 0.0
) -> dict[str, Any]:
    """One method at one size. With ``accel`` (bench.acceleration) the accelerated restore is timed round by round
    beside an identically seeded eager float32 twin (the same weights), outputs compared; the harness and the
    training step run accelerated.
    ``peak``: the device's FLOP/s (:func:`conv_peak_flops`) for the fraction the restore reaches."""
    import torch

    from bench.acceleration import Acceleration, autocast

    accel = accel or Acceleration()
    batches = 4  # the harness scores batch k while batch k+1 is restored: time a sequence, not one batch
    bench = _perf_data(size, batches * batch_size)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    method = _build(spec, size, profile, device, bench.attribute_names)
    row: dict[str, Any] = {
        "method": spec.name,
        "size": size,
        "profile": profile,
        "batch": batch_size,
        "device": str(device),
        "acceleration": accel.record(),
    }
    faces = bench.test_paired
    chunks = [np.arange(k, min(k + batch_size, len(faces))) for k in range(0, len(faces), batch_size)]
    inputs = _restore_inputs(faces, chunks, spec.needs_mask, device)

    def restore_all(net, precision: str = "fp32"):
        def call() -> list:
            with torch.no_grad(), autocast(device, precision):
                return [net.restore(x, m).images for x, m in inputs]

        return call

    n = len(faces)
    bare = restore_all(method, accel.precision)
    variants = {"bare": bare}
    if accel != Acceleration():  # an identically seeded eager float32 twin, timed round by round beside it
        eager = restore_all(_build(spec, size, profile, device, bench.attribute_names))
        row |= _accelerate(method, eager, bare, accel)
        variants["eager"] = eager
    with tempfile.TemporaryDirectory(prefix="bench-perf-") as root:
        variants["harness"] = _harness_call(
            spec, method, faces, chunks, batch_size, device, accel.precision, Path(root)
        )
        times = _alternated(variants, device, repeats)
    t_bare, t_harness = float(np.median(times["bare"])), float(np.median(times["harness"]))
    extra = float(np.median([h - b for h, b in zip(times["harness"], times["bare"], strict=True)]))
    if "eager" in times:
        row["eager_images_per_s"] = round(n / float(np.median(times["eager"])), 2)
        row["speedup_over_eager"] = _median_ratio(times["eager"], times["bare"])
    row.update(
        {
            "infer_images_per_s": round(n / t_bare, 2),
            "harness_images_per_s": round(n / t_harness, 2),
            "harness_overhead_ms_per_image": round(1000 * extra / n, 2),
            "harness_overhead_pct": round(100 * extra / t_bare, 1),
        }
    )
    try:
        flops = forward_flops(bare) / n
    except RuntimeError as exc:  # torch's FLOP counter cannot follow a restore that calls autograd.grad (Yeh et al.)
        flops, row["flops_not_counted"] = 0, str(exc).splitlines()[0]
    if flops and peak:
        row["gflop_per_image"] = round(flops / 1e9, 3)
        row["peak_fraction"] = round(flops * n / t_bare / peak, 3)
    if method.trainable:  # fresh instances: compiled forwards cannot take a gradient penalty's double backward
        paths = {"fast": accel}
        if accel.training_key() != Acceleration().training_key():  # the same step on the eager float32 path
            paths["eager"] = Acceleration()
        steps = {
            name: _TrainStep(_build(spec, size, profile, device, bench.attribute_names), bench, size, device, path)
            for name, path in paths.items()
        }
        times = _alternated(steps, device, max(2, repeats // 2) * 2)
        row["train_step_s"] = round(float(np.median(times["fast"])), 4)
        batch = steps["fast"].batch_size
        if isinstance(batch, int):
            row["train_images_per_s"] = round(batch / row["train_step_s"], 2)
        if "eager" in times:
            row["train_speedup_over_eager"] = _median_ratio(times["eager"], times["fast"])
    return row | _peak_memory(device)


def _perf_data(size: int, test_paired: int) -> Benchmark:
    """Embedded synthetic faces: ``test_paired`` occluded ones to restore, a small training set to time a step."""
    from bench.data.embedded import build_synthetic

    return build_synthetic(
        size=size,
        seed=0,
        identities=8,
        train_clean=32,
        train_natural=16,
        test_paired=test_paired,
        test_natural=8,
        test_clean=8,
    )


def _build(spec, size: int, profile: str, device, attribute_names: tuple[str, ...]) -> Method:
    """A fresh instance of the method, seeded and built as `bench run` builds it."""
    import torch

    from bench.method import make_context

    cls = spec.load()
    torch.manual_seed(0)
    ctx = make_context(
        cls,
        image_size=size,
        profile=profile,
        device=device,
        options=(spec.options,),
        name=spec.name,
        attribute_names=attribute_names,
    )
    return cls(ctx)


def _restore_inputs(
    faces: FaceSet, chunks: list[np.ndarray], needs_mask: bool, device
) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """Each batch as ``restore`` gets it: the occluded faces on ``device`` and, for a method that needs a mask,
    the true mask, with the hole zeroed in the image."""
    from bench.data.types import mask_tensor, to_tensor

    inputs = []
    for idx in chunks:
        x = to_tensor(faces.images[idx]).to(device)
        m = mask_tensor(faces.masks[idx]).to(device) if needs_mask else None
        inputs.append((x * (1 - m) if m is not None else x, m))
    return inputs


def _accelerate(method, eager, bare, accel) -> dict[str, Any]:
    """Accelerate ``method`` in place and compare its outputs (``bare``) with its eager float32 twin's
    (``eager``, the same weights): the row's fields."""
    from bench.data.types import to_uint8

    reference = [to_uint8(y) for y in eager()]
    accel.prepare(method)
    compiled = accel.for_inference(method)
    fast = [to_uint8(y) for y in bare()]
    return {
        "compiled": compiled,
        "accelerated_max_uint8_diff": max(
            int(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(fast, reference, strict=True)
        ),
    }


def _harness_call(spec, method, faces, chunks: list[np.ndarray], batch_size: int, device, precision: str, root: Path):
    """One call of the harness's own evaluation (``Evaluator``, oracle masks) of the same batches as the bare
    forward, each call into a new run folder under ``root``: a run writes new files, and replacing existing ones
    costs several times more on ext4 (~0.4 ms against ~0.1 ms per PNG, measured), which would overstate it."""
    from bench.evaluation import Evaluator
    from bench.planning import ORACLE, Job
    from bench.runstore import RunStore

    job = Job(spec, ORACLE if spec.needs_mask else "own")
    calls = itertools.count()

    def harness() -> None:
        store = RunStore(root / str(next(calls)))
        evaluator = Evaluator(store, seed=0, mask_threshold=0.5, batch_size=batch_size, precision=precision)
        for number, idx in enumerate(chunks):
            evaluator.evaluate_batch(job, method, "test_paired", faces, idx, device, batch_number=number)
        evaluator.flush()

    return harness


def _peak_memory(device) -> dict[str, float]:
    """CUDA peak allocation on a GPU, else the whole process's peak RSS (MiB)."""
    import torch

    if device.type == "cuda":
        return {"peak_mem_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1)}
    return {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


class _TrainStep:
    """One training step of a freshly built method on ``accel``'s path per call (``batch_size``: its training
    batch where it exposes one)."""

    def __init__(self, trainer, bench, size: int, device, accel) -> None:
        from bench.data.embedded import default_occluder
        from bench.data.types import TrainData

        accel.prepare(trainer)
        trainer.setup_training(
            TrainData(bench.train_clean, bench.train_natural, default_occluder(size), bench.attribute_names)
        )
        self.trainer, self.device, self.accel, self.step = trainer, device, accel, 0
        self.batch_size = getattr(trainer, "batch_size", None)

    def __call__(self) -> None:
        from bench.acceleration import autocast

        with autocast(self.device, self.accel.precision):
            self.trainer.train_step(self.step)
        self.step += 1


PERF_COLUMNS = (  # (row key, header with unit, priority: the lowest is dropped first on a narrow terminal)
    ("method", "method", 9),
    ("size", "size px", 8),
    ("train_step_s", "train step s", 4),
    ("train_images_per_s", "train img/s", 5),
    ("train_speedup_over_eager", "train x eager", 4),
    ("infer_images_per_s", "restore img/s", 7),
    ("harness_images_per_s", "harness img/s", 6),
    ("harness_overhead_ms_per_image", "harness +ms/img", 3),
    ("harness_overhead_pct", "harness +%", 4),
    ("eager_images_per_s", "eager img/s", 3),
    ("speedup_over_eager", "x eager", 5),
    ("accelerated_max_uint8_diff", "max diff", 3),
    ("peak_fraction", "of peak", 3),
    ("peak_mem_mb", "peak GPU MiB", 2),
    ("peak_rss_mb", "peak RSS MiB", 2),
)


def print_perf_table(console, title: str, rows: list[dict[str, Any]]) -> None:
    """The measurements as one table that fits the terminal (``--output`` keeps every field); errors below it."""
    from bench.report.terminal import Column, print_table

    present = [c for c in PERF_COLUMNS if any(c[0] in r for r in rows)]
    columns = [Column(header, priority, right=key != "method") for key, header, priority in present]
    cells = [["" if r.get(key) is None else str(r[key]) for key, _, _ in present] for r in rows]
    print_table(console, title, columns, cells)
    for r in rows:
        if "error" in r:
            console.print(f"{r['method']} at {r['size']} px failed: {r['error']}", highlight=False, markup=False)


# -- bench.measures: each measure's cost per image (LPIPS, FID/KID features, LMD), where its files are given --------
def measure_costs(
    weights_dir: Path | None, inception_weights: Path | None, sizes: list[int], batch_size: int, device, repeats: int
) -> list[dict[str, Any]]:
    """Milliseconds per image of every measure whose file is found (:func:`bench.measures.timing`), per size; none
    without files. The same files as ``bench run`` takes, checked the same way."""
    from bench import measures

    measures.check(weights_dir, inception_weights)
    rows = []
    for size in sizes:
        built = measures.build(weights_dir, inception_weights, size, device)
        for name, seconds in measures.timing(built, device, batch_size, repeats).items():
            rows.append({"measure": name, "size": size, "batch": batch_size, "ms_per_image": round(1000 * seconds, 2)})
    return rows


def print_measure_costs(console, rows: list[dict[str, Any]]) -> None:
    from bench.report.terminal import Column, print_table

    columns = [Column("measure", 3, right=False), Column("size", 3), Column("ms / image", 3)]
    cells = [[r["measure"], str(r["size"]), str(r["ms_per_image"])] for r in rows]
    print_table(console, "measures: cost per image (batched, on the device)", columns, cells)


# ---------------------------------------------------------------------------------------------------------------------
def run_perf(
    methods: list[str],
    sizes: list[int],
    batch_size: int = 8,
    device: str = "auto",
    repeats: int = 5,
    output: Path | None = None,
    profile: str = "quick",
    accel=None,
    weights_dir: Path | None = None,
    inception_weights: Path | None = None,
) -> list[dict[str, Any]]:
    import torch
    from rich.console import Console

    from bench import plugins
    from bench.acceleration import Acceleration
    from bench.io import atomic_write_bytes, check_output_file
    from bench.planning import RunError, check_image_size, plan_run
    from bench.training import resolve_device, seed_everything

    if not sizes:
        raise RunError("--sizes is empty; give image sizes, comma-separated (e.g. --sizes 64,128)")
    for size in sizes:
        check_image_size("--sizes: each", size)
    if len(set(sizes)) != len(sizes):
        raise RunError(f"--sizes names a size twice: {','.join(map(str, sizes))}; give each once")
    if output is not None:
        check_output_file(output, "--output", "perf.json")
    if batch_size < 1 or repeats < 1:
        raise RunError(f"--batch-size and --repeats must be at least 1, got {batch_size} and {repeats}")
    specs = plan_run(plugins.registry(), methods, profile=profile).named
    try:
        dev = resolve_device(device)
    except ValueError as exc:
        raise RunError(str(exc)) from exc
    seed_everything(0)
    rows = []
    console = Console()
    peaks = {size: conv_peak_flops(dev, size, repeats) for size in sizes}
    for size, flops in peaks.items():
        console.print(f"3x3 conv peak at {size} px: {flops / 1e9:.1f} GFLOP/s", highlight=False, markup=False)
    for spec in specs:
        name = spec.name
        for size in sizes:
            try:
                rows.append(measure(spec, size, batch_size, dev, repeats, profile, accel, peaks[size]))
            except Exception as exc:  # report and go on: one slow or broken method must not hide the rest
                rows.append({"method": name, "size": size, "error": f"{type(exc).__name__}: {exc}"})
            console.print(f"measured {name} at {size} px", highlight=False, markup=False)
    title = f"bench perf: {dev}, {profile} profile, batch {batch_size}, torch threads {torch.get_num_threads()}"
    if accel is not None and accel != Acceleration():
        title += ", " + ", ".join(f"{k}={v}" for k, v in accel.record().items())
    print_perf_table(console, title, rows)
    costs = measure_costs(weights_dir, inception_weights, sizes, batch_size, dev, repeats)  # bench.measures
    if costs:
        print_measure_costs(console, costs)
    if output is not None:
        peak = {str(size): round(flops / 1e9, 2) for size, flops in peaks.items()}
        out = {"conv_peak_gflops": peak, "rows": rows, "measures": costs}
        atomic_write_bytes(output, (json.dumps(out, indent=2) + "\n").encode())
    return rows
