"""The ArcFace recognizer: IResNet-50/100 as InsightFace's arcface_torch defines them (parameter and key counts from
that file's structure), a random backbone.pth saved to a file loads and embeds, and files that do not fit are
refused naming the cause. No ArcFace weights exist on these machines: every file here is random or constant."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from baselines import arcface
from bench.identification.recognizer import RecognizerContext


def official_count(layers: tuple[int, ...]) -> tuple[int, int]:
    """(parameters, state-dict keys) of arcface_torch's IResNet(IBasicBlock, layers), counted from that file's
    structure: a 3x3 stem (3 -> 64) with BN and PReLU; per IBasicBlock BN(cin), conv3x3 cin->c, BN(c), PReLU(c),
    conv3x3 c->c, BN(c), and in the first block of each stage a 1x1 conv + BN shortcut; BN(512), fc 25088 -> 512
    with bias, BatchNorm1d(512). A BN holds 2 parameters and 3 buffers per layer (5 keys), PReLU one per channel."""
    params, keys = 3 * 64 * 9 + 2 * 64 + 64, 1 + 5 + 1
    cin = 64
    for width, blocks in zip((64, 128, 256, 512), layers, strict=True):
        for i in range(blocks):
            c_in = cin if i == 0 else width
            params += 2 * c_in + c_in * width * 9 + 2 * width + width + width * width * 9 + 2 * width
            keys += 5 + 1 + 5 + 1 + 1 + 5
            if i == 0:
                params += c_in * width + 2 * width
                keys += 1 + 5
        cin = width
    params += 2 * 512 + 512 * 7 * 7 * 512 + 512 + 2 * 512
    keys += 5 + 2 + 5
    return params, keys


@pytest.mark.parametrize("depth", [50, 100])
def test_iresnet_has_the_official_parameter_count_and_key_names(depth):
    with torch.device("meta"):
        model = arcface.IResNet(depth)
    params, keys = official_count(arcface.DEPTHS[depth])
    assert sum(p.numel() for p in model.parameters()) == params
    assert len(model.state_dict()) == keys
    assert params == {50: 43_590_848, 100: 65_156_160}[depth]  # IResNet-50 ~43.6M, IResNet-100 ~65.2M
    state = model.state_dict()
    last = arcface.DEPTHS[depth][2] - 1
    for key in (
        "conv1.weight",
        "prelu.weight",
        "layer1.0.downsample.0.weight",
        "layer1.0.downsample.1.running_var",
        f"layer3.{last}.bn3.weight",
        "layer4.2.prelu.weight",
        "bn2.running_mean",
        "fc.bias",
        "features.weight",
    ):
        assert key in state, key
    assert "layer2.1.downsample.0.weight" not in state  # only a stage's first block changes the shape
    assert state["fc.weight"].shape == (512, 25088)
    assert all(m.eps == 1e-05 for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))
    assert not model.features.weight.requires_grad  # the release fixes the feature BN's scale at 1


def stand_in(depth: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random IResNet state dict that keeps activations finite through 100 layers (the release's N(0, 0.1)
    initialisation overflows float32 at depth 100), with random BN statistics: a stand-in for backbone.pth."""
    torch.manual_seed(seed)
    model = arcface.IResNet(depth)
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="linear")
            if name.endswith("conv2"):  # the residual branch's output: small, so the sum grows slowly
                module.weight.data.mul_(0.3)
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return model.state_dict()


