"""bench.measures held to second implementations on the same weights (random backbones saved to files, as no
ImageNet or Inception file exists here): LPIPS against the ``lpips`` package, FID and KID against hand-computed
formulas and torchmetrics end to end, LMD on hand-shifted faces; and the "not computed" path of a run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.measures import fid as fidm
from bench.measures import lpips as lpm
from bench.measures.lmd import LMD


def _vgg_features_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A random VGG-16 ``features`` in torchvision's layout (the classifier, which LPIPS never reads, left out)."""
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(seed)
    return {f"features.{k}": v for k, v in make_layers(cfgs["D"]).state_dict().items()}


def _alex_features_state(seed: int = 0) -> dict[str, torch.Tensor]:
    from torchvision.models import AlexNet

    with torch.device("meta"):
        model = AlexNet()
    features = model.features.to_empty(device="cpu")
    torch.manual_seed(seed)
    for m in features.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            torch.nn.init.normal_(m.bias, std=0.01)
    return {f"features.{k}": v for k, v in features.state_dict().items()}


def random_inception(path: Path, seed: int = 0) -> Path:
    """torch-fidelity's Inception architecture, randomly initialised (He-normal convolutions, so its features are
    not vanishingly small) and saved as its state dict: a stand-in ``pt_inception-2015-12-05`` file."""
    torch.manual_seed(seed)
    model = fidm._architecture("cpu")
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("weights")
    torch.save(_vgg_features_state(), folder / "vgg16.pth")
    torch.save(_alex_features_state(), folder / "alexnet.pth")
    random_inception(folder / fidm.INCEPTION_NAMES[0])
    return folder


def _images(n: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = rng.integers(0, 256, (n, size // 8, size // 8, 3)).repeat(8, 1).repeat(8, 2)  # structure, not only noise
    return np.clip(smooth + rng.normal(0, 20, smooth.shape), 0, 255).astype(np.uint8)


@pytest.mark.filterwarnings("ignore:.*deprecated since 0.13")  # lpips passes torchvision its old arguments
@pytest.mark.parametrize(
    ("name", "net", "state_of"), [("lpips", "vgg", _vgg_features_state), ("lpips_alex", "alex", _alex_features_state)]
)
def test_lpips_equals_the_lpips_package_on_the_same_backbone_file(weights, name, net, state_of):
    import lpips

    ours = lpm.LPIPS(name, weights / ("vgg16.pth" if net == "vgg" else "alexnet.pth"))
    reference = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)  # the package's own heads
    state = state_of()
    reference.net.load_state_dict({k: state[lpm._source_key(k)] for k in reference.net.state_dict()})
    a, b = _images(4, 64, 0), _images(4, 64, 1)
    got = ours.scores(a, b)[name]
    to = lambda x: torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255 * 2 - 1  # noqa: E731 - the package's [-1,1]
    with torch.no_grad():
        expected = reference(to(a), to(b)).flatten().double().numpy()
    assert got.shape == (4,) and np.all(got > 0)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    assert np.allclose(ours.scores(a, a)[name], 0, atol=1e-7)  # identical images: distance 0


def test_an_lpips_backbone_of_another_network_is_refused_naming_what_does_not_fit(tmp_path):
    from torchvision.models.vgg import cfgs, make_layers

    vgg19 = {f"features.{k}": v for k, v in make_layers(cfgs["E"]).state_dict().items()}
    problem = lpm.backbone_problem(vgg19, "vgg")
    assert problem.startswith("missing ") and "features.17.weight" in problem
    torch.save({"conv1.weight": torch.zeros(8, 3, 3, 3)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="does not fit VGG-16 for LPIPS: missing 26 of 26 backbone keys"):
        lpm.LPIPS("lpips", tmp_path / "other.pth")


def _hand_fid(a: np.ndarray, b: np.ndarray) -> float:
    from scipy import linalg

    mu1, mu2, s1, s2 = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * root))


def test_fid_is_the_frechet_distance_of_the_fitted_gaussians():
    rng = np.random.default_rng(0)
    d = 6
    m1, m2, v1, v2 = np.zeros(d), np.full(d, 0.5), np.full(d, 1.0), np.full(d, 4.0)
    a = rng.normal(m1, np.sqrt(v1), (4000, d))
    b = rng.normal(m2, np.sqrt(v2), (4000, d))
    assert fidm.fid(a, b) == pytest.approx(_hand_fid(a, b), rel=1e-9)
    analytic = ((m1 - m2) ** 2).sum() + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum()  # diagonal Gaussians: 7.5
    assert fidm.fid(a, b) == pytest.approx(analytic, rel=0.05)
    assert fidm.fid(a, a) == pytest.approx(0, abs=1e-9)


def test_fid_of_sets_smaller_than_the_dimensions_equals_torch_fidelitys_formula():
    """The images'-side route (n < d, every benchmark run) against torch-fidelity's eigenvalue formula."""
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 1, (20, 64)), rng.normal(0.1, 1.5, (25, 64))
    stats = [fid_features_to_statistics(torch.from_numpy(f)) for f in (a, b)]
    expected = fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"]
    assert fidm.fid(a, b) == pytest.approx(expected, rel=1e-6)
    assert fidm.fid(a, b) == pytest.approx(_hand_fid(a, b), rel=1e-6)


