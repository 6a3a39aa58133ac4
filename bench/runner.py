"""``bench run``: train (or load) every method, evaluate all of them on the same data, same protocol.

One module a step: the plan from names (:func:`bench.planning.plan_run`), options resolved
(:func:`bench.planning.resolve_methods`), the data (:mod:`bench.data.resolve`; the identity re-split and the
user's natural faces here), the run folder (:func:`bench.runstore.find_or_create_run`), per job the model cached
or trained (:func:`bench.cache.train_or_load`) and scored (:mod:`bench.evaluation`). This module keeps the job
loop, the failure policy, progress and the manifest's records. Mask sources run first (the paper's Fig. 10).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.markup import escape

from bench import distributed
from bench.cache import CacheEntry, method_entry, train_or_load
from bench.data.types import Benchmark, Occluder
from bench.errors import CheckpointError, FolderBusy, RunError
from bench.evaluation import EVAL_SPLITS, Evaluator, limit_splits, store_inputs
from bench.io import FolderLock, config_hash
from bench.measures import build as build_measures
from bench.measures import measures_line, score_sets
from bench.method import Method
from bench.planning import Plan, Planned, RunConfig, plan_run, resolve_methods
from bench.progress import evaluation_progress, reported_fit, trained_line
from bench.run_inputs import RunInputs
from bench.runstore import RunStore, find_or_create_run, now, write_summary


def resolve_dataset(config: RunConfig) -> tuple[Benchmark, Occluder]:
    """The run's data: resolved (:func:`bench.data.resolve.resolve_data`), re-split by identity for
    ``--identification`` (a gallery of a few people says nothing; recorded), then the user's test sets (natural faces as
    ``test_natural``, paired folders) after the re-split, so they are never pooled into training."""
    from bench.data.resolve import resolve_data, with_user_sets

    data = resolve_data(config.data())
    bench = data.bench
    if config.identification:
        from bench.identification.split import identity_split

        bench = identity_split(bench, data.occluder, config.seed)
    return with_user_sets(bench, data, config.natural_folder), data.occluder


class Runner:
    def __init__(
        self, config: RunConfig, argv: list[str] | None = None, console=None, plan: Plan | None = None
    ) -> None:
        from rich.console import Console

        self.config = config
        self.argv = argv if argv is not None else sys.argv
        self.console = console or Console(stderr=True, soft_wrap=True)
        self.plan = plan
        self.dist = distributed.Dist()

    def run(self) -> RunStore:
        from bench import plugins
        from bench.training import resolve_device

        cfg = self.config
        try:
            device = resolve_device(cfg.device)
        except ValueError as exc:
            raise RunError(str(exc)) from exc
        plan = self.plan or plan_run(
            plugins.registry(), cfg.methods, profile=cfg.profile, mask_source=cfg.mask_source, config=cfg
        )
        for info in plan.registry.plugins:
            if info.error:
                self.console.print(f"[yellow]plugin {escape(repr(info.name))} is skipped: {escape(info.error)}")
        planned = resolve_methods(plan, cfg, device)
        if cfg.identification and cfg.id_weights is not None:
            from bench.identification.recognizer import check_weights_file

            specs = [plan.registry.get(name, "recognizer", flag="--id-model") for name in cfg.id_model]
            check_weights_file(cfg.id_weights, [s.load() for s in specs if s.weights != "none"])
        t0 = time.perf_counter()
        bench, occluder = resolve_dataset(cfg)
        self.console.print(
            f"dataset {bench.name}: {bench.image_size}px, "
            + ", ".join(f"{k} {len(v)}" for k, v in bench.splits().items())
            + f" ({time.perf_counter() - t0:.1f}s)",
            markup=False,
        )
        from bench.data.resolve import data_notes

        for note in data_notes(bench):
            self.console.print(f"note: {note}", markup=False)
        if not any(len(getattr(bench, split)) for split in EVAL_SPLITS):
            raise RunError(
                f"dataset {bench.name!r} has no test images, so nothing can be scored (CelebA's test faces are those "
                "with partition 2 in list_eval_partition.txt)"
            )
        self.dist = dist = distributed.init(device)
        try:
            with self._run_folder() as store:
                if dist.main:
                    world = f" ({dist.world} ranks)" if dist.world > 1 else ""
                    self.console.print(f"run folder: {store.root}{world}", markup=False)
                try:
                    fingerprints = bench.fingerprint(), bench.training_fingerprint()  # every array hashed once
                    splits = limit_splits(bench, cfg.limit)
                    self._run(RunInputs(store, plan, planned, bench, occluder, device, splits, *fingerprints))
                except BaseException as exc:
                    status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
                    try:
                        store.update_manifest(status=status, error=f"{type(exc).__name__}: {exc}", finished=now())
                    except OSError:
                        pass  # the disk that failed may be the one the manifest is on; the error says what to do
                    raise
        finally:
            dist.shutdown()
        return store

    @contextmanager
    def _run_folder(self) -> Iterator[RunStore]:
        """The run folder (resumed or new), locked by the main rank while the run writes it."""
        cfg, dist = self.config, self.dist
        with ExitStack() as held:
            error, root = None, None
            if dist.main:
                key = config_hash(cfg.identity())[:8]
                store = find_or_create_run(cfg.output / "runs", key, asdict(cfg), cfg.seed, self.argv)
                root = str(store.root)
                try:
                    held.enter_context(FolderLock(store.root, "run folder"))
                except FolderBusy as exc:
                    error = str(exc)
            error = dist.broadcast(error)
            if error:
                raise RunError(error)
            yield RunStore(Path(dist.broadcast(root)), rank=dist.rank)

    def _run(self, run: RunInputs) -> None:
        from bench.training import seed_everything

        cfg, dist, store = self.config, self.dist, run.store
        seed_everything(cfg.seed)
        if dist.main:
            store_inputs(store, run.splits)
        # LPIPS, FID/KID, LMD: only those whose files were found (checked at planning)
        self.measures = build_measures(cfg.weights_dir, cfg.inception_weights, cfg.image_size, run.device)
        measures = self.measures.record()
        if dist.main:
            self.console.print(measures_line(measures), markup=False, highlight=False)
        store.update_manifest(
            status="running",
            device=str(run.device),
            world_size=dist.world,
            data={
                "name": run.bench.name,
                "fingerprint": run.fingerprint,
                "training_fingerprint": run.training_fingerprint,
                "info": run.bench.info,
                "splits": {k: len(v) for k, v in run.bench.splits().items()},
            },
            plugins={i.name: i.version for i in run.plan.registry.plugins},
            options={name: p.ctx.config.as_dict() for name, p in run.planned.items()},
            metrics=metric_conventions(),
            measures=measures,
        )
        dist.barrier()
        methods, failed = self._evaluate_jobs(run)
        failed = sorted(set().union(*dist.gather(failed))) if dist.world > 1 else sorted(set(failed))
        if dist.main:
            score_sets(self.measures, store, [j.label for j in run.plan.jobs if j.label not in failed])  # FID/KID
            if cfg.identification:
                failed += self._identify(run, [j for j in run.plan.jobs if j.label not in failed], methods)
            write_summary(store)
            store.update_manifest(status="complete" if not failed else "failed", failed=failed, finished=now())
        dist.barrier()

    def _evaluate_jobs(self, run: RunInputs) -> tuple[dict[str, Method], list[str]]:
        """Every job in order, each method built (trained or loaded) once; returns the methods and what failed.
        A damaged checkpoint, a disk error or an interrupt ends the run; any other failure ends only its job."""
        cfg, dist, store = self.config, self.dist, run.store
        infos = {i.name: i for i in run.plan.registry.plugins}
        evaluator = Evaluator(
            store,
            seed=cfg.seed,
            mask_threshold=cfg.mask_threshold,
            batch_size=cfg.batch_size,
            rank=dist.rank,
            world=dist.world,
            precision=cfg.precision,
            measures=self.measures,
        )
        methods: dict[str, Method] = {}
        failed: list[str] = []
        for job in run.plan.jobs:
            name = job.spec.name
            try:
                if name in failed:
                    raise RunError(f"{name} failed above")
                if job.mask_source in failed:
                    raise RunError(f"its mask source {job.mask_source!r} failed")
                if name not in methods:
                    methods[name] = self._get_method(run.planned[name], infos.get(job.spec.plugin), run)
                trained = store.manifest()["training"]
                model = trained.get(name, {}).get("model", "not trainable")
                if job.mask_source in trained:  # fed a mask source's predictions: its model is part of the rows
                    model += f" | masks of {job.mask_source}: {trained[job.mask_source].get('model')}"
                if store.claim_label(job.label, model):
                    self.console.print(
                        f"[yellow]{escape(job.label)}: rows of another model were discarded and recomputed"
                    )
                with evaluation_progress(self.console, job.label, show=dist.main):
                    skipped = evaluator.evaluate(job, methods[name], run.splits, run.device)
                for split, why in skipped.items() if dist.main else ():
                    self.console.print(f"{job.label}: not scored on {split}: {why}", markup=False, highlight=False)
                facts = {"spec": job.spec.facts(), "not_scored": skipped}
                store.set_status("methods", job.label, status="evaluated", **facts)
            except (KeyboardInterrupt, OSError, CheckpointError):
                raise
            except Exception as exc:  # one method failing never costs the others their results
                if job.spec.name not in methods:
                    failed.append(name)
                failed.append(job.label)
                store.set_status("methods", job.label, status="failed", error=f"{type(exc).__name__}: {exc}")
                self.console.print(f"[red]{escape(job.label)} failed: {escape(str(exc))}")
            dist.barrier()  # every rank's predictions exist before the next job (mask sources feed others)
        return methods, failed

    def _identify(self, run: RunInputs, done: list, methods: dict[str, Method]) -> list[str]:
        """The identification step; returns what failed in it."""
        from bench.identification.run import run_identification

        try:
            broken = run_identification(run, done, methods, self.config, self.console)
            return [f"identification:{name}" for name in broken]
        except CheckpointError:
            raise
        except Exception as exc:
            self.console.print(f"[red]identification failed: {escape(f'{type(exc).__name__}: {exc}')}")
            return ["identification"]

    # training -----------------------------------------------------------------------------------
    def _get_method(self, planned: Planned, info, run: RunInputs) -> Method:
        from bench.training import seed_everything

        seed_everything(self.config.seed)
        planned.ctx.attribute_names = run.bench.attribute_names  # known once the dataset is resolved
        method = planned.cls(planned.ctx)
        accel = self.config.acceleration()
        accel.prepare(method)
        name = planned.spec.name
        if not method.trainable:
            run.store.set_status("training", name, trained="not trainable", model="not trainable", info=method.info())
        else:
            entry = method_entry(self.config, planned, info, run.training_fingerprint)
            self._train_or_load(planned, method, entry, run)
            self.dist.barrier()
        if accel.compile:
            compiled = accel.for_inference(method)
            run.store.set_status("training", name, compiled=compiled)
            if not compiled:
                self.console.print(
                    f"{name}: not compilable (its restore differentiates through a network); runs eager", markup=False
                )
        return method

    def _train_or_load(self, planned: Planned, method: Method, entry: CacheEntry, run: RunInputs) -> None:
        """``method`` from the checkpoint cache or trained by the harness loop (every rank: data parallel), and
        what happened in the manifest."""
        import torch

        name, steps, dist = planned.spec.name, planned.ctx.total_steps, self.dist
        served = train_or_load(
            entry, method, steps, lambda stamp: self._fit(name, method, stamp, entry, run), main=dist.main
        )
        record = {"cache_key": config_hash(entry.key), "code": entry.key["code"], "steps_requested": steps}
        facts: dict[str, Any] = {"cached": True, "steps_trained": steps, "finished": True}
        if served.cached:
            self.console.print(f"{name}: loaded cached checkpoint {entry.final}", markup=False, highlight=False)
        else:
            result = served.fit
            if not result.finished and dist.main:
                self.console.print(
                    f"[yellow]{escape(name)}: stopped by --time-budget after {result.steps} of {steps} steps; "
                    "evaluated as is, not cached as finished (run again without --time-budget to finish it)"
                )
            if dist.main:
                stored = served.path if served.path.exists() else None
                self.console.print(trained_line(name, result, stored), markup=False, highlight=False)
            facts = {
                "cached": False,
                "steps_trained": result.steps,
                "finished": result.finished,
                "resumed_from": result.resumed_from,
                "world_size": dist.world,
                # on a CPU the float results depend on it (see docs/measurements.md)
                "torch_threads": torch.get_num_threads(),
                "train_seconds": round(result.seconds, 2),
                "stopped_by_time": result.stopped_by_time,
            }
        if dist.main:
            self._copy_losses(entry, run.store, name)
        run.store.set_status(
            "training",
            name,
            checkpoint=str(served.path),
            sha256=served.sha256,
            model=served.model,
            **facts,
            **record,
            info=method.info(),
        )

    def _fit(self, name: str, method: Method, stamp: str, entry: CacheEntry, run: RunInputs):
        """The harness loop on ``method``, on every rank's share of the training data, with its progress told."""
        from bench.data.types import TrainData
        from bench.training import Budget

        cfg, dist, bench = self.config, self.dist, run.bench
        data = TrainData(
            bench.train_clean,
            bench.train_natural,
            run.occluder,
            bench.attribute_names,
            seed=cfg.seed,
            rank=dist.rank,
            world=dist.world,
        )
        budget = Budget(method.ctx.total_steps, cfg.time_budget)
        return reported_fit(
            self.console, name, method, data, budget, entry.folder, dist=dist, stamp=stamp, accel=cfg.acceleration()
        )

    @staticmethod
    def _copy_losses(entry: CacheEntry, store: RunStore, name: str) -> None:
        """The model's training curve into the run folder (``training/<method>.jsonl``), for the report."""
        from bench.io import atomic_write_bytes
        from bench.training import LOSSES

        source = entry.folder / LOSSES
        if source.exists():
            atomic_write_bytes(store.root / "training" / f"{name}.jsonl", source.read_bytes())


def metric_conventions() -> dict[str, str]:
    """What each metric column means, recorded in the manifest so a number can be read without the code."""
    from bench.metrics import SSIM_CONVENTION

    return {
        "psnr": "per image, data_range 1, on the saved uint8 PNG (torchmetrics), never the pooled MSE",
        **SSIM_CONVENTION,
        "region_psnr": "PSNR over the ground-truth occluded pixels only",
        "mask_iou": "IoU of the binarised predicted mask (1 = occluded) with the true mask",
    }
