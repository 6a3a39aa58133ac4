"""The group-norm InstanceNorm is torch's InstanceNorm: the same outputs and gradients, the same state dict."""

import pytest
import torch
from torch import nn

from bench.nn.norm import InstanceNorm2d


@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_matches_torch_instance_norm(affine, channels_last):
    torch.manual_seed(0)
    ours, theirs = InstanceNorm2d(16, affine=affine), nn.InstanceNorm2d(16, affine=affine)
    if affine:
        with torch.no_grad():
            for p in (ours.weight, ours.bias):
                p.uniform_(-2, 2)
        theirs.load_state_dict(ours.state_dict())
    x = torch.randn(4, 16, 12, 10) * 3 + 1
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    grad = torch.randn(4, 16, 12, 10)
    ya, yb = ours(a), theirs(b)
    torch.testing.assert_close(ya, yb, rtol=0, atol=2e-5)
    ya.backward(grad)
    yb.backward(grad)
    torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=2e-5)
    if affine:
        torch.testing.assert_close(ours.weight.grad, theirs.weight.grad, rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(ours.bias.grad, theirs.bias.grad, rtol=1e-5, atol=1e-4)
    # each (sample, channel) plane is normalised on its own: zero mean and unit variance before the affine map
    if not affine:
        plane = ya.detach().flatten(2)
        torch.testing.assert_close(plane.mean(-1), torch.zeros(4, 16), rtol=0, atol=1e-5)
        torch.testing.assert_close(plane.var(-1, unbiased=False), torch.ones(4, 16), rtol=0, atol=1e-3)


def test_same_state_dict_keys_and_running_stats_path():
    assert InstanceNorm2d(8, affine=True).state_dict().keys() == nn.InstanceNorm2d(8, affine=True).state_dict().keys()
    tracked = InstanceNorm2d(8, track_running_stats=True).train()
    tracked(torch.randn(2, 8, 5, 5) + 3)
    assert float(tracked.running_mean.mean()) > 0.1  # running statistics take torch's own path
