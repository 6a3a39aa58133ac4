"""A user's own paired test set: pixel-aligned (occluded, clean) faces, and their masks where known.

Layout: ``DIR/input/NAME.ext`` (what a method sees), ``DIR/gt/NAME.ext`` (the same face without the occlusion) and
optionally ``DIR/mask/NAME.ext`` (1 = occluded: any 8-bit or 1-bit image, a pixel is occluded above half of the
full value, 255, or of 1 in a file whose values are all 0 or 1), the same names in each. Images are found by
content (bench.data.imageio.find_images: any extension or none; other files are skipped and named in one line).
Without ``align`` they are taken as aligned faces: a non-square image is refused when its sides differ by more
than :data:`ASPECT_TOLERANCE`, else centre-cropped to a square; every image is then resized to the benchmark size
(bench.data.celeba.resize: area averaging when shrinking, bilinear when enlarging; masks nearest-neighbour). With
``align="dlib"`` each pair is aligned by one transform found on its ground truth (bench.data.align): the clean
face is where detector and landmarks are reliable (an occluder hides the nose, eyes or mouth they look for), and
one transform for input, ground truth and mask keeps the pair pixel-aligned. Without ``mask/``, ``derive_mask=T``
marks as occluded the pixels where input and ground truth differ by more than T (in [0, 1], any channel), for
pastes whose masks were not kept; the split records that its masks were derived. Scored like the synthetic paired
split, under the split name ``paired_<folder>``. Never trained on.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from bench.data.align import describe, face_transform, for_mask, record, warp
from bench.data.celeba import canonical_landmarks, centre_square, require_unique_ids, resize, resize_mask, sample_id
from bench.data.imageio import (
    ImageHeader,
    find_images,
    image_name,
    read_header,
    read_image,
    read_mask,
    require_face_size,
    skipped_note,
)
from bench.data.types import PAPER_ATTRIBUTES, FaceSet
from bench.errors import DataError

ASPECT_TOLERANCE = 0.05  # |width / height - 1| above this is not a face crop: refused, never squashed
SHOWN = 3  # names listed when files are missing or extra


def split_name(folder: Path) -> str:
    """``paired_<folder name>``, lowercased, every run of other characters than letters and digits as ``_``."""
    return "paired_" + (re.sub(r"[^a-z0-9]+", "_", folder.resolve().name.lower()).strip("_") or "set")


def load_paired(
    root: Path, size: int, derive_mask: float | None = None, align: str = "none"
) -> tuple[FaceSet, dict[str, Any]]:
    """The faces of ``root`` at ``size`` px, and what the report and manifest state of them (folder, masks: given,
    derived or none; alignment and, with dlib, each pair's transform; the files skipped as not images)."""
    if not root.is_dir():
        raise DataError(f"--paired-folder {root}: no such folder; give a folder with input/ and gt/ sub-folders")
    kinds, skipped = {}, []
    for kind in ("input", "gt", "mask"):
        if (root / kind).is_dir():
            kinds[kind], rest = images_in(root / kind)
            skipped += rest
    if "input" not in kinds or "gt" not in kinds:
        raise DataError(f"--paired-folder {root}: needs input/ and gt/ sub-folders (and optionally mask/)")
    if "mask" in kinds and derive_mask is not None:
        raise DataError(f"--paired-folder {root}: has mask/, so --derive-mask would not be used; drop one of them")
    names = sorted(kinds["input"])
    if not names:
        raise DataError(f"--paired-folder {root}: input/ holds no images (found by content: PNG, JPEG, GIF, ...)")
    for kind, found in kinds.items():
        same_names(root / kind, set(names), set(found))
    files = [kinds["input"][n] for n in names]
    headers = [read_header(p) for p in files]
    require_face_size(root / "input", files, headers)
    ids = [sample_id(n) for n in names]
    require_unique_ids(root / "input", files, ids)
    images, clean, masks, transforms = [], [], [], {}
    for name, sid, header in zip(names, ids, headers, strict=True):
        like = (kinds["input"][name], header)
        gt = _read(kinds["gt"][name], like)
        matrix = None if align == "none" else face_transform(kinds["gt"][name], gt, size)
        images.append(_face(kinds["input"][name], _read(kinds["input"][name]), size, matrix))
        clean.append(_face(kinds["gt"][name], gt, size, matrix))
        if "mask" in kinds:
            path = kinds["mask"][name]
            mask = _read(path, like, mask=True)
            matrix_mask = None if matrix is None else for_mask(matrix, (header.width, header.height), mask.shape[::-1])
            masks.append(_face(path, mask, size, matrix_mask, mask=True))
        if matrix is not None:
            transforms[sid] = record(matrix)
    images, clean = np.stack(images), np.stack(clean)
    how = "none (mask IoU not computed; --mask-source gt refused for this split)"
    if "mask" in kinds:
        how = "given (mask/, occluded above half of the full value)"
    elif derive_mask is not None:
        diff = np.abs(images.astype(np.int16) - clean.astype(np.int16)).max(axis=-1) / 255.0
        masks = list((diff > derive_mask).astype(np.uint8))
        how = f"derived: |input - gt| > {derive_mask:g} in any channel"
    n = len(names)
    faces = FaceSet(
        images=images,
        identities=np.zeros(n, np.int64),
        attributes=np.zeros((n, len(PAPER_ATTRIBUTES)), np.float32),
        landmarks=np.repeat(canonical_landmarks(size)[None], n, 0),
        ids=ids,
        clean=clean,
        masks=np.stack(masks) if masks else None,
        occluders=["user"] * n,
        families=["user"] * n,
    )
    facts: dict[str, Any] = {"folder": str(root.resolve()), "masks": how, "images": str(n)}
    facts["align"] = describe(align, "each pair's gt/ image (one transform for input, gt and mask)")
    if transforms:
        facts["transforms"] = transforms
    note = skipped_note(root, skipped)
    if note:
        facts["skipped"] = note
    return faces, facts


def images_in(folder: Path) -> tuple[dict[str, Path], list[Path]]:
    """The images of ``folder`` by name (bench.data.imageio.image_name), found by content, and the files skipped."""
    images, skipped = find_images(folder)
    return {image_name(p): p for p in images}, skipped


def same_names(folder: Path, wanted: set[str], found: set[str], layout: str = "input/, gt/ and mask/") -> None:
    """DataError unless ``folder`` holds exactly the names ``wanted`` (those of the images): the first few of the
    missing or extra ones and their count."""
    missing, extra = sorted(wanted - found), sorted(found - wanted)
    for names, what in ((missing, "missing (an image without it)"), (extra, "without an image of the same name")):
        if names:
            raise DataError(
                f"{folder}: {len(names)} file(s) {what}, e.g. {', '.join(names[:SHOWN])}; {layout} hold the same names"
            )


def _read(path: Path, like: tuple[Path, ImageHeader] | None = None, mask: bool = False) -> np.ndarray:
    """One image decoded (a mask as {0, 1}); ``like`` is the input (its path and header) it must be pixel-aligned
    with."""
    image = read_mask(path) if mask else read_image(path)[0]
    height, width = image.shape[:2]
    if like is not None:
        other, header = like
        if (width, height) != (header.width, header.height):
            raise DataError(
                f"{path}: is {width}x{height}, its input {other.name} is {header.width}x{header.height}; "
                "a pair must be pixel-aligned (the same size)"
            )
    return image


def _face(path: Path, image: np.ndarray, size: int, matrix: np.ndarray | None, mask: bool = False) -> np.ndarray:
    """``image`` as a ``size`` px face: warped by ``matrix`` (--align dlib), else its square centre resized."""
    if matrix is not None:
        return warp(image, matrix, size, mask=mask)
    height, width = image.shape[:2]
    if abs(width / height - 1) > ASPECT_TOLERANCE:
        raise DataError(
            f"{path}: is {width}x{height}, not a square face crop (sides may differ by {ASPECT_TOLERANCE:.0%}); "
            "crop the faces square first, or align them with --align dlib"
        )
    return (resize_mask if mask else resize)(centre_square(image), size)
