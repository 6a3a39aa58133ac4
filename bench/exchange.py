"""Results computed elsewhere, scored under the same protocol as the methods a run trains.

``bench export RUN DIR`` writes the run's fixed test sets, so an outside method (another environment, another
framework, a colleague's script) restores exactly these images; ``bench import RUN DIR --label NAME`` reads its
restorations back and scores them as :mod:`bench.evaluation` scores a method: the same PNGs in the run folder,
the same metrics, rows, digests, summary and report. Layouts (``docs/guide.md``, "Results computed elsewhere"):

- export: ``DIR/index.csv`` (split, name, size, occluder, family, mask), ``DIR/<split>/input/<name>.png`` (what
  a method sees) and, where the split has one, ``DIR/<split>/mask/<name>.png`` (the true mask, 255 = occluded).
  The ground truth is never exported: an outside method cannot see what it is scored against.
- import: ``DIR/<split>/<name>.png`` (the restoration, RGB at the benchmark size) for every exported input, and
  optionally ``DIR/<split>/mask/<name>.png`` (a predicted mask, 255 = occluded) for all of them.

The test sets an import is scored on are rebuilt from the run's recorded configuration and must have the
recorded fingerprint, so an import never scores against other faces than the run's methods were.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.errors import RunError
from bench.runstore import REPORTED_FIELDS, RunStore

if TYPE_CHECKING:
    from bench.data.types import FaceSet

EXTERNAL = "external"  # the plugin recorded for an imported label: no training, no code of ours
INDEX = "index.csv"
SHOWN = 3  # names listed in an error about missing or extra files


def export_run(run: Path, folder: Path) -> dict[str, int]:
    """Write ``run``'s stored test inputs (and true masks) into the empty or new ``folder``; the images per split.
    Written into a temporary folder renamed at the end, so a failed export leaves nothing half-made."""
    store = RunStore(run)
    store.manifest(REPORTED_FIELDS)
    names = stored_names(store)
    if not names:
        raise RunError(f"{run} holds no stored test inputs (inputs/<split>/input/); run `bench run` to finish it")
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise RunError(f"{folder}: exists and is not an empty folder; give a new or empty folder to export into")
    families = _occluders(store)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.export"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        lines = io.StringIO()
        writer = csv.writer(lines, lineterminator="\n")
        writer.writerow(["split", "name", "size", "occluder", "family", "mask"])
        for split, samples in names.items():
            for sample in samples:
                mask = store.input_path(split, "mask", sample)
                for kind, source in (("input", store.input_path(split, "input", sample)), ("mask", mask)):
                    if source.exists():
                        (tmp / split / kind).mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(source, tmp / split / kind / source.name)
                occluder, family = families.get((split, sample), ("", ""))
                size = _png_size(store.input_path(split, "input", sample))
                writer.writerow([split, sample, size, occluder, family, int(mask.exists())])
        (tmp / INDEX).write_text(lines.getvalue())
        if folder.exists():
            folder.rmdir()
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {split: len(samples) for split, samples in names.items()}


def stored_names(store: RunStore) -> dict[str, list[str]]:
    """The sample names of each test split whose inputs the run folder holds, sorted."""
    root = store.root / "inputs"
    if not root.is_dir():
        return {}
    out = {}
    for split in sorted(p.name for p in root.iterdir() if (p / "input").is_dir()):
        out[split] = sorted(p.stem for p in (root / split / "input").glob("*.png"))
    return out


def _occluders(store: RunStore) -> dict[tuple[str, str], tuple[str, str]]:
    """(split, sample) -> (occluder, family), from the rows of the run's labels (every row records them)."""
    out: dict[tuple[str, str], tuple[str, str]] = {}
    for label in store.labels():
        for row in store.read_rows(label):
            out.setdefault((row["split"], row["sample"]), (row.get("occluder", ""), row.get("family", "")))
    return out


def _png_size(path: Path) -> str:
    from bench.data.imageio import read_header

    header = read_header(path)
    return f"{header.width}x{header.height}"


def import_run(run: Path, label: str, folder: Path, console) -> dict[str, int]:
    """Score the restorations in ``folder`` as ``label`` of ``run``; the images per split. Every file is checked
    before the run folder is touched, which is then locked while it is written (an import into a running run is
    refused); files that changed since an earlier import of ``label`` replace its rows, the same files resume a
    killed import."""
    from bench import plugins
    from bench.io import FolderLock
    from bench.registry import check_name
    from bench.runstore import write_summary

    check_name(label, "label", variants=False)
    store = RunStore(run)
    manifest = store.manifest(REPORTED_FIELDS)
    known = manifest["methods"].get(label)
    if (known is not None and known.get("spec", {}).get("plugin") != EXTERNAL) or plugins.registry().knows(label):
        raise RunError(f"--label {label}: a method is called so; choose another label for the imported restorations")
    splits, config = _test_sets(store, manifest)
    restored, masks, digest = read_restorations(folder, splits)  # all checked before the run folder is touched
    with FolderLock(store.root, "run folder"):
        _score(store, label, splits, restored, masks, digest, config, folder)
        write_summary(store)
    if manifest["config"].get("identification"):
        console.print(
            f"identification: not scored for {label}: Fig. 12's variant (b) trains on the training faces a label "
            "restores, and an import restores the test sets only",
            markup=False,
        )
    return {split: len(faces) for split, faces in splits.items()}


