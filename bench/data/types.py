"""Data containers shared by loaders, the harness and methods.

Arrays are kept as uint8 numpy (compact; what is saved is what is scored); tensors are made
per batch, float32 in [0,1], masks with 1 = occluded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    import torch

# The paper's 10 CelebA attributes (section III-B), in CelebA's spelling.
PAPER_ATTRIBUTES = (
    "5_o_Clock_Shadow",
    "Goatee",
    "Heavy_Makeup",
    "Male",
    "Mustache",
    "No_Beard",
    "Pale_Skin",
    "Sideburns",
    "Wearing_Lipstick",
    "Young",
)
# The 7 attributes of the authors' code (docs/methods.md section 1), a subset of the 10.
OFFICIAL_ATTRIBUTES = ("5_o_Clock_Shadow", "Goatee", "Mustache", "No_Beard", "Sideburns", "Male", "Young")


@dataclass
class FaceSet:
    """N aligned faces with their labels. ``clean``/``masks`` exist only where ground truth is known."""

    images: np.ndarray  # uint8 [N,H,W,3]: what a method sees (occluded where occluded)
    identities: np.ndarray  # int64 [N]
    attributes: np.ndarray  # float32 [N,A] in {0,1}
    landmarks: np.ndarray  # float32 [N,5,2] (x, y) pixels: eye L, eye R, nose, mouth L, mouth R
    ids: list[str]  # stable sample ids (used for file names and resume)
    clean: np.ndarray | None = None  # uint8 [N,H,W,3] ground truth without occlusion (evaluation only)
    masks: np.ndarray | None = None  # uint8 [N,H,W] 1 = occluded (evaluation only)
    occluders: list[str] | None = None  # occluder type per sample ("" for none)
    families: list[str] | None = None  # occluder family per sample ("" for none)

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.uint8:
            raise ValueError(f"FaceSet.images must be uint8 [N,H,W,3], got {self.images.dtype} {self.images.shape}")
        for name in ("identities", "attributes", "landmarks", "clean", "masks"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"FaceSet.{name} has {len(value)} rows, images has {n}")
        if len(self.ids) != n:
            raise ValueError(f"FaceSet.ids has {len(self.ids)} entries, images has {n}")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def size(self) -> int:
        return int(self.images.shape[1])

    def subset(self, index: np.ndarray | list[int]) -> FaceSet:
        index = np.asarray(index, dtype=np.int64)
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                out[f.name] = None
            elif isinstance(value, list):
                out[f.name] = [value[i] for i in index]
            else:
                out[f.name] = value[index]
        return FaceSet(**out)

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                h.update(b"none")
            elif isinstance(value, list):
                h.update("\x00".join(value).encode())
            else:
                h.update(np.ascontiguousarray(value))  # the buffer itself: .tobytes() would copy the whole split
        return h.hexdigest()


class Occlusion(NamedTuple):
    image: np.ndarray  # uint8 [H,W,3], the occluded face
    mask: np.ndarray  # uint8 [H,W], 1 = occluded
    type_name: str  # e.g. "sunglasses/07"
    family: str  # e.g. "sunglasses"


# (clean uint8 [H,W,3], landmarks [5,2], rng) -> Occlusion. The occlusion generator provides one.
Occluder = Callable[[np.ndarray, np.ndarray, np.random.Generator], Occlusion]


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [N,H,W,3] -> float32 [N,3,H,W] in [0,1]."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)


def to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """float [N,C,H,W] in [0,1] -> uint8 [N,H,W,C] ([N,H,W] for one channel): what is saved and scored."""
    arr = tensor.detach().float().clamp(0, 1).mul(255).round().byte().cpu().numpy().transpose(0, 2, 3, 1)
    return arr[..., 0] if arr.shape[-1] == 1 else arr


def mask_tensor(masks: np.ndarray) -> torch.Tensor:
    """uint8/bool [N,H,W] -> float32 [N,1,H,W] in {0,1}."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(masks).astype(np.float32))[:, None]


