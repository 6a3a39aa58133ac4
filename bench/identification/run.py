"""The identification step of ``bench run --identification`` (Fig. 12), written to ``identification.json``.

Probe sets, all scored against one clean gallery (one image per test identity, seeded, never a probe's own
source image): on the synthetic paired set the clean ground truth (the upper bound), the occluded input and
each label's restoration, the very same faces in each; on the natural set the occluded input and each
restoration. Per recognizer:
- a pretrained one (dlib, LightCNN-9 from ``--id-weights``) scores every probe set;
- a trainable one is trained twice over, as in Fig. 12: (a) on the clean training faces, scoring every set,
  and (b) per label on the training faces as that label restores them (each clean training face occluded once,
  seeded, then restored under the label's mask protocol), scoring that label's probes. Trained recognizers are
  cached under ``<output>/checkpoints/id-<name>/<key>/`` with a key describing what they were trained on.
On the paired set every probe embedding is also compared with its own clean ground truth's (cosine similarity and
the angle in degrees, "Deg."), per image in ``identification/similarity.csv``. Every probe set is also verified
(TAR at FAR 1e-2 and 1e-3 and the ROC over all probe x gallery pairs, ``verification``) and its embeddings set
against a clean reference by the Fréchet distance in the recognizer's space (``frechet``).
"""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.markup import escape

from bench.data.types import FaceSet
from bench.errors import CheckpointError
from bench.identification import frechet, protocol, verification
from bench.identification.recognizer import Recognizer, RecognizerContext, RecognizerSpec
from bench.options import for_profile

if TYPE_CHECKING:
    from bench.run_inputs import RunInputs

MAX_RANK = 5
EXAMPLES = 4  # Fig. 13 triplets in the report
INPUT = "occluded input"
CLEAN = "clean"
VERSION = 3  # identification.json: 3 added the angle, verification and the Fréchet distance per row
CONVENTIONS = {
    "id_similarity": "cosine of each probe's embedding with its clean ground truth's (paired set), mean over images",
    "id_angle": "degrees(arccos(cosine)) per image, mean over images ('Deg.'; no image left out)",
    "id_verification": verification.CONVENTION,
    "id_frechet": frechet.CONVENTION,
}


def probe_sets(store, splits: dict[str, FaceSet], labels: list[str], gallery: protocol.Gallery) -> dict[str, Any]:
    """``{set: {"faces": FaceSet (the eligible probes), "images": {probe name: uint8 [N,H,W,3]}}}``."""
    from bench.io import read_png

    out = {}
    for name, split in (("synthetic", "test_paired"), ("natural", "test_natural")):
        faces = splits[split]
        keep = protocol.eligible(faces, gallery)
        if not len(keep):
            continue
        faces = faces.subset(keep)
        images = {CLEAN: faces.clean} if faces.clean is not None else {}
        images[INPUT] = faces.images
        for label in labels:
            paths = [store.prediction_path(label, split, sid) for sid in faces.ids]
            if all(p.exists() for p in paths):
                images[label] = np.stack([read_png(p) for p in paths])
        out[name] = {"split": split, "faces": faces, "images": images}
    return out


