"""Image-folder loader: formats, centre crop, identities from sub-folders, clear errors.

``BAD_IMAGES`` is the catalogue of bad files every loader of user images must refuse with one line naming
the file and the fix (bench.data.imageio); test_occluders and test_celeba run it through their loaders.
``BAD_FACES`` adds what only the face loaders refuse (an image too small to be a face).
"""

import io
import re
import resource
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from bench.data.celeba import MAX_ID_BYTES, DataError, canonical_landmarks
from bench.data.folder import load_folder
from bench.data.imageio import MIN_FACE_SIDE
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
            _save(tmp_path / person / f"{k}.png", np.full((40, 40, 3), shade + k, np.uint8))
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


def _noise(height: int, width: int, channels: int = 3) -> np.ndarray:
    image = np.random.default_rng(0).integers(0, 256, (height, width, channels), dtype=np.uint8)
    if channels == 4:
        image[..., 3] = 255  # an opaque RGBA occluder: valid for every loader
    return image


def _encode(image: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, fmt)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(width: int, height: int, idat: bytes = b"") -> bytes:
    """A well-formed RGBA PNG header declaring ``width`` x ``height`` pixels, with (almost) no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _jpeg_declaring(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header (SOF0) is patched to declare ``width`` x ``height``."""
    data = _encode(_noise(16, 16), "JPEG")
    sof = data.index(b"\xff\xc0")
    return data[: sof + 5] + struct.pack(">HH", height, width) + data[sof + 9 :]


def _bmp_declaring(width: int, height: int) -> bytes:
    """A 24-bit BMP header declaring ``width`` x ``height`` pixels (read by PIL: the fallback header path)."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + info


def _flip_in_idat(data: bytes) -> bytes:
    at = data.index(b"IDAT") + 20
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


def flip_in_scan(data: bytes, count: int = 1, bits: int = 0x04) -> bytes:
    """``data`` with ``bits`` flipped in ``count`` bytes from the middle of its entropy-coded data (the JPEG's
    header and tables intact, so only the decoder can notice). Not every flip is noticed: a JPEG has no
    checksum, and libjpeg notices only codes that stop making sense; each use here is one that it notices
    (tests/test_data_integrity checks that raw OpenCV prints the warning and returns the image)."""
    sos = data.index(b"\xff\xda")
    start, end = sos + 2 + struct.unpack(">H", data[sos + 2 : sos + 4])[0], len(data) - 2
    at = (start + end) // 2
    return data[:at] + bytes(b ^ bits for b in data[at : at + count]) + data[at + count :]


_PNG = _encode(_noise(64, 64, 4), "PNG")
_JPEG = _encode(_noise(96, 96), "JPEG")
FLIPPED_JPEG = flip_in_scan(_JPEG)  # libjpeg: "Corrupt JPEG data: 154 extraneous bytes before marker 0xd9"
LIMIT = r"over the 50-megapixel limit"

# (suffix, file content, what the message must say); every message also names the file and "remove it".
BAD_IMAGES = [
    pytest.param(".png", b"", r"is empty \(0 bytes\)", id="zero-byte"),
    pytest.param(".png", b"just some notes, not an image\n", "is not an image", id="text-file"),
    pytest.param(".jpg", bytes(range(256)) * 8, "is not an image", id="random-bytes"),
    pytest.param(
        ".png",
        b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20,
        "truncated or corrupt image header",
        id="png-signature-garbage",
    ),
    pytest.param(".png", _PNG[:20], "truncated or corrupt image header", id="truncated-png-header"),
    pytest.param(".png", _PNG[: len(_PNG) // 2], "truncated or corrupt", id="truncated-png"),
    pytest.param(".png", _flip_in_idat(_PNG), "truncated or corrupt", id="png-bad-checksum"),
    pytest.param(".png", png_declaring(64, 64), "truncated or corrupt", id="png-without-pixel-data"),
    pytest.param(".jpg", _JPEG[:30], "truncated or corrupt image header", id="truncated-jpeg-header"),
    pytest.param(".jpg", _JPEG[: len(_JPEG) // 2], "truncated or corrupt", id="truncated-jpeg"),
    pytest.param(
        ".jpg", FLIPPED_JPEG, "truncated or corrupt JPEG .*'Corrupt JPEG data: .*'", id="jpeg-bit-flipped-in-scan"
    ),
    pytest.param(".png", png_declaring(100_000, 100_000), "100000x100000 = 10000 megapixels, " + LIMIT, id="png-bomb"),
    pytest.param(".png", png_declaring(10_000, 10_000), "10000x10000 = 100 megapixels, " + LIMIT, id="png-100mpx"),
    pytest.param(".png", png_declaring(8000, 8000), "8000x8000 = 64 megapixels, " + LIMIT, id="png-64mpx"),
    pytest.param(".jpg", _jpeg_declaring(60_000, 60_000), "60000x60000 = 3600 megapixels, " + LIMIT, id="jpeg-bomb"),
    pytest.param(".bmp", _bmp_declaring(8000, 8000), "8000x8000 = 64 megapixels, " + LIMIT, id="bmp-64mpx"),
    pytest.param(".bmp", _bmp_declaring(20_000, 20_000), "400 megapixels, " + LIMIT, id="bmp-bomb"),
]


SMALL = rf"too small for a face \(a face needs at least {MIN_FACE_SIDE} px on its short side\)"
BAD_FACES = [
    *BAD_IMAGES,
    pytest.param(".png", _encode(_noise(1, 1), "PNG"), r"is 1x1 pixels, " + SMALL, id="png-1x1"),
    pytest.param(".jpg", _encode(_noise(200, 31), "JPEG"), r"is 31x200 pixels, " + SMALL, id="jpeg-31-wide"),
]


def assert_one_line_naming(message: str, path, cause: str) -> None:
    """The loaders' contract: one line, naming the file, the cause and the fix."""
    import re

    assert "\n" not in message, message
    assert str(path) in message, message
    assert re.search(cause, message), f"{cause!r} not in {message!r}"
    assert "remove it" in message, message


