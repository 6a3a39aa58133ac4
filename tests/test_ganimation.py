"""GANimation: shapes, the condition, each loss term by hand, the schedule, training, checkpoints, options."""

import importlib
import io
import subprocess
import sys

import pytest
import torch

from baselines.ganimation import GANimationMethod, attention_terms, condition_mse, saturate
from bench.nn.critic import CriticOutput
from bench.options import OptionError
from tests.util import check_bit_exact_resume

TINY = dict(width=4, d_width=4, res_blocks=1, batch_size=2)


def _method(make_context, size=32, total_steps=None, **options):
    return GANimationMethod(make_context(GANimationMethod, size, total_steps=total_steps, **{**TINY, **options}))


def _fixed_unpaired(data, batch_size):
    """Pins ``data.unpaired`` to one batch (the unpaired analogue of the ``fixed_paired`` fixture)."""
    batch = data.unpaired(batch_size, 0.5)
    data.unpaired = lambda n, share=0.5: batch
    return data


@pytest.mark.parametrize("size, critic_layers", [(64, 5), (128, 6)])
def test_shapes_and_restore_at_64_and_128(make_context, size, critic_layers):
    method = _method(make_context, size)
    assert method.cond_dim == 11  # occluded flag + the 10 attributes
    assert method.G.trunk.encoder[0][0].in_channels == 3 + 11
    assert len(method.D.features) == 2 * critic_layers  # conv + LeakyReLU(0.01) per layer, no norm
    assert all(m.negative_slope == 0.01 for m in method.D.features[1::2])
    adv, cond = method.D(torch.zeros(2, 3, size, size))
    assert adv.shape == (2, 1, 2, 2) and cond.shape == (2, 11)  # a 2x2 patch map at any size, as at 128 px
    images = torch.rand(2, 3, size, size)
    out = method.restore(images, torch.ones(2, 1, size, size))
    assert out.images.shape == (2, 3, size, size) and out.masks.shape == (2, 1, size, size)
    assert 0 <= out.images.min() and out.images.max() <= 1 and 0 <= out.masks.min() and out.masks.max() <= 1
    assert torch.equal(method.restore(images, None).images, out.images)  # the mask is ignored
    swapped = method.restore(images[[1, 0]], None)  # per face: no batch statistics anywhere
    assert torch.allclose(swapped.images, out.images[[1, 0]], atol=1e-6)
    assert torch.allclose(swapped.masks, out.masks[[1, 0]], atol=1e-6)


def test_restore_composites_with_the_attention_and_asks_for_flag_0(make_context):
    method = _method(make_context)
    images = torch.rand(3, 3, 32, 32)
    x = images * 2 - 1
    cond = method.test_condition(x)
    raw = method.D(x).attr
    assert torch.equal(cond[:, 0], torch.zeros(3)) and torch.equal(cond[:, 1:], raw[:, 1:].clamp(0, 1))
    out = method.restore(images, None)
    gen = method.G(x, cond)
    keep = gen.keep
    assert torch.allclose(out.masks, 1 - keep)
    expected = ((keep * x + (1 - keep) * gen.synth + 1) / 2).clamp(0, 1)  # A * x + (1 - A) * C, A = 1 keeps x
    assert torch.allclose(out.images, expected, atol=1e-6)


