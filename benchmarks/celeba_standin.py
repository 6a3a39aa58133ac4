"""A stand-in for full CelebA in its official layout, and what loading it costs (time, peak memory).

``make DIR --count N`` writes N distinct 178x218 JPEGs to ``DIR/img_align_celeba`` with CelebA's annotation
files (train/val/test partition in CelebA's proportions, ~20 images per identity, the 40 attributes with
Eyeglasses on ~6.5%, landmarks): embedded synthetic faces, each file perturbed so no two are equal.
``measure DIR --size 64`` resolves the dataset as ``bench run --dataset DIR`` does, twice, each in a fresh process:
the first decodes, aligns and stores it (``<output>/cache/data``), the second opens the memory-mapped cache. It
prints one JSON line per pass: wall seconds and the process's peak resident memory.

    python benchmarks/celeba_standin.py make /tmp/celeba200k --count 200000
    python benchmarks/celeba_standin.py measure /tmp/celeba200k --size 64 --output /tmp/cache200k
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CELEBA_SPLIT = (162770, 19867, 19962)  # train, val, test of the 202,599 images
MEAN_LANDMARKS = (69, 109, 106, 113, 77, 142, 73, 152, 108, 154)  # ~mean of list_landmarks_align_celeba.txt


def make(root: Path, count: int, seed: int = 0) -> None:
    import cv2

    from bench.data.celeba import ATTRIBUTES_40, LANDMARK_HEADER
    from bench.data.embedded import build_synthetic

    rng = np.random.default_rng(seed)
    pool = build_synthetic(
        size=178,
        seed=seed,
        identities=50,
        train_clean=200,
        train_natural=0,
        test_paired=0,
        test_natural=0,
        test_clean=0,
    ).train_clean.images[..., ::-1]  # BGR for OpenCV
    base = np.zeros((len(pool), 218, 178, 3), np.uint8)
    base[:, 20:198] = pool
    folder = root / "img_align_celeba"
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"{i + 1:06d}.jpg" for i in range(count)]
    bounds = np.cumsum(CELEBA_SPLIT) / sum(CELEBA_SPLIT) * count
    part = np.searchsorted(bounds, np.arange(count), side="right")
    for i, name in enumerate(names):
        image = base[i % len(base)].copy()
        image[i % 218, :, :] = rng.integers(0, 256, (178, 3))  # one row of noise: every file differs
        cv2.imwrite(str(folder / name), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    ids = rng.integers(1, max(2, count // 20) + 1, count)
    attrs = np.where(rng.random((count, 40)) < 0.5, 1, -1)
    glasses = ATTRIBUTES_40.index("Eyeglasses")
    attrs[:, glasses] = np.where(rng.random(count) < 0.065, 1, -1)
    points = np.array(MEAN_LANDMARKS) + rng.integers(-2, 3, (count, 10))
    (root / "list_eval_partition.txt").write_text("".join(f"{n} {p}\n" for n, p in zip(names, part, strict=True)))
    (root / "identity_CelebA.txt").write_text("".join(f"{n} {k}\n" for n, k in zip(names, ids, strict=True)))
    rows = "".join(f"{n} " + " ".join(map(str, a)) + "\n" for n, a in zip(names, attrs, strict=True))
    (root / "list_attr_celeba.txt").write_text(f"{count}\n" + " ".join(ATTRIBUTES_40) + "\n" + rows)
    rows = "".join(f"{n} " + " ".join(map(str, p)) + "\n" for n, p in zip(names, points, strict=True))
    (root / "list_landmarks_align_celeba.txt").write_text(f"{count}\n{LANDMARK_HEADER}\n" + rows)


def resolve(root: Path, size: int, output: Path) -> None:
    """One pass, in this process: resolve the dataset as `bench run` does and print time and peak memory."""
    t0 = time.perf_counter()
    from bench.planning import RunConfig
    from bench.runner import resolve_dataset

    config = RunConfig(methods=["identity"], dataset=str(root), image_size=size, output=output)
    bench, _ = resolve_dataset(config)
    counts = {name: len(faces) for name, faces in bench.splits().items()}
    line = {
        "images": sum(counts.values()) - counts["test_paired"],
        "size": size,
        "seconds": round(time.perf_counter() - t0, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "memory_mapped": isinstance(bench.train_clean.images, np.memmap),
    }
    print(json.dumps(line), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    m = sub.add_parser("make")
    m.add_argument("root", type=Path)
    m.add_argument("--count", type=int, default=200_000)
    r = sub.add_parser("measure")
    r.add_argument("root", type=Path)
    r.add_argument("--size", type=int, default=64)
    r.add_argument("--output", type=Path, default=Path("results"))
    p = sub.add_parser("pass")  # one measured pass (run in a fresh process by `measure`)
    p.add_argument("root", type=Path)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--output", type=Path, default=Path("results"))
    args = ap.parse_args()
    if args.command == "make":
        make(args.root, args.count)
    elif args.command == "pass":
        resolve(args.root, args.size, args.output)
    else:
        for _ in ("first (decode and store)", "second (memory-mapped)"):
            cmd = [
                sys.executable,
                __file__,
                "pass",
                str(args.root),
                "--size",
                str(args.size),
                "--output",
                str(args.output),
            ]
            subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
