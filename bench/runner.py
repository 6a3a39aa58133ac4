"""``bench run``: train (or load) every method, evaluate all of them on the same data, same protocol.

Order of work: validate the configuration, resolve every method's options and the dataset (all before a
run folder exists, so a bad value leaves nothing behind), then per method load its model from the
checkpoint cache (:mod:`bench.cache`) or train it, and score every test image (:mod:`bench.evaluation`).
A method that is another's mask source runs first (the paper's Fig. 10 protocol).
"""

from __future__ import annotations

import platform
import subprocess
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from bench import __version__, distributed
from bench.cache import CacheEntry, cache_entry, code_identity, env_weights, files_identity
from bench.data.types import Benchmark
from bench.evaluation import EVAL_SPLITS, Evaluator, limit_splits, store_inputs
from bench.io import FolderBusy, FolderLock, config_hash, file_sha256
from bench.method import Method, MethodContext, MethodSpec, make_context
from bench.options import OptionError
from bench.planning import RunConfig, RunError, plan_jobs
from bench.progress import evaluation_progress, trained_line, training_progress
from bench.runstore import RunStore, now, write_summary


def resolve_dataset(config: RunConfig) -> tuple[Benchmark, Any]:
    """The benchmark and the occluder used for paired training. The decoded dataset comes from the on-disk
    cache (``<output>/cache/data``, memory-mapped) when one describes it, else it is built and stored."""
    from bench.cache import files_identity, source_closure
    from bench.data.cache import cached_benchmark
    from bench.data.embedded import build_synthetic, default_occluder

    occluder = default_occluder(config.image_size, user_dir=config.occluders)
    natural = None
    if config.natural_folder is not None:  # read first: a bad file fails before the dataset is built
        from bench.data.folder import load_folder

        natural = load_folder(config.natural_folder, size=config.image_size)
    key: dict[str, Any] = {
        "size": config.image_size,
        "seed": config.seed,
        "limit": config.data_limit,
        "occluders": files_identity(config.occluders),
    }
    if config.dataset == "synthetic":
        key |= {"loader": "synthetic", "code": config_hash(source_closure(("bench.data.embedded",), ("bench",)))}

        def build() -> Benchmark:
            return build_synthetic(
                size=config.image_size, seed=config.seed, user_dir=config.occluders, limit=config.data_limit
            )
    else:
        from bench.data.celeba import load_celeba, source_signature

        root = Path(config.dataset.removeprefix("celeba:")).expanduser().resolve()
        key |= {
            "loader": "celeba",
            "root": str(root),
            "files": source_signature(root),
            "code": config_hash(source_closure(("bench.data.celeba",), ("bench",))),
        }

        def build() -> Benchmark:
            return load_celeba(
                root, size=config.image_size, seed=config.seed, limit=config.data_limit, occluder=occluder
            )

    bench, hit = cached_benchmark(config.output / "cache" / "data", key, build)
    bench.info = {**bench.info, "cache": "loaded (memory-mapped)" if hit else "built and stored"}
    if config.identification:  # a gallery of a few people says nothing: re-split by identity (recorded)
        from bench.identification.split import identity_split

        bench = identity_split(bench, occluder, config.seed)
    if natural is not None:  # after the re-split, so the user's test images are never pooled into training
        bench.test_natural = natural
        bench.known_fingerprint = None  # a different natural test set: hash again
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


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def _git_hash() -> str | None:
    """HEAD, with "-dirty" when the working tree differs from it (the cache keys hash the sources either way)."""
    head = _git("rev-parse", "HEAD")
    if head and _git("status", "--porcelain", "--untracked-files=no"):
        head += "-dirty"
    return head or None


