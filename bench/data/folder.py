"""A user's own occluded faces from a plain image folder (natural occlusion: no mask, no ground truth).

Faces are expected roughly aligned and centred (as face crops usually are): each image is centre-cropped
to a square and resized, and given the canonical landmarks of the CelebA template. Sub-folders name
identities (``root/<person>/<image>``), so the identification protocol can use them; flat folders are
one identity, 0. Every image must be a face of at least ``MIN_FACE_SIDE`` px (bench.data.imageio). A sample's id
is its path below the folder (``person__image``), shortened with a hash when it would make too long a file
name in the run folder (bench.data.celeba.sample_id); two files that would be one sample are refused. A folder
laid out as ``img/`` and ``mask/`` (FaceOcc, COFW's test set) holds real occlusion masks: see :func:`load_masked`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.data.celeba import canonical_landmarks, centre_square, require_unique_ids, resize, resize_mask, sample_id
from bench.data.celebamask import PARTS, is_celebamask, load_celebamask
from bench.data.imageio import IMAGE_SUFFIXES, ImageHeader, read_header, read_image, read_mask, require_face_size
from bench.data.paired import images_in, same_names
from bench.data.types import PAPER_ATTRIBUTES, FaceSet
from bench.errors import DataError


def load_folder(path: str | Path, size: int = 128, mask_parts: Sequence[str] = PARTS) -> FaceSet:
    """Every image under ``path`` (recursively) as a ``size`` px face; identity = top sub-folder. A folder laid out
    as ``img/`` and ``mask/`` is a set with real occlusion masks (:func:`load_masked`), and one in CelebAMask-HQ's
    layout the faces with the annotated ``mask_parts`` (bench.data.celebamask)."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder; pass a folder of face images (sub-folders per person optional)")
    if (root / "img").is_dir() and (root / "mask").is_dir():
        return load_masked(root, size)
    if is_celebamask(root):
        return load_celebamask(root, size, tuple(mask_parts))
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        found = sorted(p.name for p in root.iterdir())[:12]
        raise DataError(
            f"{root}: no images ({', '.join(IMAGE_SUFFIXES)}) in it or below; it has: {found or 'nothing'}; "
            "put the face images there or pass the folder that holds them"
        )
    headers = [read_header(p) for p in files]  # every header before any decode: bad or tiny files fail fast
    require_face_size(root, files, headers)
    ids = [sample_id("__".join(p.relative_to(root).with_suffix("").parts)) for p in files]
    require_unique_ids(root, files, ids)
    groups = [p.relative_to(root).parts[0] if len(p.relative_to(root).parts) > 1 else "" for p in files]
    names = sorted(set(groups))
    images = np.stack([_square(p, h, size) for p, h in zip(files, headers, strict=True)])
    return FaceSet(
        images=images,
        identities=np.array([names.index(g) for g in groups], np.int64),
        attributes=np.zeros((len(files), len(PAPER_ATTRIBUTES)), np.float32),
        landmarks=np.repeat(canonical_landmarks(size)[None], len(files), 0),
        ids=ids,
        occluders=["natural"] * len(files),
        families=["natural"] * len(files),
    )


def load_masked(root: Path, size: int) -> FaceSet:
    """``root/img/NAME`` faces with real occlusion masks ``root/mask/NAME`` (the layout of FaceOcc and COFW's test
    set; 1 = occluded, bench.data.imageio.read_mask): no ground truth, so a method is scored on its mask (IoU/F1,
    the share of unoccluded pixels it marks) and shown in the grids. A mask may be stored at another resolution
    than its image (CelebAMask-HQ: 512 px for 1024 px images), not at another aspect ratio."""
    images = images_in(root / "img")
    if not images:
        raise DataError(f"{root / 'img'}: holds no images ({', '.join(IMAGE_SUFFIXES)}); put the faces there")
    masks = images_in(root / "mask")
    same_names(root / "mask", set(images), set(masks), "img/ and mask/")
    names = sorted(images)
    files = [images[n] for n in names]
    headers = [read_header(p) for p in files]
    require_face_size(root / "img", files, headers)
    ids = [sample_id(n) for n in names]
    require_unique_ids(root / "img", files, ids)
    n = len(names)
    return FaceSet(
        images=np.stack([_square(p, h, size) for p, h in zip(files, headers, strict=True)]),
        identities=np.zeros(n, np.int64),
        attributes=np.zeros((n, len(PAPER_ATTRIBUTES)), np.float32),
        landmarks=np.repeat(canonical_landmarks(size)[None], n, 0),
        ids=ids,
        masks=np.stack([_square_mask(masks[m], h, size) for m, h in zip(names, headers, strict=True)]),
        occluders=["natural"] * n,
        families=["natural"] * n,
    )


def _square_mask(path: Path, image: ImageHeader, size: int) -> np.ndarray:
    """The mask cropped as its image is (the centre square) and resized nearest-neighbour to ``size``."""
    mask = read_mask(path)
    height, width = mask.shape
    if abs(width * image.height - height * image.width) > 0.01 * image.width * height:
        raise DataError(
            f"{path}: is {width}x{height}, its image {image.width}x{image.height} has another aspect ratio; "
            "a mask covers its image (at any resolution)"
        )
    return resize_mask(centre_square(mask), size)


def _square(path: Path, header: ImageHeader, size: int) -> np.ndarray:
    """Centre square crop of the image, resized to ``size``; a large JPEG is decoded at reduced size, as its
    header's shorter side allows. A bad file is one DataError naming it (bench.data.imageio)."""
    image, _ = read_image(path, size / min(header.width, header.height), header=header)
    return resize(centre_square(image), size)