def _test_sets(store: RunStore, manifest: dict[str, Any]) -> tuple[dict[str, FaceSet], Any]:
    """The run's evaluated test splits, rebuilt from its recorded configuration and checked against its recorded
    data fingerprint, cut to the inputs the run folder holds; and the configuration."""
    from bench.evaluation import limit_splits
    from bench.planning import RunConfig
    from bench.runner import resolve_dataset

    config = RunConfig.from_record(manifest["config"], output=store.root.parent.parent)
    bench, _ = resolve_dataset(config)
    recorded = (manifest.get("data") or {}).get("fingerprint")
    if bench.fingerprint() != recorded:
        raise RunError(
            f"{store.root}: its test sets cannot be rebuilt here (the data's fingerprint differs from the recorded "
            "one: a changed dataset folder or code); import on the machine and checkout that made the run"
        )
    names = stored_names(store)
    return {s: f for s, f in limit_splits(bench, config.limit).items() if names.get(s) and len(f)}, config


def read_restorations(
    folder: Path, splits: dict[str, FaceSet]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray | None], str]:
    """Every restoration (and predicted mask) in ``folder``, checked against the test sets: the same names, RGB
    at the benchmark size, masks for all or none; and one sha256 over every file read (the label's model)."""
    from bench.data.imageio import read_image

    if not folder.is_dir():
        raise RunError(f"{folder}: no such folder; give the folder of restorations (<split>/<name>.png)")
    h = hashlib.sha256()
    restored, masks = {}, {}
    for split, faces in splits.items():
        wanted = set(faces.ids)
        found = {p.stem: p for p in (folder / split).glob("*.png")} if (folder / split).is_dir() else {}
        _same_names(folder / split, wanted, set(found), "restoration")
        mask_dir = folder / split / "mask"
        found_masks = {p.stem: p for p in mask_dir.glob("*.png")} if mask_dir.is_dir() else {}
        if found_masks:
            _same_names(mask_dir, wanted, set(found_masks), "predicted mask")
        images, predicted = [], []
        for sample in faces.ids:
            h.update(found[sample].read_bytes())
            image, _ = read_image(found[sample])
            _check_size(found[sample], image, faces.size)
            images.append(image)
            if found_masks:
                h.update(found_masks[sample].read_bytes())
                mask, _ = read_image(found_masks[sample])
                _check_size(found_masks[sample], mask, faces.size)
                predicted.append(mask.max(axis=-1))
        restored[split] = np.stack(images)
        masks[split] = np.stack(predicted) if predicted else None
    return restored, masks, h.hexdigest()


def _same_names(where: Path, wanted: set[str], found: set[str], what: str) -> None:
    missing, extra = sorted(wanted - found), sorted(found - wanted)
    if missing:
        raise RunError(
            f"{where}: {len(missing)} {what}(s) missing, e.g. {', '.join(n + '.png' for n in missing[:SHOWN])}; "
            f"one per exported input ({len(wanted)}), named as the input"
        )
    if extra:
        raise RunError(
            f"{where}: {len(extra)} file(s) match no exported input, e.g. "
            f"{', '.join(n + '.png' for n in extra[:SHOWN])}; remove them"
        )


def _check_size(path: Path, image: np.ndarray, size: int) -> None:
    if image.shape[:2] != (size, size):
        raise RunError(
            f"{path}: is {image.shape[1]}x{image.shape[0]}, the benchmark's images are {size}x{size}; "
            "restore at the exported size"
        )


def _score(store, label, splits, restored, masks, digest, config, folder) -> None:
    """The restorations through the evaluator's saving and scoring; the manifest's record of the import."""
    from bench.evaluation import Evaluator
    from bench.method import MethodSpec
    from bench.planning import Job
    from bench.runstore import now

    predicts = all(m is not None for m in masks.values())
    spec = MethodSpec(
        label, f"{EXTERNAL}:{label}", f"restorations imported from {folder}", predicts_mask=predicts, plugin=EXTERNAL
    )
    job = Job(spec, "own")
    model = f"{EXTERNAL}: sha256 {digest}"
    store.claim_label(label, model)  # rows of an earlier import with other files are removed first
    store.set_status("methods", label, status="importing", spec=spec.facts())
    from bench import measures as image_measures

    image_measures.check(config.weights_dir, config.inception_weights)  # the run's LPIPS/FID files, scored the same
    measures = image_measures.build(config.weights_dir, config.inception_weights, config.image_size, "cpu")
    evaluator = Evaluator(
        store, seed=config.seed, mask_threshold=config.mask_threshold, batch_size=config.batch_size, measures=measures
    )
    for split, faces in splits.items():
        done = store.done_ids(label, split)
        todo = np.array([i for i, sample in enumerate(faces.ids) if sample not in done], dtype=np.int64)
        for start in range(0, len(todo), config.batch_size):
            idx = todo[start : start + config.batch_size]
            mask = masks[split][idx] if masks[split] is not None else None
            evaluator.store_restorations(job, split, faces, idx, restored[split][idx], mask)
    evaluator.flush()
    image_measures.score_sets(measures, store, [label])  # FID/KID of the imported restorations
    store.set_status("training", label, trained="external", model=model)
    store.set_status(
        "methods", label, status="evaluated", external={"folder": str(folder.resolve()), "sha256": digest, "at": now()}
    )
