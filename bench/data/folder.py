"""A user's own occluded faces from a plain image folder (natural occlusion: no mask, no ground truth).

Faces are expected roughly aligned and centred (as face crops usually are): each image is centre-cropped
to a square and resized, and given the canonical landmarks of the CelebA template; with ``align="dlib"`` each is
aligned to the template by its own face's landmarks instead (bench.data.align; its mask by the same transform).
Images are found by content, any extension or none (bench.data.imageio.find_images); every other file is skipped
and named in one line (``facts["skipped"]``). Sub-folders name
identities (``root/<person>/<image>``), so the identification protocol can use them; flat folders are
one identity, 0. Every image must be a face of at least ``MIN_FACE_SIDE`` px (bench.data.imageio). A sample's id
is its path below the folder (``person__image``), shortened with a hash when it would make too long a file
name in the run folder (bench.data.celeba.sample_id); two files that would be one sample are refused. A folder
laid out as ``img/`` and ``mask/`` (FaceOcc, COFW's test set) holds real occlusion masks: see :func:`load_masked`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.data.align import describe, face_transform, for_mask, record, warp
from bench.data.celeba import canonical_landmarks, centre_square, require_unique_ids, resize, resize_mask, sample_id
from bench.data.celebamask import PARTS, is_celebamask, load_celebamask
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
from bench.data.paired import images_in, same_names
from bench.data.types import PAPER_ATTRIBUTES, FaceSet
from bench.errors import DataError


def load_folder(path: str | Path, size: int = 128, mask_parts: Sequence[str] = PARTS, align: str = "none") -> FaceSet:
    """Every image under ``path`` (recursively) as a ``size`` px face (:func:`read_folder`)."""
    return read_folder(path, size, mask_parts, align)[0]


def read_folder(
    path: str | Path, size: int = 128, mask_parts: Sequence[str] = PARTS, align: str = "none"
) -> tuple[FaceSet, dict[str, Any]]:
    """Every image under ``path`` (recursively) as a ``size`` px face; identity = top sub-folder; and what the
    manifest states of them (alignment, each image's transform with dlib, files skipped). A folder laid out as
    ``img/`` and ``mask/`` is a set with real occlusion masks (:func:`load_masked`), and one in CelebAMask-HQ's
    layout the faces with the annotated ``mask_parts`` (bench.data.celebamask: its own aligned crops, read whole)."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder; pass a folder of face images (sub-folders per person optional)")
    if (root / "img").is_dir() and (root / "mask").is_dir():
        return load_masked(root, size, align)
    if is_celebamask(root):
        if align != "none":
            raise DataError(
                f"--align {align}: {root} is in CelebAMask-HQ's layout, whose images are CelebA-HQ's aligned crops "
                "already (read whole); drop --align"
            )
        return load_celebamask(root, size, tuple(mask_parts)), {"align": "CelebA-HQ's own aligned crops, whole"}
    files, skipped = find_images(root, recursive=True)
    if not files:
        found = sorted(p.name for p in root.iterdir())[:12]
        raise DataError(
            f"{root}: no images (found by content: PNG, JPEG, GIF, BMP, WebP, TIFF, ...) in it or below; it has: "
            f"{found or 'nothing'}; put the face images there or pass the folder that holds them"
        )
    headers = [read_header(p) for p in files]  # every header before any decode: bad or tiny files fail fast
    require_face_size(root, files, headers)
    ids = [sample_id("__".join((*p.relative_to(root).parts[:-1], image_name(p)))) for p in files]
    require_unique_ids(root, files, ids)
    groups = [p.relative_to(root).parts[0] if len(p.relative_to(root).parts) > 1 else "" for p in files]
    names = sorted(set(groups))
    faces, transforms = [], {}
    for path_, header, sid in zip(files, headers, ids, strict=True):
        face, matrix = _place(path_, header, size, align)
        faces.append(face)
        if matrix is not None:
            transforms[sid] = record(matrix)
    faceset = FaceSet(
        images=np.stack(faces),
        identities=np.array([names.index(g) for g in groups], np.int64),
        attributes=np.zeros((len(files), len(PAPER_ATTRIBUTES)), np.float32),
        landmarks=np.repeat(canonical_landmarks(size)[None], len(files), 0),
        ids=ids,
        occluders=["natural"] * len(files),
        families=["natural"] * len(files),
    )
    return faceset, _facts(align, transforms, skipped_note(root, skipped))


