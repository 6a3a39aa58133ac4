"""``bench run``: train (or load) every method, evaluate all of them on the same data, same protocol.

Order of work: resolve the dataset into splits, store the fixed test inputs, then per method load its
checkpoint from the cache (keyed by method, options, profile, data) or train it, predict every test
image, save what is scored (uint8 PNG), score it, append the rows. OA-GAN runs first whenever a
mask-requiring method takes its masks (the paper's Fig. 10 protocol).
"""

from __future__ import annotations

import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench import __version__, distributed
from bench.data.types import Benchmark, FaceSet
from bench.method import MethodContext, MethodSpec
from bench.runstore import RunStore, now, read_png, write_png, write_summary
from bench.training import config_hash

EVAL_SPLITS = ("test_paired", "test_natural", "test_clean")
MASK_SOURCES = ("oagan", "gt", "both")
MASK_PROVIDER = "oagan"  # the method whose binarized mask feeds the others (paper, Fig. 10)
PROFILE_SIZE = {"quick": 64, "paper": 128}


class RunError(RuntimeError):
    """A problem the user can fix; the message says how."""


@dataclass
class RunConfig:
    methods: list[str]
    dataset: str = "synthetic"
    profile: str = "quick"
    image_size: int | None = None
    mask_source: str = "oagan"
    mask_threshold: float = 0.5
    device: str = "auto"
    seed: int = 0
    output: Path = Path("results")
    steps: int | None = None
    time_budget: float | None = None
    options: dict[str, str] = field(default_factory=dict)  # "key" for all methods, "method.key" for one
    weights_dir: Path | None = None
    limit: int | None = None
    occluders: Path | None = None
    batch_size: int = 16
    data_limit: int | None = None  # CelebA: cap on images per split (whole identities)
    natural_folder: Path | None = None  # a user's own naturally occluded faces replace test_natural
    identification: bool = False  # the Fig. 12 protocol (trains a LightCNN-9 unless id_weights is given)
    id_weights: Path | None = None
    id_steps: int | None = None

    def __post_init__(self) -> None:
        if self.profile not in PROFILE_SIZE:
            raise RunError(f"unknown profile {self.profile!r}; use quick or paper")
        if self.mask_source not in MASK_SOURCES:
            raise RunError(f"unknown mask source {self.mask_source!r}; use {', '.join(MASK_SOURCES)}")
        if self.image_size is None:
            self.image_size = PROFILE_SIZE[self.profile]

    def identity(self) -> dict[str, Any]:
        """What makes two runs the same run (the device and output folder do not)."""
        d = asdict(self)
        for key in ("device", "output", "batch_size"):
            d.pop(key)
        return d

    def options_for(self, name: str) -> dict[str, str]:
        base = name.split(":")[0]
        out = {k: v for k, v in self.options.items() if "." not in k}
        for k, v in self.options.items():
            scope, _, key = k.partition(".")
            if key and scope in (base, name):
                out[key] = v
        return out


@dataclass
class Job:
    """One evaluated row group: a method under one mask protocol."""

    spec: MethodSpec
    mask_source: str  # "own" (mask-free methods) or "gt" / "oagan"

    @property
    def label(self) -> str:
        return self.spec.name if self.mask_source == "own" else f"{self.spec.name}@{self.mask_source}"


def plan_jobs(specs: list[MethodSpec], mask_source: str, registry) -> list[Job]:
    """Expand methods into jobs; OA-GAN is added (first) when another method needs its masks."""
    sources = ["oagan", "gt"] if mask_source == "both" else [mask_source]
    needs_provider = any(s.needs_mask for s in specs) and "oagan" in sources
    if needs_provider and all(s.name != MASK_PROVIDER for s in specs):
        try:
            specs = [registry.get(MASK_PROVIDER), *specs]
        except KeyError as exc:
            raise RunError(
                "--mask-source oagan feeds mask-requiring methods OA-GAN's predicted masks, but no plugin "
                "registers 'oagan'; install it or pass --mask-source gt"
            ) from exc
    specs = sorted(specs, key=lambda s: s.name != MASK_PROVIDER)  # the provider first, order otherwise kept
    jobs = []
    for spec in specs:
        if spec.needs_mask:
            jobs += [Job(spec, src) for src in sources]
        else:
            jobs.append(Job(spec, "own"))
    return jobs


