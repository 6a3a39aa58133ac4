"""CelebAMask-HQ in its official layout, as natural faces with real occluder masks.

Layout: ``ROOT/CelebA-HQ-img/<id>.jpg`` (1024 px) and ``ROOT/CelebAMask-HQ-mask-anno/<id // 2000>/<id:05d>_<part>.png``
(512 px, one file per annotated part). The occluders are the parts named by ``parts`` (default ``eye_g`` and
``hat``, the eyeglasses and hats of the 19 annotated classes); a face is in the set when it has at least one of
them, its mask is their union (1 = occluded) and its occluder family the parts it has (``celebamask/eye_g``, ...),
so the report's mask IoU by family is the per-part IoU. The images are CelebA-HQ's own aligned 1024 px crops,
taken whole (a stated fixed crop: the full image, no re-alignment to the CelebA template) and resized to the
benchmark size; masks nearest-neighbour. There is no clean ground truth: a method is scored on its masks.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from bench.data.celeba import canonical_landmarks, resize, resize_mask
from bench.data.imageio import read_header, read_image, read_mask, require_face_size
from bench.data.types import PAPER_ATTRIBUTES, FaceSet
from bench.errors import DataError

IMAGES, MASKS = "CelebA-HQ-img", "CelebAMask-HQ-mask-anno"
PARTS = ("eye_g", "hat")  # the occluder parts by default
ALL_PARTS = (
    "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
    "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth",
)  # fmt: skip
PER_FOLDER = 2000  # annotation files are grouped by id // 2000
_ANNOTATION = re.compile(r"(\d{5})_([a-z_]+)\.png")


def is_celebamask(root: Path) -> bool:
    return (root / IMAGES).is_dir() and (root / MASKS).is_dir()


def load_celebamask(root: Path, size: int, parts: tuple[str, ...] = PARTS) -> FaceSet:
    """Every face of ``root`` with at least one of ``parts``, at ``size`` px, with the union of those parts as
    its mask."""
    unknown = [p for p in parts if p not in ALL_PARTS]
    if unknown:
        raise DataError(f"CelebAMask-HQ part(s) {', '.join(unknown)} unknown; the parts are {', '.join(ALL_PARTS)}")
    found: dict[int, dict[str, Path]] = {}
    for path in (root / MASKS).glob("*/*.png"):
        match = _ANNOTATION.fullmatch(path.name)
        if match and match.group(2) in parts:
            found.setdefault(int(match.group(1)), {})[match.group(2)] = path
    if not found:
        raise DataError(
            f"{root / MASKS}: no annotation of {', '.join(parts)} (<id // {PER_FOLDER}>/<id:05d>_<part>.png); "
            "is this CelebAMask-HQ's official layout?"
        )
    ids = sorted(found)
    files = [root / IMAGES / f"{i}.jpg" for i in ids]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise DataError(
            f"{root / IMAGES}: {len(missing)} image(s) of annotated faces missing, e.g. {', '.join(missing[:3])}; "
            "the folder must hold every image the annotations name"
        )
    headers = [read_header(f) for f in files]
    require_face_size(root / IMAGES, files, headers)
    images, masks = [], []
    for path, i in zip(files, ids, strict=True):
        image = read_image(path)[0]
        images.append(resize(image, size))
        union = np.zeros((size, size), np.uint8)
        for part in found[i].values():
            union |= resize_mask(read_mask(part), size)
        masks.append(union)
    families = ["celebamask/" + "+".join(p for p in parts if p in found[i]) for i in ids]
    n = len(ids)
    return FaceSet(
        images=np.stack(images),
        identities=np.zeros(n, np.int64),
        attributes=np.zeros((n, len(PAPER_ATTRIBUTES)), np.float32),
        landmarks=np.repeat(canonical_landmarks(size)[None], n, 0),
        ids=[f"{i:05d}" for i in ids],
        masks=np.stack(masks),
        occluders=families,
        families=families,
    )
