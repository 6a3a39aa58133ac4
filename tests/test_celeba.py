"""CelebA loader: the shared 3,000-image sample (fixed-crop path), a synthetic landmark file, errors, and the
completeness check (annotation files and images must name the same images, or --allow-partial)."""

import shutil

import numpy as np
import pytest
from PIL import Image

from bench.data.celeba import (
    ATTR_FILE,
    ATTRIBUTES_40,
    IDENTITY_FILE,
    IMAGE_DIR,
    LANDMARK_FILE,
    LANDMARK_HEADER,
    PARTITION_FILE,
    DataError,
    canonical_landmarks,
    load_celeba,
)
from bench.data.types import PAPER_ATTRIBUTES, Occlusion
from tests.test_folder import BAD_FACES, assert_one_line_naming


def square_occluder(clean, landmarks, rng):
    """A black square over the eyes (placed by landmarks), so the test depends on no other module."""
    image, mask = clean.copy(), np.zeros(clean.shape[:2], np.uint8)
    y = int(landmarks[:2, 1].mean())
    top = max(0, y - 4 - int(rng.integers(0, 3)))
    mask[top : y + 4, int(landmarks[0, 0]) : int(landmarks[1, 0]) + 1] = 1
    image[mask == 1] = 0
    return Occlusion(image, mask, "square/0", "square")


@pytest.fixture(scope="module")
def sample_bench(sample):
    return load_celeba(sample, size=32, occluder=square_occluder)


def test_sample_splits_follow_partition_and_eyeglasses(sample_bench):
    # README of the sample: train 2,160 (101 with glasses), test 360 (15 with glasses), val left out.
    counts = sample_bench.info["counts"]
    assert counts == {
        "train_clean": 2059,
        "train_natural": 101,
        "test_paired": 345,
        "test_natural": 15,
        "test_clean": 345,
    }
    assert sample_bench.attribute_names == PAPER_ATTRIBUTES
    assert sample_bench.info["alignment"] == "fixed crop"
    for faces in sample_bench.splits().values():
        assert faces.images.shape[1:] == (32, 32, 3) and faces.images.dtype == np.uint8
        assert faces.attributes.shape[1] == 10 and set(np.unique(faces.attributes)) <= {0.0, 1.0}
        np.testing.assert_allclose(faces.landmarks[0], canonical_landmarks(32))
    # CelebA's partitions are identity-disjoint; test clean/natural share people (probes find mates)
    train_ids = set(sample_bench.train_clean.identities) | set(sample_bench.train_natural.identities)
    assert not train_ids & set(sample_bench.test_clean.identities)
    assert set(sample_bench.test_natural.identities) <= set(sample_bench.test_clean.identities)


def test_sample_rows_match_the_attribute_file(sample, sample_bench):
    lines = (sample / ATTR_FILE).read_text().splitlines()
    header = lines[1].split()
    row = {ln.split()[0]: ln.split()[1:] for ln in lines[2:]}
    faces = sample_bench.test_natural
    for k, sample_id in enumerate(faces.ids[:5]):
        values = row[f"{sample_id}.jpg"]
        assert values[header.index("Eyeglasses")] == "1"
        expected = [values[header.index(name)] == "1" for name in PAPER_ATTRIBUTES]
        np.testing.assert_array_equal(faces.attributes[k], expected)
    assert sample_bench.test_natural.clean is None and sample_bench.test_natural.masks is None


def test_paired_split_is_the_clean_split_occluded(sample_bench):
    paired, clean = sample_bench.test_paired, sample_bench.test_clean
    assert paired.ids == clean.ids
    np.testing.assert_array_equal(paired.clean, clean.images)
    assert paired.masks.shape == (345, 32, 32) and paired.masks.any(axis=(1, 2)).all()
    np.testing.assert_array_equal(paired.images[paired.masks == 0], clean.images[paired.masks == 0])
    assert (paired.images[paired.masks == 1] == 0).all()
    assert set(paired.occluders) == {"square/0"} and set(paired.families) == {"square"}


def test_limit_and_seed_are_deterministic(sample):
    a = load_celeba(sample, size=16, limit=25, occluder=square_occluder, seed=3)
    b = load_celeba(sample, size=16, limit=25, occluder=square_occluder, seed=3)
    assert a.fingerprint() == b.fingerprint()
    assert all(len(faces) <= 25 for faces in a.splits().values())
    # whole identities in a seeded order: few people, several images each
    assert len(np.unique(a.train_clean.identities)) <= 2


