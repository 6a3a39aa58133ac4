"""bench.nn.gan: GANLoss values by hand per mode and reduction, the ImagePool's rule and state, the PatchGAN's
shapes and 70 px receptive field."""

import math
import random

import pytest
import torch
from torch import nn

from bench.nn.gan import GANLoss, ImagePool, patch_discriminator

# Two samples of two patch scores each: [B=2, 1, 1, 2].
SCORES = torch.tensor([0.5, 2.0, -1.0, 0.0]).view(2, 1, 1, 2)


def _softplus(v: float) -> float:
    return math.log1p(math.exp(v))


@pytest.mark.parametrize(
    "mode, real, values",
    [
        ("lsgan", True, [0.25, 1.0, 4.0, 1.0]),  # (p - 1)^2
        ("lsgan", False, [0.25, 4.0, 1.0, 0.0]),  # p^2
        ("vanilla", True, [_softplus(-p) for p in (0.5, 2.0, -1.0, 0.0)]),  # -log sigmoid(p)
        ("vanilla", False, [_softplus(p) for p in (0.5, 2.0, -1.0, 0.0)]),  # -log(1 - sigmoid(p))
        ("wgangp", True, [-0.5, -2.0, 1.0, 0.0]),  # -p
        ("wgangp", False, [0.5, 2.0, -1.0, 0.0]),  # p
    ],
)
def test_gan_loss_by_hand(mode, real, values):
    loss = GANLoss(mode)
    assert loss(SCORES, real).item() == pytest.approx(sum(values) / 4)  # mean over all elements
    assert loss(SCORES, real, reduction="per_sample").item() == pytest.approx(sum(values) / 2)  # sum per sample


def test_gan_loss_refuses_unknown_mode_and_reduction():
    with pytest.raises(ValueError, match="lsgan, vanilla, wgangp"):
        GANLoss("hinge")
    with pytest.raises(ValueError, match="per_sample"):
        GANLoss("lsgan")(SCORES, True, reduction="sum")


def test_gan_loss_gradient_is_the_hand_derivative():
    scores = SCORES.clone().requires_grad_(True)
    GANLoss("lsgan")(scores, True).backward()
    assert torch.allclose(scores.grad, 2 * (SCORES - 1) / 4)


def _images(n: int, start: float = 0.0) -> torch.Tensor:
    """n distinguishable 1x1x1 'images' valued start, start+1, ..."""
    return (torch.arange(n, dtype=torch.float32) + start).view(n, 1, 1, 1)


def _values(images) -> list[float]:
    return [float(x.flatten()[0]) for x in images]


def test_image_pool_fills_up_to_its_size_returning_the_new_images():
    pool = ImagePool(3)
    out = pool.query(_images(2))
    assert _values(out) == [0.0, 1.0] and len(pool.images) == 2
    out = pool.query(_images(1, start=2))  # the third fills the pool, still returned as is
    assert _values(out) == [2.0] and _values(pool.images) == [0.0, 1.0, 2.0]


def test_image_pool_when_full_swaps_with_probability_one_half():
    pool = ImagePool(4)
    pool.query(_images(4, start=-4))  # full: -4..-1
    random.seed(1)
    swaps = 0
    n = 2000
    for i in range(n):
        before = _values(pool.images)
        (got,) = _values(pool.query(_images(1, start=i)))
        after = _values(pool.images)
        if got == i:  # the new image itself: the pool is untouched
            assert after == before
        else:  # a stored one, whose slot now holds the new image
            swaps += 1
            slot = before.index(got)
            assert after[slot] == i and after[:slot] + after[slot + 1 :] == before[:slot] + before[slot + 1 :]
    assert abs(swaps / n - 0.5) < 0.04  # 1/2, binomial std 0.011


def test_image_pool_output_is_detached_and_pool_copies():
    pool = ImagePool(2)
    x = torch.ones(2, 3, 4, 4, requires_grad=True)
    out = pool.query(x * 2)
    assert not out.requires_grad
    with torch.no_grad():
        x.add_(1)
    assert torch.equal(pool.images[0], torch.full((1, 3, 4, 4), 2.0))  # stored copies, not views of x


def test_image_pool_state_round_trip_draws_the_same():
    a = ImagePool(5)
    random.seed(3)
    for i in range(3):
        a.query(torch.rand(3, 3, 4, 4) + i)
    b = ImagePool(5)
    b.load_state_dict(a.state_dict())
    assert len(b.images) == 5 and all(torch.equal(x, y) for x, y in zip(a.images, b.images, strict=True))
    new = torch.rand(4, 3, 4, 4)
    random.seed(7)
    out_a = a.query(new)
    random.seed(7)
    out_b = b.query(new)
    assert torch.equal(out_a, out_b)
    assert torch.equal(a.state_dict()["images"], b.state_dict()["images"])
    empty = ImagePool(5)
    empty.load_state_dict(ImagePool(5).state_dict())
    assert empty.images == []
    with pytest.raises(ValueError, match="size 5 cannot be loaded into one of size 4"):
        ImagePool(4).load_state_dict(a.state_dict())


def test_image_pool_of_size_zero_passes_through():
    pool = ImagePool(0)
    x = torch.rand(3, 3, 4, 4)
    assert pool.query(x) is x and pool.images == []
    assert pool.state_dict()["images"].numel() == 0


@pytest.mark.parametrize("size, side", [(64, 6), (128, 14), (256, 30)])
def test_patch_discriminator_shape_and_widths(size, side):
    d = patch_discriminator(3, 4, 3, "instance")
    assert d(torch.rand(2, 3, size, size)).shape == (2, 1, side, side)  # 256 px -> 30x30 as pix2pix
    convs = [m for m in d if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [4, 8, 16, 32, 1]
    assert [c.stride[0] for c in convs] == [2, 2, 2, 1, 1]
    assert all(c.bias is not None for c in convs)  # InstanceNorm: convs keep their bias
    norms = [m for m in d if isinstance(m, nn.InstanceNorm2d)]
    assert len(norms) == 3 and not any(n.affine for n in norms)
    batch = patch_discriminator(3, 4, 3, "batch")
    assert [c.bias is None for c in batch if isinstance(c, nn.Conv2d)] == [False, True, True, True, False]
    with pytest.raises(ValueError, match="norm must be one of"):
        patch_discriminator(norm="group")


@pytest.mark.parametrize("n_layers, field", [(1, 16), (2, 34), (3, 70)])
def test_patch_discriminator_receptive_field(n_layers, field):
    """The input pixels one interior output score depends on: 70x70 for n_layers=3. BatchNorm in eval mode is a
    per-pixel affine map, so it does not couple pixels the way InstanceNorm's statistics do."""
    torch.manual_seed(0)
    d = patch_discriminator(1, 2, n_layers, "batch").eval()
    x = torch.rand(1, 1, 160, 160, requires_grad=True)
    out = d(x)
    i = out.shape[-1] // 2
    out[0, 0, i, i].backward()
    rows = x.grad[0, 0].abs().sum(1).nonzero()
    cols = x.grad[0, 0].abs().sum(0).nonzero()
    assert int(rows[-1] - rows[0]) + 1 == field and int(cols[-1] - cols[0]) + 1 == field