def test_conditions_flip_the_flag_and_keep_the_attributes(make_context, make_train_data):
    method = _method(make_context, batch_size=3)
    data = make_train_data(32, 16)
    method.setup_training(data)
    batch = data.unpaired(3, 0.5)
    data.unpaired = lambda n, share: batch
    x, real, target = method.batch()
    assert x.shape == (6, 3, 32, 32) and -1 <= x.min() and x.max() <= 1
    assert torch.equal(x[:3], batch.occluded * 2 - 1) and torch.equal(x[3:], batch.clean * 2 - 1)
    assert real[:, 0].tolist() == [1, 1, 1, 0, 0, 0]  # 1 = occluded (domain A), 0 = clean (domain B)
    attrs = torch.cat([batch.occluded_attributes, batch.clean_attributes])
    assert torch.equal(real[:, 1:], attrs)
    assert torch.all((target - (1 - real[:, :1])).abs()[:, 0] <= 0.1)  # flipped flag, official U(-0.1, 0.1) noise
    assert torch.all((target[:, 1:] - attrs).abs() <= 0.1) and not torch.equal(target[:, 1:], attrs)
    flag_only = _method(make_context, batch_size=3, condition="flag", cond_noise=0.0)
    flag_only.setup_training(data)
    _, real, target = flag_only.batch()
    assert flag_only.cond_dim == 1 and real.shape == (6, 1) and torch.equal(target, 1 - real)


def test_condition_and_attention_terms_by_hand():
    pred = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    target = torch.tensor([[0.0, 0.0], [0.5, 1.5]])
    assert condition_mse(pred, target).item() == pytest.approx((1 + 0 + 0 + 1) / 4 / 2)  # element mean / B
    a = torch.tensor([[[[0.0, 1.0], [1.0, 1.0]]]])  # mean 3/4; |dx| sum 1, |dy| sum 1
    b = torch.full((1, 1, 2, 2), 0.5)  # mean 1/2, TV 0
    mask, smooth = attention_terms((a, b))
    assert mask.item() == pytest.approx(0.75 + 0.5) and smooth.item() == pytest.approx(2.0)


def test_saturated_attention_is_blended_as_the_official_option(make_context):
    a = torch.tensor([0.0, 0.5, 0.9, 1.0])
    expected = [
        0.5 - 0.55 * torch.tanh(torch.tensor(1.5)).item(),  # 0.0022: within [0, 1] the clamp never acts
        0.5,
        0.55 * torch.tanh(torch.tensor(1.2)).item() + 0.5,
        0.55 * torch.tanh(torch.tensor(1.5)).item() + 0.5,
    ]
    assert saturate(a).tolist() == pytest.approx(expected, abs=1e-6)
    method = _method(make_context, saturate_mask=True)
    x, cond = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 11)
    raw, out = method.G(x, cond), method.generate(x, cond)
    keep = saturate(raw.keep)
    assert torch.equal(out.keep, keep) and torch.allclose(out.final, keep * x + (1 - keep) * raw.synth)
    assert torch.allclose(
        method.restore((x + 1) / 2, None).masks, 1 - method.generate(x, method.test_condition(x)).keep
    )


class _StubCritic(torch.nn.Module):
    """Patch map = the per-image channel mean on a 2x2 grid; condition = the first pixels."""

    def forward(self, x):
        return CriticOutput(x.mean(1, keepdim=True)[:, :, :2, :2], x.flatten(1)[:, :2])


def test_critic_terms_by_hand(make_context):
    method = _method(make_context)
    method.D = _StubCritic()
    x = torch.zeros(2, 3, 4, 4)
    x[0, :, 0, 0] = 1.0  # patch map of x: [[1, 0], [0, 0]] and zeros; mean 1/8
    fake = torch.full((2, 3, 4, 4), 0.5)  # patch map all 0.5
    real = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    terms = method.critic_losses(x, real, fake)
    assert terms["adv"].item() == pytest.approx(0.5 - 1 / 8)  # -mean D(real) + mean D(fake)
    # condition of x: rows (1, 0) and (0, 0) against (1, 0), (0, 1): squared errors 0, 0, 0, 1
    assert terms["cond"].item() == pytest.approx(1 / 4 / 2)


