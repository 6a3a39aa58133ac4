import io

import pytest
import torch

from baselines.gfc import GFCGenerator, GFCMethod, crop_boxes, default_fc_width, mask_boxes
from bench.method import make_context as build_context
from bench.options import OptionError
from tests.util import check_bit_exact_resume

SMALL = {"width": 4, "d_width": 4, "batch_size": 2}


@pytest.mark.parametrize("size", [64, 128])
def test_shapes_and_restore_composite(make_context, size):
    method = GFCMethod(make_context(GFCMethod, size, **SMALL))
    x = torch.randn(2, 3, size, size)
    assert method.G(x).shape == (2, 3, size, size)
    assert method.G.fc[1].out_features == default_fc_width(size, 4)
    assert method.D_local(torch.randn(2, 3, size // 2, size // 2)).shape == (2, 1)
    assert method.D_global(x).shape == (2, 1)
    images = torch.rand(2, 3, size, size)
    masks = torch.zeros(2, 1, size, size)
    masks[:, :, size // 4 : size // 2, size // 3 : size // 2 + 5] = 1
    out = method.restore(images * (1 - masks), masks).images
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 1
    assert torch.equal(out * (1 - masks), images * (1 - masks))  # known pixels pass through exactly
    assert torch.equal(out, method.restore(images * (1 - masks), masks).images)  # seeded noise fill


def test_restore_noise_is_per_face_not_per_batch(make_context):
    """The hole noise a face gets (and so its result) depends on that face only: not on its batch, its
    position, the content of its hole or what ran before (the harness resumes evaluation mid-split)."""
    method = GFCMethod(make_context(GFCMethod, 32, **SMALL))
    inputs = []
    method.G.register_forward_pre_hook(lambda m, args: inputs.append(args[0]))
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    masks = torch.zeros(3, 1, 32, 32)
    masks[:, :, 8:20, 6:18] = 1
    together = method.restore(images, masks).images
    torch.manual_seed(123)  # what ran before does not matter either
    alone = method.restore(images[2:] * (1 - masks[2:]), masks[2:]).images  # hole pre-zeroed, batch of one
    reordered = method.restore(images[[2, 0]], masks[[2, 0]]).images
    assert torch.equal(inputs[1][0], inputs[0][2]) and torch.equal(inputs[2][0], inputs[0][2])
    assert torch.equal(inputs[2][1], inputs[0][0])
    assert not torch.equal(inputs[0][0] * masks[0], inputs[0][1] * masks[1])  # faces get different noise
    assert torch.equal(reordered[0], together[2]) and torch.equal(reordered[1], together[0])
    assert torch.allclose(alone[0], together[2], atol=1e-6)  # another batch size may take other kernels


def test_official_fc_width():
    assert default_fc_width(128, 32) == 4096
    g = GFCGenerator(128, 32, fc_width=16)  # the official 4096 would allocate 134M parameters
    assert g.fc[1].in_features == 16384 and g.fc[3].out_features == 16384


def test_unpooling_puts_values_back_at_the_argmax():
    g = GFCGenerator(16, 2)
    x = torch.tensor([[1.0, 5, 0, 2], [3, 0, 7, 1], [0, 9, 4, 4], [8, 2, 6, 3]])[None, None]
    pooled, idx = g.pool(x)
    assert pooled.flatten().tolist() == [5, 7, 9, 6]
    up = g.unpool(pooled, idx, output_size=x.shape[-2:])
    expected = torch.zeros(4, 4)
    for r, c, v in [(0, 1, 5), (1, 2, 7), (2, 1, 9), (3, 2, 6)]:
        expected[r, c] = v
    assert torch.equal(up[0, 0], expected)


def test_generator_decoder_unpools_with_the_encoder_indices():
    """The first unpooling must scatter the fc output only to pool3's argmax positions."""
    g = GFCGenerator(32, 4)
    seen = {}
    g.pool.register_forward_hook(lambda m, i, o: seen.setdefault("indices", []).append(o[1]))
    g.unpool.register_forward_hook(lambda m, i, o: seen.setdefault("unpooled", []).append(o))
    with torch.no_grad():
        g(torch.randn(2, 3, 32, 32))
    last_indices, first_unpooled = seen["indices"][-1], seen["unpooled"][0]
    allowed = torch.zeros_like(first_unpooled).flatten(2)
    allowed.scatter_(2, last_indices.flatten(2), 1.0)
    assert first_unpooled.flatten(2)[allowed == 0].abs().max() == 0
    assert (first_unpooled.flatten(2)[allowed == 1] != 0).any()


def test_mask_boxes_and_crops():
    masks = torch.zeros(2, 1, 16, 16)
    masks[0, 0, 2:5, 3:9] = 1
    masks[0, 0, 7, 4] = 1
    assert mask_boxes(masks) == [(2, 3, 8, 9), (0, 0, 16, 16)]
    images = torch.arange(2 * 16 * 16, dtype=torch.float32).view(2, 1, 16, 16)
    crops = crop_boxes(images, [(0, 0, 8, 8), (4, 4, 12, 12)], 8)
    assert torch.equal(crops[0], images[0, :, :8, :8]) and torch.equal(crops[1], images[1, :, 4:12, 4:12])


def test_reconstruction_steps_lower_the_loss(make_context, make_train_data, fixed_paired):
    torch.manual_seed(0)
    method = GFCMethod(make_context(GFCMethod, 32, **{**SMALL, "batch_size": 4}, lr=5e-3, recon_only_fraction=1.0))
    method.setup_training(fixed_paired(make_train_data(32, 8), 4))
    losses = [method.train_step(step)["recon"] for step in range(12)]
    assert sum(losses[-3:]) / 3 < 0.92 * sum(losses[:3]) / 3


def _parsing_file(path):
    net = torch.nn.Conv2d(3, 4, 1)
    torch.jit.script(net).save(str(path))
    return str(path)


def test_adversarial_stage_and_parsing_option(make_context, make_train_data, tmp_path):
    method = GFCMethod(make_context(GFCMethod, 32, **SMALL, recon_only_fraction=0.0))
    assert method.info()["parsing_loss"] == "off (no parsing model file)"
    method.setup_training(make_train_data(32, 8))
    logs = method.train_step(0)
    assert {"d_loss", "local_adv", "global_adv"} <= logs.keys() and "parsing" not in logs
    with_parsing = GFCMethod(
        make_context(GFCMethod, 32, **SMALL, recon_only_fraction=0.0, parsing_model=_parsing_file(tmp_path / "p.pt"))
    )
    with_parsing.setup_training(make_train_data(32, 8))
    logs = with_parsing.train_step(0)
    assert logs["parsing"] > 0 and with_parsing.info()["parsing_loss"].startswith("on")
    with pytest.raises(FileNotFoundError):
        GFCMethod(make_context(GFCMethod, 32, **SMALL, parsing_model=str(tmp_path / "missing.pt"))).setup_training(None)


def test_checkpoint_round_trip(make_context, make_train_data):
    ctx = make_context(GFCMethod, 32, **SMALL, recon_only_fraction=0.0)
    method = GFCMethod(ctx)
    method.setup_training(make_train_data(32, 8))
    method.train_step(0)
    buffer = io.BytesIO()
    torch.save(method.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    clone = GFCMethod(ctx)
    clone.setup_training(make_train_data(32, 8))
    clone.load_state_dict(state)
    for a, b in zip(method.G.parameters(), clone.G.parameters(), strict=True):
        assert torch.equal(a, b)
    for opt, opt2 in ((method.opt_g, clone.opt_g), (method.opt_d, clone.opt_d)):
        s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
        assert s1.keys() == s2.keys() and all(torch.equal(s1[k]["exp_avg"], s2[k]["exp_avg"]) for k in s1)
    images, masks = torch.rand(2, 3, 32, 32), torch.zeros(2, 1, 32, 32)
    masks[:, :, 8:20, 8:20] = 1
    assert torch.equal(method.restore(images, masks).images, clone.restore(images, masks).images)


def test_quick_profile_overrides_and_paper_defaults(make_context):
    quick = GFCMethod(make_context(GFCMethod, 64, profile="quick"))
    paper = GFCMethod(make_context(GFCMethod, 64, profile="paper"))
    assert (quick.cfg.width, quick.cfg.d_width, quick.cfg.batch_size) == (8, 16, 8)
    assert (paper.cfg.width, paper.cfg.d_width, paper.cfg.batch_size) == (32, 64, 2)
    assert quick.cfg.lr == paper.cfg.lr == 1e-4 and quick.patch_size == paper.patch_size == 32  # not profiled
    assert paper.fc_width == default_fc_width(64, 32) == 1024 and quick.fc_width == default_fc_width(64, 8) == 256
    assert (quick.total_steps, paper.total_steps) == (220, 100_000)  # the budget comes from the context
    assert paper.adversarial_start() == 30_000


def test_options_are_cast_and_checked(make_context):
    method = GFCMethod(make_context(GFCMethod, 32, total_steps=10, width="4", fc_width="24", recon_only_fraction="0.5"))
    assert (method.cfg.width, method.fc_width, method.adversarial_start()) == (4, 24, 5)
    assert method.G.fc[1].out_features == 24
    for bad in ({"width": 0}, {"recon_only_fraction": 1.5}, {"beta1": 1.0}, {"lr": -1}, {"patch_size": 8}):
        with pytest.raises(OptionError, match=next(iter(bad))):
            make_context(GFCMethod, 32, **bad)
    with pytest.raises(OptionError, match="not a valid int"):
        make_context(GFCMethod, 32, width="wide")
    with pytest.raises(OptionError, match="did you mean lr_d"):
        make_context(GFCMethod, 32, lr_dd=1e-4)
    with pytest.raises(OptionError, match="unknown option 'total_steps'"):  # the budget is the harness's
        build_context(
            GFCMethod, image_size=32, profile="quick", device=torch.device("cpu"), options=({"total_steps": 9},)
        )


def test_killed_and_resumed_training_is_bit_identical(make_context, make_train_data, tmp_path):
    """Resumed inside the adversarial stage (steps 2-3 of 4): same networks and optimisers as one run."""
    check_bit_exact_resume(
        GFCMethod, {**SMALL, "recon_only_fraction": 0.5}, 4, 3, tmp_path, make_context, lambda: make_train_data(32, 8)
    )