@pytest.mark.parametrize("suffix, content, cause", BAD_FACES)
def test_bad_image_is_one_line_naming_the_file(tmp_path, suffix, content, cause):
    _save(tmp_path / "faces" / "good.png", np.full((40, 40, 3), 90, np.uint8))
    bad = tmp_path / "faces" / f"bad{suffix}"
    bad.write_bytes(content)
    with pytest.raises(DataError) as err:
        load_folder(tmp_path / "faces", size=16)
    assert_one_line_naming(str(err.value), bad, cause)


def test_ten_thousand_1x1_pngs_are_refused_by_count_naming_the_first(tmp_path):
    """The hostile case: 10,000 1x1 PNGs are no face set; one line gives the count and the first files."""
    folder = tmp_path / "faces"
    folder.mkdir()
    dot = _encode(_noise(1, 1), "PNG")
    for i in range(10_000):
        (folder / f"{i:05d}.png").write_bytes(dot)
    _save(folder / "real.png", np.full((64, 48, 3), 90, np.uint8))
    with pytest.raises(DataError) as err:
        load_folder(folder, size=32)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{folder}: 10,000 of its 10,001 images are too small")
    assert f"{folder / '00000.png'} (1x1), {folder / '00001.png'} (1x1), {folder / '00002.png'} (1x1)" in message
    assert "remove them" in message


def test_the_minimum_face_side_is_inclusive(tmp_path):
    _save(tmp_path / "ok" / "a.png", np.full((MIN_FACE_SIDE, 3 * MIN_FACE_SIDE, 3), 90, np.uint8))
    assert len(load_folder(tmp_path / "ok", size=32)) == 1
    _save(tmp_path / "small" / "a.png", np.full((MIN_FACE_SIDE - 1, 3 * MIN_FACE_SIDE, 3), 90, np.uint8))
    with pytest.raises(DataError, match=f"is {3 * MIN_FACE_SIDE}x{MIN_FACE_SIDE - 1} pixels, too small"):
        load_folder(tmp_path / "small", size=32)


