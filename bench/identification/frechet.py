"""The Fréchet distance between two sets of face embeddings, each taken as a Gaussian (FID's formula, in a
recognizer's embedding space, never Inception's: it is not FID and is never labelled so).

d^2 = |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) (the squared distance, the quantity FID reports),
computed by the FID helper of ``bench.measures.fid`` (torch-fidelity's statistics and formula: sample covariances,
Tr (S_a S_b)^(1/2) from the eigenvalues of S_a S_b, so no failure when there are fewer faces than dimensions and
the covariances are singular) on L2-normalised embeddings: the recognizers compare directions, and their norms
differ by network. Like FID it is biased upwards at small N, so N and the dimension are stated beside every value.
"""

from __future__ import annotations

import numpy as np

CONVENTION = (
    "Fréchet distance between Gaussians fitted to the L2-normalised embeddings (ddof 1) of a probe set and its "
    "reference (the same faces' clean ground truth; on natural occlusions the clean test faces), in the recognizer's "
    "own space (not FID); biased at small N, N and the dimension given beside each value"
)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Squared Fréchet distance between Gaussians fitted to the unit-length rows of ``a`` and ``b`` ([N, D], N >= 2)."""
    from bench.measures.fid import fid

    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"a Fréchet distance needs at least 2 embeddings per set, got {len(a)} and {len(b)}")
    a, b = (np.asarray(x, np.float64) for x in (a, b))
    return fid(*(x / np.linalg.norm(x, axis=1, keepdims=True) for x in (a, b)))
