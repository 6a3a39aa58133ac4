"""A method's inference beside its authors' code, in one process, A/B alternated.

    python benchmarks/official_code.py oagan --official /tmp/OA-GAN [--sizes 64,128] [--batch 8] [--rounds 5]
    python benchmarks/official_code.py ganimation --official /tmp/GANimation

``--official`` is a local copy of the authors' repository (never vendored here). For each method the script builds
the authors' network and ours at the same architecture, copies the authors' weights into ours, checks that both
give the same output, then times, per size and on the same batch, the authors' forward (with the composition their
test code applies) and ours on each of our inference paths: contiguous eager (``--no-channels-last``),
channels-last (``bench run``'s default) and channels-last compiled (``--compile``; the first call, which compiles,
is reported apart). Each round times every variant once, in turn, so a busy machine slows all alike; the table
gives the median of the rounds and each variant's ratio to the authors' code.

- ``oagan``: swordcheng/OA-GAN @6a871ac, ``models/modules/generator_wgan.py`` ``Generator(conv_dim=64,
  repeat_num=6)`` against ours under the ``official`` preset's architecture (width 64, 6 residual blocks), Eq. (2)
  on both sides.
- ``ganimation``: albertpumarola/GANimation @40da9ae, ``networks/generator_wasserstein_gan.py``
  ``Generator(conv_dim=64, c_dim=17, repeat_num=6)`` (17 action units) against ``TwoPathGenerator(64, 6, 17)``,
  the attention blend ``A * x + (1 - A) * colour`` on both sides. Its ``networks/networks.py`` is Python 2 (a
  ``print`` statement), so the generator's one import from it, ``NetworkBase``, is given as a plain
  ``nn.Module``.

The other methods' official code does not run here (docs/speed.md, "Beside the authors' code").
"""

from __future__ import annotations

import argparse
import copy
import importlib
import importlib.util
import statistics
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import torch

from bench.nn.two_path import TwoPathGenerator
from bench.perf import _alternated
from oagan.generator import OAGANGenerator

GANIMATION_CONDITION = 17  # the action units of the authors' code (c_dim)


def _blend(keep: torch.Tensor, x: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """The attention blend of both (OA-GAN's Eq. (2), GANimation's composition): ``keep`` = 1 keeps the input pixel."""
    return keep * x + (1 - keep) * colour


def _require(root: Path, relative: str, repo: str) -> Path:
    path = root / relative
    if not path.is_file():
        raise SystemExit(f"error: {root} is not a checkout of {repo} (no {relative})")
    return path


def oagan(root: Path):
    """The authors' OA-GAN generator and ours; each call of a runner gives Eq. (2)'s x_final."""
    _require(root, "models/modules/generator_wgan.py", "swordcheng/OA-GAN")
    sys.path.insert(0, str(root))  # its package-relative imports need the root on the path
    official = importlib.import_module("models.modules.generator_wgan").Generator(conv_dim=64, repeat_num=6)

    def run_official(net, x):
        img, att = net(x)
        return _blend(att, x, img)

    return official, OAGANGenerator(64, 6), run_official, lambda net, x: net(x).final


def ganimation(root: Path):
    """The authors' GANimation generator and ours, with one fixed condition; a runner gives the blended image."""
    path = _require(root, "networks/generator_wasserstein_gan.py", "albertpumarola/GANimation")
    package = types.ModuleType("ganimation_official")
    package.__path__ = [str(path.parent)]
    base = types.ModuleType("ganimation_official.networks")  # stands in for the Python 2 networks.py

    class NetworkBase(torch.nn.Module):
        pass

    base.NetworkBase = NetworkBase
    sys.modules.update({package.__name__: package, base.__name__: base})
    spec = importlib.util.spec_from_file_location("ganimation_official.generator_wasserstein_gan", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    official = module.Generator(conv_dim=64, c_dim=GANIMATION_CONDITION, repeat_num=6)
    condition = torch.rand(1, GANIMATION_CONDITION)

    def run_official(net, x):
        colour, attention = net(x, condition.expand(len(x), -1))
        return _blend(attention, x, colour)

    ours = TwoPathGenerator(64, 6, GANIMATION_CONDITION)
    return official, ours, run_official, lambda net, x: net(x, condition.expand(len(x), -1)).final


METHODS: dict[str, Callable] = {"oagan": oagan, "ganimation": ganimation}


def copy_weights(official: torch.nn.Module, ours: torch.nn.Module) -> None:
    """Both networks hold the same tensors in the same order; a shape mismatch means they differ."""
    pairs = list(zip(official.state_dict().values(), ours.state_dict().values(), strict=True))
    for theirs, mine in pairs:
        if theirs.shape != mine.shape:
            raise SystemExit(f"error: the architectures differ ({tuple(theirs.shape)} vs {tuple(mine.shape)})")
        mine.copy_(theirs)


def variants(official, ours, run_official, run_ours, x: torch.Tensor, compiled: bool) -> dict:
    def path(net, channels_last: bool):
        xin = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        return lambda: run_ours(net, xin)

    out = {"official (eager)": lambda: run_official(official, x), "ours, contiguous": path(ours, False)}
    fast = copy.deepcopy(ours).to(memory_format=torch.channels_last)
    out["ours, channels-last (the default)"] = path(fast, True)
    if compiled:
        compiled_net = copy.deepcopy(fast)
        compiled_net.compile()
        out["ours, channels-last + compiled"] = path(compiled_net, True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("method", choices=sorted(METHODS))
    parser.add_argument("--official", type=Path, required=True, help="a local copy of the authors' repository")
    parser.add_argument("--sizes", default="64,128")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled variant (25-130 s to compile)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    official, ours, run_official, run_ours = METHODS[args.method](args.official.expanduser())
    official, ours = official.eval(), ours.eval()
    with torch.no_grad():
        copy_weights(official, ours)
    print(f"{args.method}: threads {args.threads}, batch {args.batch}, median of {args.rounds} rounds, A/B alternated")
    print("| size | path | images/s | x official |\n|---|---|---|---|")
    for size in map(int, args.sizes.split(",")):
        x = torch.rand(args.batch, 3, size, size) * 2 - 1
        with torch.no_grad():
            runs = variants(official, ours, run_official, run_ours, x, not args.no_compile)
            reference = runs["official (eager)"]()
            for name, fn in runs.items():
                t0 = time.perf_counter()
                diff = (fn() - reference).abs().max().item()  # also the warm-up (and the compile)
                if diff > 1e-4:
                    raise SystemExit(f"error: {name} differs from the official output by {diff:.2e}")
                if "compiled" in name:
                    print(f"| {size} | ({name}: first call, compiling, {time.perf_counter() - t0:.1f} s) | | |")
            times = _alternated(runs, torch.device("cpu"), args.rounds)
        base = statistics.median(times["official (eager)"])
        for name, ts in times.items():
            median = statistics.median(ts)
            print(f"| {size} | {name} | {args.batch / median:.2f} | {base / median:.2f}x |")


if __name__ == "__main__":
    main()