def constant(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same keys and shapes with every tensor one expanded scalar: the file is a few KB."""
    return {k: torch.zeros((), dtype=v.dtype).expand(v.shape) for k, v in state.items()}


def meta_state(depth: int) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return arcface.IResNet(depth).state_dict()


def _faces(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_a_random_backbone_saved_to_a_file_loads_and_embeds(tmp_path):
    state = stand_in(50)
    path = tmp_path / "backbone.pth"
    torch.save(state, path)
    recognizer = arcface.ArcFaceRecognizer(RecognizerContext(64, "cpu", weights=path))
    faces = _faces(3, 64)
    feats = recognizer.embed(faces)
    assert feats.shape == (3, 512) and feats.dtype == np.float32 and np.isfinite(feats).all()
    reference = arcface.IResNet(50)
    reference.load_state_dict(state)  # the file's keys are the network's: strict loading
    with torch.inference_mode():
        expected = reference.eval()(arcface.to_input(faces)).numpy()
    np.testing.assert_allclose(feats, expected, rtol=1e-5, atol=1e-5)
    assert "IResNet-50" in recognizer.describe() and "resized 64 -> 112 px" in recognizer.describe()
    # DataParallel's prefix and a file without BN counters (some converters drop them) load to the same network
    trimmed = {f"module.{k}": v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(trimmed, tmp_path / "trimmed.pth")
    again = arcface.ArcFace50(RecognizerContext(64, "cpu", weights=tmp_path / "trimmed.pth"))
    np.testing.assert_array_equal(again.embed(faces), feats)


def test_to_input_is_112_px_rgb_scaled_to_minus_one_one():
    faces = np.zeros((2, 64, 64, 3), np.uint8)
    faces[0, ..., 0] = 255  # pure red
    x = arcface.to_input(faces)
    assert x.shape == (2, 3, 112, 112)
    assert torch.allclose(x[0, 0], torch.ones(112, 112)) and torch.allclose(x[0, 1], -torch.ones(112, 112))
    assert torch.allclose(x[1], -torch.ones(3, 112, 112))
    assert arcface.to_input(_faces(1, 112)).shape == (1, 3, 112, 112)


def test_the_depth_comes_from_the_file(tmp_path):
    for depth in (50, 100):
        torch.save(constant(meta_state(depth)), tmp_path / f"r{depth}.pth")
        assert arcface.depth_of(tmp_path / f"r{depth}.pth") == depth
        assert arcface.check_weights(tmp_path / f"r{depth}.pth") == depth
    assert (tmp_path / "r100.pth").stat().st_size < 2_000_000  # constant tensors: the test files stay small


def r18_state() -> dict[str, torch.Tensor]:
    """IResNet-18's keys ([2, 2, 2, 2] blocks), which the arcface recognizer does not take."""
    keep = lambda k: not k.startswith("layer") or int(k.split(".")[1]) < 2  # noqa: E731
    return {k: v for k, v in constant(meta_state(50)).items() if keep(k)}


@pytest.mark.parametrize(
    ("make", "depth", "cause"),
    [
        (
            lambda: {k: v for k, v in constant(meta_state(50)).items() if not k.startswith(("fc.", "features."))},
            None,
            "does not fit ArcFace IResNet-50: missing 6 keys (fc.weight, fc.bias, features.weight and 3 more)",
        ),
        (
            lambda: constant(meta_state(50)) | {"fc.weight": torch.zeros(()).expand(512, 8192)},
            None,
            "1 of another shape, e.g. fc.weight [512, 8192] where IResNet-50 has [512, 25088]",
        ),
        (lambda: constant(meta_state(50)) | {"head.weight": torch.zeros(3)}, None, "unexpected 1 key (head.weight)"),
        (r18_state, None, "an IResNet with [2, 2, 2, 2] blocks per stage (IResNet-18); the arcface recognizer"),
        (lambda: constant(meta_state(50)), 100, "holds IResNet-50, not IResNet-100; use --id-model arcface"),
        (lambda: {"conv1.weight": torch.zeros(8, 3, 3, 3)}, None, "no layer1..layer4 keys (not an IResNet"),
        (lambda: [torch.zeros(2)], None, "not a state dict of tensors"),
    ],
    ids=["missing-keys", "wrong-shape", "unexpected-key", "iresnet18", "wrong-depth", "another-network", "a-list"],
)
def test_weights_that_do_not_fit_name_the_cause(tmp_path, make, depth, cause):
    path = tmp_path / "w.pth"
    torch.save(make(), path)
    with pytest.raises(ValueError, match="^" + str(path).replace(".", r"\.")) as info:
        arcface.check_weights(path, depth)
    assert cause in str(info.value)


@pytest.mark.slow
def test_arcface_in_a_run_gives_angle_verification_frechet_and_the_roc_in_the_report(tmp_path):
    """``bench run --identification --id-model arcface`` with a random backbone.pth on the embedded set: every new
    column in identification.json, results.json, the manifest and the rendered report."""
    from rich.console import Console

    from bench.io import file_sha256
    from bench.planning import RunConfig
    from bench.report import render_report
    from bench.runner import Runner

    weights = tmp_path / "backbone.pth"
    torch.save(stand_in(50), weights)
    config = RunConfig(
        methods=["identity"],
        identification=True,
        id_model=["arcface"],
        id_weights=weights,
        data_limit=40,
        limit=6,
        output=tmp_path / "out",
    )
    store = Runner(config, argv=["test"], console=Console(quiet=True)).run()
    found = json.loads((store.root / "identification.json").read_text())
    assert found["version"] == 3 and not found["failed"]
    assert found["models"][0]["weights"] == {
        "path": str(weights),
        "bytes": weights.stat().st_size,
        "sha256": file_sha256(weights),
    }
    rows = {(r["set"], r["probes"]): r for r in found["results"]}
    paired = rows["synthetic", "occluded input"]
    assert 0 <= paired["angle"]["mean"] <= 180 and paired["angle"]["n"] == 6
    assert paired["verification"]["genuine"] == 6 and paired["verification"]["impostor"] == 6 * 39
    at = {a["far"]: a for a in paired["verification"]["at"]}
    assert at[1e-2]["tar"] is not None and at[1e-3]["note"] == "not enough impostor pairs (234 < 1000)"
    assert paired["frechet"]["dim"] == 512 and paired["frechet"]["value"] >= 0
    assert "frechet" not in rows["synthetic", "clean"] and "verification" in rows["synthetic", "clean"]
    assert rows["natural", "occluded input"]["frechet"]["reference"] == "clean test faces"
    manifest = json.loads((store.root / "manifest.json").read_text())
    assert "IResNet-50" in manifest["metrics"]["id_model arcface (pretrained)"]
    assert "smallest threshold" in manifest["metrics"]["id_verification"]
    header = (store.root / "identification" / "similarity.csv").read_text().splitlines()[0]
    assert header == "recognizer,variant,label,sample,cosine,degrees"
    html = render_report([store.root], output=tmp_path / "report.html").path.read_text()
    assert 'aria-label="roc"' in html and "TAR@FAR 1e-2" in html and "angle to ground truth (Deg.)" in html
    assert "not enough impostor pairs (234 &lt; 1000)" in html
    results = json.loads((store.root / "results.json").read_text())
    assert results["identification"]["results"][0]["verification"]["roc"]
