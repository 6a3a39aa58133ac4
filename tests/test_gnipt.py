import io

import pytest
import torch

from baselines.gnipt import ContextualAttention, GnIptMethod, spatial_discount
from bench.options import OptionError
from tests.util import check_bit_exact_resume

SMALL = {"width": 4, "d_width": 4, "batch_size": 2, "d_steps": 1}


@pytest.mark.parametrize("size", [64, 128])
def test_shapes_and_restore_composite(make_context, size):
    method = GnIptMethod(make_context(GnIptMethod, size, **SMALL))
    hole = torch.zeros(2, 1, size, size)
    hole[:, :, size // 4 : size // 2, size // 3 : size // 2 + 5] = 1
    x1, x2 = method.G(torch.rand(2, 3, size, size) * (1 - hole), hole)
    assert x1.shape == x2.shape == (2, 3, size, size)
    assert x2.min() >= -1 and x2.max() <= 1
    assert method.D_local(torch.randn(2, 3, size // 2, size // 2)).shape == (2, 1)
    assert method.D_global(torch.randn(2, 3, size, size)).shape == (2, 1)
    images = torch.rand(2, 3, size, size)
    out = method.restore(images * (1 - hole), hole).images
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 1
    assert torch.equal(out * (1 - hole), images * (1 - hole))
    swapped = method.restore((images * (1 - hole))[[1, 0]], hole[[1, 0]]).images  # nothing random: per face
    assert torch.equal(swapped, out[[1, 0]])


def test_contextual_attention_copies_the_matching_known_patch():
    """The hole's surroundings (and, in f, its content) are a copy of a known region 32 px up-left:
    the attention must paste that region's b-content into the hole."""
    torch.manual_seed(0)
    x = torch.randn(1, 8, 64, 64)
    f = x.clone()
    f[:, :, 32:56, 32:56] = x[:, :, 0:24, 0:24]  # the copy spans the hole plus a margin
    hole = torch.zeros(1, 1, 64, 64)
    hole[:, :, 40:48, 40:48] = 1
    b = f * (1 - hole)  # the hole's own content is unknown to the background
    out = ContextualAttention(rate=2, fuse_k=3, softmax_scale=10.0)(f, b, hole)
    assert out.shape == f.shape
    assert torch.allclose(out[:, :, 40:48, 40:48], x[:, :, 8:16, 8:16], atol=1e-4)


def test_contextual_attention_never_copies_from_the_hole():
    torch.manual_seed(1)
    b = torch.randn(1, 4, 32, 32)
    hole = torch.zeros(1, 1, 32, 32)
    hole[:, :, 8:24, 8:24] = 1
    b_with_marker = b.clone()
    b_with_marker[:, :, 8:24, 8:24] = 1e3  # anything read from inside the hole would show up
    out = ContextualAttention(rate=2)(b, b_with_marker, hole)
    assert out.abs().max() < 100


def test_spatial_discount_hand_case():
    hole = torch.zeros(1, 1, 7, 7)
    hole[:, :, 1:6, 1:6] = 1
    w = spatial_discount(hole, 0.9)[0, 0]
    assert w[0, 0] == 0 and w[1, 1] == 1 and w[1, 3] == 1
    assert torch.isclose(w[2, 2], torch.tensor(0.9)) and torch.isclose(w[3, 3], torch.tensor(0.81))


def test_reconstruction_steps_lower_the_loss(make_context, make_train_data, fixed_paired):
    torch.manual_seed(0)
    method = GnIptMethod(
        make_context(GnIptMethod, 32, **{**SMALL, "batch_size": 4, "d_steps": 0}, lr=1e-3, gan_loss_alpha=0.0)
    )
    method.setup_training(fixed_paired(make_train_data(32, 8), 4))
    losses = [(lambda logs: logs["l1"] + logs["ae"])(method.train_step(step)) for step in range(10)]
    assert sum(losses[-3:]) / 3 < 0.92 * sum(losses[:3]) / 3


def test_checkpoint_round_trip(make_context, make_train_data):
    ctx = make_context(GnIptMethod, 32, **SMALL)
    method = GnIptMethod(ctx)
    method.setup_training(make_train_data(32, 8))
    logs = method.train_step(0)
    assert {"loss", "d_loss", "l1", "ae", "g_wgan"} <= logs.keys()
    buffer = io.BytesIO()
    torch.save(method.state_dict(), buffer)
    buffer.seek(0)
    clone = GnIptMethod(ctx)
    clone.setup_training(make_train_data(32, 8))
    clone.load_state_dict(torch.load(buffer, weights_only=True))
    for a, b in zip(method.D_local.parameters(), clone.D_local.parameters(), strict=True):
        assert torch.equal(a, b)
    s1, s2 = method.opt_d.state_dict()["state"], clone.opt_d.state_dict()["state"]
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k]["exp_avg_sq"], s2[k]["exp_avg_sq"]) for k in s1)
    assert clone.opt_g.state_dict()["param_groups"][0]["betas"] == (0.5, 0.9)
    images, hole = torch.rand(2, 3, 32, 32), torch.zeros(2, 1, 32, 32)
    hole[:, :, 8:20, 8:20] = 1
    assert torch.equal(method.restore(images, hole).images, clone.restore(images, hole).images)


def test_quick_profile_overrides_and_paper_defaults(make_context):
    quick = GnIptMethod(make_context(GnIptMethod, 64, profile="quick"))
    paper = GnIptMethod(make_context(GnIptMethod, 64, profile="paper"))
    assert (quick.cfg.width, quick.cfg.d_width, quick.cfg.batch_size, quick.cfg.d_steps) == (8, 16, 4, 1)
    assert (paper.cfg.width, paper.cfg.d_width, paper.cfg.batch_size, paper.cfg.d_steps) == (32, 64, 16, 5)
    assert quick.cfg.lr == paper.cfg.lr == 1e-4 and quick.patch_size == paper.patch_size == 32  # not profiled
    assert GnIptMethod.steps_for("quick") == 160 and GnIptMethod.steps_for("paper") == 100_000


def test_options_are_cast_and_checked(make_context):
    method = GnIptMethod(make_context(GnIptMethod, 32, **SMALL, patch_size="16", attention_softmax_scale="5"))
    assert method.patch_size == 16 and method.G.attention.scale == 5.0
    for bad in ({"width": 1}, {"d_steps": -1}, {"spatial_discount_gamma": 1.1}, {"beta2": 1.0}, {"lr": -1e-4}):
        with pytest.raises(OptionError, match=next(iter(bad))):
            make_context(GnIptMethod, 32, **bad)
    with pytest.raises(OptionError, match="did you mean d_width"):
        make_context(GnIptMethod, 32, d_widht=8)
    for key, value in (("attention_ksize", 4), ("attention_fuse_k", 2), ("attention_rate", 3)):
        with pytest.raises(ValueError, match=f"gnipt: option {key}"):
            GnIptMethod(make_context(GnIptMethod, 32, **SMALL, **{key: value}))


def test_killed_and_resumed_training_is_bit_identical(make_context, make_train_data, tmp_path):
    """The critics' gradient penalty draws from the global generator, which the harness saves."""
    check_bit_exact_resume(GnIptMethod, SMALL, 3, 2, tmp_path, make_context, lambda: make_train_data(32, 8))
