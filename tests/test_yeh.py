"""Yeh et al.: DCGAN shapes, training steps, context weights, latent search, blending, checkpoints."""

import dataclasses

import pytest
import torch

from baselines.yeh import (
    DCGANDiscriminator,
    DCGANGenerator,
    SearchConfig,
    YehMethod,
    context_weights,
    poisson_blend,
    search_latents,
)
from bench.options import OptionError
from bench.training import load_checkpoint, save_checkpoint
from tests.util import check_bit_exact_resume

TINY = dict(width=4, batch_size=8, iterations=3, candidates=2)


def _holed_batch(size: int, n: int = 2, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, size, size, generator=gen)
    mask = torch.zeros(n, 1, size, size)
    mask[0, :, size // 4 : size // 2, size // 4 : size // 2] = 1
    mask[-1, :, : size // 3, -size // 3 :] = 1  # touches the border
    return images * (1 - mask), mask


@pytest.mark.parametrize("size, levels", [(64, 4), (128, 5)])
def test_dcgan_shapes_follow_the_image_size(size, levels):
    g, d = DCGANGenerator(size, z_dim=100, width=4), DCGANDiscriminator(size, width=4)
    ups = [m for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    downs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(ups) == len(downs) == levels
    assert g.project[0].out_features == 4 * 4 * 8 * 4  # 4x4x(8w)
    x = g(torch.rand(3, 100) * 2 - 1)
    assert x.shape == (3, 3, size, size) and x.abs().max() <= 1
    assert d(x).shape == (3,)
    with pytest.raises(ValueError, match="power-of-two"):
        DCGANGenerator(96)


def test_context_weights_hand_computed():
    hole = torch.zeros(1, 1, 9, 9)
    hole[..., 4, 4] = 1
    paper = context_weights(hole, window=3, weighting="paper")
    expected = torch.zeros(9, 9)
    expected[3:6, 3:6] = 1 / 9
    expected[4, 4] = 0  # the hole itself carries no weight
    assert torch.allclose(paper[0, 0], expected)
    official = context_weights(hole, window=3, weighting="official")
    assert official[0, 0, 0, 0] == 1 and official[0, 0, 4, 4] == 0
    assert official[0, 0, 3, 3] == pytest.approx(8 / 9)
    assert torch.equal(context_weights(hole, 3, "none"), 1 - hole)
    with pytest.raises(ValueError, match="weighting"):
        context_weights(hole, 3, "bogus")


def test_a_few_dcgan_steps_train_d_and_move_g(make_context, make_train_data):
    torch.manual_seed(0)
    method = YehMethod(make_context(YehMethod, 32, **(TINY | {"width": 8})))
    method.setup_training(make_train_data(32, 16))
    before = [p.detach().clone() for p in method.generator.parameters()]
    losses = [method.train_step(i) for i in range(6)]
    assert set(losses[0]) == {"d", "g", "d_real", "d_fake"}
    assert losses[-1]["d"] < losses[0]["d"]  # D learns to tell clean faces from noise images
    assert losses[-1]["d_real"] > losses[0]["d_real"]
    assert all(not torch.equal(a, b) for a, b in zip(before, method.generator.parameters(), strict=True))


def test_latent_search_lowers_the_context_loss():
    torch.manual_seed(0)
    g, d = DCGANGenerator(32, 100, 8), DCGANDiscriminator(32, 8)
    with torch.no_grad():  # calibrate BN running statistics so that G(z) depends on z in eval mode
        for _ in range(30):
            g(torch.rand(16, 100) * 2 - 1)
    g.eval(), d.eval()
    with torch.no_grad():
        target = g(torch.rand(2, 100) * 2 - 1)  # a completion that G can reach exactly
    hole = torch.zeros(2, 1, 32, 32)
    hole[..., 8:20, 10:22] = 1
    cfg = SearchConfig(iterations=40, candidates=2, lr=0.05)
    result = search_latents(g, d, target * (1 - hole), hole, cfg, torch.Generator().manual_seed(0))
    assert result.images.shape == target.shape and result.history.shape == (40,)
    assert result.history[-1] < 0.6 * result.history[0]
    weights = context_weights(hole, cfg.window, cfg.weighting)
    recomputed = (weights * (result.images - target)).abs().sum((1, 2, 3))  # hole pixels carry no weight
    assert torch.allclose(result.context, recomputed, rtol=1e-4)
    assert not any(p.grad is not None for p in g.parameters())  # only z was optimised


@pytest.mark.parametrize("blend", ["alpha", "poisson"])
def test_restore_keeps_known_pixels_exactly(make_context, blend):
    method = YehMethod(make_context(YehMethod, 32, **TINY, blend=blend))
    images, mask = _holed_batch(32)
    with torch.no_grad():
        out = method.restore(images, mask)
    assert out.images.shape == images.shape and out.masks is None
    assert out.images.min() >= 0 and out.images.max() <= 1
    known = mask.expand_as(images) == 0
    assert torch.equal(out.images[known], images[known])
    assert out.images[~known].abs().sum() > 0  # the zeroed hole was filled
    with torch.no_grad():  # a batch without holes comes back unchanged
        assert torch.equal(method.restore(images, torch.zeros_like(mask)).images, images)
    with pytest.raises(ValueError, match="mask"):
        method.restore(images, None)


def test_poisson_blend_hand_computed_cases():
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    ramp = torch.stack([xx, yy, xx + yy])[None] / 64  # linear, hence harmonic
    hole = torch.zeros(1, 1, 32, 32)
    hole[..., 10:24, 6:20] = 1
    # A constant guidance field has zero Laplacian: the fill is the harmonic interpolant, the ramp itself.
    flat = poisson_blend(torch.full_like(ramp, 0.9), ramp * (1 - hole), hole)
    assert torch.allclose(flat, ramp, atol=1e-4)
    # An image blended into itself is unchanged, also for a hole on the image border.
    hole[..., 24:, 20:] = 1
    texture = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(poisson_blend(texture, texture * (1 - hole), hole), texture, atol=1e-4)
    # Gradients inside the hole come from pred, the offset from the surroundings.
    all_but_top_row = torch.ones(1, 1, 32, 32)
    all_but_top_row[..., 0, :] = 0
    shifted = poisson_blend(texture, texture + 0.1, all_but_top_row)
    assert torch.allclose(shifted, texture + 0.1, atol=1e-4)


def test_checkpoint_round_trip_restores_networks_and_optimisers(make_context, make_train_data, tmp_path):
    torch.manual_seed(0)
    ctx = make_context(YehMethod, 32, **TINY)
    data = make_train_data(32, 16)
    first = YehMethod(ctx)
    first.setup_training(data)
    first.train_step(0)
    save_checkpoint(tmp_path / "last.pt", {"step": 1, "method": first.state_dict()})
    state = load_checkpoint(tmp_path / "last.pt")  # weights_only=True
    second = YehMethod(ctx)
    second.setup_training(data)
    second.load_state_dict(state["method"])
    saved, loaded = first.state_dict()["generator"], second.generator.state_dict()
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k]) for k in saved)
    s1, s2 = first.opt_d.state_dict()["state"], second.opt_d.state_dict()["state"]
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k]["exp_avg"], s2[k]["exp_avg"]) for k in s1)
    images, mask = _holed_batch(32)
    with torch.no_grad():
        assert torch.equal(first.restore(images, mask).images, second.restore(images, mask).images)