def test_fixed_crop_puts_the_face_where_the_template_says(sample_bench):
    # eyes are darker than the cheek between them and the forehead band above them, on average
    faces = sample_bench.test_clean.images.mean(axis=(0, 3))
    eye_l, eye_r, nose = np.round(canonical_landmarks(32)[:3]).astype(int)
    eye_value = (faces[eye_l[1], eye_l[0]] + faces[eye_r[1], eye_r[0]]) / 2
    assert eye_value < faces[nose[1], nose[0]] - 10


def _write_celeba(root, images, landmarks=None, partitions=None):
    (root / IMAGE_DIR).mkdir(parents=True)
    names = [f"{i:06d}.jpg" for i in range(1, len(images) + 1)]
    for name, image in zip(names, images, strict=True):
        Image.fromarray(image).save(root / IMAGE_DIR / name, quality=95)
    partitions = partitions or [0, 0, 2, 2][: len(names)]
    (root / PARTITION_FILE).write_text("".join(f"{n} {p}\n" for n, p in zip(names, partitions, strict=True)))
    (root / IDENTITY_FILE).write_text("".join(f"{n} {7 + i % 2}\n" for i, n in enumerate(names)))
    # odd images wear glasses; every image is Male
    rows = "".join(
        f"{n} " + " ".join("1" if (j == 15 and i % 2) or j == 20 else "-1" for j in range(40)) + "\n"
        for i, n in enumerate(names)
    )
    (root / ATTR_FILE).write_text(f"{len(names)}\n{' '.join(ATTRIBUTES_40)}\n{rows}")
    if landmarks is not None:
        body = "".join(
            f"{n} " + " ".join(f"{v:.0f}" for v in lm.ravel()) + "\n" for n, lm in zip(names, landmarks, strict=True)
        )
        (root / LANDMARK_FILE).write_text(f"{len(names)}\n{LANDMARK_HEADER}\n{body}")
    return names


def _dotted_face(points, size=(218, 178)):
    """A grey image with a bright 5x5 dot at each landmark: alignment can be checked by finding them."""
    image = np.full((*size, 3), 40, np.uint8)
    for x, y in points.astype(int):
        image[y - 2 : y + 3, x - 2 : x + 3] = 255
    return image


def test_landmark_file_aligns_each_face_to_the_template(tmp_path):
    template = canonical_landmarks(64)
    rotate = np.deg2rad(12)
    rot = np.array([[np.cos(rotate), -np.sin(rotate)], [np.sin(rotate), np.cos(rotate)]])
    faces = [template * 1.3 + (20, 40), (template - 32) @ rot.T * 1.5 + (90, 110), template + (50, 60), template * 2]
    names = _write_celeba(tmp_path, [_dotted_face(p) for p in faces], landmarks=faces)
    bench = load_celeba(tmp_path, size=64, occluder=square_occluder)
    assert bench.info["alignment"].startswith("5-point")
    assert bench.train_clean.ids == [names[0][:-4]] and bench.train_natural.ids == [names[1][:-4]]
    for faces_ in (bench.train_clean, bench.train_natural, bench.test_clean, bench.test_natural):
        np.testing.assert_allclose(faces_.landmarks[0], template, atol=1.0)
        np.testing.assert_array_equal(faces_.attributes[0], [name == "Male" for name in PAPER_ATTRIBUTES])
        image = faces_.images[0, :, :, 0]
        for x, y in np.round(template).astype(int):  # every dot lands on its template point
            assert image[y - 1 : y + 2, x - 1 : x + 2].max() > 150
        assert image.mean() < 80


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda r: (r / IDENTITY_FILE).unlink(), IDENTITY_FILE),
        (lambda r: shutil.rmtree(r / IMAGE_DIR), IMAGE_DIR),
        (lambda r: (r / PARTITION_FILE).write_text("000001.jpg 0\n000002.jpg 5\n"), "line 2"),
        (lambda r: _replace_line(r / ATTR_FILE, 3, "000001.jpg 1 -1 1\n"), "line 3: expected 41 fields"),
        (lambda r: _replace_line(r / ATTR_FILE, 4, "000002.jpg " + "x " * 40 + "\n"), "line 4: expected integers"),
        (lambda r: _replace_line(r / ATTR_FILE, 1, "9\n"), "announces 9 rows"),
        (lambda r: (r / IMAGE_DIR / "000002.jpg").write_bytes(b"not a jpeg"), "000002.jpg: is not an image"),
        (lambda r: (r / IMAGE_DIR / "000003.jpg").unlink(), "000003.jpg"),
        (lambda r: _replace_line(r / LANDMARK_FILE, 5, "000003.jpg 1 2 3\n"), LANDMARK_FILE + ", line 5"),
    ],
)
def test_broken_layouts_give_one_clear_error(tmp_path, breakage, message):
    template = canonical_landmarks(64) + 50
    _write_celeba(tmp_path, [_dotted_face(template)] * 4, landmarks=[template] * 4)
    breakage(tmp_path)
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        load_celeba(tmp_path, size=32, occluder=square_occluder)


