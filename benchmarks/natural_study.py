"""Mask quality and restoration against training steps, per occluder family, on paired and natural occlusions.

One training trajectory of a mask-predicting method on the embedded set, scored at each step in ``--at``: mask
IoU, PSNR and SSIM (the field's valid-window convention) per split and per occluder family, beside the occluded
input's. It answers "is the natural set not learned yet, or not learned at all?" and "does the mask head learn the
synthetic occluders' paste cues?" (paired vs natural IoU of the same family) without training one model per point.
The schedule of a run follows its ``--steps`` total, so the points are one trajectory, not separate budgets;
``--until`` stops early on that schedule (an ablation compared with a longer run's first points).

    python benchmarks/natural_study.py --method oagan --steps 3000 --at 300,1000,3000 --out study.jsonl \
        --opt lambda_adv=1

Each evaluation appends one JSON line (the resolved options, the step, the seconds trained so far, the scores).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np


def scores(method, faces, device, batch: int = 50) -> dict[str, dict[str, float]]:
    """Mean mask IoU, PSNR and SSIM of ``method`` on ``faces``, per family and over all ("all")."""
    from bench import metrics
    from bench.data.types import to_tensor, to_uint8
    from bench.evaluation import seeded_restore

    rows: dict[str, list[tuple[float, ...]]] = defaultdict(list)
    for start in range(0, len(faces), batch):
        idx = np.arange(start, min(start + batch, len(faces)))
        out = seeded_restore(method, to_tensor(faces.images[idx]).to(device), None, device, seed=start)
        pred, clean, true = to_uint8(out.images), faces.clean[idx], faces.masks[idx]
        iou = metrics.mask_scores(to_uint8(out.masks) if out.masks is not None else 0 * true, true)
        restored, occluded = metrics.image_scores(pred, clean), metrics.image_scores(faces.images[idx], clean)
        values = zip(
            iou["mask_iou"], restored["psnr"], restored["ssim"], occluded["psnr"], occluded["ssim"], strict=True
        )
        for i, v in zip(idx, values, strict=True):
            rows[faces.families[i]].append(tuple(float(x) for x in v))
            rows["all"].append(tuple(float(x) for x in v))
    names = ("mask_iou", "psnr", "ssim", "input_psnr", "input_ssim")
    return {f: {"n": len(v), **dict(zip(names, np.mean(v, 0).round(4).tolist(), strict=True))} for f, v in rows.items()}


def main() -> None:
    import torch

    from bench.data.embedded import build_synthetic, default_occluder
    from bench.data.types import TrainData
    from bench.method import make_context
    from bench.plugins import registry
    from bench.training import seed_everything

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", default="oagan")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--at", default="300,1000", help="steps at which to evaluate (comma-separated)")
    ap.add_argument("--until", type=int, default=None, help="stop after this step (the schedule still follows --steps)")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--opt", action="append", default=[], help="key=value option of the method (repeatable)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    at = sorted({int(s) for s in args.at.split(",")})
    seed_everything(args.seed)
    bench = build_synthetic(size=args.size, seed=args.seed)
    spec = registry().get(args.method)
    cls = spec.load()
    ctx = make_context(
        cls,
        image_size=args.size,
        profile=args.profile,
        device=torch.device("cpu"),
        seed=args.seed,
        options=(spec.options, dict(kv.split("=", 1) for kv in args.opt)),
        total_steps=args.steps,
        name=spec.name,
        attribute_names=bench.attribute_names,
    )
    method = cls(ctx)
    data = TrainData(
        bench.train_clean, bench.train_natural, default_occluder(args.size), bench.attribute_names, seed=args.seed
    )
    method.setup_training(data)
    trained, t0 = 0.0, time.perf_counter()
    for step in range(min(args.steps, args.until or args.steps)):
        method.train_step(step)
        if step + 1 in at:
            trained += time.perf_counter() - t0
            line = {
                "method": spec.name,
                "options": ctx.config.as_dict(),
                "steps": args.steps,
                "step": step + 1,
                "train_seconds": round(trained, 1),
                "threads": torch.get_num_threads(),
                "natural": scores(method, bench.test_natural, ctx.device),
                "paired": scores(method, bench.test_paired, ctx.device),
            }
            with args.out.open("a") as f:
                f.write(json.dumps(line) + "\n")
            print(step + 1, json.dumps({k: line[k]["all"] for k in ("natural", "paired")}), flush=True)
            t0 = time.perf_counter()


if __name__ == "__main__":
    main()
