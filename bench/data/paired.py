"""A user's own paired test set: pixel-aligned (occluded, clean) faces, and their masks where known.

Layout: ``DIR/input/NAME.ext`` (what a method sees), ``DIR/gt/NAME.ext`` (the same face without the occlusion) and
optionally ``DIR/mask/NAME.ext`` (1 = occluded: any 8-bit or 1-bit image, a pixel is occluded above half of the
full value, 255, or of 1 in a file whose values are all 0 or 1), the same stems in each. Images are taken as
aligned faces: a non-square image is refused when its sides differ by more than :data:`ASPECT_TOLERANCE`, else
centre-cropped to a square; every image is then resized to the benchmark size (bench.data.celeba.resize: area
averaging when shrinking, bilinear when enlarging; masks nearest-neighbour). Without ``mask/``, ``derive_mask=T``
marks as occluded the pixels where input and ground truth differ by more than T (in [0, 1], any channel), for
pastes whose masks were not kept; the split records that its masks were derived. Scored like the synthetic paired
split, under the split name ``paired_<folder>``. Never trained on.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from bench.data.celeba import canonical_landmarks, centre_square, require_unique_ids, resize, resize_mask, sample_id
from bench.data.imageio import IMAGE_SUFFIXES, ImageHeader, read_header, read_image, read_mask, require_face_size
from bench.data.types import PAPER_ATTRIBUTES, FaceSet
from bench.errors import DataError

ASPECT_TOLERANCE = 0.05  # |width / height - 1| above this is not a face crop: refused, never squashed
SHOWN = 3  # names listed when files are missing or extra


def split_name(folder: Path) -> str:
    """``paired_<folder name>``, lowercased, every run of other characters than letters and digits as ``_``."""
    return "paired_" + (re.sub(r"[^a-z0-9]+", "_", folder.resolve().name.lower()).strip("_") or "set")


def load_paired(root: Path, size: int, derive_mask: float | None = None) -> tuple[FaceSet, dict[str, str]]:
    """The faces of ``root`` at ``size`` px, and what the report states of them (folder, masks: given, derived
    or none)."""
    if not root.is_dir():
        raise DataError(f"--paired-folder {root}: no such folder; give a folder with input/ and gt/ sub-folders")
    kinds = {kind: images_in(root / kind) for kind in ("input", "gt", "mask") if (root / kind).is_dir()}
    if "input" not in kinds or "gt" not in kinds:
        raise DataError(f"--paired-folder {root}: needs input/ and gt/ sub-folders (and optionally mask/)")
    if "mask" in kinds and derive_mask is not None:
        raise DataError(f"--paired-folder {root}: has mask/, so --derive-mask would not be used; drop one of them")
    names = sorted(kinds["input"])
    if not names:
        raise DataError(f"--paired-folder {root}: input/ holds no images ({', '.join(IMAGE_SUFFIXES)})")
    for kind, found in kinds.items():
        same_names(root / kind, set(names), set(found))
    files = [kinds["input"][n] for n in names]
    headers = [read_header(p) for p in files]
    require_face_size(root / "input", files, headers)
    ids = [sample_id(n) for n in names]
    require_unique_ids(root / "input", files, ids)
    inputs = dict(zip(names, zip(files, headers, strict=True), strict=True))  # each pair's size, read once
    images = np.stack([_face(kinds["input"][n], size) for n in names])
    clean = np.stack([_face(kinds["gt"][n], size, like=inputs[n]) for n in names])
    masks, how = None, "none (mask IoU not computed; --mask-source gt refused for this split)"
    if "mask" in kinds:
        masks = np.stack([_face(kinds["mask"][n], size, like=inputs[n], mask=True) for n in names])
        how = "given (mask/, occluded above half of the full value)"
    elif derive_mask is not None:
        diff = np.abs(images.astype(np.int16) - clean.astype(np.int16)).max(axis=-1) / 255.0
        masks = (diff > derive_mask).astype(np.uint8)
        how = f"derived: |input - gt| > {derive_mask:g} in any channel"
    n = len(names)
    faces = FaceSet(
        images=images,
        identities=np.zeros(n, np.int64),
        attributes=np.zeros((n, len(PAPER_ATTRIBUTES)), np.float32),
        landmarks=np.repeat(canonical_landmarks(size)[None], n, 0),
        ids=ids,
        clean=clean,
        masks=masks,
        occluders=["user"] * n,
        families=["user"] * n,
    )
    return faces, {"folder": str(root.resolve()), "masks": how, "images": str(n)}


def images_in(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}


def same_names(folder: Path, wanted: set[str], found: set[str], layout: str = "input/, gt/ and mask/") -> None:
    """DataError unless ``folder`` holds exactly the names ``wanted`` (those of the images): the first few of the
    missing or extra ones and their count."""
    missing, extra = sorted(wanted - found), sorted(found - wanted)
    for names, what in ((missing, "missing (an image without it)"), (extra, "without an image of the same name")):
        if names:
            raise DataError(
                f"{folder}: {len(names)} file(s) {what}, e.g. {', '.join(names[:SHOWN])}; {layout} hold the same names"
            )


def _face(path: Path, size: int, like: tuple[Path, ImageHeader] | None = None, mask: bool = False) -> np.ndarray:
    """One image as a ``size`` px face (a mask as {0, 1}); ``like`` is the input (its path and header) it must be
    pixel-aligned with."""
    image = read_mask(path) if mask else read_image(path)[0]
    height, width = image.shape[:2]
    if like is not None:
        other, header = like
        if (width, height) != (header.width, header.height):
            raise DataError(
                f"{path}: is {width}x{height}, its input {other.name} is {header.width}x{header.height}; "
                "a pair must be pixel-aligned (the same size)"
            )
    if abs(width / height - 1) > ASPECT_TOLERANCE:
        raise DataError(
            f"{path}: is {width}x{height}, not a square face crop (sides may differ by {ASPECT_TOLERANCE:.0%}); "
            "crop the faces square first"
        )
    return (resize_mask if mask else resize)(centre_square(image), size)