def restore_faces(
    job,
    methods: dict,
    faces: FaceSet,
    device,
    threshold: float,
    seed: int,
    batch_size: int = 32,
    precision: str = "fp32",
):
    """``faces`` (occluded, with true masks) through ``job``'s protocol as the evaluator runs it (hole zeroed
    for mask-requiring methods, mask from the oracle or a mask source binarised at ``threshold``, per-batch
    seeds), returned as uint8 without being saved or scored."""
    from bench.data.types import mask_tensor, to_tensor, to_uint8
    from bench.evaluation import batch_seed, binarise, check_output, seeded_restore
    from bench.planning import ORACLE

    def run(name: str, label: str, masks: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        images, predicted = [], []
        for number, start in enumerate(range(0, len(faces), batch_size)):
            x = to_tensor(faces.images[start : start + batch_size]).to(device)
            m = None
            if masks is not None:
                m = mask_tensor(masks[start : start + batch_size]).to(device)
                x = x * (1 - m)
            seed_k = batch_seed(seed, label, "id_train", number)
            out = seeded_restore(methods[name], x, m, device, seed_k, precision)
            check_output(label, out.images, out.masks, tuple(x.shape))
            images.append(to_uint8(out.images))
            if out.masks is not None:
                predicted.append(binarise(to_uint8(out.masks), threshold))
        return np.concatenate(images), np.concatenate(predicted) if predicted else None

    masks = None
    if job.spec.needs_mask:
        masks = faces.masks if job.mask_source == ORACLE else run(job.mask_source, job.mask_source, None)[1]
    return run(job.spec.name, job.label, masks)[0]


class Identification:
    """One ``bench run``'s identification: everything it needs, then :meth:`run` writes the results."""

    def __init__(self, run: RunInputs, jobs: list, methods: dict, config, console) -> None:
        self.store, self.bench, self.splits, self.jobs, self.methods = run.store, run.bench, run.splits, jobs, methods
        self.config, self.device, self.console, self.registry = config, run.device, console, run.plan.registry
        self.occluder = run.occluder
        self.fingerprint = run.training_fingerprint  # every trained recognizer's key holds it (the test sets not)
        self.gallery_faces = run.bench.test_clean  # every test identity enrolled, whatever --limit cut from probes
        self.gallery = protocol.choose_gallery(self.gallery_faces, config.seed)
        self.sets = probe_sets(run.store, run.splits, [j.label for j in jobs], self.gallery)
        self.similarity_rows: list[list[Any]] = []

    def run(self) -> dict[str, str]:
        """Write the results; returns the recognizers that failed, each with its error."""
        from bench.io import atomic_write_bytes, write_json, write_png

        for i, sid in zip(self.gallery.index, self.gallery.ids, strict=True):
            write_png(self.store.root / "identification" / "gallery" / f"{sid}.png", self.gallery_faces.images[i])
        rows, models = [], []
        labels = [j.label for j in self.jobs]
        failed: dict[str, str] = {}
        for name in self.config.id_model:
            try:
                found, trained = self.recognize(name)
            except CheckpointError:  # a damaged stored model ends the run: never a silent retrain over it
                raise
            except Exception as exc:  # one recognizer's failure (e.g. a weights file it cannot read) spares the rest
                failed[name] = f"{type(exc).__name__}: {exc}"
                self.console.print(f"[red]identification: {escape(name)} failed: {escape(failed[name])}")
                continue
            rows += found
            models += trained
        examples = []
        if "synthetic" in self.sets:  # Fig. 13's triplets: the first probes of distinct people
            faces = self.sets["synthetic"]["faces"]
            enrolled = dict(zip(self.gallery.identities, self.gallery.ids, strict=True))
            for sid, person in zip(faces.ids, faces.identities, strict=True):
                if len(examples) < EXAMPLES and all(e["identity"] != int(person) for e in examples):
                    examples.append({"sample": sid, "identity": int(person), "gallery": enrolled[person]})
        manifest = self.store.manifest()
        conventions = CONVENTIONS | {
            f"id_model {m['recognizer']} ({m['variant']}{', ' + m['label'] if m.get('label') else ''})": m["model"]
            + (f" (sha256 {m['weights']['sha256']})" if m.get("weights") else "")
            for m in models
        }
        self.store.update_manifest(metrics={**manifest.get("metrics", {}), **conventions})
        write_json(
            self.store.root / "identification.json",
            {
                "version": VERSION,
                "conventions": CONVENTIONS,
                "max_rank": MAX_RANK,
                "gallery": {
                    "split": "test_clean (all of it, --limit cuts probes only)",
                    "identities": len(self.gallery.ids),
                    "seed": self.config.seed,
                    "samples": {str(i): sid for i, sid in zip(self.gallery.identities, self.gallery.ids, strict=True)},
                },
                "split": self.bench.info.get("identification_split"),
                "probe_sets": {
                    name: {"split": s["split"], "n": len(s["faces"]), "probes": list(s["images"])}
                    for name, s in self.sets.items()
                },
                "labels": labels,
                "models": models,
                "failed": failed,
                "results": rows,
                "examples": examples,
            },
        )
        text = io.StringIO()  # the csv module: a sample id may hold a comma or a quote
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["recognizer", "variant", "label", "sample", "cosine", "degrees"])
        writer.writerows(self.similarity_rows)
        atomic_write_bytes(self.store.root / "identification" / "similarity.csv", text.getvalue().encode())
        return failed

    def recognize(self, name: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(result rows, model records) of one recognizer: pretrained, or trained for variants (a) and (b)."""
        spec = self.registry.get(name, "recognizer", flag="--id-model")
        recognizer = spec.load()(self.context(spec))
        if not recognizer.trainable:
            record = {"recognizer": name, "variant": "pretrained", "model": recognizer.describe()}
            if recognizer.ctx.weights is not None:  # which file produced the numbers: the question users ask first
                from bench.io import file_sha256

                weights = recognizer.ctx.weights
                record["weights"] = {"path": str(weights), "bytes": weights.stat().st_size}
                record["weights"]["sha256"] = file_sha256(weights)
            return self.score(name, "pretrained", recognizer, None), [record]
        models = [self.train(spec, recognizer, "a", None)]
        rows = self.score(name, "a", recognizer, None)
        for job in self.jobs:
            recognizer = spec.load()(self.context(spec))
            models.append(self.train(spec, recognizer, "b", job))
            rows += self.score(name, "b", recognizer, job.label)
        return rows, models

    def context(self, spec: RecognizerSpec) -> RecognizerContext:
        cfg = self.config
        weights = cfg.id_weights if spec.weights != "none" else None
        steps = cfg.id_steps or for_profile(spec.load().default_steps, cfg.profile)
        return RecognizerContext(cfg.image_size, self.device, cfg.seed, cfg.profile, weights, steps)

    def score(self, name: str, variant: str, recognizer: Recognizer, only: str | None) -> list[dict[str, Any]]:
        """Rows of one trained (or pretrained) recognizer; ``only`` keeps that label's probes (variant b)."""

        def embed(images: np.ndarray, what: str) -> np.ndarray:
            feats = recognizer.embed(images)
            if not np.isfinite(feats).all():  # a NaN embedding never matches: rank-1 0 for every probe, silently
                raise ValueError(
                    f"{name} ({variant}) embeds {what} as NaN or inf: its weights are broken (e.g. a damaged "
                    "--id-weights file, or a training that diverged); give other weights, or delete its checkpoint "
                    "folder under <output>/checkpoints to train it again"
                )
            return feats

        clean_feats = None  # the natural set's Fréchet reference: every clean test face (the gallery's set)
        if "natural" in self.sets:
            clean_feats = embed(self.gallery_faces.images, "the gallery")  # its clean test faces, all of them
            gallery_feats = clean_feats[self.gallery.index]
        else:
            gallery_feats = embed(self.gallery_faces.images[self.gallery.index], "the gallery")
        rows = []
        for set_name, s in self.sets.items():
            faces, images = s["faces"], s["images"]
            reference = embed(images[CLEAN], f"the clean {set_name} faces") if CLEAN in images else None
            for probes, pixels in images.items():
                if only is not None and probes != only:
                    continue
                feats = reference if probes == CLEAN else embed(pixels, f"the {set_name} probes of {probes}")
                row = {"recognizer": name, "variant": variant, "set": set_name, "probes": probes}
                row |= protocol.score(feats, faces.identities, gallery_feats, self.gallery, MAX_RANK, self.config.seed)
                row["verification"] = verification.verify(
                    feats, faces.identities, gallery_feats, self.gallery.identities
                )
                if reference is not None and probes != CLEAN:
                    sim = protocol.similarity(feats, reference, faces.identities, self.config.seed)
                    values, degrees = sim.pop("values"), sim.pop("degrees")
                    row["angle"] = sim.pop("angle") | {"n": sim["n"]}
                    row["similarity"] = sim
                    self.similarity_rows += [
                        [name, variant, probes, sid, f"{v:.5f}", f"{d:.3f}"]
                        for sid, v, d in zip(faces.ids, values, degrees, strict=True)
                    ]
                against = reference if reference is not None else clean_feats
                if probes != CLEAN and against is not None:
                    row["frechet"] = self.frechet(feats, against, set_name)
                rows.append(row)
        return rows

    @staticmethod
    def frechet(feats: np.ndarray, reference: np.ndarray, set_name: str) -> dict[str, Any]:
        """The Fréchet distance of a probe set's embeddings to its reference's, with both N and the dimension."""
        against = "clean ground truth of the same faces" if set_name == "synthetic" else "clean test faces"
        out: dict[str, Any] = {"value": None, "n": len(feats), "reference_n": len(reference), "reference": against}
        out["dim"] = int(feats.shape[1])
        if len(feats) < 2 or len(reference) < 2:
            return out | {"note": "fewer than 2 faces"}
        try:
            return out | {"value": frechet.frechet_distance(feats, reference)}
        except ImportError as exc:  # torch-fidelity computes it (bench.measures.fid): not a reason to lose the ranks
            return out | {"note": f"not computed ({exc.name} is not installed)"}

    def train(self, spec: RecognizerSpec, recognizer: Recognizer, variant: str, job) -> dict[str, Any]:
        """Train ``recognizer`` for Fig. 12's variant through the harness loop, or load it from the checkpoint
        cache (one protocol with the methods: verified on load, resumed after a kill)."""
        from bench.cache import cache_entry, env_weights, train_or_load
        from bench.data.types import TrainData
        from bench.identity import code_identity, files_identity, source_closure
        from bench.io import config_hash
        from bench.progress import reported_fit, trained_line
        from bench.training import Budget

        cfg, steps = self.config, recognizer.ctx.steps
        options: dict[str, Any] = {"variant": variant}
        if job is not None:
            options |= {"restored_by": job.label, "mask_threshold": cfg.mask_threshold}
            options["restorers"] = self.restorers(job)
        info = next((i for i in self.registry.plugins if i.name == spec.plugin), None)
        entry = cache_entry(
            cfg.output / "checkpoints",
            method=f"id-{spec.name}",
            factory=spec.factory,
            options=options,
            code={
                **code_identity(spec.factory, info.distribution if info else "-", info.version if info else "-"),
                "protocol": config_hash(source_closure((__name__,), ("bench",))),  # what (a) and (b) train on
            },
            profile=cfg.profile,
            image_size=cfg.image_size,
            seed=cfg.seed,
            steps=steps,
            data=self.fingerprint,
            inputs=files_identity(cfg.occluders, cfg.weights_dir, env_weights(), recognizer.ctx.weights),
            acceleration={},  # recognizers train in float32, contiguous; the restorers' precision is in `options`
        )
        trained_on = "clean training faces" if job is None else f"training faces restored by {job.label}"
        name = f"id-{spec.name} ({variant}: {trained_on})"
        record = {"recognizer": spec.name, "variant": variant, "label": job.label if job else None}
        record |= {"model": recognizer.describe(), "trained_on": trained_on, "steps": steps}
        record["cache_key"] = config_hash(entry.key)

        def train(stamp: str):
            faces = self.bench.train_clean if job is None else self.restored_training_faces(job)
            data = TrainData(faces, self.bench.train_natural, self.occluder, self.bench.attribute_names, seed=cfg.seed)
            return reported_fit(self.console, name, recognizer, data, Budget(steps), entry.folder, stamp=stamp)

        served = train_or_load(entry, recognizer, steps, train)
        if served.cached:
            self.console.print(f"{name}: loaded from {entry.final}", markup=False, highlight=False)
        else:
            self.console.print(trained_line(name, served.fit, served.path), markup=False, highlight=False)
            record["resumed_from"] = served.fit.resumed_from
        return record | {"cached": served.cached, "digest": served.model}

    def restorers(self, job) -> dict[str, Any]:
        """What decides a label's restorations of the training faces: each model involved and its code."""
        from bench.identity import code_identity

        trained = self.store.manifest().get("training", {})
        names = [job.spec.name] + ([job.mask_source] if job.mask_source in self.methods else [])
        return {
            name: {
                "model": trained.get(name, {}).get("model"),
                "options": self.methods[name].ctx.config.as_dict(),  # restore-time options change the faces too
                "precision": self.config.precision,
                "code": code_identity(self.methods[name].__class__.__module__ + ":", "-", "-")["source_sha256"],
            }
            for name in names
        }

    def restored_training_faces(self, job) -> FaceSet:
        from dataclasses import replace

        from bench.data.celeba import occlude

        occluded = occlude(self.bench.train_clean, self.occluder, np.random.default_rng([self.config.seed, 0xB]))
        cfg = self.config
        images = restore_faces(
            job, self.methods, occluded, self.device, cfg.mask_threshold, cfg.seed, precision=cfg.precision
        )
        return replace(self.bench.train_clean, images=images)


def run_identification(run: RunInputs, jobs: list, methods: dict, config, console) -> dict[str, str]:
    """The identification step on the evaluated ``jobs``; returns the recognizers that failed (their rows are
    absent, the others kept)."""
    return Identification(run, jobs, methods, config, console).run()