def test_a_250_character_file_name_gets_a_short_unique_sample_id(tmp_path):
    """The id names the run folder's PNGs (+18 bytes for write_png's temporary name): a 250-character file
    name would be "File name too long" there. Shortened ids keep their start, differ, and are stable."""
    for k in range(2):
        _save(tmp_path / f"{'x' * 245}{k}.jpg", np.full((40, 40, 3), 90 + 50 * k, np.uint8))
    _save(tmp_path / "person" / "short.png", np.full((40, 40, 3), 10, np.uint8))
    faces = load_folder(tmp_path, size=16)
    short, long_a, long_b = faces.ids
    assert short == "person__short"
    assert long_a != long_b and long_a.startswith("x" * 100) and "~" in long_a
    assert all(len(sid.encode()) <= MAX_ID_BYTES for sid in faces.ids)
    assert load_folder(tmp_path, size=16).ids == faces.ids
    from bench.io import write_png
    from bench.runstore import RunStore

    store = RunStore(tmp_path / "run")
    for i, sid in enumerate(faces.ids):  # what store_inputs does with a natural test face
        write_png(store.input_path("test_natural", "input", sid), faces.images[i])
    assert len(list((tmp_path / "run").rglob("*.png"))) == 3


def test_a_file_name_that_is_not_utf8_gets_a_valid_sample_id(tmp_path):
    import os

    name = os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes: a legal Linux file name that JSON/HTML cannot hold as is
    _save(tmp_path / name, np.full((40, 40, 3), 90, np.uint8))
    (sid,) = load_folder(tmp_path, size=16).ids
    assert sid.startswith("caf~") and sid.encode() == sid.encode("utf-8", "strict")


def test_two_files_that_would_be_one_sample_are_refused(tmp_path):
    _save(tmp_path / "a.jpg", np.full((40, 40, 3), 90, np.uint8))
    _save(tmp_path / "a.png", np.full((40, 40, 3), 10, np.uint8))
    with pytest.raises(DataError) as err:
        load_folder(tmp_path, size=16)
    message = str(err.value)
    assert f"{tmp_path / 'a.jpg'} and {tmp_path / 'a.png'} would both be sample 'a'" in message
    assert "rename or remove one of them" in message and "\n" not in message


@pytest.mark.parametrize("width, height", [(100_000, 100_000), (8000, 8000)])
def test_bomb_is_refused_from_its_header_without_allocating(tmp_path, width, height):
    """Decoding 100000x100000 RGBA would take 40 GB: the header check must refuse it first."""
    (tmp_path / "bomb.png").write_bytes(png_declaring(width, height, zlib.compress(b"\x00" * 1000)))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    start = time.perf_counter()
    with pytest.raises(DataError, match=LIMIT):
        load_folder(tmp_path, size=16)
    assert time.perf_counter() - start < 2
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024


@pytest.mark.parametrize(
    "setup, cause",
    [
        pytest.param(lambda p: None, "no such folder", id="missing-folder"),
        pytest.param(lambda p: p.mkdir(), r"no images .* it has: nothing", id="empty-folder"),
        pytest.param(lambda p: (p.mkdir(), (p / "x.txt").write_text("")), r"no images .*x\.txt", id="no-images"),
        pytest.param(
            lambda p: ((p / "sub").mkdir(parents=True), (p / "sub" / "notes.md").write_text("")),
            "no images",
            id="only-sub-folders-without-images",
        ),
    ],
)
def test_folder_errors_name_the_folder(tmp_path, setup, cause):
    root = tmp_path / "faces"
    setup(root)
    with pytest.raises(DataError, match=cause) as err:
        load_folder(root)
    assert str(root) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.slow
def test_cli_reports_a_bad_natural_face_as_one_error_line(tmp_path):
    """`bench run --natural-folder` with a decompression bomb: exit 2, `error: <file>: ...`, no traceback."""
    import subprocess
    import sys

    (tmp_path / "faces").mkdir()
    (tmp_path / "faces" / "bomb.png").write_bytes(png_declaring(100_000, 100_000))
    cmd = [sys.executable, "-m", "bench.cli", "run", "--methods", "identity", "--device", "cpu"]
    cmd += ["--natural-folder", str(tmp_path / "faces"), "--output", str(tmp_path / "out")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and f"{tmp_path / 'faces' / 'bomb.png'}: declares" in lines[0] and LIMIT in lines[0]


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"progressive": True}, id="progressive"),
        pytest.param({"icc_profile": b"\0" * 200_000}, id="frame-header-past-64KiB"),  # PIL reads that header
    ],
)
def test_unusual_but_valid_jpegs_load(tmp_path, options):
    image = np.zeros((60, 40, 3), np.uint8)
    image[:30] = 250
    Image.fromarray(image).save(tmp_path / "face.jpg", quality=95, **options)
    faces = load_folder(tmp_path, size=16)
    assert faces.images[0, :6].min() > 230 and faces.images[0, 10:].max() < 25


