"""identity and telea: shapes, exact known pixels, telea filling a smooth image, torch-free plugin."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from baselines.classical import IdentityMethod, TeleaMethod
from bench.data.types import to_tensor, to_uint8
from bench.options import OptionError

ROOT = Path(__file__).resolve().parents[1]


def _smooth_image(size: int) -> torch.Tensor:
    """A smooth colour ramp (no edges inside the hole), values quantised to uint8 like real inputs."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    img = torch.stack([0.2 + 0.6 * xx, 0.3 + 0.4 * yy, 0.5 + 0.3 * xx * yy])[None]
    return (img * 255).round() / 255


def _box_mask(size: int, y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
    mask = torch.zeros(1, 1, size, size)
    mask[..., y0:y1, x0:x1] = 1
    return mask


def test_uint8_round_trip_is_exact():
    img = torch.randint(0, 256, (2, 3, 8, 8)).float() / 255
    assert to_uint8(img).shape == (2, 8, 8, 3)
    assert torch.equal(to_tensor(to_uint8(img)), img)


def test_identity_returns_input(make_context):
    img = torch.rand(2, 3, 32, 32)
    out = IdentityMethod(make_context(IdentityMethod, 32)).restore(img, None)
    assert torch.equal(out.images, img) and out.masks is None
    assert IdentityMethod.trainable is False


def test_telea_radius_scales_with_size(make_context):
    assert TeleaMethod(make_context(TeleaMethod, 128)).radius == pytest.approx(3.0)
    assert TeleaMethod(make_context(TeleaMethod, 64)).radius == pytest.approx(1.5)
    assert TeleaMethod(make_context(TeleaMethod, 64, radius="5")).radius == pytest.approx(5.0)


def test_profiles_change_nothing_and_options_are_checked(make_context):
    """Nothing is trained, so no profile overrides an option and there is no step budget."""
    quick, paper = (TeleaMethod(make_context(TeleaMethod, 64, profile=p)) for p in ("quick", "paper"))
    assert quick.radius == paper.radius == pytest.approx(1.5)
    assert TeleaMethod.steps_for("quick") == TeleaMethod.steps_for("paper") == 0
    assert make_context(IdentityMethod, 32, profile="paper").config.as_dict() == {}
    with pytest.raises(OptionError, match="radius=-1"):
        make_context(TeleaMethod, 64, radius=-1)
    with pytest.raises(OptionError, match="did you mean radius"):
        make_context(TeleaMethod, 64, raduis=2)
    with pytest.raises(OptionError, match="unknown option 'radius'"):  # identity has no options at all
        make_context(IdentityMethod, 64, radius=2)


def test_telea_fills_smooth_hole_and_keeps_known_pixels(make_context):
    clean = _smooth_image(64).repeat(2, 1, 1, 1)
    mask = torch.cat([_box_mask(64, 20, 36, 24, 40), _box_mask(64, 0, 10, 50, 64)])  # one on the border
    holed = clean * (1 - mask)  # what the harness feeds a mask-needing method
    out = TeleaMethod(make_context(TeleaMethod, 64)).restore(holed, mask)
    assert out.images.shape == clean.shape and out.masks is None
    assert out.images.min() >= 0 and out.images.max() <= 1
    known = mask.expand_as(clean) == 0
    assert torch.equal(out.images[known], holed[known])
    hole = ~known
    err_telea = (out.images - clean)[hole].abs().mean()
    err_identity = (holed - clean)[hole].abs().mean()
    assert err_identity > 0.4
    assert err_telea < 0.05 * err_identity


def test_telea_needs_a_mask(make_context):
    with pytest.raises(ValueError, match="mask"):
        TeleaMethod(make_context(TeleaMethod, 32)).restore(torch.rand(1, 3, 32, 32), None)


def test_plugins_register_without_importing_torch():
    code = (
        "import sys\n"
        "import plugins.classical, plugins.yeh\n"
        "specs = []\n"
        "plugins.classical.register_methods(specs.append)\n"
        "plugins.yeh.register_methods(specs.append)\n"
        "assert 'torch' not in sys.modules, 'plugin imported torch'\n"
        "print(';'.join(f'{s.name},{s.needs_mask},{s.trains_on}' for s in specs))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip().split(";") == ["identity,False,()", "telea,True,()", "yeh,True,('clean',)"]


def test_specs_load_their_classes():
    import plugins.classical
    import plugins.yeh

    specs = []
    plugins.classical.register_methods(specs.append)
    plugins.yeh.register_methods(specs.append)
    loaded = {s.name: s.load() for s in specs}
    assert loaded["identity"] is IdentityMethod and loaded["telea"] is TeleaMethod
    assert loaded["yeh"].__name__ == "YehMethod" and loaded["yeh"].trainable
    assert np.all([not loaded[n].trainable for n in ("identity", "telea")])


def test_a_radius_opencv_would_overflow_is_refused_before_any_work(bench_main, tmp_path):
    """cv2.inpaint runs a radius past 2**31 at ~1 px while the manifest would record it: refused at the edge."""
    argv = ["run", "--methods", "telea", "--mask-source", "gt", "--opt", "telea.radius=1e30", "--output", str(tmp_path)]
    code, _, err = bench_main(*argv)
    assert code == 2 and err.count("error:") == 1 and "radius" in err and "1024" in err
    assert not (tmp_path / "runs").exists()