@pytest.mark.parametrize("landmarks", [True, False], ids=["aligned-by-landmarks", "fixed-crop"])
@pytest.mark.parametrize("suffix, content, cause", BAD_FACES)
def test_bad_image_file_is_one_line_naming_it(tmp_path, landmarks, suffix, content, cause):
    """Whatever the bytes of an img_align_celeba file (its name is always .jpg), one line names it."""
    template = canonical_landmarks(64) + 50
    _write_celeba(tmp_path, [_dotted_face(template)] * 4, landmarks=[template] * 4 if landmarks else None)
    bad = tmp_path / IMAGE_DIR / "000003.jpg"
    bad.write_bytes(content)
    with pytest.raises(DataError) as err:
        load_celeba(tmp_path, size=32, occluder=square_occluder)
    assert_one_line_naming(str(err.value), bad, cause)


def test_empty_image_folder_is_named(tmp_path):
    _write_celeba(tmp_path, [np.zeros((218, 178, 3), np.uint8)] * 4)
    for image in (tmp_path / IMAGE_DIR).iterdir():
        image.unlink()
    with pytest.raises(DataError, match=r"img_align_celeba: lacks 4 of the 4 images that the other CelebA files name"):
        load_celeba(tmp_path, size=32, occluder=square_occluder)


def test_odd_sized_image_without_landmarks_is_named(tmp_path):
    _write_celeba(tmp_path, [np.zeros((218, 178, 3), np.uint8)] * 4)
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(tmp_path / IMAGE_DIR / "000004.jpg")
    with pytest.raises(DataError, match=r"000004\.jpg: is 100x100, not CelebA's aligned 178x218"):
        load_celeba(tmp_path, size=32, occluder=square_occluder)


def _replace_line(path, number, text):
    lines = path.read_text().splitlines(keepends=True)
    lines[number - 1] = text
    path.write_text("".join(lines))


def test_sample_is_complete_as_it_ships(sample_bench):
    """The sample is a subset whose annotation files list its 3,000 images only: nothing is left out."""
    assert sample_bench.info["files"] == {
        PARTITION_FILE: 3000,
        IDENTITY_FILE: 3000,
        ATTR_FILE: 3000,
        IMAGE_DIR: 3000,
        "in_all": 3000,
        "left_out": 0,
        "allow_partial": False,
    }


def _drop_last_row(path, rows=1):
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-rows]))


def _drop_row_and_recount(path, name):
    """A table without ``name``'s row whose count line agrees: only the cross-check can notice."""
    lines = [line for line in path.read_text().splitlines(keepends=True) if not line.startswith(name)]
    path.write_text("".join([f"{len(lines) - 2}\n", *lines[1:]]))


def _extra_image(root):
    Image.fromarray(np.full((218, 178, 3), 40, np.uint8)).save(root / IMAGE_DIR / "000005.jpg")


# (case id, damage to a complete 4-image CelebA with landmarks, the source named, the first image it lacks, counts)
INCOMPLETE = [
    ("partition-last-row-cut", lambda r: _drop_last_row(r / PARTITION_FILE), PARTITION_FILE, "000004.jpg", (1, 4, 3)),
    ("identity-last-row-cut", lambda r: _drop_last_row(r / IDENTITY_FILE), IDENTITY_FILE, "000004.jpg", (1, 4, 3)),
    (
        "attributes-row-cut-and-recounted",
        lambda r: _drop_row_and_recount(r / ATTR_FILE, "000002.jpg"),
        ATTR_FILE,
        "000002.jpg",
        (1, 4, 3),
    ),
    (
        "landmarks-row-cut-and-recounted",
        lambda r: _drop_row_and_recount(r / LANDMARK_FILE, "000003.jpg"),
        LANDMARK_FILE,
        "000003.jpg",
        (1, 4, 3),
    ),
    ("image-missing", lambda r: (r / IMAGE_DIR / "000003.jpg").unlink(), IMAGE_DIR, "000003.jpg", (1, 4, 3)),
    ("image-in-no-file", _extra_image, PARTITION_FILE, "000005.jpg", (1, 5, 4)),
]


