"""FID and KID per label and split, from Inception features of the saved PNGs, through torch-fidelity.

The feature extractor is torch-fidelity's ``FeatureExtractorInceptionV3`` (the TF 2015-12-05 Inception graph ported
to PyTorch: uint8 RGB in, resized to 299 px by its TF1.x-compatible bilinear interpolation, pool3 2048-d out) with
the user's ``pt_inception-2015-12-05-6726825d.pth``. FID is ``fid_statistics_to_metric`` (or its exact equivalent
from the images' side for sets smaller than the 2048 dimensions, :func:`fid`); KID is ``kid_features_to_metric``
(polynomial kernel of degree 3, unbiased MMD^2, 100 subsets). torch-fidelity loads its file with
``weights_only=False``: here the file is loaded weights-only first and handed over re-saved from memory, so no
pickle of objects is ever run. Both are set measures: FID is biased upward at small N (Chong & Forsyth 2020), KID
is unbiased; each value is stored with its N.

Reference sets: a paired split is compared with its own clean ground truth, the natural and clean splits with the
clean test faces (``test_clean``'s images).
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import numpy as np

INCEPTION_NAMES = ("pt_inception-2015-12-05-6726825d.pth", "weights-inception-2015-12-05-6726825d.pth")
KID_MAX_SUBSET = 1000  # torch-fidelity's and torchmetrics' default subset size
KID_SUBSETS = 100
KID_SEED = 2020  # torch-fidelity's default rng_seed
NATURAL_REFERENCE = "test_clean"  # the clean test faces: what natural and clean splits are compared with
FEATURES = "2048"


def kid_subset_size(n: int, n_reference: int) -> int:
    """Half the smaller set, at most 1000: subsets of the whole set would all be the same set (std 0)."""
    return min(KID_MAX_SUBSET, min(n, n_reference) // 2)


def _architecture(device: str = "meta"):
    """torch-fidelity's Inception with its own initialisation and nothing loaded (its constructor would download
    weights when given no file): on ``meta`` the keys and shapes a file must have."""
    import torch
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class _Unloaded(FeatureExtractorInceptionV3):
        def load_state_dict(self, *args, **kwargs):  # called by the constructor with the empty file below
            return None

    empty = io.BytesIO()
    torch.save({}, empty)
    empty.seek(0)
    with torch.device(device):
        return _Unloaded("inception-v3-compat", [FEATURES], feature_extractor_weights_path=empty)


def inception_problem(state: dict[str, Any]) -> str | None:
    """Why ``state`` is not torch-fidelity's Inception (missing keys, other shapes), or None."""
    wanted = {k: tuple(v.shape) for k, v in _architecture().state_dict().items()}
    missing = [k for k in wanted if k not in state]
    if missing:
        return f"missing {len(missing)} of {len(wanted)} keys ({', '.join(missing[:2])}, ...)"
    shaped = [f"{k} {list(state[k].shape)} where {list(s)}" for k, s in wanted.items() if tuple(state[k].shape) != s]
    if shaped:
        return f"{len(shaped)} of another shape, e.g. {shaped[0]} is expected"
    return None


def load_inception_state(path: Path) -> dict[str, Any]:
    from bench.measures.lpips import load_state

    state = load_state(path)
    problem = inception_problem(state)
    if problem:
        raise ValueError(f"{path}: does not fit torch-fidelity's Inception-v3 (pt_inception-2015-12-05): {problem}")
    return state