def test_kid_is_the_unbiased_mmd_of_the_cubic_kernel():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, (30, 16)), rng.normal(0.3, 1, (30, 16))
    k = lambda x, y: (x @ y.T / x.shape[1] + 1) ** 3  # noqa: E731 - torch-fidelity's default polynomial kernel
    kxx, kyy, kxy = k(a, a), k(b, b), k(a, b)
    n = len(a)
    mmd = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean()
    mean, std = fidm.kid(a, b, subset_size=n, subsets=3)  # subsets of the whole sets are the sets themselves
    assert mean == pytest.approx(mmd, rel=1e-9) and mmd > 0
    assert std == pytest.approx(0, abs=1e-12)


def test_kid_subsets_are_fitted_to_n_and_tiny_sets_are_not_scored():
    assert fidm.kid_subset_size(12, 40) == 6 and fidm.kid_subset_size(5000, 4000) == 1000
    rng = np.random.default_rng(0)
    out = fidm.set_scores(rng.normal(size=(12, 8)), rng.normal(size=(40, 8)))
    assert (out["n"], out["n_reference"], out["kid_subset_size"], out["kid_subsets"]) == (12, 40, 6, 100)
    assert out["kid_std"] > 0  # subsets of half the set differ
    few = fidm.set_scores(rng.normal(size=(3, 8)), rng.normal(size=(40, 8)))
    assert "fid" not in few and few["not_computed"].startswith("too few images (N=3")


def test_our_inception_features_and_fid_equal_torchmetrics_on_the_same_file(weights):
    """torchmetrics' FID (given the file by ``feature_extractor_weights_path``) wraps the same extractor; its default
    ``antialias=True`` resizes differently from torch-fidelity's TF1.x-compatible bilinear, so it is compared with
    ``antialias=False``, the convention here."""
    from torchmetrics.image.fid import FrechetInceptionDistance, _compute_fid

    path = weights / fidm.INCEPTION_NAMES[0]
    a = _images(3, 32, 2)
    ours = fidm.InceptionFeatures(path)(a)  # loads from the file, nothing downloaded
    assert ours.shape == (3, 2048) and ours.std() > 1e-3  # a stand-in whose features carry signal
    metric = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(path), antialias=False)
    with torch.no_grad():
        theirs = metric.inception(torch.from_numpy(a).permute(0, 3, 1, 2)).double().numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    rng = np.random.default_rng(4)
    x, y = rng.normal(0, 1, (50, 12)), rng.normal(0.2, 1.3, (60, 12))  # the formula on features of full rank
    stats = [(torch.from_numpy(f.mean(0)), torch.from_numpy(np.cov(f, rowvar=False))) for f in (x, y)]
    assert fidm.fid(x, y) == pytest.approx(float(_compute_fid(*stats[0], *stats[1])), rel=1e-9)


def test_a_file_that_is_not_torch_fidelitys_inception_is_refused():
    assert fidm.inception_problem({"conv1.weight": torch.zeros(8, 3, 3, 3)}).startswith("missing 566 of 566 keys")


