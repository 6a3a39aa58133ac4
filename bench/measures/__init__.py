"""The measures papers report beside PSNR/SSIM, each from a local file the user names, or "not computed" and why.

No package ships the backbones (torchmetrics and ``lpips`` hold LPIPS's linear heads only; torch-fidelity
downloads Inception) and nothing is fetched at run time, so each measure is built only when its file is found:

- ``lpips`` (LPIPS-VGG), per image: a torchvision-format VGG-16 from ``BENCH_VGG16_WEIGHTS`` or
  ``<weights-dir>/vgg16.{safetensors,pth}``; ``lpips_alex``: AlexNet from ``<weights-dir>/alexnet.{safetensors,pth}``;
- ``fid``, ``kid``, per label and split: torch-fidelity's Inception from ``--inception-weights`` or
  ``<weights-dir>/pt_inception-2015-12-05-6726825d.pth``;
- ``lmd``, per image: dlib's 5-point predictor through :mod:`bench.landmarks` (the face extra).

A run without the files builds nothing and pays nothing; the manifest, results.json and the report name each
measure with its convention, or "not computed (why)". Per-image measures become columns of the metrics rows
(:meth:`Measures.scores`, called by the evaluator on each batch it scores); set measures are computed per label
and split once the labels are scored (:func:`score_sets`) into ``<run>/measures/<label>.json``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from bench.runstore import RunStore

PER_IMAGE = ("lpips", "lpips_alex", "lmd")  # metrics-row columns
SET_COLUMNS = ("fid", "kid")
LOWER_IS_BETTER = frozenset({*PER_IMAGE, *SET_COLUMNS})
TITLES = {"lpips": "LPIPS-VGG", "lpips_alex": "LPIPS-Alex", "lmd": "LMD (px)", "fid": "FID", "kid": "KID"}
_WHY = {
    "lpips": "no VGG-16 weights: give a torchvision-format vgg16.pth in --weights-dir or BENCH_VGG16_WEIGHTS",
    "lpips_alex": "no AlexNet weights: give a torchvision-format alexnet.pth in --weights-dir",
    "fid": "no Inception weights: give pt_inception-2015-12-05-6726825d.pth with --inception-weights or in "
    "--weights-dir",
}
MEASURES_DIR = "measures"


@dataclass
class Found:
    """One measure as planned: its weights file (None for LMD) or why it is not computed."""

    name: str
    file: Path | None = None
    source: str = ""  # where the file came from (an option, a variable, the weights folder), for error lines
    why: str | None = None


def _in_folder(folder: Path | None, names: tuple[str, ...]) -> Path | None:
    for name in names if folder is not None else ():
        if (folder / name).is_file():
            return folder / name
    return None


def find(folder: Path | None, inception_weights: Path | None = None) -> list[Found]:
    """Every measure with its file (from ``--weights-dir`` ``folder``, ``--inception-weights``, the VGG variable), or
    why not: names and paths only (no torch)."""
    import os

    from bench.io import VGG_VARIABLE
    from bench.measures.fid import INCEPTION_NAMES
    from bench.measures.lmd import unavailable

    found = []
    if os.environ.get(VGG_VARIABLE):
        found.append(Found("lpips", Path(os.environ[VGG_VARIABLE]).expanduser(), VGG_VARIABLE))
    else:
        vgg = _in_folder(folder, ("vgg16.safetensors", "vgg16.pth"))
        found.append(Found("lpips", vgg, "--weights-dir", None if vgg else _WHY["lpips"]))
    alex = _in_folder(folder, ("alexnet.safetensors", "alexnet.pth"))
    found.append(Found("lpips_alex", alex, "--weights-dir", None if alex else _WHY["lpips_alex"]))
    if inception_weights is not None:
        found.append(Found("fid", Path(inception_weights), "--inception-weights"))
    else:
        inception = _in_folder(folder, INCEPTION_NAMES)
        found.append(Found("fid", inception, "--weights-dir", None if inception else _WHY["fid"]))
    found.append(Found("lmd", why=unavailable()))
    return found


def check(folder: Path | None, inception_weights: Path | None = None) -> None:
    """Each weights file found loads weights-only and fits its network: one ``error:`` line before any folder is
    made, not a failure after the methods trained. Imports torch only when a file is found."""
    from bench.errors import RunError
    from bench.io import check_weights_only

    for f in find(folder, inception_weights):
        if f.file is None:
            continue
        name = f"{f.source} file {f.file}" if f.source != "--weights-dir" else f"{f.file}"
        fix = {
            "lpips": "give a torchvision-format VGG-16 state_dict (torchvision.models.vgg16().state_dict())",
            "lpips_alex": "give a torchvision-format AlexNet state_dict (torchvision.models.alexnet().state_dict())",
            "fid": "give torch-fidelity's pt_inception-2015-12-05-6726825d.pth",
        }[f.name]
        if not f.file.is_file():
            raise RunError(f"{name}: no such file; {fix}")
        check_weights_only(f.file, name, fix)
        problem = _fit_problem(f)
        if problem:
            raise RunError(f"{name}: {problem}; {fix}")


def _fit_problem(f: Found) -> str | None:
    from bench.measures import fid, lpips

    state = lpips.load_state(f.file, mmap=True)
    if f.name == "fid":
        problem = fid.inception_problem(state)
        return problem and f"does not fit torch-fidelity's Inception-v3: {problem}"
    net, backbone = lpips.NETS[f.name]
    problem = lpips.backbone_problem(state, net)
    return problem and f"does not fit {backbone} for LPIPS: {problem}"


def _file_record(path: Path) -> dict[str, Any]:
    from bench.io import file_sha256

    return {"path": str(path), "size": path.stat().st_size, "sha256": file_sha256(path)}


def conventions(image_size: int, names: set[str]) -> dict[str, dict[str, Any]]:
    """What each measure of ``names`` means, as the manifest, results.json and the report header state it (only
    for measures a run computes: the LPIPS heads' digest needs torchmetrics imported, which a run without the
    files never pays for)."""
    from importlib.metadata import version

    from bench.io import file_sha256
    from bench.measures import fid, lpips

    def lpips_convention(name: str) -> dict[str, Any]:
        net, backbone = lpips.NETS[name]
        return {
            "implementation": f"torchmetrics {version('torchmetrics')} LPIPS, net={net!r}",
            "backbone": f"{backbone}, torchvision layout, the user's file (ImageNet weights for the published "
            "convention)",
            "layers": "relu1_2, relu2_2, relu3_3, relu4_3, relu5_3" if net == "vgg" else "relu1..relu5",
            "heads": f"LPIPS v0.1 linear heads shipped by torchmetrics ({net}.pth, sha256 "
            f"{file_sha256(lpips.heads_path(net))})",
            "input": "the saved uint8 RGB PNG / 255, mapped to [-1, 1], LPIPS's scaling layer",
            "resize": f"none: at the benchmark size ({image_size} px)",
            "reduction": "per image: spatial mean per layer, summed over the layers; lower is more similar",
        }

    known = {
        "lpips": lambda: lpips_convention("lpips"),
        "lpips_alex": lambda: lpips_convention("lpips_alex"),
        "fid": lambda: {
            "implementation": f"torch-fidelity {version('torch-fidelity')}: FeatureExtractorInceptionV3, "
            "fid_statistics_to_metric, kid_features_to_metric",
            "backbone": "Inception-v3 (TF 2015-12-05 graph, pt_inception-2015-12-05-6726825d.pth), pool3, 2048-d",
            "input": "the saved uint8 RGB PNGs",
            "resize": f"{image_size} px -> 299 px, torch-fidelity's TF1.x-compatible bilinear",
            "reference": "paired splits: their clean ground truth; test_natural and test_clean: the clean test faces",
            "kid": f"polynomial kernel degree 3, gamma 1/2048, coef 1, unbiased MMD^2, {fid.KID_SUBSETS} subsets "
            f"of min({fid.KID_MAX_SUBSET}, N // 2) images, seed {fid.KID_SEED}; mean ± std over subsets",
            "n": "stated beside every value; FID is biased upward at small N (compare at equal N), KID is not",
        },
        "lmd": lambda: {
            "implementation": "bench.landmarks.five_points (dlib's 5-point shape predictor)",
            "box": "the fixed face box of the aligned crops",
            "units": f"pixels at the benchmark size ({image_size} px)",
            "reduction": "per image: mean Euclidean distance over the 5 landmarks, restored vs ground truth",
        },
    }
    return {name: known[name]() for name in names}


@dataclass
class Measures:
    """The measures of one run, built on its device: per-image ones score batches, ``inception`` set scores."""

    found: list[Found]
    image_size: int
    per_image: list[Any] = field(default_factory=list)
    inception: Any = None

    def scores(self, pred: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
        """Every per-image measure of one batch (uint8 [N,H,W,3] restorations against their ground truths)."""
        out: dict[str, np.ndarray] = {}
        for measure in self.per_image:
            out.update(measure.scores(pred, target))
        return out

    def record(self) -> dict[str, Any]:
        """The manifest's ``measures``: per measure its status, why not, convention and file (path, size, sha256)."""
        conv = conventions(self.image_size, {f.name for f in self.found if not f.why})
        out = {}
        for f in self.found:
            entry: dict[str, Any] = {
                "title": TITLES[f.name] + (" / KID" if f.name == "fid" else ""),
                "kind": "per label and split" if f.name == "fid" else "per image",
                "columns": ["fid", "kid"] if f.name == "fid" else [f.name],
                "status": "not computed" if f.why else "computed",
                "why": f.why,
                "convention": conv.get(f.name, {}),
            }
            if f.file is not None and not f.why:
                entry["file"] = _file_record(f.file)
            out[f.name] = entry
        return out


