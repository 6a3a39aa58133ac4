"""The embedded default benchmark: procedural faces resolved into every split a protocol needs.

Nothing is downloaded: the same (size, seed, counts) always yields byte-identical arrays. Every split
draws the same identities (sample i has identity i mod identities), each image with its own jitter,
so test images are held-out renderings of people seen in training (what identification needs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.data.faces import NATURAL_KINDS, FaceRenderer, make_identity
from bench.data.occluders import OcclusionGenerator
from bench.data.types import PAPER_ATTRIBUTES, Benchmark, FaceSet

_SPLITS = ("train_clean", "train_natural", "test_paired", "test_natural", "test_clean")


def default_occluder(size: int, user_dir: str | Path | None = None) -> OcclusionGenerator:
    """The generator paired training draws fresh occlusions from (all built-in families, plus user PNGs)."""
    return OcclusionGenerator(size, user_dir=user_dir)


def build_synthetic(
    size: int = 64,
    seed: int = 0,
    identities: int = 100,
    train_clean: int = 1500,
    train_natural: int = 400,
    test_paired: int = 200,
    test_natural: int = 100,
    test_clean: int = 100,
    user_dir: str | Path | None = None,
    limit: int | None = None,
) -> Benchmark:
    """Render the synthetic benchmark at ``size`` px; ``user_dir`` adds user occluders to test_paired; ``limit``
    caps every split (``--data-limit``; each split's first faces, so a smaller set is a prefix of the full one)."""
    renderer = FaceRenderer(size)
    people = [make_identity(seed, i) for i in range(identities)]
    sizes = (train_clean, train_natural, test_paired, test_natural, test_clean)
    counts = dict(zip(_SPLITS, (n if limit is None else min(n, limit) for n in sizes), strict=True))
    sets: dict[str, FaceSet] = {}
    for split_index, split in enumerate(_SPLITS):
        natural = split.endswith("natural")
        rng = np.random.default_rng([seed, split_index])
        renders, who = [], np.arange(counts[split]) % identities
        for i, person in enumerate(who):
            kind = NATURAL_KINDS[(i + person) % len(NATURAL_KINDS)] if natural else None
            renders.append(renderer.render(people[person], rng, natural=kind))
        sets[split] = _face_set(split, renders, who, people, size, known=split != "train_natural")
    sets["test_paired"] = _occlude(sets["test_paired"], default_occluder(size, user_dir), seed)
    info = {"source": "procedural", "size": size, "seed": seed, "identities": identities, "counts": counts}
    return Benchmark(name="synthetic", attribute_names=PAPER_ATTRIBUTES, info=info, **sets)


def _face_set(split: str, renders: list, who: np.ndarray, people: list, size: int, known: bool) -> FaceSet:
    natural = known and any(r.occluder for r in renders)
    images = _stack([r.image for r in renders], (size, size, 3))
    return FaceSet(
        images=images,
        identities=who.astype(np.int64),
        attributes=_stack([people[p].attributes() for p in who], (len(PAPER_ATTRIBUTES),), np.float32),
        landmarks=_stack([r.landmarks for r in renders], (5, 2), np.float32),
        ids=[f"{split}-{i:05d}" for i in range(len(renders))],
        clean=_stack([r.clean for r in renders], (size, size, 3)) if known else None,
        masks=_stack([r.mask for r in renders], (size, size)) if natural else None,
        occluders=[r.occluder for r in renders] if natural else None,
        families=[r.occluder.rsplit("/", 1)[0] for r in renders] if natural else None,
    )


def _stack(arrays: list[np.ndarray], shape: tuple[int, ...], dtype=np.uint8) -> np.ndarray:
    return np.stack(arrays) if arrays else np.zeros((0, *shape), dtype)


def _occlude(faces: FaceSet, gen: OcclusionGenerator, seed: int) -> FaceSet:
    """Fixed synthetic occlusions: types cycle over families (then over each family's types), fixed rng."""
    rng = np.random.default_rng([seed, 0x0CC])
    by_family = {f: [i for i, t in enumerate(gen.types) if gen.family_of(i) == f] for f in gen.families}
    families = list(by_family)
    images, masks, names, fams = [], [], [], []
    for i in range(len(faces)):
        members = by_family[families[i % len(families)]]
        k = members[(i // len(families)) * 7 % len(members)]
        occ = gen.apply(faces.images[i], faces.landmarks[i], rng, k)
        images.append(occ.image)
        masks.append(occ.mask)
        names.append(occ.type_name)
        fams.append(occ.family)
    size = faces.size
    return FaceSet(
        images=_stack(images, (size, size, 3)),
        identities=faces.identities,
        attributes=faces.attributes,
        landmarks=faces.landmarks,
        ids=faces.ids,
        clean=faces.images,
        masks=_stack(masks, (size, size)),
        occluders=names,
        families=fams,
    )