def resolve_dataset(config: RunConfig) -> tuple[Benchmark, Any]:
    """The benchmark and the occluder used for paired training."""
    from bench.data.embedded import build_synthetic, default_occluder

    occluder = default_occluder(config.image_size, user_dir=config.occluders)
    name = config.dataset
    if name == "synthetic":
        bench = build_synthetic(size=config.image_size, seed=config.seed, user_dir=config.occluders)
    else:
        root = Path(name.removeprefix("celeba:")).expanduser()
        if not root.is_dir():
            raise RunError(f"dataset {name!r}: folder {root} does not exist; use 'synthetic' or a CelebA folder")
        from bench.data.celeba import load_celeba

        bench = load_celeba(root, size=config.image_size, seed=config.seed, limit=config.data_limit, occluder=occluder)
    if config.natural_folder is not None:
        from bench.data.folder import load_folder

        bench.test_natural = load_folder(config.natural_folder, size=config.image_size)
        bench.info["test_natural"] = f"folder {config.natural_folder}"
    return bench, occluder


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "deocc-bench": __version__}
    for pkg in ("torch", "torchvision", "timm", "torchmetrics", "numpy", "pluggy", "opencv-python-headless"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _git_hash() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def find_or_create_run(config: RunConfig, argv: list[str]) -> RunStore:
    """Resume the newest unfinished run with the same identity, else start a new one."""
    key = config_hash(config.identity())[:8]
    runs = config.output / "runs"
    for folder in sorted(runs.glob(f"*-{key}"), reverse=True):
        store = RunStore(folder)
        try:
            if store.manifest().get("status") != "complete":
                return store
        except (FileNotFoundError, ValueError):
            continue
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    store = RunStore(runs / f"{stamp}-{key}")
    store.root.mkdir(parents=True, exist_ok=True)
    store.write_manifest(
        {
            "run_id": store.root.name,
            "status": "running",
            "created": now(),
            "argv": argv,
            "config": asdict(config),
            "seed": config.seed,
            "versions": _versions(),
            "git": _git_hash(),
            "platform": platform.platform(),
            "methods": {},
            "training": {},
        }
    )
    return store


def limit_splits(bench: Benchmark, limit: int | None) -> dict[str, FaceSet]:
    """The evaluated test splits, each cut to its first ``limit`` samples."""
    out = {}
    for split in EVAL_SPLITS:
        faces = getattr(bench, split)
        out[split] = faces.subset(np.arange(limit)) if limit is not None and len(faces) > limit else faces
    return out


def store_inputs(store: RunStore, splits: dict[str, FaceSet]) -> None:
    """Save the fixed test sets (input, ground truth, mask) once, so every method and report sees them."""
    for split, faces in splits.items():
        for i, sid in enumerate(faces.ids):
            path = store.input_path(split, "input", sid)
            if path.exists():
                continue
            if faces.clean is not None:
                write_png(store.input_path(split, "gt", sid), faces.clean[i])
            if faces.masks is not None:
                write_png(store.input_path(split, "mask", sid), faces.masks[i] * 255)
            write_png(path, faces.images[i])


class Runner:
    def __init__(self, config: RunConfig, argv: list[str] | None = None, console=None) -> None:
        from rich.console import Console

        self.config = config
        self.argv = argv if argv is not None else sys.argv
        self.console = console or Console(stderr=True)
        self.dist = distributed.Dist()

    def run(self) -> RunStore:
        from bench import plugins
        from bench.training import resolve_device, seed_everything

        cfg = self.config
        registry = plugins.registry()
        for info in registry.plugins:
            if info.error:
                self.console.print(f"[yellow]plugin {info.name!r} failed to load and is skipped: {info.error}")
        try:
            specs = [registry.get(name) for name in cfg.methods]
        except KeyError as exc:
            raise RunError(exc.args[0]) from exc
        jobs = plan_jobs(specs, cfg.mask_source, registry)
        try:
            device = resolve_device(cfg.device)
        except ValueError as exc:
            raise RunError(str(exc)) from exc
        seed_everything(cfg.seed)
        dist = distributed.init(device)
        self.dist = dist
        root = dist.broadcast(str(find_or_create_run(cfg, self.argv).root) if dist.main else None)
        store = RunStore(Path(root), rank=dist.rank)
        if dist.main:
            self.console.print(f"run folder: {store.root}" + (f" ({dist.world} ranks)" if dist.world > 1 else ""))
        t0 = time.perf_counter()
        bench, occluder = resolve_dataset(cfg)
        self.console.print(
            f"dataset {bench.name}: {bench.image_size}px, "
            + ", ".join(f"{k} {len(v)}" for k, v in bench.splits().items())
            + f" ({time.perf_counter() - t0:.1f}s)"
        )
        self.fingerprint = bench.fingerprint()  # hashes every array: once per run, keys every checkpoint
        splits = limit_splits(bench, cfg.limit)
        if dist.main:
            store_inputs(store, splits)
        store.update_manifest(
            device=str(device),
            world_size=dist.world,
            data={
                "name": bench.name,
                "fingerprint": self.fingerprint,
                "info": bench.info,
                "splits": {k: len(v) for k, v in bench.splits().items()},
            },
            plugins={i.name: i.version for i in registry.plugins},
        )
        dist.barrier()
        methods: dict[str, Any] = {}
        failed = []
        for job in jobs:
            try:
                if job.spec.name not in methods:
                    methods[job.spec.name] = self._get_method(job.spec, bench, occluder, device, store)
                self._evaluate(job, methods[job.spec.name], splits, store, device)
                store.set_status("methods", job.label, status="evaluated", spec=_spec_facts(job.spec))
            except Exception as exc:  # one method failing never costs the others their results
                failed.append(job.label)
                store.set_status("methods", job.label, status="failed", error=f"{type(exc).__name__}: {exc}")
                self.console.print(f"[red]{job.label} failed: {type(exc).__name__}: {exc}")
            dist.barrier()  # every rank's predictions exist before the next job (OA-GAN masks feed others)
        failed = sorted(set().union(*dist.gather(failed))) if dist.world > 1 else failed
        if dist.main:
            if cfg.identification:
                try:
                    self._identification(store, bench, splits, [j.label for j in jobs if j.label not in failed], device)
                except Exception as exc:
                    failed.append("identification")
                    self.console.print(f"[red]identification failed: {type(exc).__name__}: {exc}")
            write_summary(store)
            store.update_manifest(status="complete" if not failed else "failed", failed=failed, finished=now())
        dist.barrier()
        dist.shutdown()
        return store

    def _identification(self, store: RunStore, bench: Benchmark, splits, labels: list[str], device) -> None:
        """Fig. 12: rank-1..5 of natural-occlusion probes against a clean gallery, before and after
        de-occlusion, with a LightCNN-9 from a local file or trained on the clean training faces."""
        from dataclasses import replace

        from bench.identification import embedder, identification_protocol
        from bench.runstore import write_json

        cfg = self.config
        steps = cfg.id_steps if cfg.id_steps is not None else (300 if cfg.profile == "quick" else 2000)
        self.console.print(f"identification: LightCNN-9 ({cfg.id_weights or f'trained for {steps} steps'})")
        model = embedder(
            weights=cfg.id_weights,
            image_size=cfg.image_size,
            faces=bench.train_clean,
            steps=steps,
            seed=cfg.seed,
            device=device,
        )
        probes_split = splits["test_natural"]
        probes = {"occluded input": probes_split}
        for label in labels:
            paths = [store.prediction_path(label, "test_natural", sid) for sid in probes_split.ids]
            if all(p.exists() for p in paths):
                probes[label] = replace(probes_split, images=np.stack([read_png(p) for p in paths]))
        result = identification_protocol(model, splits["test_clean"], probes, seed=cfg.seed)
        write_json(
            store.root / "identification.json",
            {
                "model": str(cfg.id_weights or f"LightCNN-9 trained {steps} steps on train_clean"),
                "probes": "test_natural",
                "gallery": "test_clean, one image per identity",
                "results": result,
            },
        )

    # training -----------------------------------------------------------------------------------
    def method_context(self, spec: MethodSpec, bench: Benchmark, device) -> MethodContext:
        options = {**spec.options, **self.config.options_for(spec.name)}
        if self.config.steps is not None:  # schedules (OA-GAN's ratio, fine-tuning phases) span the budget
            options.setdefault("total_steps", self.config.steps)
        return MethodContext(
            image_size=self.config.image_size,
            profile=self.config.profile,
            device=device,
            seed=self.config.seed,
            options=options,
            attribute_names=bench.attribute_names,
            weights_dir=self.config.weights_dir,
        )

    def _get_method(self, spec: MethodSpec, bench: Benchmark, occluder, device, store: RunStore):
        from bench.training import load_checkpoint, seed_everything

        cfg = self.config
        ctx = self.method_context(spec, bench, device)
        cls = spec.load()
        seed_everything(cfg.seed)
        method = cls(ctx)
        if not method.trainable:
            store.set_status("training", spec.name, trained="not trainable", info=method.info())
            return method
        steps = cfg.steps if cfg.steps is not None else method.default_steps()
        if self.dist.world > 1:  # rank 0 trains (or loads); the others load what it saved
            error = None
            if self.dist.main:
                try:
                    self._train_or_load(spec, method, ctx, steps, bench, occluder, store)
                except Exception as exc:
                    error = exc
            self.dist.barrier()
            if error is not None:
                raise error
            if not self.dist.main:
                final = self._checkpoint_dir(spec, ctx, steps) / "model.pt"
                if not final.exists():
                    raise RunError(f"{spec.name}: rank 0 did not produce {final}")
                method.load_state_dict(load_checkpoint(final)["method"])
            return method
        self._train_or_load(spec, method, ctx, steps, bench, occluder, store)
        return method

    def _checkpoint_dir(self, spec: MethodSpec, ctx: MethodContext, steps: int) -> Path:
        cfg = self.config
        key = config_hash(
            {
                "method": spec.name,
                "factory": spec.factory,
                "options": ctx.options,
                "profile": cfg.profile,
                "size": cfg.image_size,
                "steps": steps,
                "seed": cfg.seed,
                "data": self.fingerprint,
                "version": __version__,
            }
        )
        return cfg.output / "checkpoints" / spec.name.replace(":", "_") / key

    def _train_or_load(self, spec, method, ctx, steps: int, bench: Benchmark, occluder, store: RunStore) -> None:
        from bench.data.types import TrainData
        from bench.training import Budget, file_sha256, fit, load_checkpoint, save_checkpoint

        cfg = self.config
        folder = self._checkpoint_dir(spec, ctx, steps)
        final = folder / "model.pt"
        if final.exists():
            method.load_state_dict(load_checkpoint(final)["method"])
            self.console.print(f"{spec.name}: loaded cached checkpoint {final}")
            store.set_status(
                "training",
                spec.name,
                checkpoint=str(final),
                sha256=file_sha256(final),
                cached=True,
                steps=steps,
                info=method.info(),
            )
            return
        data = TrainData(bench.train_clean, bench.train_natural, occluder, bench.attribute_names, seed=cfg.seed)
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[loss]}"),
            console=self.console,
        ) as bar:
            task = bar.add_task(f"train {spec.name}", total=steps, loss="")

            def on_step(step: int, losses: dict[str, float]) -> None:
                shown = " ".join(f"{k}={v:.3g}" for k, v in list(losses.items())[:3])
                bar.update(task, completed=step, loss=shown)

            result = fit(method, data, Budget(steps, cfg.time_budget), folder, on_step=on_step)
        if result.resumed_from:
            self.console.print(f"{spec.name}: resumed training from step {result.resumed_from}")
        save_checkpoint(final, {"step": result.steps, "method": method.state_dict()})
        (folder / "last.pt").unlink(missing_ok=True)
        store.set_status(
            "training",
            spec.name,
            checkpoint=str(final),
            sha256=file_sha256(final),
            cached=False,
            steps=result.steps,
            train_seconds=round(result.seconds, 2),
            stopped_by_time=result.stopped_by_time,
            info=method.info(),
        )

    # evaluation ---------------------------------------------------------------------------------
    def _masks_for(self, job: Job, split: str, faces: FaceSet, idx: np.ndarray, store: RunStore) -> np.ndarray | None:
        """Binary masks (uint8 {0,1}) fed to a mask-requiring method, or None when unavailable."""
        if job.mask_source == "gt":
            if split == "test_clean":
                return np.zeros((len(idx), faces.size, faces.size), np.uint8)
            return None if faces.masks is None else faces.masks[idx]
        masks = []
        for i in idx:
            path = store.prediction_path(MASK_PROVIDER, split, faces.ids[i], mask=True)
            if not path.exists():
                raise RunError(f"OA-GAN mask {path} is missing: OA-GAN must be evaluated before {job.label}")
            masks.append((read_png(path).astype(np.float32) / 255.0 > self.config.mask_threshold).astype(np.uint8))
        return np.stack(masks)

    def _evaluate(self, job: Job, method, splits: dict[str, FaceSet], store: RunStore, device) -> None:
        bs = self.config.batch_size
        for split, faces in splits.items():
            if len(faces) == 0:
                continue
            if job.spec.needs_mask and job.mask_source == "gt" and split != "test_clean" and faces.masks is None:
                continue  # no oracle mask exists for real natural occlusions
            done = store.done_ids(job.label, split)
            mine = range(self.dist.rank, len(faces), self.dist.world)  # strided shard by sample index
            todo = np.array([i for i in mine if faces.ids[i] not in done], dtype=np.int64)
            for start in range(0, len(todo), bs):
                self.evaluate_batch(job, method, split, faces, todo[start : start + bs], store, device)

    def evaluate_batch(self, job: Job, method, split: str, faces: FaceSet, idx: np.ndarray, store: RunStore, device):
        """One batch through the whole protocol: mask the input, restore, save the uint8 PNGs, score them,
        append the rows. ``bench perf`` times exactly this against the bare ``restore``."""
        import torch

        from bench import metrics
        from bench.data.types import mask_tensor, to_tensor, to_uint8

        x = to_tensor(faces.images[idx]).to(device)
        m = None
        if job.spec.needs_mask:
            m = mask_tensor(self._masks_for(job, split, faces, idx, store)).to(device)
            x = x * (1 - m)  # the paper's Fig. 10(d): the hole is zeroed
        t0 = time.perf_counter()
        with torch.no_grad():
            out = method.restore(x, m)
        seconds = (time.perf_counter() - t0) / len(idx)
        pred = to_uint8(out.images)
        pred_mask = to_uint8(out.masks) if out.masks is not None else None
        for j, i in enumerate(idx):
            write_png(store.prediction_path(job.label, split, faces.ids[i]), pred[j])
            if pred_mask is not None:
                write_png(store.prediction_path(job.label, split, faces.ids[i], mask=True), pred_mask[j])
        store.append_rows(job.label, self._rows(job, split, faces, idx, pred, pred_mask, seconds, metrics))

    def _rows(self, job, split, faces, idx, pred, pred_mask, seconds, metrics) -> list[dict[str, Any]]:
        target = faces.images[idx] if split == "test_clean" else (None if faces.clean is None else faces.clean[idx])
        true_mask = None
        if faces.masks is not None:
            true_mask = faces.masks[idx]
        elif split == "test_clean":
            true_mask = np.zeros(pred.shape[:3], np.uint8)
        scores: dict[str, np.ndarray] = {}
        if target is not None:
            scores["psnr"] = metrics.psnr(pred, target)
            scores["ssim"] = metrics.ssim(pred, target)
            if true_mask is not None and true_mask.any():
                scores["region_psnr"] = metrics.region_psnr(pred, target, true_mask)
        if pred_mask is not None and true_mask is not None:
            scores.update(metrics.mask_scores(pred_mask, true_mask, self.config.mask_threshold))
        rows = []
        for j, i in enumerate(idx):
            area = float(true_mask[j].mean()) if true_mask is not None else None
            row = {
                "label": job.label,
                "method": job.spec.name,
                "mask_source": job.mask_source,
                "split": split,
                "sample": faces.ids[i],
                "occluder": faces.occluders[i] if faces.occluders else "",
                "family": faces.families[i] if faces.families else "",
                "area": area,
                "seconds": seconds,
            }
            row.update({k: float(v[j]) for k, v in scores.items()})
            rows.append(row)
        return rows


def _spec_facts(spec: MethodSpec) -> dict[str, Any]:
    return {
        "plugin": spec.plugin,
        "summary": spec.summary,
        "paper": spec.paper,
        "needs_mask": spec.needs_mask,
        "predicts_mask": spec.predicts_mask,
        "reported": dict(spec.reported),
        "options": dict(spec.options),
    }