def not_computed(entry: dict[str, Any]) -> str:
    """How a measure that was not computed is named wherever its number would be."""
    return f"not computed ({entry.get('why')})"


def measures_line(record: dict[str, Any]) -> str:
    """One console line: which measures this run computes, and why each other one is not."""
    done = [e["title"] for e in record.values() if e["status"] == "computed"]
    missing = [f"{e['title']} {not_computed(e)}" for e in record.values() if e["status"] != "computed"]
    return "measures: " + "; ".join([f"computed: {', '.join(done)}"] * bool(done) + missing)


def build(folder: Path | None, inception_weights: Path | None, image_size: int, device: Any) -> Measures:
    """The measures whose files were found (checked at planning), on ``device``; nothing when none was."""
    found = find(folder, inception_weights)
    measures = Measures(found, image_size)
    for f in found:
        if f.why:
            continue
        if f.name in ("lpips", "lpips_alex"):
            from bench.measures.lpips import LPIPS

            measures.per_image.append(LPIPS(f.name, f.file, device))
        elif f.name == "lmd":
            from bench.measures.lmd import LMD

            measures.per_image.append(LMD())
        elif f.name == "fid":
            from bench.measures.fid import InceptionFeatures

            measures.inception = InceptionFeatures(f.file, device)
    return measures


