"""Self-regularization: generator shapes and mask, each loss term by hand, training, checkpoints, resume, options."""

import importlib
import io
import subprocess
import sys

import pytest
import torch
from torch import nn

import baselines.selfreg
from baselines.selfreg import SelfRegMethod, TwoBranchGenerator, lpips_distance
from bench.nn.losses import perceptual_loss
from bench.nn.schedules import linear_decay
from bench.nn.two_path import GeneratorOutput, TwoPathGenerator
from bench.options import OptionError
from tests.util import check_bit_exact_resume, same_state

TINY = dict(width=4, res_blocks=1, d_width=4, batch_size=2)


class _TinyFeatures(nn.Module):
    """Stand-in for VGGFeatures (same attributes, three pooled maps): building VGG-16 costs seconds."""

    def __init__(self, *args, input_range: str = "imagenet", **kwargs) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.slices = nn.ModuleList(
                nn.Sequential(nn.Conv2d(a, b, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
                for a, b in ((3, 4), (4, 8), (8, 8))
            )
        self.input_range = input_range
        self.register_buffer("mean", torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.source = {"weights": "test stand-in"}

    def forward(self, x):
        x = (x - self.mean) / self.std if self.input_range == "imagenet" else x * 2 - 1
        feats = []
        for block in self.slices:
            x = block(x)
            feats.append(x)
        return feats


@pytest.fixture(autouse=True)
def tiny_vgg(monkeypatch):
    monkeypatch.setattr(baselines.selfreg, "VGGFeatures", _TinyFeatures)


def _faces(size: int, n: int = 2) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("size", [64, 128])
@pytest.mark.parametrize("branches", ["shared", "separate"])
def test_restore_shapes_ranges_and_per_image_determinism(make_context, size, branches):
    method = SelfRegMethod(make_context(SelfRegMethod, size, branches=branches, **TINY))
    assert isinstance(method.G, TwoPathGenerator if branches == "shared" else TwoBranchGenerator)
    images = _faces(size)
    out = method.restore(images, None)
    assert out.images.shape == (2, 3, size, size) and out.masks.shape == (2, 1, size, size)
    for t in out:
        assert t.dtype == torch.float32 and 0 <= t.min() and t.max() <= 1
    assert torch.equal(method.restore(images, torch.ones(2, 1, size, size)).images, out.images)  # mask-free
    swapped = method.restore(images[[1, 0]], None)
    assert torch.equal(swapped.images, out.images[[1, 0]]) and torch.equal(swapped.masks, out.masks[[1, 0]])


def test_output_blends_translation_and_input_by_the_attention(make_context):
    """G(x) = A * T(x) + (1 - A) * x, with the returned mask A = 1 - keep."""
    method = SelfRegMethod(make_context(SelfRegMethod, 32, **TINY))
    images = _faces(32)
    method.G.eval()
    with torch.no_grad():
        g = method.G(images * 2 - 1)
    attention = 1 - g.keep
    expected = (attention * g.synth + (1 - attention) * (images * 2 - 1) + 1) / 2
    out = method.restore(images, None)
    assert torch.allclose(out.images, expected.clamp(0, 1), atol=1e-6)
    assert torch.allclose(out.masks, attention, atol=1e-7)


def test_lpips_distance_by_hand():
    # one layer, one position, 2 channels: (3, 4)/5 against (1, 0) -> (0.6-1)^2 + 0.8^2 = 0.8
    a = torch.tensor([3.0, 4.0]).view(1, 2, 1, 1)
    b = torch.tensor([2.0, 0.0]).view(1, 2, 1, 1)
    assert lpips_distance([a], [b]).item() == pytest.approx(0.8)
    # scale-free per position; a second layer adds; positions are averaged
    c = torch.cat([a, 7 * a], dim=3)
    d = torch.cat([b, 7 * a], dim=3)
    assert lpips_distance([c, a], [d, b]).item() == pytest.approx(0.8 / 2 + 0.8)
    assert lpips_distance([torch.zeros(1, 2, 1, 1)], [torch.zeros(1, 2, 1, 1)]).item() == 0


@pytest.mark.parametrize("distance", ["lpips", "l1"])
def test_self_regularization_compares_low_level_features_of_input_and_output(make_context, make_train_data, distance):
    method = SelfRegMethod(make_context(SelfRegMethod, 32, reg_distance=distance, reg_layers=2, **TINY))
    method.setup_training(make_train_data(32, n=4))
    x = _faces(32) * 2 - 1
    y = x.flip(-1)
    fx, fy = method.vgg((x + 1) / 2)[:2], method.vgg((y + 1) / 2)[:2]
    expected = lpips_distance(fy, fx) if distance == "lpips" else perceptual_loss(fy, fx)
    assert method.self_regularization(x, y).item() == pytest.approx(expected.item(), rel=1e-6)
    assert method.self_regularization(x, x).item() == pytest.approx(0.0, abs=1e-6)


def test_generator_and_critic_terms_by_hand(make_context, make_train_data):
    method = SelfRegMethod(make_context(SelfRegMethod, 32, **TINY))
    method.setup_training(make_train_data(32, n=4))
    method.D = _ConstantCritic(0.25)
    x = _faces(32) * 2 - 1
    keep = torch.ones(2, 1, 32, 32)
    keep[0, :, :, :16] = 0  # A = 1 on the left half of image 0
    out = GeneratorOutput(x, x, keep)  # final = x: a no-op output
    terms = method.generator_losses(x, out)
    assert terms["adv"].item() == pytest.approx((0.25 - 1) ** 2)  # LSGAN, real target 1
    assert terms["reg"].item() == pytest.approx(0.0, abs=1e-6)
    assert terms["attention"].item() == pytest.approx(0.25)  # half of one of two maps
    # TV of A: one vertical edge of 32 rows in image 0 -> 32 unit steps / (2*1*32*31) horizontal diffs
    assert terms["attention_tv"].item() == pytest.approx(32 / (2 * 32 * 31))
    # critic: 0.5 * ((0.25-1)^2 + 0.25^2)
    assert method.critic_loss(x, x).item() == pytest.approx(0.5 * (0.75**2 + 0.25**2))
    vanilla = SelfRegMethod(make_context(SelfRegMethod, 32, gan_mode="vanilla", **TINY))
    vanilla.D = _ConstantCritic(0.0)
    assert vanilla.critic_loss(x, x).item() == pytest.approx(torch.log(torch.tensor(2.0)).item())


class _ConstantCritic(nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, x):
        return torch.full((len(x), 1, 2, 2), self.value)


def test_learning_rate_schedule():
    assert linear_decay(0, 100, 2e-4, 0.5) == linear_decay(50, 100, 2e-4, 0.5) == 2e-4
    assert linear_decay(75, 100, 2e-4, 0.5) == pytest.approx(1e-4)
    assert linear_decay(100, 100, 2e-4, 0.5) == 0.0
    assert linear_decay(99, 100, 2e-4, 1.0) == 2e-4


class _UnpairedOnly:
    """Training data that serves one fixed unpaired batch and refuses anything that would pair or mask."""

    def __init__(self, data, batch_size: int) -> None:
        self.batch = data.unpaired(batch_size, 0.5)
        self.calls = 0

    def unpaired(self, batch_size, natural_share):
        self.calls += 1
        return self.batch

    def __getattr__(self, name):
        raise AssertionError(f"selfreg must train on unpaired batches only, it asked for {name}")


def test_training_on_a_fixed_batch_lowers_the_losses(make_context, make_train_data):
    """Deterministic: the networks are initialised from the context's seed and the batch is fixed (ratios 0.61
    and 0.14 after 10 steps)."""
    ctx = make_context(SelfRegMethod, 32, total_steps=100, width=8, res_blocks=1, d_width=8, batch_size=4, lr=1e-3)
    method = SelfRegMethod(ctx)
    data = _UnpairedOnly(make_train_data(32, n=8), 4)
    method.setup_training(data)
    x, real = data.batch.occluded * 2 - 1, data.batch.clean * 2 - 1

    def losses() -> tuple[float, float]:
        method.G.eval()
        with torch.no_grad():
            out = method.G(x)
            return method.self_regularization(x, out.final).item(), method.critic_loss(real, out.final).item()

    reg0, critic0 = losses()
    steps = [method.train_step(s) for s in range(10)]
    assert all(torch.isfinite(torch.tensor(list(s.values()))).all() for s in steps)
    reg1, critic1 = losses()
    assert data.calls == 10
    assert reg1 < 0.8 * reg0  # the output moves towards its input (A -> 0 or T(x) -> x)
    assert critic1 < 0.5 * critic0  # the critic learns to tell the clean faces from the outputs


def test_checkpoint_round_trip_gives_identical_restore(make_context, make_train_data):
    ctx = make_context(SelfRegMethod, 32, pool_size=3, **TINY)
    method = SelfRegMethod(ctx)
    method.setup_training(make_train_data(32, n=8))
    for s in range(2):
        method.train_step(s)
    buffer = io.BytesIO()
    torch.save(method.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    clone = SelfRegMethod(make_context(SelfRegMethod, 32, pool_size=3, **TINY))
    clone.setup_training(make_train_data(32, n=8))
    clone.load_state_dict(state)
    images = _faces(32)
    a, b = method.restore(images, None), clone.restore(images, None)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    assert same_state(method.state_dict(), clone.state_dict())
    assert len(clone.pool.images) == 3
    fresh = SelfRegMethod(make_context(SelfRegMethod, 32, pool_size=3, **TINY))
    fresh.load_state_dict(state)  # networks load before training is set up (evaluation from the cache)
    assert torch.equal(fresh.restore(images, None).images, a.images)


def test_killed_and_resumed_training_is_bit_identical(make_context, make_train_data, tmp_path):
    """Killed after step 2 of 4: the image pool (full, so it swaps at random), both Adam states and the lr decay
    over the second half all resume exactly."""
    options = dict(TINY, pool_size=2)
    method = check_bit_exact_resume(
        SelfRegMethod, options, 4, 2, tmp_path, make_context, lambda: make_train_data(32, 8)
    )
    assert method.opt_g.param_groups[0]["lr"] == pytest.approx(linear_decay(3, 4, method.cfg.lr, 0.5))


def test_quick_and_paper_profiles(make_context):
    quick = make_context(SelfRegMethod, 64, profile="quick").config
    paper = make_context(SelfRegMethod, 128, profile="paper").config
    assert (paper.width, paper.res_blocks, paper.d_width, paper.batch_size) == (64, 6, 64, 4)
    assert (paper.lr, paper.lambda_reg, paper.lambda_attention, paper.lambda_attention_tv) == (2e-4, 1.0, 0.0, 0.0)
    assert (paper.gan_mode, paper.pool_size, paper.reg_layers, paper.branches) == ("lsgan", 50, 3, "shared")
    for key, value in baselines.selfreg.SelfRegOptions.profiles["quick"].items():
        assert getattr(quick, key) == value
    assert quick.width < paper.width and quick.lambda_attention > 0
    assert SelfRegMethod.steps_for("quick") == 300 and SelfRegMethod.steps_for("paper") == 100_000
    assert SelfRegMethod(make_context(SelfRegMethod, 64, profile="quick")).total_steps == 300


def test_options_refuse_bad_values(make_context):
    bad = [
        {"width": 0},
        {"branches": "three"},
        {"gan_mode": "wgangp"},
        {"reg_layers": 4},
        {"reg_distance": "l2"},
        {"natural_share": 1.5},
        {"beta1": 1.0},
        {"lambda_reg": -1},
        {"pool_size": -1},
    ]
    for options in bad:
        with pytest.raises(OptionError, match=next(iter(options))):
            make_context(SelfRegMethod, 32, **options)
    with pytest.raises(OptionError, match="did you mean lambda_reg"):
        make_context(SelfRegMethod, 32, lambda_regs=1)
    assert make_context(SelfRegMethod, 32, reg_layers="2", branches="separate").config.reg_layers == 2


def test_plugin_registers_without_importing_torch():
    code = (
        "import sys, plugins.selfreg as p; specs = []; p.register_methods(specs.append); s = specs[0]; "
        "assert 'torch' not in sys.modules; "
        "assert (s.name, s.predicts_mask, s.needs_mask) == ('selfreg', True, False); "
        "print(s.factory)"
    )
    factory = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    module, _, attr = factory.strip().partition(":")
    assert getattr(importlib.import_module(module), attr) is SelfRegMethod