class PairedBatch(NamedTuple):
    occluded: torch.Tensor  # [B,3,H,W]
    clean: torch.Tensor  # [B,3,H,W]
    mask: torch.Tensor  # [B,1,H,W], 1 = occluded
    attributes: torch.Tensor  # [B,A]


class ImageBatch(NamedTuple):
    images: torch.Tensor  # [B,3,H,W]
    attributes: torch.Tensor  # [B,A]


class UnpairedBatch(NamedTuple):
    """Two domains for unpaired translation: occluded faces (A) and clean faces of other images (B)."""

    occluded: torch.Tensor  # [B,3,H,W]: natural occlusions first, then synthetic ones
    clean: torch.Tensor  # [B,3,H,W]: clean faces, none of them the source of an A image of this batch
    occluded_attributes: torch.Tensor  # [B,A]
    clean_attributes: torch.Tensor  # [B,A]
    natural: torch.Tensor  # [B] bool: which A images are natural occlusions


@dataclass
class TrainData:
    """What a method trains on. Paired batches are synthesised on the fly (fresh occlusions each
    step, as the paper's >100M pairs imply); natural and clean batches are sampled from the sets.
    Natural faces come without masks or ground truth, as in the paper's unpaired setting.

    Under data-parallel training (``rank``/``world``) every rank draws the same global batch from the same
    seeded generator and keeps its own contiguous share, so the ranks together see exactly the batch one
    process would, and the sampler's state stays one state (a run resumes with any world size).
    """

    clean: FaceSet
    natural: FaceSet
    occluder: Occluder
    attribute_names: tuple[str, ...]
    seed: int = 0
    rank: int = 0
    world: int = 1
    rng: np.random.Generator = field(init=False)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def _local(self, batch):
        """This rank's contiguous share of a global batch (every tensor field sliced alike)."""
        if self.world == 1:
            return batch
        n = len(batch[0])
        if n % self.world:
            raise ValueError(f"a batch of {n} does not split over {self.world} ranks; use a multiple of {self.world}")
        share = slice(self.rank * n // self.world, (self.rank + 1) * n // self.world)
        return type(batch)(*(t[share] for t in batch))

    @property
    def image_size(self) -> int:
        return self.clean.size

    def paired(self, batch_size: int) -> PairedBatch:
        idx = self.rng.integers(0, len(self.clean), batch_size)
        occ = [self.occluder(self.clean.images[i], self.clean.landmarks[i], self.rng) for i in idx]
        batch = PairedBatch(
            occluded=to_tensor(np.stack([o.image for o in occ])),
            clean=to_tensor(self.clean.images[idx]),
            mask=mask_tensor(np.stack([o.mask for o in occ])),
            attributes=_attr_tensor(self.clean.attributes[idx]),
        )
        return self._local(batch)

    def unpaired(self, batch_size: int, natural_share: float = 0.5) -> UnpairedBatch:
        """Domain A: ``natural_share`` of the batch from the natural set (when it has images), the rest clean
        faces with a fresh synthetic occlusion; domain B: clean faces drawn from the *other* images, so no
        (occluded, clean) pair of one image ever appears (the unpaired setting of the paper's Fig. 2c)."""
        expected = batch_size * natural_share if len(self.natural) else 0.0
        n_natural = int(expected) + int(self.rng.random() < expected - int(expected))  # share kept even at batch 1
        nat = self.rng.integers(0, len(self.natural), n_natural) if n_natural else np.zeros(0, np.int64)
        sources = self.rng.choice(len(self.clean), batch_size - n_natural, replace=False)
        others = np.setdiff1d(np.arange(len(self.clean)), sources)
        if len(others) == 0:
            raise ValueError("unpaired batches need more clean faces than the batch size")
        clean = self.rng.choice(others, batch_size, replace=len(others) < batch_size)
        synthetic = [self.occluder(self.clean.images[i], self.clean.landmarks[i], self.rng).image for i in sources]
        occluded = (
            np.concatenate([self.natural.images[nat], np.stack(synthetic)])
            if len(sources)
            else self.natural.images[nat]
        )
        attributes = np.concatenate([self.natural.attributes[nat], self.clean.attributes[sources]])
        batch = UnpairedBatch(
            occluded=to_tensor(occluded),
            clean=to_tensor(self.clean.images[clean]),
            occluded_attributes=_attr_tensor(attributes),
            clean_attributes=_attr_tensor(self.clean.attributes[clean]),
            natural=torch_bool(np.arange(batch_size) < n_natural),
        )
        return self._local(batch)

    def natural_batch(self, batch_size: int) -> ImageBatch:
        return self._sample(self.natural, batch_size)

    def clean_batch(self, batch_size: int) -> ImageBatch:
        return self._sample(self.clean, batch_size)

    def _sample(self, faces: FaceSet, batch_size: int) -> ImageBatch:
        if len(faces) == 0:
            raise ValueError("this dataset has no images of the requested kind (natural or clean)")
        idx = self.rng.integers(0, len(faces), batch_size)
        batch = ImageBatch(images=to_tensor(faces.images[idx]), attributes=_attr_tensor(faces.attributes[idx]))
        return self._local(batch)


def torch_bool(values: np.ndarray) -> torch.Tensor:
    import torch

    return torch.from_numpy(np.asarray(values, dtype=bool))


def _attr_tensor(attributes: np.ndarray) -> torch.Tensor:
    import torch

    return torch.from_numpy(np.ascontiguousarray(attributes, dtype=np.float32))


TRAINING_SPLITS = ("train_clean", "train_natural")  # what a method or recognizer trains on


@dataclass
class Benchmark:
    """A dataset resolved into the splits every protocol needs (docs/design.md, "data path" step 1)."""

    name: str
    attribute_names: tuple[str, ...]
    train_clean: FaceSet  # clean faces: paired occlusions are synthesised from these
    train_natural: FaceSet  # naturally occluded faces, no mask, no ground truth (unpaired)
    test_paired: FaceSet  # fixed synthetic occlusions: images occluded; clean, masks, occluders set
    test_natural: FaceSet  # natural occlusions; clean/masks only where known (synthetic set)
    test_clean: FaceSet  # faces without occlusion (Fig. 9: a method should change nothing)
    info: dict = field(default_factory=dict)  # how it was built (seed, size, counts, source)
    paired: dict[str, FaceSet] = field(default_factory=dict)  # the user's paired test sets (bench.data.paired)
    # each split's hash once computed, or as a cached copy stored it (bench.data.cache); a split replaced after it
    # was hashed drops its entry (bench.data.resolve.with_natural)
    known_fingerprints: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def image_size(self) -> int:
        return self.train_clean.size

    def splits(self) -> dict[str, FaceSet]:
        return {
            "train_clean": self.train_clean,
            "train_natural": self.train_natural,
            "test_paired": self.test_paired,
            "test_natural": self.test_natural,
            "test_clean": self.test_clean,
            **self.paired,
        }

    def split_fingerprints(self) -> dict[str, str]:
        """Each split's hash (every array's bytes and every list), computed once."""
        for key, faces in self.splits().items():
            if key not in self.known_fingerprints:
                self.known_fingerprints[key] = faces.fingerprint()
        return {key: self.known_fingerprints[key] for key in self.splits()}

    def fingerprint(self, splits: tuple[str, ...] | None = None) -> str:
        """The hash of the dataset (of ``splits`` alone when given): what the run's rows were computed on."""
        h = hashlib.sha256(self.name.encode())
        for key, value in self.split_fingerprints().items():
            if splits is None or key in splits:
                h.update(key.encode())
                h.update(value.encode())
        return h.hexdigest()

    def training_fingerprint(self) -> str:
        """The hash of what training reads (the training splits): a trained model's key holds it, not the test
        sets', so adding or changing a test set reuses every cached model."""
        return self.fingerprint(TRAINING_SPLITS)
