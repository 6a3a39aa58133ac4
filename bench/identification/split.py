"""An identity-disjoint re-split for identification when the test partition holds too few people.

A gallery of a dozen identities makes rank-5 a coin toss (5/12 by chance) and a real CelebA subset of 3,000 images
has only 12 people in its test partition. Below ``MIN_IDENTITIES`` gallery identities (rank-1 chance 1/40, rank-5
1/8) the clean and natural faces of all loaded partitions are pooled and split again by identity, seeded: half of
the people (at least as many as the test partition had) become the test set, the rest the training set, so methods
and a trained recognizer never see a test person; where half of the people hold fewer than ``MIN_NATURAL_TEST``
natural (e.g. eyeglass) faces, the next people in the seeded order who have some join the test set until it does.
The paired test set is synthesised again from the new clean test faces, with the same occluder and seed as the
loader. What was done is recorded in the benchmark's info (the run manifest).
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np

from bench.data.types import Benchmark, FaceSet, Occluder

MIN_IDENTITIES = 40
MIN_NATURAL_TEST = 20  # natural test faces the re-split keeps, where the data has them (more people join the test)


def concat(parts: list[FaceSet]) -> FaceSet:
    """Faces of several sets in order; an array field missing in one part is dropped, a list field filled
    with the other parts' single value (e.g. "natural/eyeglasses") or ""."""
    out = {}
    for f in fields(FaceSet):
        values = [getattr(p, f.name) for p in parts]
        if isinstance(next((v for v in values if v is not None), None), list):
            known = {x for v in values if v is not None for x in v}
            fill = known.pop() if len(known) == 1 else ""
            out[f.name] = [x for p, v in zip(parts, values, strict=True) for x in (v or [fill] * len(p))]
        elif any(v is None for v in values):
            out[f.name] = None
        else:
            out[f.name] = np.concatenate(values)
    return FaceSet(**out)


def _same_fields(a: FaceSet, b: FaceSet) -> bool:
    """Whether both sets carry the same optional fields (pooling them would drop a field one of them has)."""
    return all((getattr(a, f.name) is None) == (getattr(b, f.name) is None) for f in fields(FaceSet))


def _with_natural_faces(order: np.ndarray, count: int, natural: np.ndarray) -> np.ndarray:
    """The first ``count`` people of the seeded ``order``, and then the next ones who have natural faces until the
    test people hold :data:`MIN_NATURAL_TEST` of them, as long as training keeps at least half of all natural faces
    (the unpaired methods train on them): a natural interval over two faces says nothing."""
    test = list(order[:count])
    have = int(np.isin(natural, test).sum())
    for person in order[count:]:
        faces = int((natural == person).sum())
        if have >= MIN_NATURAL_TEST or have + faces > len(natural) // 2:  # training keeps at least half of them
            break
        if faces:
            test.append(person)
            have += faces
    return np.array(test)


def identity_split(bench: Benchmark, occluder: Occluder, seed: int, minimum: int = MIN_IDENTITIES) -> Benchmark:
    """``bench`` itself when its clean test faces hold at least ``minimum`` identities, or when all its clean
    faces hold fewer (no split could reach a meaningful gallery) or too few to leave anyone for training;
    else a new benchmark split by identity (see the module docstring). The re-split's paired set is occluded
    by the CelebA loader's :func:`~bench.data.celeba.occlude` (only a real data set has so few test people)."""
    from bench.data.celeba import occlude

    have = len(np.unique(bench.test_clean.identities))
    if have >= minimum:
        return bench
    clean = concat([bench.train_clean, bench.test_clean])
    people = np.unique(clean.identities)
    count = max(have, len(people) // 2)
    if len(people) < minimum or count >= len(people):
        bench.info = {
            **bench.info,
            "identification_split": {
                "reason": f"not re-split: {len(people)} identities in all, too few for a {minimum}-person gallery",
                "seed": seed,
                "identities": len(people),
            },
        }
        return bench
    order = np.random.default_rng([seed, 0x1D]).permutation(people)
    test = _with_natural_faces(order, count, concat([bench.train_natural, bench.test_natural]).identities)
    in_test = np.isin(clean.identities, test)
    test_clean = clean.subset(np.flatnonzero(in_test))
    if _same_fields(bench.train_natural, bench.test_natural):
        natural = concat([bench.train_natural, bench.test_natural])
        natural_test = np.isin(natural.identities, test)
        train_natural = natural.subset(np.flatnonzero(~natural_test))
        test_natural = natural.subset(np.flatnonzero(natural_test))
    else:  # e.g. natural test faces with ground truth, training ones without: keep each set's own kind
        train_natural = bench.train_natural.subset(np.flatnonzero(~np.isin(bench.train_natural.identities, test)))
        test_natural = bench.test_natural.subset(np.flatnonzero(np.isin(bench.test_natural.identities, test)))
    out = Benchmark(
        name=bench.name,
        attribute_names=bench.attribute_names,
        train_clean=clean.subset(np.flatnonzero(~in_test)),
        train_natural=train_natural,
        test_paired=occlude(test_clean, occluder, np.random.default_rng(seed)),
        test_natural=test_natural,
        test_clean=test_clean,
    )
    out.info = {
        **bench.info,
        "identification_split": {
            "reason": f"the test partition holds {have} identities, fewer than {minimum}",
            "seed": seed,
            "identities": len(people),
            "test_identities": sorted(int(i) for i in test),
            "natural_minimum": MIN_NATURAL_TEST,
            "counts": {key: len(value) for key, value in out.splits().items()},
        },
    }
    return out
