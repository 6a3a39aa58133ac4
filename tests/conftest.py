from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """The networks in unit tests are tiny: one thread beats two (no oversubscription, no sync cost)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def sample(shared_data) -> Path:
    """The real 3,000-image CelebA subset in its official layout (skipped when absent)."""
    root = shared_data / "celeba-sample"
    if not root.is_dir():
        pytest.skip("celeba-sample is absent")
    return root


def _blob_faces(n: int, size: int, seed: int):
    """Tiny stand-in faces (smooth colour gradients + dark 'eyes') for method unit tests."""
    from bench.data.types import FaceSet

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        base = rng.uniform(0.3, 0.8, 3)
        img = base[None, None] * (0.7 + 0.3 * xx[..., None]) * (0.8 + 0.2 * yy[..., None])
        for ex in (0.33, 0.67):
            eye = (xx - ex) ** 2 + (yy - 0.4) ** 2 < 0.004
            img[eye] = 0.1
        images[i] = (np.clip(img, 0, 1) * 255).astype(np.uint8)
    lm = np.array([[0.33, 0.4], [0.67, 0.4], [0.5, 0.55], [0.38, 0.72], [0.62, 0.72]], np.float32) * size
    return FaceSet(
        images=images,
        identities=np.arange(n) % 4,
        attributes=rng.integers(0, 2, (n, 10)).astype(np.float32),
        landmarks=np.repeat(lm[None], n, 0),
        ids=[f"s{i:04d}" for i in range(n)],
    )


def _box_occluder(clean, landmarks, rng):
    """A grey box over a random part of the face: a deterministic, cheap synthetic occlusion."""
    from bench.data.types import Occlusion

    size = clean.shape[0]
    h, w = rng.integers(size // 4, size // 2, 2)
    y, x = rng.integers(0, size - h), rng.integers(0, size - w)
    image = clean.copy()
    mask = np.zeros((size, size), np.uint8)
    image[y : y + h, x : x + w] = rng.integers(0, 255, 3)
    mask[y : y + h, x : x + w] = 1
    return Occlusion(image, mask, "box/0", "box")


@pytest.fixture
def make_train_data():
    """``make_train_data(size=32, n=16)`` -> bench.data.types.TrainData with box occlusions."""
    from bench.data.types import TrainData

    def make(size: int = 32, n: int = 16, seed: int = 0) -> TrainData:
        clean = _blob_faces(n, size, seed)
        natural = _blob_faces(n, size, seed + 1)
        return TrainData(clean=clean, natural=natural, occluder=_box_occluder, attribute_names=tuple("abcdefghij"))

    return make


@pytest.fixture
def make_context():
    """``make_context(MethodClass, size=32, profile="quick", total_steps=None, **options)`` -> MethodContext on CPU,
    the class's declared options resolved with ``options`` as the user's overrides."""
    import torch

    from bench.method import make_context as build

    def make(cls, size: int = 32, profile: str = "quick", total_steps: int | None = None, **options):
        return build(
            cls,
            image_size=size,
            profile=profile,
            device=torch.device("cpu"),
            options=(options,),
            total_steps=total_steps,
            attribute_names=tuple("abcdefghij"),
        )

    return make


@pytest.fixture
def fixed_paired():
    """``fixed_paired(data, batch_size)``: pins ``data.paired`` to one batch and returns ``data``, so the losses
    of successive steps are comparable (a few steps must lower them) and the decrease is the optimiser's, not
    sampling noise. ``data.paired(n)`` then returns that batch."""

    def make(data, batch_size: int):
        batch = data.paired(batch_size)
        data.paired = lambda n: batch
        return data

    return make


@pytest.fixture
def tiny_plugin():
    """``tests.tiny_plugin`` registered in this process (as an installed plugin would be), removed afterwards."""
    from bench import plugins
    from tests import tiny_plugin as module

    plugins.reset()
    plugins.get_manager().register(module, name="tiny")
    yield module
    plugins.reset()


@pytest.fixture
def tiny_env(tmp_path):
    """Environment for a ``bench`` subprocess that finds ``tests.tiny_plugin`` through a real entry point."""
    from tests.util import tiny_plugin_env

    return tiny_plugin_env(tmp_path)


@pytest.fixture
def bench_main(monkeypatch, capsys):
    """``bench_main(*argv)`` runs the real console entry point in this process: (exit code, stdout, stderr)."""
    import sys

    from bench.cli import main

    def call(*argv: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["bench", *argv])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    return call