def test_a_label_fed_the_oracle_on_real_occlusions_says_it_is_not_scored_there(tmp_path, bench_main):
    """Real natural occlusions have no true mask, so ``telea@gt`` cannot be scored on them: one line says so and
    the manifest records why, never an absent row without a word."""
    import json

    rng = np.random.default_rng(0)
    for i in range(3):
        _save(tmp_path / "faces" / f"f{i}.png", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    out = tmp_path / "out"
    argv = ["run", "--methods", "identity,telea", "--mask-source", "gt", "--limit", "2", "--data-limit", "8"]
    code, _, err = bench_main(*argv, "--natural-folder", str(tmp_path / "faces"), "--output", str(out))
    assert code == 0, err
    assert "telea@gt: not scored on test_natural: its occlusions have no true mask to feed as gt" in err
    (run,) = (out / "runs").iterdir()
    methods = json.loads((run / "manifest.json").read_text())["methods"]
    assert set(methods["telea@gt"]["not_scored"]) == {"test_natural"} and methods["identity"]["not_scored"] == {}
    rows = [json.loads(line) for line in (run / "metrics" / "telea@gt.jsonl").read_text().splitlines()]
    assert {r["split"] for r in rows} == {"test_paired", "test_clean"}
    code, _, err = bench_main("report", str(run), "-o", str(tmp_path / "r.html"))
    assert code == 0, err
    page = (tmp_path / "r.html").read_text()
    assert "Not scored: <b>telea@gt</b> on test_natural (its occlusions have no true mask" in page


def _masked(root, names=("a", "b"), mask_side=32, image_side=64):
    rng = np.random.default_rng(0)
    for name in names:
        _save(root / "img" / f"{name}.png", rng.integers(0, 256, (image_side, image_side, 3), dtype=np.uint8))
        mask = np.zeros((mask_side, mask_side), np.uint8)
        mask[: mask_side // 4] = 255  # the top quarter occluded (e.g. a hat)
        _save(root / "mask" / f"{name}.png", mask)


def test_a_folder_with_real_masks_loads_them_at_the_image_crop_and_size(tmp_path):
    _masked(tmp_path)  # masks stored at half the image resolution, as CelebAMask-HQ's
    faces = load_folder(tmp_path, size=32)
    assert faces.ids == ["a", "b"] and faces.clean is None and faces.masks.shape == (2, 32, 32)
    expected = np.zeros((32, 32), np.uint8)
    expected[:8] = 1
    np.testing.assert_array_equal(faces.masks[0], expected)


@pytest.mark.parametrize(
    ("make", "cause"),
    [
        (lambda r: (_masked(r), (r / "mask" / "b.png").unlink()), "1 file(s) missing (an image without it), e.g. b"),
        (lambda r: (_masked(r), _save(r / "mask" / "c.png", np.zeros((32, 32), np.uint8))), "without an image"),
        (lambda r: (_masked(r, ("a",)), _save(r / "mask" / "a.png", np.zeros((32, 48), np.uint8))), "aspect ratio"),
    ],
    ids=["mask-missing", "mask-extra", "mask-other-aspect"],
)
def test_a_bad_masked_folder_is_one_line(tmp_path, make, cause):
    make(tmp_path)
    with pytest.raises(DataError, match=re.escape(cause)):
        load_folder(tmp_path, size=32)


def test_oagan_is_scored_on_real_masks_of_natural_faces(tmp_path, bench_main):
    """OA-GAN's central claim, measurable on real faces: its predicted masks against real occluders' masks."""
    import json

    _masked(tmp_path / "faces", names=("a", "b", "c"), mask_side=64)
    out = tmp_path / "out"
    argv = ["run", "--methods", "oagan", "--steps", "2", "--limit", "3", "--data-limit", "8", "--output", str(out)]
    code, _, err = bench_main(*argv, "--natural-folder", str(tmp_path / "faces"))
    assert code == 0, err
    (run,) = (out / "runs").iterdir()
    rows = [json.loads(line) for line in (run / "metrics" / "oagan.jsonl").read_text().splitlines()]
    natural = [r for r in rows if r["split"] == "test_natural"]
    assert len(natural) == 3 and all(0 <= r["mask_iou"] <= 1 and r["area"] == 0.25 for r in natural)
    assert all("psnr" not in r for r in natural)  # no ground truth: no image score
