"""OA-GAN's inference side by side with the authors' generator, in one process, A/B alternated.

    git clone https://github.com/swordcheng/OA-GAN /tmp/OA-GAN   # a local copy; never vendored here
    python benchmarks/official_oagan.py --official /tmp/OA-GAN [--sizes 64,128] [--batch 8] [--rounds 5]

The official ``Generator(conv_dim=64, repeat_num=6)`` (models/modules/generator_wgan.py) and ours under the
``official`` preset's architecture (width 64, 6 residual blocks) are the same network: the script copies the
official weights into ours and checks that both give the same output before it times anything. Timed, per
size, on the same batch: the official forward plus Eq. (2)'s composition (what its test code does), and ours
on each of our inference paths: contiguous eager (``--no-channels-last``), channels-last (``bench run``'s
default), and channels-last compiled (``--compile``; the first call, which compiles, is reported apart). Each
round times every variant once, in turn, so a busy machine slows all alike; the table gives the median of the
rounds and each variant's ratio to the official code.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import statistics
import sys
import time
from pathlib import Path

import torch

from oagan.generator import OAGANGenerator


def official_generator(root: Path) -> torch.nn.Module:
    """The authors' generator class, imported from their checkout (its package-relative imports need the root
    on the path)."""
    if not (root / "models" / "modules" / "generator_wgan.py").is_file():
        raise SystemExit(f"error: {root} is not a checkout of swordcheng/OA-GAN (no models/modules/generator_wgan.py)")
    sys.path.insert(0, str(root))
    return importlib.import_module("models.modules.generator_wgan").Generator(conv_dim=64, repeat_num=6)


def copy_weights(official: torch.nn.Module, ours: torch.nn.Module) -> None:
    """Both networks hold the same tensors in the same order (Table I); a shape mismatch means they differ."""
    pairs = list(zip(official.state_dict().values(), ours.state_dict().values(), strict=True))
    for theirs, mine in pairs:
        if theirs.shape != mine.shape:
            raise SystemExit(f"error: the architectures differ ({tuple(theirs.shape)} vs {tuple(mine.shape)})")
        mine.copy_(theirs)


def variants(official, ours, x: torch.Tensor, compiled: bool) -> dict:
    def run_official():
        img, att = official(x)
        return att * x + (1 - att) * img

    def path(net, channels_last: bool):
        xin = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        return lambda: net(xin).final

    out = {"official (eager)": run_official, "ours, contiguous": path(ours, False)}
    fast = copy.deepcopy(ours).to(memory_format=torch.channels_last)
    out["ours, channels-last (the default)"] = path(fast, True)
    if compiled:
        compiled_net = copy.deepcopy(fast)
        compiled_net.compile()
        out["ours, channels-last + compiled"] = path(compiled_net, True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, required=True, help="a local checkout of swordcheng/OA-GAN")
    parser.add_argument("--sizes", default="64,128")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled variant (25-130 s to compile)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    official = official_generator(args.official.expanduser()).eval()
    ours = OAGANGenerator(64, 6).eval()
    with torch.no_grad():
        copy_weights(official, ours)
    print(f"threads {args.threads}, batch {args.batch}, median of {args.rounds} rounds, A/B alternated")
    print("| size | path | images/s | x official |\n|---|---|---|---|")
    for size in map(int, args.sizes.split(",")):
        x = torch.rand(args.batch, 3, size, size) * 2 - 1
        with torch.no_grad():
            runs = variants(official, ours, x, not args.no_compile)
            reference = runs["official (eager)"]()
            for name, fn in runs.items():
                t0 = time.perf_counter()
                diff = (fn() - reference).abs().max().item()  # also the warm-up (and the compile)
                if diff > 1e-4:
                    raise SystemExit(f"error: {name} differs from the official output by {diff:.2e}")
                if "compiled" in name:
                    print(f"| {size} | ({name}: first call, compiling, {time.perf_counter() - t0:.1f} s) | | |")
            times: dict[str, list[float]] = {name: [] for name in runs}
            for _ in range(args.rounds):
                for name, fn in runs.items():
                    t0 = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - t0)
        base = statistics.median(times["official (eager)"])
        for name, ts in times.items():
            median = statistics.median(ts)
            print(f"| {size} | {name} | {args.batch / median:.2f} | {base / median:.2f}x |")


if __name__ == "__main__":
    main()
