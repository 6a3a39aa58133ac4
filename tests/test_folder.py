"""Image-folder loader: formats, centre crop, identities from sub-folders, clear errors."""

import numpy as np
import pytest
from PIL import Image

from bench.data.celeba import DataError, canonical_landmarks
from bench.data.folder import load_folder
from bench.data.types import PAPER_ATTRIBUTES


def _save(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def test_flat_folder_of_mixed_formats(tmp_path):
    wide = np.zeros((40, 80, 3), np.uint8)
    wide[:, 20:60] = (200, 10, 10)  # the centre square is red, the side bands black
    _save(tmp_path / "b.png", wide)
    _save(tmp_path / "a.jpg", np.full((300, 200, 3), 90, np.uint8))
    Image.fromarray(np.full((50, 50), 128, np.uint8)).save(tmp_path / "c.bmp")  # grayscale
    (tmp_path / "notes.txt").write_text("not an image")
    faces = load_folder(tmp_path, size=32)
    assert faces.ids == ["a", "b", "c"]
    assert faces.images.shape == (3, 32, 32, 3) and faces.images.dtype == np.uint8
    np.testing.assert_array_equal(faces.identities, [0, 0, 0])
    assert faces.attributes.shape == (3, len(PAPER_ATTRIBUTES)) and not faces.attributes.any()
    np.testing.assert_allclose(faces.landmarks[1], canonical_landmarks(32))
    assert faces.clean is None and faces.masks is None
    red = faces.images[1].astype(int)
    assert (abs(red - (200, 10, 10)) <= 3).all()  # centre crop kept only the red square
    assert abs(int(faces.images[0].mean()) - 90) <= 2
    assert (faces.images[2] == faces.images[2][..., :1]).all()  # gray became 3 equal channels


def test_sub_folders_are_identities(tmp_path):
    for person, shade in (("zoe", 10), ("adam", 200)):
        for k in range(2):
            _save(tmp_path / person / f"{k}.png", np.full((20, 20, 3), shade + k, np.uint8))
    faces = load_folder(tmp_path, size=16)
    assert faces.ids == ["adam__0", "adam__1", "zoe__0", "zoe__1"]
    np.testing.assert_array_equal(faces.identities, [0, 0, 1, 1])
    assert faces.images[0].mean() > 150 and faces.images[3].mean() < 20


def test_large_jpeg_is_decoded_reduced_but_correct(tmp_path):
    image = np.zeros((800, 800, 3), np.uint8)
    image[:400] = 255
    _save(tmp_path / "big.jpg", image)
    faces = load_folder(tmp_path, size=32)
    assert faces.images[0, :14].min() > 240 and faces.images[0, 18:].max() < 15


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda p: None, "no such folder"),
        (lambda p: (p.mkdir(), (p / "x.txt").write_text("")), "no images"),
        (lambda p: (p.mkdir(), (p / "bad.png").write_bytes(b"\x89PNG garbage")), r"bad\.png: cannot be decoded"),
    ],
)
def test_errors_name_the_problem(tmp_path, setup, message):
    root = tmp_path / "faces"
    setup(root)
    with pytest.raises(DataError, match=message):
        load_folder(root)