def test_generator_terms_and_weights_by_hand(make_context, make_train_data):
    method = _method(make_context, profile="paper", lambda_idt=2.0)
    data = make_train_data(32, 8)
    method.setup_training(data)
    x, real, target = method.batch()
    out = method.G(x, target)
    terms = method.generator_losses(x, real, target, out)
    adv, cond = method.D(out.final)
    rec = method.G(out.final, real)
    assert terms["adv"].item() == pytest.approx(-adv.mean().item())
    assert terms["cond"].item() == pytest.approx(((cond - target) ** 2).sum().item() / cond.numel() / len(x))
    assert terms["cyc"].item() == pytest.approx((rec.final - x).abs().mean().item())
    assert terms["mask"].item() == pytest.approx(out.keep.mean().item() + rec.keep.mean().item())
    tv = sum(
        (a[..., :, 1:] - a[..., :, :-1]).abs().sum().item() + (a[..., 1:, :] - a[..., :-1, :]).abs().sum().item()
        for a in (out.keep, rec.keep)
    )
    assert terms["smooth"].item() == pytest.approx(tv, rel=1e-5)
    clean = x[2:]  # batch_size 2: two occluded faces, then two clean ones asked for their own condition
    assert terms["idt"].item() == pytest.approx((method.G(clean, real[2:]).final - clean).abs().mean().item())
    # the official weights: adv 1, cond 4000, cycle 10, mask 0.1, smoothness 1e-5 (+ the identity option)
    w = dict(adv=1, cond=4000, cyc=10, mask=0.1, smooth=1e-5, idt=2.0)
    assert method.weights() == pytest.approx(w)
    losses = method.generator_step(x, real, target, method.G(x, target))
    total = sum(w[k] * losses[f"g_{k}"] for k in w)
    assert losses["g_total"] == pytest.approx(total, rel=1e-5)


def test_generator_every_fifth_step_gp_in_its_own_step_and_lr_decay(make_context, make_train_data):
    method = _method(make_context, total_steps=30, profile="paper", batch_size=2)
    method.setup_training(make_train_data(32, 8))
    assert method.cfg.n_critic == 5 and method.cfg.lr == 1e-4
    updated = []
    for step in range(10):
        before = method.G.colour_head[0].weight.clone()
        losses = method.train_step(step)
        updated.append(not torch.equal(before, method.G.colour_head[0].weight))
        assert ("g_total" in losses) == updated[-1]
    assert [s for s, u in enumerate(updated) if u] == [4, 9]  # official: (i + 1) % 5 == 0
    adam = method.opt_d.state[method.D.adv_head.weight]
    assert adam["step"].item() == 20  # two critic Adam steps per iteration: the loss, then the GP
    lrs = [method.learning_rate(s) for s in (0, 19, 20, 25, 29)]
    assert lrs == pytest.approx([1e-4, 1e-4, 1e-4, 1e-4 * 5 / 10, 1e-4 * 1 / 10])  # 20 steps flat, then linear


def test_training_lowers_the_supervised_losses_on_a_fixed_batch(make_context, make_train_data):
    """On one fixed batch the terms with a fixed target fall: the critic's condition regression of real faces
    and the generator's cycle and identity reconstructions."""
    torch.manual_seed(0)
    method = _method(make_context, width=8, d_width=8, n_critic=1, lr=2e-3, cond_noise=0.0, lambda_idt=10.0)
    data = _fixed_unpaired(make_train_data(32, 8), 2)
    method.setup_training(data)
    x, real, target = method.batch()

    def measure() -> tuple[float, float]:
        with torch.no_grad():
            d_cond = condition_mse(method.D(x).attr, real).item()
            g = method.generator_losses(x, real, target, method.G(x, target))
        return d_cond, (g["cyc"] + g["idt"]).item()

    method.G.train()
    d0, g0 = measure()
    losses = [method.train_step(s) for s in range(20)]
    assert all(torch.isfinite(torch.tensor(list(v.values()))).all() for v in losses)
    d1, g1 = measure()
    assert d1 < 0.6 * d0 and g1 < 0.9 * g0  # ~0.2-0.4 and 0.4-0.8 over seeds 0-3