def load_masked(root: Path, size: int, align: str = "none") -> tuple[FaceSet, dict[str, Any]]:
    """``root/img/NAME`` faces with real occlusion masks ``root/mask/NAME`` (the layout of FaceOcc and COFW's test
    set; 1 = occluded, bench.data.imageio.read_mask): no ground truth, so a method is scored on its mask (IoU/F1,
    the share of unoccluded pixels it marks) and shown in the grids. A mask may be stored at another resolution
    than its image (CelebAMask-HQ: 512 px for 1024 px images), not at another aspect ratio; with dlib alignment
    it is warped by its image's transform."""
    images, skipped = images_in(root / "img")
    if not images:
        raise DataError(f"{root / 'img'}: holds no images (found by content: PNG, JPEG, GIF, ...); put the faces there")
    masks, skipped_masks = images_in(root / "mask")
    same_names(root / "mask", set(images), set(masks), "img/ and mask/")
    names = sorted(images)
    files = [images[n] for n in names]
    headers = [read_header(p) for p in files]
    require_face_size(root / "img", files, headers)
    ids = [sample_id(n) for n in names]
    require_unique_ids(root / "img", files, ids)
    faces, cut, transforms = [], [], {}
    for name, path, header, sid in zip(names, files, headers, ids, strict=True):
        face, matrix = _place(path, header, size, align)
        faces.append(face)
        cut.append(_square_mask(masks[name], header, size, matrix))
        if matrix is not None:
            transforms[sid] = record(matrix)
    n = len(names)
    faceset = FaceSet(
        images=np.stack(faces),
        identities=np.zeros(n, np.int64),
        attributes=np.zeros((n, len(PAPER_ATTRIBUTES)), np.float32),
        landmarks=np.repeat(canonical_landmarks(size)[None], n, 0),
        ids=ids,
        masks=np.stack(cut),
        occluders=["natural"] * n,
        families=["natural"] * n,
    )
    return faceset, _facts(align, transforms, skipped_note(root, skipped + skipped_masks))


def _facts(align: str, transforms: dict[str, list], skipped: str | None) -> dict[str, Any]:
    facts: dict[str, Any] = {"align": describe(align)}
    if transforms:
        facts["transforms"] = transforms
    if skipped:
        facts["skipped"] = skipped
    return facts


def _place(path: Path, header: ImageHeader, size: int, align: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The image as a ``size`` px face and, with dlib, the transform that put it there."""
    if align == "none":
        return _square(path, header, size), None
    image = read_image(path, header=header)[0]
    matrix = face_transform(path, image, size)
    return warp(image, matrix, size), matrix


def _square_mask(path: Path, image: ImageHeader, size: int, matrix: np.ndarray | None = None) -> np.ndarray:
    """The mask cropped as its image is (the centre square, or ``matrix``) and resized nearest-neighbour to
    ``size``."""
    mask = read_mask(path)
    height, width = mask.shape
    if abs(width * image.height - height * image.width) > 0.01 * image.width * height:
        raise DataError(
            f"{path}: is {width}x{height}, its image {image.width}x{image.height} has another aspect ratio; "
            "a mask covers its image (at any resolution)"
        )
    if matrix is not None:
        return warp(mask, for_mask(matrix, (image.width, image.height), (width, height)), size, mask=True)
    return resize_mask(centre_square(mask), size)


def _square(path: Path, header: ImageHeader, size: int) -> np.ndarray:
    """Centre square crop of the image, resized to ``size``; a large JPEG is decoded at reduced size, as its
    header's shorter side allows. A bad file is one DataError naming it (bench.data.imageio)."""
    image, _ = read_image(path, size / min(header.width, header.height), header=header)
    return resize(centre_square(image), size)
