"""Damage that a decoder only mutters about becomes an error naming the file, from the decoder up to the CLI.

OpenCV's JPEG decoder returns an image with damaged entropy-coded data as if it were whole and prints libjpeg's
warning to stderr, naming no file. These tests first show that hazard on the very files used (raw OpenCV in a
fresh process), then that every loader names the file, also when many decode at once on threads, and that
nothing else written to stderr meanwhile is lost.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from bench.data.celeba import ATTR_FILE, IDENTITY_FILE, IMAGE_DIR, PARTITION_FILE, DataError, load_celeba
from bench.data.imageio import read_image
from tests.test_celeba import square_occluder
from tests.test_folder import FLIPPED_JPEG, assert_one_line_naming, flip_in_scan

REAL = "000002.jpg"  # a train image of the CelebA sample


def _real_flipped(sample) -> bytes:
    """The sample's first image with 8 bytes of its entropy-coded data flipped (one that libjpeg notices)."""
    return flip_in_scan((sample / IMAGE_DIR / REAL).read_bytes(), count=8, bits=0x5A)


def _raw_opencv(path) -> subprocess.CompletedProcess:
    code = "import sys, cv2; im = cv2.imread(sys.argv[1]); print(None if im is None else im.shape)"
    return subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)


def test_raw_opencv_returns_the_flipped_jpeg_and_only_prints_a_warning(tmp_path):
    (tmp_path / "flipped.jpg").write_bytes(FLIPPED_JPEG)
    done = _raw_opencv(tmp_path / "flipped.jpg")
    assert done.stdout.strip() == "(96, 96, 3)" and "Corrupt JPEG data" in done.stderr
    assert "flipped.jpg" not in done.stderr  # the hazard: nothing says which file


def test_raw_opencv_returns_the_flipped_real_celeba_jpeg_and_only_prints_a_warning(sample, tmp_path):
    (tmp_path / REAL).write_bytes(_real_flipped(sample))
    done = _raw_opencv(tmp_path / REAL)
    assert done.stdout.strip() == "(218, 178, 3)" and "Corrupt JPEG data" in done.stderr


def _mini_celeba(sample, root, count: int = 8) -> list[str]:
    """A real CelebA of ``count`` sample images (train and test), its annotation rows copied from the sample."""
    rows = {f: (sample / f).read_text().splitlines() for f in (PARTITION_FILE, IDENTITY_FILE, ATTR_FILE)}
    train = [line.split()[0] for line in rows[PARTITION_FILE] if line.endswith(" 0")][: count // 2]
    test = [line.split()[0] for line in rows[PARTITION_FILE] if line.endswith(" 2")][: count // 2]
    names = set(train + test)
    (root / IMAGE_DIR).mkdir(parents=True)
    for name in names:
        (root / IMAGE_DIR / name).write_bytes((sample / IMAGE_DIR / name).read_bytes())
    for file, lines in rows.items():
        head = [f"{len(names)}", lines[1]] if file == ATTR_FILE else []
        body = [line for line in lines[len(head) :] if line.split()[0] in names]
        (root / file).write_text("\n".join(head + body) + "\n")
    return sorted(names)


def test_a_real_celeba_jpeg_with_flipped_bytes_is_named(sample, tmp_path):
    names = _mini_celeba(sample, tmp_path)
    assert REAL in names
    assert load_celeba(tmp_path, size=32, occluder=square_occluder).info["files"]["in_all"] == len(names)
    (tmp_path / IMAGE_DIR / REAL).write_bytes(_real_flipped(sample))
    with pytest.raises(DataError) as err:
        load_celeba(tmp_path, size=32, occluder=square_occluder)
    assert_one_line_naming(str(err.value), tmp_path / IMAGE_DIR / REAL, r"truncated or corrupt JPEG .*Corrupt JPEG")


def test_among_many_decoded_at_once_only_the_damaged_file_is_named(tmp_path):
    """Threads decode while fd 2 is shared: a warning seen during a good file's decode is not pinned on it."""
    import cv2

    rng = np.random.default_rng(0)
    paths = []
    for i in range(120):
        paths.append(tmp_path / f"{i:03d}.jpg")
        Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(paths[-1])
    for i in (17, 80):
        paths[i].write_bytes(FLIPPED_JPEG)

    def one(path):
        try:
            return read_image(path)[0]
        except DataError as err:
            return str(err)

    for _ in range(3):
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(one, paths))
        named = [i for i, r in enumerate(results) if isinstance(r, str)]
        assert named == [17, 80], [results[i] for i in named]
        for i in (17, 80):
            assert_one_line_naming(results[i], paths[i], "Corrupt JPEG data")
        for i in (0, 50, 119):
            assert np.array_equal(results[i], cv2.cvtColor(cv2.imread(str(paths[i])), cv2.COLOR_BGR2RGB))


def test_what_others_write_to_stderr_meanwhile_is_passed_on(tmp_path, capfd):
    (tmp_path / "bad.jpg").write_bytes(FLIPPED_JPEG)
    good = tmp_path / "good.jpg"
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(good)
    before = os.fstat(2)
    stop = threading.Event()

    def chatter():
        k = 0
        while not stop.is_set():
            os.write(2, f"note {k}\n".encode())
            k += 1
            stop.wait(0.001)

    talker = threading.Thread(target=chatter)
    talker.start()
    try:
        for _ in range(50):
            read_image(good)
            with pytest.raises(DataError, match="Corrupt JPEG data"):
                read_image(tmp_path / "bad.jpg")
    finally:
        stop.set()
        talker.join()
    os.write(2, b"after\n")
    err = capfd.readouterr().err
    notes = sorted(int(line.split()[1]) for line in err.splitlines() if line.startswith("note "))
    assert notes and notes == list(range(len(notes)))  # every one, once (those written during a decode come later)
    assert "Corrupt JPEG data" not in err  # the decoder's line became the error instead
    assert err.endswith("after\n")
    assert (os.fstat(2).st_ino, os.fstat(2).st_dev) == (before.st_ino, before.st_dev)  # fd 2 is back


def _cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "bench.cli", "run", "--methods", "identity", "--device", "cpu", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=cwd)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, content, cause",
    [
        pytest.param("face.jpg", FLIPPED_JPEG, "truncated or corrupt JPEG", id="bit-flipped-jpeg"),
        pytest.param("dot.png", None, "is 1x1 pixels, too small for a face", id="1x1-png"),
    ],
)
def test_cli_names_the_damaged_or_tiny_natural_face_in_one_error_line(tmp_path, name, content, cause):
    folder = tmp_path / "faces"
    folder.mkdir()
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(folder / "good.png")
    if content is None:
        Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(folder / name)
    else:
        (folder / name).write_bytes(content)
    done = _cli("--natural-folder", str(folder), "--output", str(tmp_path / "out"))
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stderr and not [line for line in lines if line.startswith("Corrupt JPEG")]
    assert lines[-1].startswith(f"error: {folder / name}: ") and cause in lines[-1]
    assert len([line for line in lines if line.startswith("error:")]) == 1


@pytest.mark.slow
def test_cli_runs_a_natural_face_with_a_250_character_file_name(tmp_path):
    folder = tmp_path / "faces"
    folder.mkdir()
    long_name = "x" * 246 + ".png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / long_name)
    done = _cli("--natural-folder", str(folder), "--limit", "2", "--data-limit", "8", "--output", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr[-2000:]
    stored = list((tmp_path / "out" / "runs").glob("*/inputs/test_natural/input/*.png"))
    assert len(stored) == 1 and stored[0].name.startswith("x" * 100) and len(stored[0].name) < 150