def test_checkpoint_round_trip(make_context, make_train_data):
    ctx = make_context(GANimationMethod, 32, **TINY, n_critic=1)
    method = GANimationMethod(ctx)
    method.setup_training(make_train_data(32, 8))
    for step in range(2):
        method.train_step(step)
    buffer = io.BytesIO()
    torch.save(method.state_dict(), buffer)
    buffer.seek(0)
    clone = GANimationMethod(ctx)
    clone.setup_training(make_train_data(32, 8))
    clone.load_state_dict(torch.load(buffer, weights_only=True))
    images = torch.rand(2, 3, 32, 32)
    a, b = method.restore(images, None), clone.restore(images, None)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    sa, sb = method.opt_d.state_dict(), clone.opt_d.state_dict()
    assert all(torch.equal(sa["state"][k]["exp_avg"], sb["state"][k]["exp_avg"]) for k in sa["state"])


def test_killed_and_resumed_training_is_bit_identical(make_context, make_train_data, tmp_path):
    """Killed after 3 of 4 steps (G steps at 1 and 3), inside the lr decay; the noise and the GP's alphas come from
    the global generator the harness saves."""
    options = {**TINY, "n_critic": 2, "lr_decay_start": 0.5}
    method = check_bit_exact_resume(
        GANimationMethod, options, 4, 3, tmp_path, make_context, lambda: make_train_data(32, 8)
    )
    assert method.opt_g.param_groups[0]["lr"] == pytest.approx(method.learning_rate(3))


def test_options_are_checked_and_profiles_override(make_context):
    for bad in ({"width": 0}, {"n_critic": 0}, {"lambda_cond": -1}, {"beta1": 1.0}, {"natural_share": 1.5}):
        with pytest.raises(OptionError, match=next(iter(bad))):
            make_context(GANimationMethod, 32, **bad)
    with pytest.raises(OptionError, match="condition must be one of"):
        make_context(GANimationMethod, 32, condition="attributes")
    with pytest.raises(OptionError, match="did you mean lambda_cyc"):
        make_context(GANimationMethod, 32, lambda_cycle=10)
    quick = make_context(GANimationMethod, 64, profile="quick")
    paper = make_context(GANimationMethod, 128, profile="paper")
    p = paper.config
    assert (p.width, p.res_blocks, p.d_width, p.batch_size, p.n_critic, p.lr) == (64, 6, 64, 12, 5, 1e-4)
    assert (p.lambda_cond, p.lambda_cyc, p.lambda_mask, p.lambda_mask_smooth, p.lambda_gp) == (4000, 10, 0.1, 1e-5, 10)
    assert p.lambda_idt == 0 and p.lr_decay_start == pytest.approx(2 / 3) and p.gp_separate_step
    q = quick.config
    assert (q.width, q.d_width, q.n_critic) != (p.width, p.d_width, p.n_critic) and q.lambda_idt > 0
    assert (q.lambda_cond, q.lambda_cyc, q.lambda_gp) == (p.lambda_cond, p.lambda_cyc, p.lambda_gp)  # not profiled
    assert (quick.total_steps, paper.total_steps) == (GANimationMethod.default_steps["quick"], 33_000)


def test_setup_refuses_data_without_the_attributes(make_context, make_train_data):
    ctx = make_context(GANimationMethod, 32, **TINY)
    ctx.attribute_names = ("Male", "Young")
    with pytest.raises(ValueError, match="lacks attributes"):
        GANimationMethod(ctx).setup_training(make_train_data(32, 8))


def test_plugin_registers_without_importing_torch():
    code = (
        "import sys, plugins.ganimation as p; specs = []; p.register_methods(specs.append); s = specs[0]; "
        "assert 'torch' not in sys.modules; "
        "assert (s.name, s.predicts_mask, s.needs_mask) == ('ganimation', True, False); print(s.factory)"
    )
    factory = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    module, _, attr = factory.strip().partition(":")
    assert getattr(importlib.import_module(module), attr) is GANimationMethod
