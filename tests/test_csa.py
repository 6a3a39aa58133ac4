"""CSA: the attention layer on hand-built features, feature masks, shapes, losses, training, checkpoints."""

import importlib
import io
import math
import subprocess
import sys

import pytest
import torch

from baselines.csa import (
    CSALayer,
    CSAMethod,
    RefineUNet,
    csa_attention,
    feature_hole,
    ragan_ls,
    rough_unet,
)
from bench.options import OptionError
from tests.util import check_bit_exact_resume


def _holed_batch(size: int, n: int = 2):
    images = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(n, 1, size, size)
    mask[0, :, size // 4 : size // 2, size // 4 : size // 2] = 1
    mask[-1, :, : size // 3, -size // 3 :] = 1  # touches the border
    return images * (1 - mask), mask


def test_csa_layer_copies_the_exactly_matching_known_patch():
    gen = torch.Generator().manual_seed(0)
    feats = torch.rand(1, 6, 3, 3, generator=gen)
    v = torch.tensor([1.0, -2.0, 0.5, 3.0, -1.0, 0.0])
    feats[0, :, 1, 1] = v  # the hole feature
    feats[0, :, 0, 2] = 2 * v  # the only known patch parallel to it (cosine 1); the others are positive
    hole = torch.zeros(1, 1, 3, 3)
    hole[..., 1, 1] = 1
    out = CSALayer()(feats, hole)
    assert torch.allclose(out[0, :, 1, 1], 2 * v)
    keep = (1 - hole).bool().expand_as(feats)
    assert torch.equal(out[keep], feats[keep])  # known positions are untouched


def test_csa_layer_blends_with_the_previous_fill_hand_computed():
    # 1x4 grid, 2 channels: known k0=(1,0), k1=(0,1); holes at positions 2 and 3 (raster order).
    feats = torch.tensor([[1.0, 0.0, 1.0, 0.6], [0.0, 1.0, 0.1, 0.8]]).view(1, 2, 1, 4)
    hole = torch.tensor([0.0, 0.0, 1.0, 1.0]).view(1, 1, 1, 4)
    out = CSALayer()(feats, hole)[0, :, 0]
    assert torch.allclose(out[:, 2], torch.tensor([1.0, 0.0]))  # first hole: its best match k0
    # position 3: best known match k1 with D_max = 0.8; D_ad = cos(fill_2=(1,0), f_3) = 0.6
    expected = (0.6 * torch.tensor([1.0, 0.0]) + 0.8 * torch.tensor([0.0, 1.0])) / 1.4
    assert torch.allclose(out[:, 3], expected, atol=1e-6)
    attn = csa_attention(feats, hole)[0]
    assert torch.allclose(attn[3], torch.tensor([0.6 / 1.4, 0.8 / 1.4, 0, 0]))
    assert torch.allclose(attn.sum(1), torch.ones(4))


def test_csa_layer_handles_batches_and_holes_everywhere():
    feats = torch.randn(2, 4, 4, 4)
    hole = torch.zeros(2, 1, 4, 4)
    hole[0] = 1  # no known patch: nothing to copy, features kept
    hole[1, :, 1:3, 1:3] = 1
    feats.requires_grad_(True)
    out = CSALayer()(feats, hole)
    assert torch.allclose(out[0], feats[0])
    out.sum().backward()
    assert feats.grad[1, :, 1, 1].abs().sum() > 0  # straight-through gradient to hole features


def test_feature_hole_downsamples_with_the_official_threshold():
    mask = torch.zeros(1, 1, 32, 32)
    assert feature_hole(mask).sum() == 0
    assert torch.all(feature_hole(torch.ones(1, 1, 32, 32))[..., 1:-1, 1:-1] == 1)
    mask[..., 8:24, 8:24] = 1  # the centre 2x2 cells of the 4x4 grid lie inside the hole
    fh = feature_hole(mask)
    assert fh.shape == (1, 1, 4, 4)
    assert torch.equal(fh[0, 0, 1:3, 1:3], torch.ones(2, 2)) and fh[0, 0, 0, 0] == 0


def test_ragan_least_squares_targets():
    real, fake = torch.full((4,), 1.0), torch.full((4,), 0.0)
    assert ragan_ls(real, fake).item() == 0  # real beats fake's mean by 1: D is done
    assert ragan_ls(fake, real).item() == pytest.approx(4.0)  # G's loss for the same state


@pytest.mark.parametrize("size", [64, 128])
def test_generators_follow_the_image_size(make_context, size):
    downs = round(math.log2(size))
    rough, refine = rough_unet(size, 4), RefineUNet(size, 4)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in rough.modules()) == downs
    strided = [m for m in refine.modules() if isinstance(m, torch.nn.Conv2d) and m.stride == (2, 2)]
    assert len(strided) == downs and all(m.dilation == (2, 2) for m in strided)
    method = CSAMethod(make_context(CSAMethod, size, ngf=8))
    images, mask = _holed_batch(size)
    out = method.restore(images, mask)
    assert out.images.shape == (2, 3, size, size) and out.masks is None
    assert 0 <= out.images.min() and out.images.max() <= 1
    assert torch.equal(out.images * (1 - mask), images * (1 - mask))
    swapped = method.restore(images[[1, 0]], mask[[1, 0]]).images  # nothing random: per face
    assert torch.equal(swapped, out.images[[1, 0]])
    taps = method.refine.csa_block.taps
    assert [t.shape for t in taps] == [(2, 64, size // 8, size // 8)] * 2


def test_consistency_loss_reaches_the_generator(make_context, make_train_data):
    method = CSAMethod(make_context(CSAMethod, 32, ngf=8))
    method.setup_training(make_train_data(32, n=4))
    images, mask = _holed_batch(32)
    mask[0, :, 8:24, 8:24] = 1  # at 32 px the 1/8 grid is 4x4: a smaller hole may not reach it
    method.generate(images * (1 - mask), mask)
    loss = method.consistency(torch.rand(2, 64, 32, 32), mask)
    loss.backward()
    stem = method.refine.stem.weight.grad  # below the CSA level: reached only through the hooked features
    assert loss.item() > 0 and stem is not None and stem.abs().sum() > 0
    assert method.consistency_layer == "relu1_2"  # 8 * ngf = 64 channels


def test_training_lowers_the_loss_and_checkpoint_round_trips(make_context, make_train_data, fixed_paired):
    torch.manual_seed(0)
    ctx = make_context(CSAMethod, 32, ngf=8, ndf=8, batch_size=4, lr=1e-3)
    method = CSAMethod(ctx)
    data = fixed_paired(make_train_data(32, n=8), 4)
    method.setup_training(data)
    batch = data.paired(4)
    hole = batch.mask

    def l1() -> float:
        with torch.no_grad():
            rough, refined = method.generate(batch.clean * (1 - hole), hole)
            gt = batch.clean * 2 - 1
            return (torch.mean(torch.abs(rough - gt)) + torch.mean(torch.abs(refined - gt))).item()

    start = l1()
    logs = [method.train_step(s) for s in range(10)]
    assert all(math.isfinite(v) for log in logs for v in log.values())
    assert l1() < 0.85 * start  # ~0.67 over seeds 0-4

    buffer = io.BytesIO()
    torch.save(method.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert {"rough", "refine", "d_image", "d_feature", "opt_g", "opt_d"} <= set(state)
    clone = CSAMethod(ctx)
    clone.setup_training(make_train_data(32, n=8))
    clone.load_state_dict(state)
    images, mask = _holed_batch(32)
    assert torch.equal(clone.restore(images, mask).images, method.restore(images, mask).images)
    for a, b in ((method.opt_g, clone.opt_g), (method.opt_d, clone.opt_d)):
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa["state"][k]["exp_avg"], sb["state"][k]["exp_avg"]) for k in sa["state"])
    d_a, d_b = method.d_feature.state_dict(), clone.d_feature.state_dict()
    assert all(torch.equal(d_a[k], d_b[k]) for k in d_a)


def test_quick_profile_overrides_and_paper_defaults(make_context):
    quick = CSAMethod(make_context(CSAMethod, 32, profile="quick"))
    paper = make_context(CSAMethod, 32, profile="paper").config  # the paper-width nets take seconds to build
    assert (quick.cfg.ngf, quick.cfg.ndf, quick.cfg.batch_size) == (16, 16, 4)
    assert (paper.ngf, paper.ndf, paper.batch_size) == (64, 64, 1)
    assert quick.consistency_layer == "relu2_2"  # 8*ngf = 128 channels
    assert quick.cfg.lr == paper.lr == 2e-4 and quick.cfg.threshold == paper.threshold == 5 / 16  # not profiled
    assert CSAMethod.steps_for("quick") == 150 and CSAMethod.steps_for("paper") == 100_000


def test_options_are_cast_and_checked(make_context):
    method = CSAMethod(make_context(CSAMethod, 32, ngf="8", threshold="0.5", n_layers_d="2"))
    cfg = method.cfg
    assert (cfg.ngf, cfg.threshold, cfg.n_layers_d, method.consistency_layer) == (8, 0.5, 2, "relu1_2")
    with pytest.raises(OptionError, match="ngf must be one of 8, 16, 32, 64"):  # 8*ngf must be a VGG layer's width
        make_context(CSAMethod, 32, ngf=12)
    for bad in ({"ndf": 0}, {"threshold": 2}, {"beta1": 1}, {"lambda_l1": -1}, {"n_layers_d": 0}):
        with pytest.raises(OptionError, match=next(iter(bad))):
            make_context(CSAMethod, 32, **bad)
    with pytest.raises(OptionError, match="did you mean gan_weight"):
        make_context(CSAMethod, 32, gan_weigth=0.2)


@pytest.mark.filterwarnings("ignore:CSA. no VGG-16 weights")
def test_killed_and_resumed_training_is_bit_identical(make_context, make_train_data, tmp_path):
    """No state beyond networks and optimisers: the harness's saved generators make a resume exact."""
    check_bit_exact_resume(
        CSAMethod, dict(ngf=8, ndf=8, batch_size=2), 3, 2, tmp_path, make_context, lambda: make_train_data(32, 8)
    )


def test_plugin_registers_without_importing_torch():
    code = (
        "import sys, plugins.csa as p; specs = []; p.register_methods(specs.append); s = specs[0]; "
        "assert 'torch' not in sys.modules; "
        "assert (s.name, s.needs_mask, s.trains_on, s.reported['psnr']) == ('csa', True, ('paired',), 22.71); "
        "print(s.factory)"
    )
    factory = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    module, _, attr = factory.strip().partition(":")
    assert getattr(importlib.import_module(module), attr) is CSAMethod
