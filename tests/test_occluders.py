"""The synthetic occlusion generator: types, placement rules, compositing, user PNG folders."""

import hashlib
import time

import numpy as np
import pytest

from bench.data.faces import FaceRenderer, make_identity
from bench.data.occluders import ROTATION_DEG, OcclusionGenerator, rule_for
from tests.test_folder import BAD_IMAGES, assert_one_line_naming


@pytest.fixture(scope="module")
def faces():
    renderer, rng = FaceRenderer(64), np.random.default_rng(0)
    return [renderer.render(make_identity(0, i), rng) for i in range(6)]


@pytest.fixture(scope="module")
def gen():
    return OcclusionGenerator(64)


def test_at_least_640_distinct_types():
    gen = OcclusionGenerator(64)
    assert len(gen.types) >= 640 and len(set(gen.types)) == len(gen.types)
    digests = {hashlib.sha1(gen.sprite(i).tobytes()).hexdigest() for i in range(len(gen))}
    assert len(digests) == len(gen.types)
    assert len(gen.families) >= 10


def test_masks_nonempty_sane_area_and_composited(gen, faces):
    rng = np.random.default_rng(1)
    for family in gen.families:
        members = [i for i in range(len(gen)) if gen.family_of(i) == family]
        for k in range(6):
            face = faces[k]
            occ = gen.apply(face.clean, face.landmarks, rng, members[k * 5 % len(members)])
            assert occ.image.shape == (64, 64, 3) and occ.image.dtype == np.uint8 and occ.mask.dtype == np.uint8
            assert occ.family == family and occ.type_name.startswith(family + "/")
            assert 0.003 < occ.mask.mean() < 0.8, occ.type_name
            changed = np.abs(occ.image.astype(int) - face.clean).sum(-1) > 0
            assert (changed | ~occ.mask.astype(bool)).all()  # every masked pixel is painted (opaque > 0.5)


def test_deterministic_for_a_seeded_rng(gen, faces):
    a = gen(faces[0].clean, faces[0].landmarks, np.random.default_rng(5))
    b = gen(faces[0].clean, faces[0].landmarks, np.random.default_rng(5))
    assert a.type_name == b.type_name and np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)


def _axis_angle(mask: np.ndarray) -> float:
    """Deviation (degrees) of the mask's principal axis from vertical."""
    ys, xs = np.nonzero(mask)
    cov = np.cov(np.stack([xs, ys]))
    vx, vy = np.linalg.eigh(cov)[1][:, -1]
    return float(np.degrees(np.arctan2(vx, vy) + np.pi / 2) % 180 - 90)


def test_rotation_stays_within_15_degrees(faces):
    gen = OcclusionGenerator(128, families=["phone"])  # a tall rectangle: its axis shows the rotation
    rng = np.random.default_rng(2)
    angles = [
        abs(_axis_angle(gen(faces[0].clean.repeat(2, 0).repeat(2, 1), faces[0].landmarks * 2, rng).mask))
        for _ in range(60)
    ]
    assert max(angles) <= ROTATION_DEG + 2.5
    assert max(angles) > 10  # the full range is used, not a fixed angle


def test_placement_follows_landmarks(faces):
    rng = np.random.default_rng(3)
    glasses, masks = (
        OcclusionGenerator(64, families=["eyeglasses", "sunglasses"]),
        OcclusionGenerator(64, families=["surgical_mask", "n95_respirator", "cloth_mask"]),
    )
    for face in faces:
        lm = face.landmarks
        ys, xs = np.nonzero(glasses(face.clean, lm, rng).mask)
        assert abs(xs.mean() - lm[:2, 0].mean()) < 6 and abs(ys.mean() - lm[:2, 1].mean()) < 6
        m = masks(face.clean, lm, rng).mask
        assert m[int(lm[3:, 1].mean()), int(lm[3:, 0].mean())] == 1  # the mouth is covered
        assert m[int(lm[0, 1]), int(lm[0, 0])] == 0  # the eyes are not
    assert rule_for("eyeglasses").length == 100 and rule_for("hand").length == 120
    assert rule_for("phone").length == 80 and rule_for("cup") == rule_for("scarf") and rule_for("ball").length == 70


def test_fast_enough(gen, faces):
    rng = np.random.default_rng(4)
    chosen = rng.choice(len(gen), 30, replace=False)
    for i in chosen:  # sprites are drawn once per type and cached: time the steady state
        gen.sprite(i)
    start = time.process_time()
    for k in range(300):
        gen.apply(faces[k % 6].clean, faces[k % 6].landmarks, rng, chosen[k % 30])
    assert (time.process_time() - start) / 300 < 0.004


def test_family_filter_and_unknown_family():
    assert set(OcclusionGenerator(32, families=["hand", "cup"]).families) == {"hand", "cup"}
    with pytest.raises(ValueError, match="unknown occluder families \\['nope'\\]"):
        OcclusionGenerator(32, families=["nope"])