@pytest.mark.face
def test_lmd_of_a_face_shifted_by_k_pixels_is_about_k(sample):
    from bench import landmarks
    from bench.data.celeba import IMAGE_DIR, _crop_fixed

    if landmarks.unavailable():
        pytest.skip(landmarks.unavailable())
    faces = np.stack([_crop_fixed(f, 64) for f in sorted((sample / IMAGE_DIR).iterdir())[:8]])
    lmd = LMD()
    assert np.allclose(lmd.scores(faces, faces)["lmd"], 0)
    for k in (2, 4):
        shifted = np.roll(faces, k, axis=2)  # k px to the right
        assert np.median(lmd.scores(shifted, faces)["lmd"]) == pytest.approx(k, abs=0.3)


RUN = ["run", "--methods", "identity,telea", "--mask-source", "gt", "--limit", "4", "--data-limit", "8"]


def test_a_run_without_weight_files_names_each_measure_not_computed(bench_main, tmp_path):
    code, _, err = bench_main(*RUN, "--output", str(tmp_path))
    assert code == 0, err
    run = next((tmp_path / "runs").iterdir())
    measures = json.loads((run / "manifest.json").read_text())["measures"]
    assert measures["lpips"]["status"] == "not computed" and "no VGG-16 weights" in measures["lpips"]["why"]
    assert "no AlexNet weights" in measures["lpips_alex"]["why"] and "no Inception weights" in measures["fid"]["why"]
    row = json.loads((run / "metrics" / "telea@gt.jsonl").read_text().splitlines()[0])
    assert "lpips" not in row and "fid" not in row and not (run / "measures").exists()
    html = (run / "report.html").read_text()
    assert "<dt>LPIPS-VGG</dt><dd>not computed (no VGG-16 weights" in html
    assert "<dt>FID / KID</dt><dd>not computed (no Inception weights" in html
    results = json.loads((run / "results.json").read_text())
    assert results["schema_version"] == 2 and results["measures"]["fid"]["status"] == "not computed"


@pytest.mark.slow
def test_a_run_with_stand_in_files_shows_every_measure_in_rows_tables_and_results(bench_main, tmp_path, weights):
    import jsonschema

    from bench.report.exports import SCHEMA_PATH

    one = ["run", "--methods", "identity", "--limit", "4", "--data-limit", "8"]  # one label: Inception costs ~1 s/image
    code, _, err = bench_main(*one, "--weights-dir", str(weights), "--output", str(tmp_path))
    assert code == 0, err
    run = next((tmp_path / "runs").iterdir())
    row = json.loads((run / "metrics" / "identity.jsonl").read_text().splitlines()[0])
    assert row["lpips"] > 0 and row["lpips_alex"] > 0
    sets = json.loads((run / "measures" / "identity.json").read_text())
    assert sets["test_paired"]["n"] == 4 and sets["test_paired"]["reference"] == "test_paired/gt"
    assert sets["test_natural"]["reference"] == "test_clean/input" and "fid" in sets["test_paired"]
    results = json.loads((run / "results.json").read_text())
    jsonschema.validate(results, json.loads(SCHEMA_PATH.read_text()))
    split = results["methods"]["identity"]["splits"]["test_paired"]
    assert {"lpips", "lpips_alex"} <= set(split["metrics"]) and split["sets"]["n_reference"] == 4
    assert results["measures"]["lpips"]["file"]["path"] == str(weights / "vgg16.pth")
    table = (run / "tables" / "table3.md").read_text()
    assert "LPIPS-VGG" in table and "LPIPS-Alex" in table and "(N=4 vs 4)" in table
    assert "\\pm" in (run / "tables" / "table3.tex").read_text()
    html = (run / "report.html").read_text()
    assert "LPIPS-VGG (lower is better)" in html and "FID is biased upward at small N" in html


def test_bench_perf_times_each_measure_whose_file_is_given(weights):
    from bench.perf import measure_costs

    rows = measure_costs(weights, None, [32], batch_size=2, device=torch.device("cpu"), repeats=1)
    names = {r["measure"] for r in rows}
    assert {"lpips", "lpips_alex", "fid/kid features"} <= names
    assert all(r["ms_per_image"] > 0 and r["size"] == 32 for r in rows)
    assert not [r for r in measure_costs(None, None, [32], 2, torch.device("cpu"), 1) if r["measure"] != "lmd"]
