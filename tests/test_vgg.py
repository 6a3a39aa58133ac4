import pytest
import torch

from bench.nn.losses import gradient_penalty, gram, style_loss, total_variation
from bench.nn.vgg import VGGFeatures, find_vgg_weights


def test_torchvision_format_weights_load_through_timm(tmp_path):
    """A user's torchvision vgg16 state dict gives exactly torchvision's pool1..pool3 features."""
    from torchvision.models import vgg16

    torch.manual_seed(1)
    ref = vgg16(weights=None).eval()
    path = tmp_path / "vgg16.pth"
    torch.save(ref.state_dict(), path)
    assert find_vgg_weights(None, tmp_path) == path
    ours = VGGFeatures(weights=path)
    assert ours.source["weights"] == str(path) and len(ours.source["sha256"]) == 64
    x = torch.rand(2, 3, 32, 32)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = ref.features[:17]((x - mean) / std)
        got = ours(x)
    assert [f.shape[1] for f in got] == [64, 128, 256]
    torch.testing.assert_close(got[-1], expected)


def test_random_fallback_is_fixed_frozen_and_recorded():
    a, b = VGGFeatures(), VGGFeatures()
    assert a.source["weights"] == "random-init(seed=0)"
    x = torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(a(x)[2], b(x)[2])  # same features in every run
    assert not any(p.requires_grad for p in a.parameters())
    a.train()
    assert not a.training


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_vgg_weights(str(tmp_path / "nope.pth"))


def test_gram_style_tv_hand_values():
    f = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # B=1, C=2, H=1, W=2
    torch.testing.assert_close(gram(f), torch.tensor([[[5.0, 11.0], [11.0, 25.0]]]) / 4)
    assert style_loss([f], [torch.zeros_like(f)]).item() == pytest.approx((5 + 11 + 11 + 25) / 4 / 4)
    x = torch.tensor([[[[0.0, 1.0], [3.0, 1.0]]]])
    assert total_variation(x, "sum").item() == pytest.approx(1 + 2 + 3 + 0)
    assert total_variation(x, "mean").item() == pytest.approx((1 + 2) / 2 + (3 + 0) / 2)


def test_gradient_penalty_zero_for_unit_gradient_critic():
    critic = lambda x: x.flatten(1).sum(1) / x[0].numel() ** 0.5  # noqa: E731 - |grad| = 1 everywhere
    real, fake = torch.rand(3, 1, 4, 4), torch.rand(3, 1, 4, 4)
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(0.0, abs=1e-10)


def test_masked_gradient_penalty_counts_only_the_mask():
    critic = lambda x: x.flatten(1).sum(1)  # noqa: E731 - grad = 1 at every pixel
    real, fake = torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4)
    mask = torch.zeros(2, 1, 4, 4)
    mask[..., :2, :2] = 1  # 4 pixels: masked norm = 2, penalty (2 - 1)^2
    assert gradient_penalty(critic, real, fake, mask).item() == pytest.approx(1.0, abs=1e-5)
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(9.0)  # full norm 4