def test_options_reach_the_search(make_context):
    opts = dict(iterations="7", candidates="3", z_lr="0.1", lambda_p="0.2", window="15")  # CLI strings
    method = YehMethod(make_context(YehMethod, 32, **opts))
    assert method.search == SearchConfig(7, 3, 0.1, 0.2, 15, "paper")
    with pytest.raises(ValueError, match="yeh: option window must be odd"):
        YehMethod(make_context(YehMethod, 32, window=6))
    with pytest.raises(OptionError, match="blend must be one of alpha, poisson"):
        make_context(YehMethod, 32, blend="feather")
    for bad in ({"weighting": "bogus"}, {"candidates": 0}, {"iterations": -1}, {"beta1": 1.0}, {"z_dim": 0}):
        with pytest.raises(OptionError, match=next(iter(bad))):
            make_context(YehMethod, 32, **bad)
    with pytest.raises(OptionError, match="did you mean iterations"):
        make_context(YehMethod, 32, iteration=5)


def test_quick_profile_overrides_and_paper_defaults(make_context):
    quick = YehMethod(make_context(YehMethod, 64, profile="quick"))
    paper = YehMethod(make_context(YehMethod, 64, profile="paper"))
    assert (quick.cfg.width, quick.cfg.batch_size, quick.search.iterations, quick.search.candidates) == (16, 32, 100, 4)
    assert (paper.cfg.width, paper.cfg.batch_size, paper.search.iterations, paper.search.candidates) == (
        64,
        64,
        1500,
        16,
    )
    assert (
        quick.cfg.z_dim == paper.cfg.z_dim == 100 and quick.cfg.search_batch == paper.cfg.search_batch == 256
    )  # not profiled
    assert YehMethod.steps_for("quick") == 200 and YehMethod.steps_for("paper") == 60_000


def test_search_draws_one_start_per_image_from_its_own_generator():
    g, d = DCGANGenerator(16, 8, 2).eval(), DCGANDiscriminator(16, 2).eval()
    seen = []
    g.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
    target, hole = torch.zeros(2, 3, 16, 16), torch.ones(2, 1, 16, 16)
    cfg = SearchConfig(iterations=0, candidates=3)
    search_latents(g, d, target, hole, cfg, [torch.Generator().manual_seed(s) for s in (5, 7)])
    starts = [torch.rand(3, 8, generator=torch.Generator().manual_seed(s)) * 2 - 1 for s in (5, 7)]
    assert torch.equal(seen[0], torch.cat(starts))  # image i's 3 candidates: its own generator's first draws
    with pytest.raises(ValueError, match="1 generators for 2 images"):
        search_latents(g, d, target, hole, cfg, [torch.Generator()])


def test_restore_is_per_face_not_per_batch(make_context):
    """A face's latents come from the run's seed and that face: its result is the same in any batch, at any
    position, in any search chunk, whatever ran before (the harness resumes evaluation mid-split)."""
    method = YehMethod(make_context(YehMethod, 32, **TINY))
    images, mask = _holed_batch(32, n=3)
    mask[1, :, 4:12, 4:12] = 1
    with torch.no_grad():
        together = method.restore(images, mask).images
        torch.manual_seed(123)
        swapped = method.restore(images[[2, 0, 1]], mask[[2, 0, 1]]).images  # same batch size: same kernels
        alone = method.restore(images[2:], mask[2:]).images
        method.cfg = dataclasses.replace(method.cfg, search_batch=TINY["candidates"])  # one face per search chunk
        chunked = method.restore(images, mask).images
    assert torch.equal(swapped[0], together[2]) and torch.equal(swapped[1], together[0])
    assert torch.allclose(alone[0], together[2], atol=1e-6)  # another batch size may take other kernels
    assert torch.allclose(chunked, together, atol=1e-6)


def test_killed_and_resumed_training_is_bit_identical(make_context, make_train_data, tmp_path):
    """The DCGAN's noise comes from the global generator, which the harness saves with the data sampler."""
    check_bit_exact_resume(YehMethod, TINY, 3, 2, tmp_path, make_context, lambda: make_train_data(32, 16))