def find_or_create_run(config: RunConfig, argv: list[str]) -> RunStore:
    """Resume the newest unfinished run with the same identity, else start a new one."""
    key = config_hash(config.identity())[:8]
    runs = config.output / "runs"
    for folder in sorted([*runs.glob(f"*-{key}"), *runs.glob(f"*-{key}-*")], reverse=True):
        store = RunStore(folder)
        try:
            if store.manifest().get("status") != "complete":
                return store
        except (FileNotFoundError, ValueError):
            continue
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    folder, n = runs / f"{stamp}-{key}", 1
    while folder.exists():  # the same configuration again within a second: never reuse a finished run's folder
        n += 1
        folder = runs / f"{stamp}-{key}-{n}"
    store = RunStore(folder)
    store.root.mkdir(parents=True)
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


@dataclass
class Planned:
    """A method ready to build: its spec, class and context (options resolved and validated)."""

    spec: MethodSpec
    cls: type[Method]
    ctx: MethodContext


class Runner:
    def __init__(self, config: RunConfig, argv: list[str] | None = None, console=None) -> None:
        from rich.console import Console

        self.config = config
        self.argv = argv if argv is not None else sys.argv
        self.console = console or Console(stderr=True)
        self.dist = distributed.Dist()

    def plan(self, device) -> tuple[list, dict[str, Planned], Any]:
        """Jobs and every method's resolved context: the whole run checked before any work starts."""
        from bench import plugins

        cfg = self.config
        registry = plugins.registry()
        for info in registry.plugins:
            if info.error:
                self.console.print(f"[yellow]plugin {info.name!r} is skipped: {info.error}")
        try:
            specs = [registry.get(name) for name in cfg.methods]
        except KeyError as exc:
            raise RunError(exc.args[0]) from exc
        jobs = plan_jobs(specs, cfg.mask_source, registry)
        if cfg.identification:
            check_recognizers(cfg, registry)
        specs = list({job.spec.name: job.spec for job in jobs}.values())
        classes = {}
        for spec in specs:
            try:
                classes[spec.name] = spec.load()
            except Exception as exc:
                raise RunError(
                    f"method {spec.name!r} (plugin {spec.plugin!r}): cannot load {spec.factory}: {exc}"
                ) from exc
        declared = {name: {f.name for f in fields(cls.Options)} for name, cls in classes.items()}
        cfg.check_options(list(classes), declared)
        planned = {}
        for spec in specs:
            cls = classes[spec.name]
            try:
                ctx = make_context(
                    cls,
                    image_size=cfg.image_size,
                    profile=cfg.profile,
                    device=device,
                    seed=cfg.seed,
                    options=(spec.options, cfg.options_for(spec.name, declared[spec.name])),
                    total_steps=cfg.steps,
                    name=spec.name,
                    weights_dir=cfg.weights_dir,
                )
            except OptionError as exc:
                raise RunError(str(exc)) from exc
            planned[spec.name] = Planned(spec, cls, ctx)
        return jobs, planned, registry

    def run(self) -> RunStore:
        from bench.training import resolve_device

        cfg = self.config
        try:
            device = resolve_device(cfg.device)
        except ValueError as exc:
            raise RunError(str(exc)) from exc
        jobs, planned, registry = self.plan(device)
        t0 = time.perf_counter()
        bench, occluder = resolve_dataset(cfg)
        self.console.print(
            f"dataset {bench.name}: {bench.image_size}px, "
            + ", ".join(f"{k} {len(v)}" for k, v in bench.splits().items())
            + f" ({time.perf_counter() - t0:.1f}s)"
        )
        if not any(len(getattr(bench, split)) for split in EVAL_SPLITS):
            raise RunError(
                f"dataset {bench.name!r} has no test images, so nothing can be scored (CelebA's test faces are those "
                "with partition 2 in list_eval_partition.txt)"
            )
        dist = distributed.init(device)
        self.dist = dist
        lock, error = nullcontext(), None
        if dist.main:
            store = find_or_create_run(cfg, self.argv)
            lock = FolderLock(store.root, "run folder")
            try:
                lock.__enter__()
            except FolderBusy as exc:
                error = str(exc)
        error = dist.broadcast(error)
        if error:
            dist.shutdown()
            raise RunError(error)
        root = dist.broadcast(str(store.root) if dist.main else None)
        store = RunStore(Path(root), rank=dist.rank)
        if dist.main:
            self.console.print(f"run folder: {store.root}" + (f" ({dist.world} ranks)" if dist.world > 1 else ""))
        try:
            self._run(store, jobs, planned, registry, bench, occluder, device)
        except BaseException as exc:
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            try:
                store.update_manifest(status=status, error=f"{type(exc).__name__}: {exc}", finished=now())
            except OSError:
                pass  # the disk that failed may be the one the manifest is on; the error says what to do
            raise
        finally:
            lock.__exit__(None, None, None)
            dist.shutdown()
        return store

    def _run(self, store, jobs, planned, registry, bench, occluder, device) -> None:
        from bench.training import seed_everything

        cfg, dist = self.config, self.dist
        seed_everything(cfg.seed)
        fingerprint = bench.fingerprint()  # hashes every array: once per run, keys every checkpoint
        splits = limit_splits(bench, cfg.limit)
        if dist.main:
            store_inputs(store, splits)
        store.update_manifest(
            status="running",
            device=str(device),
            world_size=dist.world,
            data={
                "name": bench.name,
                "fingerprint": fingerprint,
                "info": bench.info,
                "splits": {k: len(v) for k, v in bench.splits().items()},
            },
            plugins={i.name: i.version for i in registry.plugins},
            options={name: p.ctx.config.as_dict() for name, p in planned.items()},
            metrics=metric_conventions(),
        )
        dist.barrier()
        infos = {i.name: i for i in registry.plugins}
        evaluator = Evaluator(
            store,
            seed=cfg.seed,
            mask_threshold=cfg.mask_threshold,
            batch_size=cfg.batch_size,
            rank=dist.rank,
            world=dist.world,
            precision=cfg.precision,
        )
        methods: dict[str, Method] = {}
        failed: list[str] = []
        for job in jobs:
            name = job.spec.name
            try:
                if name in failed:
                    raise RunError(f"{name} failed above")
                if job.mask_source in failed:
                    raise RunError(f"its mask source {job.mask_source!r} failed")
                if name not in methods:
                    info = infos.get(job.spec.plugin)
                    methods[name] = self._get_method(planned[name], info, bench, occluder, fingerprint, store)
                trained = store.manifest()["training"]
                model = trained.get(name, {}).get("model", "not trainable")
                if job.mask_source in trained:  # fed a mask source's predictions: its model is part of the rows
                    model += f" | masks of {job.mask_source}: {trained[job.mask_source].get('model')}"
                if store.claim_label(job.label, model):
                    self.console.print(f"[yellow]{job.label}: rows of another model were discarded and recomputed")
                with evaluation_progress(self.console, job.label, show=dist.main):
                    evaluator.evaluate(job, methods[name], splits, device)
                store.set_status("methods", job.label, status="evaluated", spec=_spec_facts(job.spec))
            except (KeyboardInterrupt, OSError):
                raise
            except Exception as exc:  # one method failing never costs the others their results
                if job.spec.name not in methods:
                    failed.append(name)
                failed.append(job.label)
                store.set_status("methods", job.label, status="failed", error=f"{type(exc).__name__}: {exc}")
                self.console.print(f"[red]{job.label} failed: {exc}")
            dist.barrier()  # every rank's predictions exist before the next job (mask sources feed others)
        failed = sorted(set().union(*dist.gather(failed))) if dist.world > 1 else sorted(set(failed))
        if dist.main:
            if cfg.identification:
                from bench.identification.run import run_identification

                try:
                    done = [j for j in jobs if j.label not in failed]
                    broken = run_identification(
                        store, bench, splits, done, methods, cfg, device, self.console, registry, occluder
                    )
                    failed += [f"identification:{name}" for name in broken]
                except Exception as exc:
                    failed.append("identification")
                    self.console.print(f"[red]identification failed: {type(exc).__name__}: {exc}")
            write_summary(store)
            store.update_manifest(status="complete" if not failed else "failed", failed=failed, finished=now())
        dist.barrier()

    # training -----------------------------------------------------------------------------------
    def cache_entry(self, planned: Planned, info, fingerprint: str) -> CacheEntry:
        cfg, spec, ctx = self.config, planned.spec, planned.ctx
        return cache_entry(
            cfg.output / "checkpoints",
            method=spec.name,
            factory=spec.factory,
            options=ctx.config.as_dict(),
            code=code_identity(
                spec.factory,
                info.distribution if info else "(registered in process)",
                info.version if info else "-",
            ),
            profile=cfg.profile,
            image_size=cfg.image_size,
            seed=cfg.seed,
            steps=ctx.total_steps,
            data=fingerprint,
            inputs=files_identity(cfg.occluders, cfg.weights_dir, env_weights()),
            acceleration=cfg.acceleration().training_key(),
        )

    def _get_method(self, planned: Planned, info, bench: Benchmark, occluder, fingerprint: str, store: RunStore):
        from bench.training import seed_everything

        seed_everything(self.config.seed)
        planned.ctx.attribute_names = bench.attribute_names  # known once the dataset is resolved
        method = planned.cls(planned.ctx)
        accel = self.config.acceleration()
        accel.prepare(method)
        name = planned.spec.name
        if not method.trainable:
            store.set_status("training", name, trained="not trainable", model="not trainable", info=method.info())
        else:
            entry = self.cache_entry(planned, info, fingerprint)
            self._train_or_load(planned, method, entry, bench, occluder, store)  # every rank: data parallel
            self.dist.barrier()
        if accel.compile:
            compiled = accel.for_inference(method)
            store.set_status("training", name, compiled=compiled)
            if not compiled:
                self.console.print(f"{name}: not compilable (its restore differentiates through a network); runs eager")
        return method

    def _train_or_load(self, planned: Planned, method, entry: CacheEntry, bench, occluder, store: RunStore) -> None:
        import torch

        from bench.data.types import TrainData
        from bench.io import write_json
        from bench.training import Budget, TrainingInterrupted, fit, load_checkpoint, save_checkpoint, state_digest

        cfg, name, steps = self.config, planned.spec.name, planned.ctx.total_steps
        key = config_hash(entry.key)
        record = {"cache_key": key, "code": entry.key["code"], "steps_requested": steps}
        if entry.final.exists():
            saved = load_checkpoint(entry.final)
            if saved.get("key") != key:
                raise RunError(
                    f"{name}: {entry.final} was not trained under its folder's cache key; delete it to retrain"
                )
            if int(saved.get("step", -1)) != steps:
                raise RunError(
                    f"{name}: cached {entry.final} holds {saved.get('step')} steps, its key says {steps}; delete it"
                )
            method.load_state_dict(saved["method"])
            self.console.print(f"{name}: loaded cached checkpoint {entry.final}", highlight=False, soft_wrap=True)
            self._copy_losses(entry, store, name)
            sha = file_sha256(entry.final)
            store.set_status(
                "training",
                name,
                checkpoint=str(entry.final),
                sha256=sha,
                model=state_digest(saved["method"]),
                cached=True,
                steps_trained=steps,
                finished=True,
                **record,
                info=method.info(),
            )
            return
        if self.dist.main:
            write_json(entry.folder / "key.json", entry.key)
        data = TrainData(
            bench.train_clean,
            bench.train_natural,
            occluder,
            bench.attribute_names,
            seed=cfg.seed,
            rank=self.dist.rank,
            world=self.dist.world,
        )
        budget = Budget(steps, cfg.time_budget)
        try:
            with training_progress(self.console, name, steps, show=self.dist.main) as progress:
                with FolderLock(entry.folder, "checkpoint folder") if self.dist.main else nullcontext():
                    result = fit(
                        method,
                        data,
                        budget,
                        entry.folder,
                        on_start=progress.begin,
                        on_step=progress.step,
                        dist=self.dist,
                        stamp=key,
                        precision=cfg.precision,
                    )
        except TrainingInterrupted as stop:  # after the bar is gone, so the line stands on its own
            if self.dist.main:
                self.console.print(f"{name}: {stop}", highlight=False, soft_wrap=True)
            raise
        if result.resumed_from and self.dist.main:
            self.console.print(f"{name}: resumed training from step {result.resumed_from}", soft_wrap=True)
        path = entry.last
        if result.finished:
            path = entry.final
            if self.dist.main:
                save_checkpoint(entry.final, {"step": result.steps, "key": key, "method": method.state_dict()})
                entry.last.unlink(missing_ok=True)
        elif self.dist.main:
            self.console.print(
                f"[yellow]{name}: stopped by --time-budget after {result.steps} of {steps} steps; evaluated as is, "
                "not cached as finished (run again without --time-budget to finish it)"
            )
        if self.dist.main:
            stored = path if path.exists() else None
            self.console.print(trained_line(name, result, stored), highlight=False, soft_wrap=True)
            self._copy_losses(entry, store, name)
        store.set_status(
            "training",
            name,
            checkpoint=str(path),
            sha256=file_sha256(path) if self.dist.main and path.exists() else None,
            model=state_digest(method.state_dict()),
            cached=False,
            steps_trained=result.steps,
            finished=result.finished,
            resumed_from=result.resumed_from,
            world_size=self.dist.world,
            torch_threads=torch.get_num_threads(),  # on a CPU the float results depend on it (see the README)
            train_seconds=round(result.seconds, 2),
            stopped_by_time=result.stopped_by_time,
            **record,
            info=method.info(),
        )

    @staticmethod
    def _copy_losses(entry: CacheEntry, store: RunStore, name: str) -> None:
        """The model's training curve into the run folder (``training/<method>.jsonl``), for the report."""
        from bench.io import atomic_write_bytes
        from bench.training import LOSSES

        source = entry.folder / LOSSES
        if source.exists():
            atomic_write_bytes(store.root / "training" / f"{name}.jsonl", source.read_bytes())


