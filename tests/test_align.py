"""User folders as a new user has them: photos aligned by dlib (``--align dlib``: one transform per pair, taken from
its ground truth, recorded), and images found by their content, whatever their names (``find_images``)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bench.data.align import check_align, face_transform, warp
from bench.data.celeba import CELEBA_MEAN_LANDMARKS, IMAGE_DIR
from bench.data.folder import read_folder
from bench.data.imageio import find_images, image_name, read_image, skipped_note, sniff
from bench.data.paired import load_paired
from bench.errors import DataError, RunError
from bench.landmarks import five_points, template, unavailable

needs_dlib = pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))


def _photo(sample, k: int, angle: float = 10, scale: float = 1.6, canvas=(420, 360), at=(80, 40), placed=False):
    """CelebA face ``k`` of the sample turned, enlarged and placed in a larger photo (not a face crop); with
    ``placed`` also the 2x3 matrix that placed it."""
    import cv2

    face = read_image(sorted((sample / IMAGE_DIR).iterdir())[k])[0]
    matrix = cv2.getRotationMatrix2D((89, 109), angle, scale)
    matrix[:, 2] += at
    photo = cv2.warpAffine(face, matrix, canvas, borderValue=(90, 120, 150))
    return (photo, matrix) if placed else photo


def _compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    return outer[:, :2] @ np.vstack([inner, [0, 0, 1]])[:2] + np.hstack([np.zeros((2, 2)), outer[:, 2:]])


def _save(path, image) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, format="PNG")


@pytest.mark.face
@needs_dlib
def test_an_aligned_photo_puts_dlibs_points_on_the_template(sample, tmp_path):
    photo, placed = _photo(sample, 0, placed=True)
    matrix = face_transform(tmp_path / "p.png", photo, 64)
    face = warp(photo, matrix, 64)
    assert face.shape == (64, 64, 3)
    assert np.abs(five_points(face[None])[0] - template(64)).max() < 2.5  # px of 64
    other, placed_other = _photo(sample, 0, angle=-15, scale=2.2, at=(60, 10), placed=True)
    # the same face however the photo holds it: CelebA image -> benchmark crop is the same map, to ~a pixel
    corners = np.vstack([CELEBA_MEAN_LANDMARKS.T, np.ones(5)])  # where the face's features are
    first = _compose(matrix, placed) @ corners
    second = _compose(face_transform(tmp_path / "o.png", other, 64), placed_other) @ corners
    assert np.abs(first - second).max() < 2  # px of 64 (measured 1.4: dlib's landmark jitter)


@pytest.mark.face
@needs_dlib
def test_a_paired_folder_of_photos_is_aligned_by_its_gt_and_stays_pixel_aligned(sample, tmp_path):
    for k in range(2):
        gt = _photo(sample, k)
        occluded = gt.copy()
        occluded[230:300, 150:260] = (20, 160, 220)  # a blue paste over the mouth: input differs only there
        mask = np.zeros(gt.shape[:2], np.uint8)
        mask[230:300, 150:260] = 255
        _save(tmp_path / "input" / f"{k}.png", occluded)
        _save(tmp_path / "gt" / f"{k}.png", gt)
        _save(tmp_path / "mask" / f"{k}.png", mask)
    faces, facts = load_paired(tmp_path, 64, align="dlib")
    assert facts["align"].startswith("dlib") and "gt/" in facts["align"]
    assert sorted(facts["transforms"]) == ["0", "1"] and np.array(facts["transforms"]["0"]).shape == (2, 3)
    import cv2

    differs = np.abs(faces.images.astype(int) - faces.clean).max(-1) > 0
    near = np.stack([cv2.dilate(m, np.ones((5, 5), np.uint8)) for m in faces.masks])  # the filters' reach: 2 px
    assert differs.any() and not (differs & (near == 0)).any()  # one transform: identical pixels away from the paste
    assert faces.masks.mean() > 0.05


@pytest.mark.face
@needs_dlib
def test_no_face_or_two_faces_are_one_line_naming_the_file(sample, tmp_path):
    _save(tmp_path / "blank" / "empty.png", np.full((200, 200, 3), 128, np.uint8))
    with pytest.raises(DataError, match=r"empty\.png: dlib finds no face in it"):
        read_folder(tmp_path / "blank", 64, align="dlib")
    two = np.concatenate([_photo(sample, 0, scale=1.0, canvas=(300, 300), at=(60, 40))] * 2, axis=1)
    _save(tmp_path / "two" / "pair.png", two)
    with pytest.raises(DataError, match=r"pair\.png: dlib finds 2 faces in it \(--align dlib needs exactly one\)"):
        read_folder(tmp_path / "two", 64, align="dlib")


def test_align_is_checked_at_planning(monkeypatch):
    with pytest.raises(RunError, match="--align 'dilb': use none or dlib"):
        check_align("dilb")
    monkeypatch.setitem(__import__("sys").modules, "dlib", None)  # as if the face extra were not installed
    with pytest.raises(RunError, match=r"^--align dlib: the face extra is not installed \(no dlib[^)]*\); pip install"):
        check_align("dlib")


FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF", "PPM")


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_image_without_an_extension_is_found_by_its_content_and_decoded(tmp_path, fmt):
    image = np.zeros((40, 40, 3), np.uint8)
    image[:, :20] = (200, 40, 40)
    Image.fromarray(image).save(tmp_path / "face", format=fmt)
    assert sniff(tmp_path / "face") == ("PNM" if fmt == "PPM" else fmt)
    decoded = read_image(tmp_path / "face")[0]
    assert decoded.shape == (40, 40, 3) and abs(int(decoded[20, 5, 0]) - 200) < 12


def test_a_folder_of_extensionless_gifs_is_read_and_other_files_are_named_in_one_line(tmp_path):
    for k in range(3):
        Image.fromarray(np.full((40, 40, 3), 60 * k, np.uint8)).save(tmp_path / f"face{k}", format="GIF")
    (tmp_path / "README").write_text("faces of the lab, 2024")
    (tmp_path / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "list.csv").write_text("a,b")
    faces, facts = read_folder(tmp_path, 32)
    assert faces.ids == ["face0", "face1", "face2"] and faces.images.shape == (3, 32, 32, 3)
    assert facts["skipped"] == (
        f"{tmp_path}: skipped 4 file(s) that are not images by their content: .DS_Store, README, list.csv and 1 more"
    )


def test_names_pair_across_folders_by_stem_or_whole_name(tmp_path):
    assert image_name(tmp_path / "a.JPG") == "a" and image_name(tmp_path / "img.001") == "img.001"
    gif = tmp_path / "g"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(gif, format="GIF")
    (tmp_path / "t.png").write_text("not a png")  # named as an image: read (and refused there), never skipped
    (tmp_path / "t.txt").write_text("text")
    images, skipped = find_images(tmp_path)
    assert images == [gif, tmp_path / "t.png"] and skipped == [tmp_path / "t.txt"]
    assert skipped_note(tmp_path, []) is None


def test_a_paired_folder_of_extensionless_files_pairs_by_name(tmp_path):
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    for kind in ("input", "gt"):
        (tmp_path / kind).mkdir()
        Image.fromarray(clean).save(tmp_path / kind / "0001", format="BMP")
    (tmp_path / "gt" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    faces, facts = load_paired(tmp_path, 32)
    assert faces.ids == ["0001"] and facts["skipped"].endswith("not images by their content: gt/Thumbs.db")
