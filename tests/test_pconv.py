"""PConv: the partial convolution against hand-computed cases, U-Net shapes, phases, training, checkpoints."""

import importlib
import io
import subprocess
import sys

import pytest
import torch
from torch import nn

import baselines.pconv
from baselines.pconv import PartialConv2d, PConvMethod, PConvUNet, dilated_hole_tv
from bench.options import OptionError
from tests.util import check_bit_exact_resume


class _TinyFeatures(nn.Module):
    """Stand-in for VGGFeatures (three pooled maps): building VGG-16 costs ~10 s on this CPU."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(a, b, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
            for a, b in ((3, 4), (4, 8), (8, 8))
        )
        self.requires_grad_(False)
        self.source = {"weights": "test stand-in"}

    def forward(self, x):
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        return feats


@pytest.fixture(autouse=True)
def tiny_vgg(monkeypatch):
    """A tiny feature net replaces VGG-16 (seconds to build) where only the loss plumbing is tested."""
    monkeypatch.setattr(baselines.pconv, "VGGFeatures", _TinyFeatures)


def _holed_batch(size: int, n: int = 2):
    images = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(n, 1, size, size)
    mask[0, :, size // 4 : size // 2, size // 4 : size // 2] = 1
    mask[-1, :, : size // 3, -size // 3 :] = 1  # touches the border
    return images * (1 - mask), mask


def _ones_pconv(bias: float) -> PartialConv2d:
    conv = PartialConv2d(1, 1, 3, 1, 1)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.fill_(bias)
    return conv


def test_partial_conv_renormalises_and_updates_the_mask():
    # 4x4 image, x[r, c] = c + 1; columns 0-1 valid, 2-3 hole.
    x = torch.arange(1.0, 5.0).repeat(4, 1)[None, None]
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2] = 1
    out, new_mask = _ones_pconv(bias=0.5)(x, mask)
    # column 3's window (cols 2-4) sees no valid pixel: output 0, still a hole.
    assert torch.equal(new_mask[0, 0], torch.tensor([[1.0, 1, 1, 0]] * 4))
    assert torch.all(out[..., 3] == 0)
    # (1, 2): window rows 0-2, cols 1-3 -> 3 valid pixels of value 2: 6 * 9/3 + bias.
    assert out[0, 0, 1, 2].item() == pytest.approx(6 * 9 / 3 + 0.5)
    # (0, 0): window rows -1..1, cols -1..1 -> 4 valid pixels (2x value 1, 2x value 2): 6 * 9/4 + bias.
    assert out[0, 0, 0, 0].item() == pytest.approx(6 * 9 / 4 + 0.5)
    # (1, 1): 6 valid pixels, values 1,2 -> sum 9, so 9 * 9/6 + bias; hole pixels (value 3) are ignored.
    assert out[0, 0, 1, 1].item() == pytest.approx(9 * 9 / 6 + 0.5)


def test_partial_conv_multichannel_mask_counts_all_channels():
    conv = PartialConv2d(2, 3, 1, 1, 0, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    x = torch.full((1, 2, 1, 1), 4.0)
    out, new_mask = conv(x, torch.tensor([1.0, 0.0]).view(1, 2, 1, 1))
    assert out.flatten().tolist() == [8.0, 8.0, 8.0]  # 4 * (2 / 1): one valid of two channel inputs
    assert new_mask.shape == (1, 3, 1, 1) and torch.all(new_mask == 1)


def test_dilated_hole_tv_only_counts_the_dilated_hole():
    comp = torch.zeros(1, 1, 6, 6)
    comp[..., :, 0] = 5.0  # an edge far from the hole: not counted
    hole = torch.zeros(1, 1, 6, 6)
    hole[..., 3, 3] = 1
    assert dilated_hole_tv(comp, hole).item() == 0
    comp[..., 3, 3] = 1.0  # inside the hole: 4 unit steps to its neighbours
    assert dilated_hole_tv(comp, hole).item() == pytest.approx(4 / 36)


@pytest.mark.parametrize("size, layers", [(64, 6), (128, 7)])
def test_unet_depth_and_restore_shapes(make_context, size, layers):
    method = PConvMethod(make_context(PConvMethod, size, width=4))
    assert len(method.net.encoder) == layers
    assert [m.conv.kernel_size[0] for m in method.net.encoder[:4]] == [7, 5, 5, 3]
    assert method.net.encoder[0].bn is None and method.net.decoder[0].bn is None
    images, mask = _holed_batch(size)
    out = method.restore(images, mask)
    assert out.images.shape == (2, 3, size, size) and out.masks is None
    assert 0 <= out.images.min() and out.images.max() <= 1
    assert torch.equal(out.images * (1 - mask), images * (1 - mask))  # known pixels kept exactly
    assert (out.images * mask).abs().sum() > 0  # the hole was filled
    swapped = method.restore(images[[1, 0]], mask[[1, 0]]).images  # nothing random: per face
    assert torch.equal(swapped, out.images[[1, 0]])


def test_unet_ignores_hole_content():
    net = PConvUNet(layers=5, width=4).eval()
    x = torch.rand(1, 3, 32, 32)
    valid = torch.ones(1, 3, 32, 32)
    valid[..., 8:20, 8:20] = 0
    noisy = x + (1 - valid) * torch.randn_like(x) * 10
    assert torch.allclose(net(x, valid), net(noisy, valid), atol=1e-5)


def test_finetune_phase_freezes_encoder_bn(make_context, make_train_data):
    method = PConvMethod(make_context(PConvMethod, 32, total_steps=4, width=4, batch_size=2, finetune_fraction=0.5))
    method.setup_training(make_train_data(32, n=4))
    method.train_step(0)
    assert method.opt_g.param_groups[0]["lr"] == pytest.approx(2e-4)
    bn = method.net.encoder[1].bn
    assert bn.training and bn.weight.requires_grad
    before = bn.running_mean.clone(), bn.weight.detach().clone()
    method.train_step(2)
    assert method.opt_g.param_groups[0]["lr"] == pytest.approx(5e-5)
    assert not bn.training and not bn.weight.requires_grad
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.weight, before[1])
    assert method.net.decoder[1].bn.training  # decoder BN keeps training


def test_training_lowers_the_loss_and_checkpoint_round_trips(make_context, make_train_data, fixed_paired):
    torch.manual_seed(0)
    ctx = make_context(PConvMethod, 32, width=8, batch_size=4, lr=1e-3)
    method = PConvMethod(ctx)
    data = fixed_paired(make_train_data(32, n=8), 4)
    method.setup_training(data)
    batch = data.paired(4)
    hole = batch.mask

    def total() -> float:
        with torch.no_grad():
            terms = method.losses(batch.clean * (1 - hole), batch.clean, hole)
        return sum(method.weights()[k] * v for k, v in terms.items()).item()

    method.net.train()
    start = total()
    losses = [method.train_step(s)["loss"] for s in range(12)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert total() < 0.6 * start  # ~0.3 over seeds 0-4

    buffer = io.BytesIO()
    torch.save(method.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    clone = PConvMethod(ctx)
    clone.setup_training(make_train_data(32, n=8))
    clone.load_state_dict(state)
    images, mask = _holed_batch(32)
    assert torch.equal(clone.restore(images, mask).images, method.restore(images, mask).images)
    a, b = method.opt_g.state_dict(), clone.opt_g.state_dict()
    assert a["param_groups"] == b["param_groups"]
    assert all(torch.equal(a["state"][k]["exp_avg"], b["state"][k]["exp_avg"]) for k in a["state"])


def test_quick_profile_overrides_and_paper_defaults(make_context):
    quick = PConvMethod(make_context(PConvMethod, 64, profile="quick"))
    paper = PConvMethod(make_context(PConvMethod, 64, profile="paper"))
    assert (quick.cfg.width, quick.cfg.batch_size) == (16, 4) and (paper.cfg.width, paper.cfg.batch_size) == (64, 6)
    assert quick.layers == paper.layers == 6 and quick.cfg.lr == paper.cfg.lr == 2e-4  # not profiled
    assert (quick.total_steps, paper.total_steps) == (100, 100_000)
    assert paper.finetune_start() == 75_000


def test_options_are_cast_and_checked(make_context):
    method = PConvMethod(make_context(PConvMethod, 64, total_steps=8, width="4", layers="3", finetune_fraction="0.5"))
    assert (method.layers, len(method.net.encoder), method.finetune_start()) == (3, 3, 4)
    for bad in ({"width": 0}, {"layers": 0}, {"finetune_fraction": -0.1}, {"lambda_style": -1}, {"lr_finetune": -1}):
        with pytest.raises(OptionError, match=next(iter(bad))):
            make_context(PConvMethod, 32, **bad)
    with pytest.raises(OptionError, match="did you mean lambda_hole"):
        make_context(PConvMethod, 32, lambda_holes=6)
    with pytest.raises(ValueError, match="pconv: option layers=6"):
        PConvMethod(make_context(PConvMethod, 32, width=4, layers=6))
    with pytest.raises(ValueError, match="power-of-two"):
        PConvMethod(make_context(PConvMethod, 48, width=4))


def test_killed_and_resumed_training_is_bit_identical(make_context, make_train_data, tmp_path):
    """Resumed inside the fine-tuning phase (steps 2-3 of 4): the phase follows from the step index, so the
    resumed run freezes the encoder BN and lowers the lr exactly as the uninterrupted one did."""
    options = dict(width=4, batch_size=2, finetune_fraction=0.5)
    method = check_bit_exact_resume(PConvMethod, options, 4, 3, tmp_path, make_context, lambda: make_train_data(32, 8))
    assert method.net.freeze_encoder_bn and method.opt_g.param_groups[0]["lr"] == pytest.approx(5e-5)


def test_plugin_registers_without_importing_torch():
    code = (
        "import sys, plugins.pconv as p; specs = []; p.register_methods(specs.append); s = specs[0]; "
        "assert 'torch' not in sys.modules; "
        "assert (s.name, s.needs_mask, s.trains_on, s.reported['psnr']) == ('pconv', True, ('paired',), 22.18); "
        "print(s.factory)"
    )
    factory = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    module, _, attr = factory.strip().partition(":")
    assert getattr(importlib.import_module(module), attr) is PConvMethod