def check_recognizers(cfg: RunConfig, registry) -> None:
    """Every ``--id-model`` is registered and installed, and ``--id-weights`` has a recognizer that reads it."""
    specs = []
    for name in cfg.id_model:
        try:
            spec = registry.recognizer(name)
        except KeyError as exc:
            raise RunError(f"--id-model {exc.args[0]}") from exc
        missing = spec.missing()
        if missing:
            raise RunError(f"--id-model {name} needs {', '.join(missing)}, not installed; {spec.install}")
        if spec.weights == "required" and cfg.id_weights is None:
            raise RunError(f"--id-model {name} needs a weights file; give it with --id-weights FILE")
        specs.append(spec)
    if cfg.id_weights is not None and all(s.weights == "none" for s in specs):
        raise RunError(f"--id-weights: none of --id-model {','.join(cfg.id_model)} reads a weights file; drop it")


def metric_conventions() -> dict[str, str]:
    """What each metric column means, recorded in the manifest so a number can be read without the code."""
    from bench.metrics import SSIM_CONVENTION

    return {
        "psnr": "per image, data_range 1, on the saved uint8 PNG (torchmetrics), never the pooled MSE",
        **SSIM_CONVENTION,
        "region_psnr": "PSNR over the ground-truth occluded pixels only",
        "mask_iou": "IoU of the binarised predicted mask (1 = occluded) with the true mask",
    }


def _spec_facts(spec: MethodSpec) -> dict[str, Any]:
    return {
        "plugin": spec.plugin,
        "summary": spec.summary,
        "paper": spec.paper,
        "needs_mask": spec.needs_mask,
        "predicts_mask": spec.predicts_mask,
        "variant_of": spec.variant_of,
        "reported": dict(spec.reported),
        "options": dict(spec.options),
    }
