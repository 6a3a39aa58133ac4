"""The run-level speed paths (bench.acceleration): what they change, what they must not, and that they are recorded."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bench.acceleration import Acceleration, autocast
from bench.nn.losses import gradient_penalty


def _restore(method, size: int = 32, precision: str = "fp32") -> torch.Tensor:
    x = torch.rand(4, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), autocast(torch.device("cpu"), precision):
        return method.restore(x, None).images.float()


def _oagan(make_context, **options):
    from oagan.method import OAGANMethod

    torch.manual_seed(0)
    return OAGANMethod(make_context(OAGANMethod, **options))


def test_channels_last_converts_every_network_and_keeps_the_outputs(make_context):
    method = _oagan(make_context)
    eager = _restore(method)
    Acceleration(channels_last=True).prepare(method)
    nets = Acceleration.networks(method)
    assert nets
    for net in nets:
        for p in net.parameters():
            if p.dim() == 4:
                assert p.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(_restore(method), eager, atol=1e-5, rtol=0)  # other kernels, same maths


@pytest.mark.slow
def test_compiled_inference_equals_eager(make_context):
    from baselines.gfc import GFCMethod

    torch.manual_seed(0)
    method = GFCMethod(make_context(GFCMethod))
    x = torch.rand(4, 3, 32, 32)
    m = torch.zeros(4, 1, 32, 32)
    m[..., 8:20, 8:20] = 1
    with torch.no_grad():
        eager = method.restore(x, m).images
        Acceleration(channels_last=True, compile=True).for_inference(method)
        compiled = method.restore(x, m).images
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=0)


def test_the_gradient_penalty_is_float32_under_bf16_autocast():
    critic = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.LeakyReLU(0.2), torch.nn.Conv2d(8, 1, 3))
    real, fake = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    plain = gradient_penalty(critic, real, fake)
    torch.manual_seed(1)
    with autocast(torch.device("cpu"), "bf16"):
        assert critic(real).dtype == torch.bfloat16  # autocast is on around it
        torch.manual_seed(1)
        gp = gradient_penalty(critic, real.bfloat16(), fake.bfloat16())
    assert gp.dtype == torch.float32
    torch.manual_seed(1)
    exact = gradient_penalty(critic, real.bfloat16().float(), fake.bfloat16().float())
    assert gp.item() == pytest.approx(exact.item(), rel=1e-6)  # the same float32 computation
    assert plain.dtype == torch.float32


def test_bf16_training_steps_stay_finite(make_context, make_train_data, fixed_paired):
    """OA-GAN's WGAN-GP step under autocast (narrow: bf16 matmuls are slow on CPUs without AMX)."""
    method = _oagan(make_context, width=8, d_width=8, batch_size=2)
    method.setup_training(fixed_paired(make_train_data(), method.ctx.config.batch_size))
    losses = []
    for step in range(2):
        with autocast(torch.device("cpu"), "bf16"):
            losses.append(method.train_step(step))
    assert all(np.isfinite(v) for row in losses for v in row.values())
    assert _restore(method, precision="bf16").dtype == torch.float32


def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="--precision must be one of fp32, bf16, got 'fp16'"):
        Acceleration(precision="fp16")


@pytest.mark.slow
def test_acceleration_is_recorded_and_keys_the_checkpoint_cache(tiny_plugin, bench_main, tmp_path):
    args = ["run", "--methods", "tinyfill", "--mask-source", "gt", "--limit", "4", "--data-limit", "40"]
    args += ["--steps", "3", "--device", "cpu", "--output", str(tmp_path)]
    keys = {}
    for extra in (["--no-channels-last"], []):  # channels-last is the default
        code, _, err = bench_main(*args, *extra)
        assert code == 0, err[-2000:]
        (path,) = sorted(tmp_path.glob("runs/*/manifest.json"), key=lambda p: p.stat().st_mtime)[-1:]
        manifest = json.loads(path.read_text())
        assert manifest["config"]["channels_last"] is not extra
        assert manifest["config"]["precision"] == "fp32" and manifest["config"]["compile"] is False
        training = manifest["training"]["tinyfill"]
        assert training["cached"] is False  # the channels-last model is not served the contiguous one's checkpoint
        keys[not extra] = training["cache_key"]
    assert keys[True] != keys[False]


def test_a_method_that_differentiates_through_its_network_at_restore_stays_eager(make_context):
    """Yeh et al.'s latent search calls autograd.grad through the generator, which compiled graphs refuse."""
    from baselines.yeh import YehMethod

    method = YehMethod(make_context(YehMethod))
    assert Acceleration(compile=True).for_inference(method) is False
    assert all(getattr(net, "_compiled_call_impl", None) is None for net in Acceleration.networks(method))