def test_user_folder(shared_data, faces):
    gen = OcclusionGenerator(64, user_dir=shared_data / "occluders")
    user = [i for i, t in enumerate(gen.types) if t.startswith(("respirators/", "glasses/", "masks/"))]
    assert len(user) == 34 and "respirators/N95" in gen.types and "glasses/glasses7" in gen.types
    rng = np.random.default_rng(6)
    for i in user[::5]:
        face = faces[i % 6]
        occ = gen.apply(face.clean, face.landmarks, rng, i)
        assert 0.005 < occ.mask.mean() < 0.8
        if occ.family == "glasses":
            ys, _ = np.nonzero(occ.mask)
            assert abs(ys.mean() - face.landmarks[:2, 1].mean()) < 8


def test_user_folder_loads_and_scales(tmp_path):
    from PIL import Image

    sprite = np.zeros((10, 20, 4), np.uint8)
    sprite[2:8, 3:17] = (200, 30, 30, 255)
    Image.fromarray(sprite).save(tmp_path / "scarf_3.png")
    gen = OcclusionGenerator(32, user_dir=tmp_path, families=["scarf"])
    assert gen.types[-1] == "scarf/scarf_3"  # family from the file-name prefix, beside the built-in scarves
    # Cropped to its opaque 6x14 box, longest side scaled to 64 * 32/128 = 16 px.
    assert gen.sprite(len(gen) - 1).shape[:2] == (round(6 * 16 / 14), 16)


def _rgb_png(path):
    from PIL import Image

    Image.new("RGB", (10, 10), "red").save(path)


def _transparent_png(path):
    from PIL import Image

    Image.new("RGBA", (10, 10), (0, 0, 0, 0)).save(path)


OCCLUDER_CASES = [
    *(p for p in BAD_IMAGES if p.values[0] == ".png"),  # the occluder folder reads *.png only
    pytest.param(".png", _rgb_png, "without alpha channel", id="rgb-png-without-alpha"),
    pytest.param(".png", _transparent_png, "fully transparent", id="fully-transparent-png"),
]


@pytest.mark.parametrize("suffix, content, cause", OCCLUDER_CASES)
def test_bad_occluder_png_is_one_line_naming_the_file(tmp_path, suffix, content, cause):
    """Refused when the folder is loaded (before any work), not later when its sprite is first drawn."""
    from PIL import Image

    sprite = np.zeros((10, 20, 4), np.uint8)
    sprite[2:8, 3:17] = (200, 30, 30, 255)
    Image.fromarray(sprite).save(tmp_path / "scarf_3.png")
    bad = tmp_path / "masks" / f"bad{suffix}"
    bad.parent.mkdir()
    content(bad) if callable(content) else bad.write_bytes(content)
    with pytest.raises(ValueError) as err:
        OcclusionGenerator(32, user_dir=tmp_path)
    assert_one_line_naming(str(err.value), bad, cause)


@pytest.mark.parametrize(
    "setup, error, cause",
    [
        pytest.param(lambda p: None, FileNotFoundError, "occluder folder not found", id="missing-folder"),
        pytest.param(lambda p: p.mkdir(), FileNotFoundError, r"no \.png occluders .*it is empty", id="empty-folder"),
        pytest.param(
            lambda p: (p.mkdir(), (p / "cap.jpg").write_bytes(b"x")),
            FileNotFoundError,
            r"no \.png occluders .*1 other file\(s\), e\.g\. \['cap\.jpg'\]",
            id="only-jpegs",
        ),
        pytest.param(
            lambda p: ((p / "dir.png").mkdir(parents=True),),
            FileNotFoundError,
            r"no \.png occluders .*it is empty",
            id="a-folder-named-png",
        ),
    ],
)
def test_occluder_folder_errors_name_the_folder(tmp_path, setup, error, cause):
    root = tmp_path / "occ"
    setup(root)
    with pytest.raises(error, match=cause) as err:
        OcclusionGenerator(32, user_dir=root)
    assert str(root) in str(err.value) and "\n" not in str(err.value)


def test_upper_case_png_suffix_is_an_occluder(tmp_path):
    from PIL import Image

    sprite = np.zeros((8, 8, 4), np.uint8)
    sprite[2:6, 2:6] = (10, 200, 10, 255)
    Image.fromarray(sprite).save(tmp_path / "leaf1.PNG")
    assert OcclusionGenerator(32, user_dir=tmp_path, families=["leaf"]).types == ["leaf/leaf1"]


@pytest.mark.slow
def test_cli_reports_a_bad_occluder_as_one_error_line(tmp_path):
    """`bench run --occluders` with a truncated PNG: exit 2, `error: <file>: ...`, no traceback."""
    import subprocess
    import sys

    (tmp_path / "occ").mkdir()
    (tmp_path / "occ" / "cut.png").write_bytes(next(p.values[1] for p in BAD_IMAGES if p.id == "truncated-png"))
    cmd = [sys.executable, "-m", "bench.cli", "run", "--methods", "identity", "--device", "cpu"]
    cmd += ["--occluders", str(tmp_path / "occ"), "--output", str(tmp_path / "out")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and f"{tmp_path / 'occ' / 'cut.png'}: " in lines[0] and "remove it" in lines[0]