def set_path(store: RunStore, label: str) -> Path:
    return store.root / MEASURES_DIR / f"{label}.json"


def score_sets(measures: Measures, store: RunStore, labels: list[str]) -> None:
    """FID and KID of each label's saved restorations per split against the split's reference set, into
    ``measures/<label>.json`` with N; a stored value whose restorations are unchanged is kept. Reference
    features are computed once per reference set."""
    from bench.io import read_json, read_png, write_json
    from bench.measures import fid

    if measures.inception is None:
        return
    weights = next(f.file for f in measures.found if f.name == "fid")
    weights_id = f"{weights.name}:{weights.stat().st_size}"
    references: dict[tuple[str, str], np.ndarray] = {}

    def reference(split: str, kind: str) -> np.ndarray:
        if (split, kind) not in references:
            paths = sorted((store.root / "inputs" / split / kind).glob("*.png"))
            images = np.stack([read_png(p) for p in paths]) if paths else np.zeros((0, 1, 1, 3), np.uint8)
            references[split, kind] = measures.inception(images) if paths else np.zeros((0, 2048))
        return references[split, kind]

    for label in labels:
        rows = store.read_rows(label)
        stored = read_json(set_path(store, label)) or {}
        out = {}
        for split in sorted({r["split"] for r in rows}):
            part = sorted((r for r in rows if r["split"] == split), key=lambda r: r["sample"])
            digest = fid.rows_digest(part)
            old = stored.get(split)
            if old and old.get("digest") == digest and old.get("weights") == weights_id:
                out[split] = old
                continue
            ref_split, kind = fid.reference_of(split)
            images = np.stack([read_png(store.prediction_path(label, split, r["sample"])) for r in part])
            scores = fid.set_scores(measures.inception(images), reference(ref_split, kind))
            out[split] = scores | {"reference": f"{ref_split}/{kind}", "digest": digest, "weights": weights_id}
        write_json(set_path(store, label), out)


def read_sets(store: RunStore) -> dict[str, dict[str, Any]]:
    """``{label: {split: scores}}`` of every stored set measure of a run (empty when none was computed)."""
    from bench.io import read_json

    folder = store.root / MEASURES_DIR
    return {p.stem: read_json(p) for p in sorted(folder.glob("*.json"))} if folder.is_dir() else {}


def timing(measures: Measures, device: Any, batch_size: int = 8, repeats: int = 3) -> dict[str, float]:
    """Seconds per image of each built measure on ``device`` (the median of ``repeats`` batches of random uint8
    faces at the run's size after one warm-up): what ``bench perf`` shows. Set measures are timed by their
    feature extraction, their only per-image cost."""
    import torch

    rng = np.random.default_rng(0)
    shape = (batch_size, measures.image_size, measures.image_size, 3)
    a, b = (rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(2))
    calls = {m.name: (lambda m=m: m.scores(a, b)) for m in measures.per_image}
    if measures.inception is not None:
        calls["fid/kid features"] = lambda: measures.inception(a)
    out = {}
    for name, call in calls.items():
        call()
        times = []
        for _ in range(repeats):
            if getattr(device, "type", str(device)) == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            call()
            if getattr(device, "type", str(device)) == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - t0)
        out[name] = float(np.median(times)) / batch_size
    return out