@pytest.mark.parametrize("damage, source, lacking, counts", [c[1:] for c in INCOMPLETE], ids=[c[0] for c in INCOMPLETE])
def test_an_incomplete_celeba_is_one_line_naming_source_images_and_counts(tmp_path, damage, source, lacking, counts):
    lacks, union, common = counts
    template = canonical_landmarks(64) + 50
    _write_celeba(tmp_path, [_dotted_face(template)] * 4, landmarks=[template] * 4)
    damage(tmp_path)
    with pytest.raises(DataError) as err:
        load_celeba(tmp_path, size=32, occluder=square_occluder)
    message = str(err.value)
    assert "\n" not in message
    expected = f"{tmp_path / source}: lacks {lacks} of the {union} images that the other CelebA files name"
    assert message.startswith(expected), message
    assert f"e.g. {lacking} (" in message
    for name in (PARTITION_FILE, IDENTITY_FILE, ATTR_FILE, LANDMARK_FILE):  # every source's count
        assert f"{name} lists " in message
    assert f"{IMAGE_DIR} holds " in message
    assert f"or pass --allow-partial to load only the {common} images that all have" in message
    bench = load_celeba(tmp_path, size=32, occluder=square_occluder, allow_partial=True)
    assert bench.info["files"]["in_all"] == common and bench.info["files"]["left_out"] == union - common


def test_allow_partial_loads_what_every_file_has_and_records_the_counts(tmp_path):
    names = _write_celeba(tmp_path, [np.full((218, 178, 3), 60, np.uint8)] * 6, partitions=[0, 0, 0, 2, 2, 2])
    _drop_last_row(tmp_path / PARTITION_FILE)
    (tmp_path / IMAGE_DIR / names[0]).unlink()
    bench = load_celeba(tmp_path, size=32, occluder=square_occluder, allow_partial=True)
    assert bench.info["files"] == {
        PARTITION_FILE: 5,
        IDENTITY_FILE: 6,
        ATTR_FILE: 6,
        IMAGE_DIR: 5,
        "in_all": 4,
        "left_out": 2,
        "allow_partial": True,
    }
    loaded = sorted(bench.train_clean.ids + bench.train_natural.ids + bench.test_clean.ids + bench.test_natural.ids)
    assert loaded == ["000002", "000003", "000004", "000005"]


def test_stray_files_in_the_image_folder_are_not_images(tmp_path):
    _write_celeba(tmp_path, [np.full((218, 178, 3), 60, np.uint8)] * 4)
    (tmp_path / IMAGE_DIR / ".DS_Store").write_bytes(b"\0")
    (tmp_path / IMAGE_DIR / "Thumbs.db").write_bytes(b"\0")
    (tmp_path / IMAGE_DIR / "README.txt").write_text("unpacked from img_align_celeba.zip")
    assert load_celeba(tmp_path, size=32, occluder=square_occluder).info["files"]["left_out"] == 0


def test_a_row_listed_twice_in_a_table_is_named(tmp_path):
    _write_celeba(tmp_path, [np.full((218, 178, 3), 60, np.uint8)] * 4)
    lines = (tmp_path / ATTR_FILE).read_text().splitlines(keepends=True)
    (tmp_path / ATTR_FILE).write_text("".join(["5\n", *lines[1:], lines[2]]))
    with pytest.raises(DataError, match=r"list_attr_celeba\.txt, line 7: 000001\.jpg is listed twice"):
        load_celeba(tmp_path, size=32, occluder=square_occluder)


def _sample_copy(sample, root, partition: str):
    """The sample's images (linked) and annotation files, with ``partition`` as its partition file."""
    root.mkdir()
    (root / IMAGE_DIR).symlink_to(sample / IMAGE_DIR)
    for name in (IDENTITY_FILE, ATTR_FILE):
        (root / name).write_bytes((sample / name).read_bytes())
    (root / PARTITION_FILE).write_text(partition)
    return root


def test_sample_with_its_partition_file_cut_short_is_refused_or_loaded_partially(sample, tmp_path):
    """The hostile case: the last 50 rows of list_eval_partition.txt cut (a truncated download)."""
    lines = (sample / PARTITION_FILE).read_text().splitlines(keepends=True)
    root = _sample_copy(sample, tmp_path / "cut", "".join(lines[:-50]))
    with pytest.raises(DataError) as err:
        load_celeba(root, size=16, occluder=square_occluder)
    first = sorted(line.split()[0] for line in lines[-50:])[:3]
    assert str(err.value).startswith(
        f"{root / PARTITION_FILE}: lacks 50 of the 3,000 images that the other CelebA files name, "
        f"e.g. {', '.join(first)} ({PARTITION_FILE} lists 2,950, {IDENTITY_FILE} lists 3,000, {ATTR_FILE} lists "
        f"3,000, {IMAGE_DIR} holds 3,000); the file is truncated or from another release"
    ), str(err.value)
    bench = load_celeba(root, size=16, occluder=square_occluder, allow_partial=True)
    assert bench.info["files"]["in_all"] == 2950 and bench.info["files"]["left_out"] == 50
    cut_test = sum(line.split()[1] == "2" for line in lines[-50:])
    assert len(bench.test_clean) + len(bench.test_natural) == 360 - cut_test
