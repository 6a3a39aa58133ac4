"""How a user's image becomes a benchmark face (``--align``): the stated fixed crop, or dlib's alignment.

- ``none`` (the default): the image is taken as an aligned face crop: its centred square, resized to the benchmark
  size (bench.data.celeba.centre_square, resize).
- ``dlib``: dlib's HOG detector must find exactly one face (none or several is refused, naming the file); its 5
  landmarks (bench.landmarks) are mapped onto the benchmark's crop template (bench.landmarks.TEMPLATE, dlib's points
  as they fall on the benchmark's CelebA crops) by a similarity transform (rotation, uniform scale, shift; least
  median of squares), and the image is warped with it: bilinear, edges replicated, a photo much larger than the
  face first shrunk by area averaging (no aliasing); masks nearest-neighbour, outside the photo unoccluded. Each
  image's transform (photo pixels -> benchmark pixels, 2x3) is recorded in the run's manifest.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.errors import DataError, RunError

ALIGNS = ("none", "dlib")
FIXED = "none: the stated fixed crop (the centred square, resized)"


def check_align(align: str) -> None:
    """RunError unless ``align`` is known and, for dlib, the face extra is installed (one line with the fix)."""
    if align not in ALIGNS:
        raise RunError(f"--align {align!r}: use {' or '.join(ALIGNS)}")
    if align == "dlib":
        from bench.landmarks import unavailable

        problem = unavailable()
        if problem:
            raise RunError(f"--align dlib: {problem}")


def describe(align: str, source: str = "the image itself") -> str:
    """What the manifest says of a folder's alignment."""
    if align == "none":
        return FIXED
    return (
        f"dlib: HOG face detector and 5-point landmarks of {source}, similarity transform onto the benchmark's "
        "crop template"
    )


def face_transform(path: Path, image: np.ndarray, size: int) -> np.ndarray:
    """The 2x3 similarity that maps the one face dlib finds in ``image`` onto the template at ``size`` px; a
    DataError naming ``path`` when it finds no face or several."""
    import cv2

    from bench.landmarks import detect, five_points, template

    boxes = detect(image)
    if not boxes:
        raise DataError(
            f"{path}: dlib finds no face in it (--align dlib needs one frontal face per image); remove it, or crop "
            "it to the face and drop --align"
        )
    if len(boxes) > 1:
        raise DataError(
            f"{path}: dlib finds {len(boxes)} faces in it (--align dlib needs exactly one); crop it to one face "
            "or remove it"
        )
    points = five_points(image[None], boxes)[0]
    matrix, _ = cv2.estimateAffinePartial2D(points, template(size), method=cv2.LMEDS)
    if matrix is None:
        raise DataError(f"{path}: dlib's landmarks {points.round(1).tolist()} are degenerate; remove it")
    return matrix


def warp(image: np.ndarray, matrix: np.ndarray, size: int, mask: bool = False) -> np.ndarray:
    """``image`` (a mask with ``mask``, at any resolution of the same aspect as the photo ``matrix`` was found on)
    warped by ``matrix`` onto the ``size`` px face."""
    import cv2

    if mask:
        return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_NEAREST, borderValue=0)
    scale = float(np.hypot(*matrix[:, 0]))
    if scale < 1:  # shrink by area first, so the warp only turns and shifts (no aliasing)
        height, width = image.shape[:2]
        small = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, small, interpolation=cv2.INTER_AREA)
        matrix = matrix.copy()
        matrix[:, 0] *= width / small[0]
        matrix[:, 1] *= height / small[1]
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def for_mask(matrix: np.ndarray, photo: tuple[int, int], mask: tuple[int, int]) -> np.ndarray:
    """``matrix`` (found on a photo of (width, height) ``photo``) for its mask stored at (width, height) ``mask``."""
    out = matrix.copy()
    out[:, 0] *= photo[0] / mask[0]
    out[:, 1] *= photo[1] / mask[1]
    return out


def record(matrix: np.ndarray) -> list[list[float]]:
    """A transform as the manifest stores it (photo pixels -> benchmark pixels)."""
    return np.round(matrix, 5).tolist()
