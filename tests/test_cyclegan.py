"""CycleGAN: the ResNet generator, each loss term by hand, the schedule, unpaired training, checkpoints, resume."""

import importlib
import io
import subprocess
import sys

import pytest
import torch
from torch import nn

from baselines.cyclegan import CycleGANMethod, ResnetBlock, ResnetGenerator
from bench.options import OptionError
from tests.util import check_bit_exact_resume, same_state


class _Affine(nn.Module):
    """A stand-in network x -> scale * x + shift, so the loss terms have values one can work out by hand."""

    def __init__(self, scale: float, shift: float) -> None:
        super().__init__()
        self.scale, self.shift = scale, shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x + self.shift


class _FirstChannel(nn.Module):
    """A stand-in critic whose patch scores are the image's first channel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1]


def _faces(size: int, n: int = 2) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(n, 3, size, size)


@pytest.mark.parametrize("size, blocks", [(64, 6), (128, 6), (256, 9)])
def test_generator_depth_follows_the_authors_and_restore_shapes(make_context, size, blocks):
    method = CycleGANMethod(make_context(CycleGANMethod, size, profile="paper", ngf=4, ndf=4))
    assert method.n_blocks == blocks == sum(isinstance(m, ResnetBlock) for m in method.G_A.modules())
    if size == 256:
        return  # the depth is what differs; 256 px restores cost seconds on this CPU
    images = _faces(size)
    out = method.restore(images, None)
    assert out.images.shape == (2, 3, size, size) and out.masks is None
    assert 0 <= out.images.min() and out.images.max() <= 1
    assert torch.equal(method.restore(images, torch.ones(2, 1, size, size)).images, out.images)  # mask ignored
    swapped = method.restore(images[[1, 0]], None).images  # InstanceNorm, no running statistics: per face
    assert torch.allclose(swapped, out.images[[1, 0]], atol=1e-6)


def test_generator_layers_are_cyclegans():
    g = ResnetGenerator(ngf=4, n_blocks=2)
    convs = [m for m in g.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == [
        (3, 4, 7, 1),
        (4, 8, 3, 2),
        (8, 16, 3, 2),
        *[(16, 16, 3, 1)] * 4,
        (16, 8, 3, 2),  # transposed
        (8, 4, 3, 2),  # transposed
        (4, 3, 7, 1),
    ]
    assert all(c.bias is not None for c in convs)
    assert sum(isinstance(m, nn.ReflectionPad2d) for m in g.modules()) == 2 + 2 * 2
    norms = [m for m in g.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert norms and not any(n.affine or n.track_running_stats for n in norms)
    assert not any(isinstance(m, nn.Dropout) for m in g.modules())
    assert isinstance(g.model[-1], nn.Tanh)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    block = ResnetBlock(3)
    with torch.no_grad():
        for m in block.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.zero_()
                m.bias.zero_()
    assert torch.equal(block(x), x)  # residual: a zero body is the identity


def test_batch_norm_variant_drops_the_conv_biases():
    g = ResnetGenerator(ngf=4, n_blocks=1, norm="batch")
    convs = [m for m in g.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert [c.bias is not None for c in convs] == [False] * (len(convs) - 1) + [True]  # the output conv keeps its
    assert sum(isinstance(m, nn.BatchNorm2d) for m in g.modules()) == 1 + 2 + 2 + 2
    assert not any(isinstance(m, nn.InstanceNorm2d) for m in g.modules())


def test_init_is_normal_002(make_context):
    method = CycleGANMethod(make_context(CycleGANMethod, 64, profile="paper", ngf=16, ndf=16))
    weights = torch.cat([m.weight.flatten() for m in method.G_A.modules() if isinstance(m, nn.Conv2d)])
    assert weights.std().item() == pytest.approx(0.02, rel=0.05) and abs(weights.mean().item()) < 1e-3
    biases = [m.bias for net in (method.G_B, method.D_A) for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert all(torch.all(b == 0) for b in biases)


def test_each_loss_term_by_hand(make_context):
    """G_A(x) = x / 2, G_B(x) = x + 0.1, critics score the first channel; a = 0.4, b = -0.2 everywhere:
    fake_b = 0.2, rec_a = 0.3, fake_a = -0.1, rec_b = -0.05, G_A(b) = -0.1, G_B(a) = 0.5."""
    method = CycleGANMethod(make_context(CycleGANMethod, 32, ngf=4, ndf=4, lambda_a=10.0, lambda_b=4.0))
    method.G_A, method.G_B = _Affine(0.5, 0.0), _Affine(1.0, 0.1)
    method.D_A = method.D_B = _FirstChannel()
    a, b = torch.full((2, 3, 32, 32), 0.4), torch.full((2, 3, 32, 32), -0.2)
    terms, fake_b, fake_a = method.generator_losses(a, b)
    expected = {
        "g_a": (0.2 - 1) ** 2,  # LSGAN: D_A(G_A(a)) towards 1
        "g_b": (-0.1 - 1) ** 2,
        "cycle_a": abs(0.3 - 0.4),  # L1(G_B(G_A(a)), a)
        "cycle_b": abs(-0.05 + 0.2),  # L1(G_A(G_B(b)), b)
        "idt_a": abs(-0.1 + 0.2),  # L1(G_A(b), b)
        "idt_b": abs(0.5 - 0.4),  # L1(G_B(a), a)
    }
    assert terms.keys() == expected.keys()
    for key, value in expected.items():
        assert terms[key].item() == pytest.approx(value), key
    assert torch.allclose(fake_b, torch.full_like(a, 0.2)) and torch.allclose(fake_a, torch.full_like(a, -0.1))
    # lambda_A weighs the A cycle and G_B's identity term (it compares with a); lambda_B the other two; x0.5 each
    assert method.weights() == {"g_a": 1, "g_b": 1, "cycle_a": 10, "cycle_b": 4, "idt_a": 4 * 0.5, "idt_b": 10 * 0.5}
    # critic: 0.5 * ((D(real) - 1)^2 + D(fake)^2) = 0.5 * ((-0.2 - 1)^2 + 0.2^2)
    assert method.critic_loss(method.D_A, b, fake_b).item() == pytest.approx(0.5 * (1.44 + 0.04))
    method_no_idt = CycleGANMethod(make_context(CycleGANMethod, 32, ngf=4, ndf=4, lambda_identity=0))
    assert "idt_a" not in method_no_idt.generator_losses(a, b)[0]  # no identity forward passes at all


def test_lr_is_constant_then_linear_as_the_official_rule(make_context):
    method = CycleGANMethod(make_context(CycleGANMethod, 32, total_steps=10, ngf=4, ndf=4))
    factors = [method.lr_factor(s) for s in range(10)]
    # n = 5 constant steps, then 1 - k / 6 for k = 1..5 (official lambda_rule with n_epochs_decay + 1 = 6)
    assert factors == pytest.approx([1.0] * 5 + [1 - k / 6 for k in range(1, 6)])
    late = CycleGANMethod(make_context(CycleGANMethod, 32, total_steps=10, ngf=4, ndf=4, decay_start=1.0))
    assert [late.lr_factor(s) for s in range(10)] == [1.0] * 10


def test_training_is_unpaired_and_follows_the_official_order(make_context, make_train_data, monkeypatch):
    ctx = make_context(CycleGANMethod, 32, ngf=4, ndf=4, n_blocks=1, batch_size=2, pool_size=3)
    method = CycleGANMethod(ctx)
    data = make_train_data(32, n=8)
    calls = []
    original = data.unpaired
    monkeypatch.setattr(data, "unpaired", lambda n, share: calls.append((n, share)) or original(n, share))
    monkeypatch.setattr(data, "paired", lambda n: pytest.fail("cyclegan must not read paired batches"))
    method.setup_training(data)
    d_before = [p.detach().clone() for p in method.D_A.parameters()]
    losses = method.train_step(0)
    assert calls == [(2, 0.5)]
    assert set(losses) == {"g_total", "g_a", "g_b", "cycle_a", "cycle_b", "idt_a", "idt_b", "d_a", "d_b"}
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    assert len(method.pool_A.images) == len(method.pool_B.images) == 2  # G's fakes went through the pools
    assert any(not torch.equal(p, q) for p, q in zip(method.D_A.parameters(), d_before, strict=True))
    assert all(p.requires_grad for p in method.D_A.parameters())  # critics thawed after the G step


def test_a_few_steps_on_a_fixed_batch_lower_the_losses(make_context, make_train_data):
    torch.manual_seed(0)
    ctx = make_context(CycleGANMethod, 32, ngf=8, ndf=8, n_blocks=1, batch_size=2, lr=1e-3, flip=False)
    method = CycleGANMethod(ctx)
    method.setup_training(make_train_data(32, n=8))
    a, b = method._batch()
    method._batch = lambda: (a, b)

    def totals() -> tuple[float, float]:
        with torch.no_grad():
            terms, fake_b, fake_a = method.generator_losses(a, b)
            reconstruction = sum(method.weights()[k] * v for k, v in terms.items() if k[:3] in ("cyc", "idt"))
            critic = method.critic_loss(method.D_A, b, fake_b) + method.critic_loss(method.D_B, a, fake_a)
        return reconstruction.item(), critic.item()

    rec0, critic0 = totals()
    for step in range(25):
        method.train_step(step)
    rec1, critic1 = totals()
    assert rec1 < 0.75 * rec0 and critic1 < 0.6 * critic0  # 0.56-0.65 and 0.09-0.35 over seeds 0-3


def test_checkpoint_round_trip_restores_identically(make_context, make_train_data):
    ctx = make_context(CycleGANMethod, 32, ngf=4, ndf=4, n_blocks=1, batch_size=2, pool_size=3)
    method = CycleGANMethod(ctx)
    method.setup_training(make_train_data(32, n=8))
    for step in range(2):
        method.train_step(step)
    buffer = io.BytesIO()
    torch.save(method.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert {"G_A", "G_B", "D_A", "D_B", "opt_g", "opt_d", "pool_A", "pool_B"} <= state.keys()
    clone = CycleGANMethod(ctx)
    clone.setup_training(make_train_data(32, n=8))
    clone.load_state_dict(state)
    images = _faces(32)
    assert torch.equal(clone.restore(images, None).images, method.restore(images, None).images)
    assert same_state(clone.state_dict(), method.state_dict())
    evaluator = CycleGANMethod(ctx)  # evaluation only: no optimisers or pools, the networks load alone
    evaluator.load_state_dict(state)
    assert torch.equal(evaluator.restore(images, None).images, method.restore(images, None).images)


def test_killed_and_resumed_training_is_bit_identical(make_context, make_train_data, tmp_path):
    """Killed after step 3 of 5: the pools (full after 2 steps of 2 into 3 slots) and the lr decay carry on."""
    options = dict(ngf=4, ndf=4, n_blocks=1, batch_size=2, pool_size=3)
    method = check_bit_exact_resume(
        CycleGANMethod, options, 5, 3, tmp_path, make_context, lambda: make_train_data(32, 8)
    )
    assert len(method.pool_A.images) == 3
    assert method.opt_g.param_groups[0]["lr"] == pytest.approx(method.cfg.lr * method.lr_factor(4))


def test_quick_profile_overrides_and_paper_defaults(make_context):
    quick = make_context(CycleGANMethod, 64, profile="quick").config
    paper = make_context(CycleGANMethod, 64, profile="paper").config
    assert (paper.ngf, paper.ndf, paper.n_blocks, paper.batch_size) == (64, 64, None, 1)
    assert (paper.lr, paper.beta1, paper.lambda_a, paper.lambda_b, paper.lambda_identity) == (2e-4, 0.5, 10, 10, 0.5)
    assert (paper.pool_size, paper.gan_mode, paper.decay_start, paper.n_layers_d) == (50, "lsgan", 0.5, 3)
    assert quick.ngf < paper.ngf and quick.ndf < paper.ndf and quick.n_blocks < 6
    assert quick.n_layers_d == 3 and quick.pool_size == 50  # not profiled
    assert (CycleGANMethod.steps_for("quick"), CycleGANMethod.steps_for("paper")) == (300, 100_000)


def test_options_are_cast_and_checked(make_context):
    method = CycleGANMethod(make_context(CycleGANMethod, 32, ngf="4", ndf="4", n_blocks="2", flip="no"))
    assert method.n_blocks == 2 and method.cfg.flip is False
    bad_values = (
        {"ngf": 0},
        {"n_blocks": -1},
        {"beta1": 1.0},
        {"decay_start": 1.5},
        {"lambda_identity": -1},
        {"pool_size": -1},
        {"natural_share": 2},
        {"gan_mode": "wgangp"},
    )
    for bad in bad_values:
        with pytest.raises(OptionError, match=next(iter(bad))):
            make_context(CycleGANMethod, 32, **bad)
    with pytest.raises(OptionError, match="did you mean lambda_a"):
        make_context(CycleGANMethod, 32, lambda_aa=1)
    with pytest.raises(ValueError, match="divisible by 4"):
        CycleGANMethod(make_context(CycleGANMethod, 30, ngf=4, ndf=4))


def test_plugin_registers_without_importing_torch():
    code = (
        "import sys, plugins.cyclegan as p; specs = []; p.register_methods(specs.append); s = specs[0]; "
        "assert 'torch' not in sys.modules; "
        "assert (s.name, s.needs_mask, s.predicts_mask) == ('cyclegan', False, False); "
        "print(s.factory)"
    )
    factory = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    module, _, attr = factory.strip().partition(":")
    assert getattr(importlib.import_module(module), attr) is CycleGANMethod
