"""CUDA checks, skipped on machines without a GPU: every method trains a step and restores at 128 px, in float32
and under bf16 autocast with channels-last networks."""

from dataclasses import fields

import pytest
import torch

from bench import plugins
from bench.data.embedded import build_synthetic, default_occluder
from bench.data.types import TrainData, mask_tensor, to_tensor
from bench.method import make_context

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
METHODS = [
    "oagan",
    "oagan:two_path",
    "pconv",
    "csa",
    "gfc",
    "gnipt",
    "yeh",
    "cyclegan",
    "ganimation",
    "selfreg",
    "telea",
    "identity",
]
SMALL = {"batch_size": 2, "iterations": 5}  # where a method declares them


@pytest.fixture(scope="module")
def bench128():
    return build_synthetic(
        size=128, identities=8, train_clean=32, train_natural=16, test_paired=8, test_natural=4, test_clean=4
    )


@pytest.mark.parametrize("accel", ["fp32", "bf16+channels_last"])
@pytest.mark.parametrize("name", METHODS)
def test_method_trains_and_restores_on_cuda(name, accel, bench128):
    from bench.acceleration import Acceleration, autocast

    acceleration = Acceleration("bf16", channels_last=True) if accel != "fp32" else Acceleration()
    spec = plugins.registry().get(name)
    device = torch.device("cuda")
    cls = spec.load()
    declared = {f.name for f in fields(cls.Options)}
    small = {k: v for k, v in SMALL.items() if k in declared}
    ctx = make_context(
        cls,
        image_size=128,
        profile="paper",
        device=device,
        options=(spec.options, small),
        name=name,
        attribute_names=bench128.attribute_names,
    )
    method = cls(ctx)
    acceleration.prepare(method)
    if method.trainable:
        data = TrainData(bench128.train_clean, bench128.train_natural, default_occluder(128), bench128.attribute_names)
        method.setup_training(data)
        for step in range(2):
            with autocast(device, acceleration.precision):
                losses = method.train_step(step)
            assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    faces = bench128.test_paired
    x = to_tensor(faces.images[:2]).to(device)
    m = mask_tensor(faces.masks[:2]).to(device) if spec.needs_mask else None
    with torch.no_grad(), autocast(device, acceleration.precision):
        out = method.restore(x * (1 - m) if m is not None else x, m)
    out = out._replace(images=out.images.float())
    assert out.images.shape == (2, 3, 128, 128) and out.images.min() >= 0 and out.images.max() <= 1
