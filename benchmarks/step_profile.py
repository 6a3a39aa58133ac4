"""Where a training step's time goes, per method, measured with the torch profiler.

    python benchmarks/step_profile.py --methods oagan,pconv --size 64 --steps 8 [--output step_profile.json]

Each method is built as ``bench run`` builds it (quick profile unless ``--profile``), set up on the embedded
synthetic faces and stepped a few times untimed; then ``--steps`` steps run under ``torch.profiler``. Every
network the method holds (its ``parts()`` and any other module attribute, e.g. a frozen VGG-16 loss network) has
its forward wrapped in a ``record_function`` named after the attribute, and so has each batch the training data
hands out, so the table splits a step into: each network's forward, the whole backward pass (every autograd
node, gradient penalties' double backward included), the optimisers' steps, data sampling and augmentation
(the synthetic occluder pastes), and what is left (the loss arithmetic, Python). Separately, one checkpoint
write as ``bench.training.fit`` writes it (every 50 steps) and one loss-log line. Forward times are inclusive:
a network called inside another's forward (a critic inside a gradient penalty) counts in both, so the shares do
not add up to exactly 100%. The harness knows no method by name; neither does this script.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from bench import plugins
from bench.allocator import keep_freed_memory
from bench.data.embedded import default_occluder
from bench.data.types import TrainData
from bench.perf import _build, _perf_data
from bench.planning import plan_run
from bench.training import random_state, save_checkpoint

SAMPLERS = ("paired", "unpaired", "natural_batch", "clean_batch")


def _labelled(fn, label: str):
    def call(*args, **kwargs):
        with record_function(label):
            return fn(*args, **kwargs)

    return call


def networks(method) -> dict[str, torch.nn.Module]:
    """Every network a method holds: its parts and any other module attribute (loss networks)."""
    found = {k: v for k, v in method.parts().items() if isinstance(v, torch.nn.Module)}
    for name, value in vars(method).items():
        if isinstance(value, torch.nn.Module) and all(value is not m for m in found.values()):
            found[name] = value
    return found


def profile_method(name: str, size: int, steps: int, profile_name: str) -> dict:
    spec = plan_run(plugins.registry(), [name], profile=profile_name).named[0]
    bench = _perf_data(size, 8)
    method = _build(spec, size, profile_name, torch.device("cpu"), bench.attribute_names)
    if not method.trainable:
        return {"method": name, "trainable": False}
    data = TrainData(bench.train_clean, bench.train_natural, default_occluder(size), bench.attribute_names)
    method.setup_training(data)
    for label, net in networks(method).items():
        net.forward = _labelled(net.forward, f"forward {label}")
    for sampler in SAMPLERS:
        setattr(data, sampler, _labelled(getattr(data, sampler), f"data {sampler}"))
    for step in range(2):  # warm-up: allocator, oneDNN primitive caches
        method.train_step(step)
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for step in range(2, 2 + steps):
            method.train_step(step)
    wall = (time.perf_counter() - t0) / steps
    parts: dict[str, float] = {}
    for event in prof.key_averages():
        key = event.key
        if key.startswith(("forward ", "data ")):
            parts[key] = parts.get(key, 0.0) + event.cpu_time_total
        elif key.startswith("autograd::engine::evaluate_function"):
            parts["backward"] = parts.get("backward", 0.0) + event.cpu_time_total
        elif key.startswith("Optimizer.step"):
            parts["optimiser steps"] = parts.get("optimiser steps", 0.0) + event.cpu_time_total
    per_step = {k: v / 1e6 / steps for k, v in parts.items()}
    with tempfile.TemporaryDirectory() as tmp:
        t1 = time.perf_counter()
        save_checkpoint(Path(tmp) / "last.pt", {"step": 0, "model": method.state_dict(), "random": random_state(data)})
        checkpoint_s = time.perf_counter() - t1
    return {
        "method": name,
        "size": size,
        "profile": profile_name,
        "threads": torch.get_num_threads(),
        "step_s_profiled": round(wall, 4),
        "parts_s": {k: round(v, 4) for k, v in sorted(per_step.items(), key=lambda kv: -kv[1])},
        "checkpoint_s": round(checkpoint_s, 4),
        "checkpoint_per_step_s": round(checkpoint_s / 50, 5),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="oagan,pconv")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    keep_freed_memory()  # as `bench run` starts (bench.allocator)
    rows = [profile_method(m, args.size, args.steps, args.profile) for m in args.methods.split(",")]
    for row in rows:
        if not row.get("trainable", True):
            print(f"{row['method']}: not trained")
            continue
        step = row["step_s_profiled"]
        print(f"\n{row['method']} at {row['size']} px, {row['threads']} threads: {step:.3f} s per step (profiled)")
        print("| part | s per step | share |\n|---|---|---|")
        for part, seconds in row["parts_s"].items():
            print(f"| {part} | {seconds:.4f} | {100 * seconds / step:.1f}% |")
        print(
            f"| checkpoint write (1 in 50 steps) | {row['checkpoint_per_step_s']:.5f} | "
            f"{100 * row['checkpoint_per_step_s'] / step:.2f}% |"
        )
    if args.output:
        args.output.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