class InceptionFeatures:
    """pool3 features of uint8 RGB images, batched on ``device``."""

    def __init__(self, weights: Path, device: Any = "cpu", batch_size: int = 32) -> None:
        import torch
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        buffer = io.BytesIO()
        torch.save(load_inception_state(weights), buffer)  # checked, weights-only, on the CPU
        buffer.seek(0)
        self.model = FeatureExtractorInceptionV3(
            "inception-v3-compat", [FEATURES], feature_extractor_weights_path=buffer
        ).to(device)
        self.device, self.batch_size = device, batch_size

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """[N,H,W,3] uint8 -> [N,2048] float64."""
        import torch

        out = []
        with torch.no_grad():
            for start in range(0, len(images), self.batch_size):
                x = torch.from_numpy(np.ascontiguousarray(images[start : start + self.batch_size]))
                (features,) = self.model(x.permute(0, 3, 1, 2).contiguous().to(self.device))
                out.append(features.double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 2048))


def fid(features: np.ndarray, reference: np.ndarray) -> float:
    """The Fréchet distance between the Gaussians fitted to two feature sets: torch-fidelity's
    ``fid_statistics_to_metric`` where both sets outnumber the dimensions; with fewer images (every set of a
    benchmark run under 2048 images) the same value from the images' side, where an eigendecomposition of a
    2048 x 2048 product of two rank-deficient covariances costs seconds and is dominated by round-off.

    tr sqrt(S1 S2) with S1 = A'A, S2 = B'B (A, B the centred features over sqrt(n - 1)) is the nuclear norm of
    A B' (n1 x n2): the nonzero eigenvalues of A'A B'B are those of (A B')(A B')', the squared singular values."""
    import torch
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric

    x, y = (np.asarray(f, np.float64) for f in (features, reference))
    if min(len(x), len(y)) > x.shape[1]:
        stats = [fid_features_to_statistics(torch.from_numpy(f)) for f in (x, y)]
        return float(fid_statistics_to_metric(*stats, verbose=False)[KEY_METRIC_FID])
    a = (x - x.mean(0)) / np.sqrt(len(x) - 1)
    b = (y - y.mean(0)) / np.sqrt(len(y) - 1)
    trace_root = np.linalg.svd(a @ b.T, compute_uv=False).sum()
    mean = ((x.mean(0) - y.mean(0)) ** 2).sum()
    return float(mean + (a * a).sum() + (b * b).sum() - 2 * trace_root)


def kid(
    features: np.ndarray, reference: np.ndarray, subset_size: int, subsets: int = KID_SUBSETS
) -> tuple[float, float]:
    """torch-fidelity's KID (mean, std over ``subsets`` random subsets of ``subset_size`` from each set)."""
    import torch
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    out = kid_features_to_metric(
        *(torch.from_numpy(np.asarray(f, np.float64)) for f in (features, reference)),
        kid_subsets=subsets,
        kid_subset_size=subset_size,
        rng_seed=KID_SEED,
        verbose=False,
    )
    return float(out[KEY_METRIC_KID_MEAN]), float(out[KEY_METRIC_KID_STD])


def set_scores(features: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """FID and KID of one set against its reference, with N, or why not (fewer than 4 images on a side)."""
    n, n_ref = len(features), len(reference)
    out: dict[str, Any] = {"n": n, "n_reference": n_ref}
    if min(n, n_ref) < 4:
        return out | {"not_computed": f"too few images (N={n}, reference N={n_ref}; at least 4 on each side)"}
    size = kid_subset_size(n, n_ref)
    kid_mean, kid_std = kid(features, reference, size)
    return out | {
        "fid": fid(features, reference),
        "kid_mean": kid_mean,
        "kid_std": kid_std,
        "kid_subset_size": size,
        "kid_subsets": KID_SUBSETS,
    }


def rows_digest(rows: list[dict[str, Any]]) -> str:
    """What a stored set score was computed from: each sample and its PNG's sha256."""
    text = "\n".join(sorted(f"{r['sample']}:{r.get('png_sha256')}" for r in rows))
    return hashlib.sha256(text.encode()).hexdigest()


def reference_of(split: str) -> tuple[str, str]:
    """(split, image kind) of a split's reference set under ``inputs/``."""
    return (NATURAL_REFERENCE, "input") if split in ("test_natural", NATURAL_REFERENCE) else (split, "gt")
