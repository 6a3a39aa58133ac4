"""CelebA in its official layout, resolved into the benchmark's splits.

The Eyeglasses attribute is the natural occlusion (as OA-GAN's "with glasses" lists): glasses images
train the unpaired path and are the natural test probes; the others are clean faces, from which the
paired test set is synthesised once with a fixed seed. CelebA's partitions are identity-disjoint, so
identification (Fig. 12) uses the test partition alone: clean gallery, occluded/de-occluded probes.

Geometry: every face is mapped to one 5-point template, LightCNN's 128 px test geometry (eye centre at
y=40, eye-to-mouth 48 px), so the identification network sees the alignment it was trained for. With
``list_landmarks_align_celeba.txt`` each face gets its own similarity transform; without it, the aligned
images share CelebA's fixed template and one fixed crop does the same job.

Completeness: the annotation files and ``img_align_celeba/`` must name the same images. The official release
lists all 202,599 in every file; a subset, such as the 3,000-image sample, trims every annotation file to
the images it ships. So an image that one source has and another lacks (a row cut from the end of a
truncated download, an interrupted unzip, files of two releases) is refused, naming the source, the first few
images and the counts, instead of silently shrinking a split; ``allow_partial`` loads the images every source
has and records what was left out in ``info["files"]`` (hence in the run manifest).
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench.data.types import PAPER_ATTRIBUTES, Benchmark, FaceSet, Occluder
from bench.errors import DataError

if TYPE_CHECKING:
    from bench.data.imageio import ImageHeader

IMAGE_DIR = "img_align_celeba"
ATTR_FILE = "list_attr_celeba.txt"
IDENTITY_FILE = "identity_CelebA.txt"
PARTITION_FILE = "list_eval_partition.txt"
LANDMARK_FILE = "list_landmarks_align_celeba.txt"
# The header lines of CelebA's annotation files, in their order (Eyeglasses is attribute 15): what a file in the
# official layout holds (benchmarks/celeba_standin.py writes them; the loader reads the header it finds).
ATTRIBUTES_40 = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
    "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
    "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
    "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()
LANDMARK_HEADER = (
    "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y"
)

ALIGNED_SIZE = (178, 218)  # (W, H) of every img_align_celeba image
# Mean of list_landmarks_align_celeba.txt (x, y): where the fixed template puts the five points.
CELEBA_MEAN_LANDMARKS = np.array([[69, 111], [108, 111], [89, 134], [72, 152], [106, 152]], np.float32)
# Square crop (x0, y0, x1, y1) of the aligned image that puts those points at LightCNN's 128 px geometry.
FIXED_CROP = (34.0, 77.0, 144.0, 187.0)
# A sample id names files of the run folder (``<id>.png``, written through ``.<id>.png.XXXXXXXX.tmp``: 18 bytes
# more) and keys metric rows and resume. File systems cap a name at 255 bytes; 128 leaves room for any suffix.
MAX_ID_BYTES = 128


def canonical_landmarks(size: int) -> np.ndarray:
    """The 5-point template (eye L, eye R, nose, mouth L, mouth R) at ``size`` px, float32 [5,2]."""
    x0, y0, x1, _ = FIXED_CROP
    return ((CELEBA_MEAN_LANDMARKS - (x0, y0)) * (size / (x1 - x0))).astype(np.float32)


def sample_id(name: str) -> str:
    """``name`` as a sample id: itself when it is valid UTF-8 of at most :data:`MAX_ID_BYTES` bytes, else its
    first bytes and a hash of the whole (unique, stable and still recognisable, and a valid file name)."""
    raw = os.fsencode(name)
    try:
        if len(raw) <= MAX_ID_BYTES and raw.decode() == name:
            return name
    except UnicodeDecodeError:
        pass
    return f"{raw[: MAX_ID_BYTES - 17].decode(errors='ignore')}~{hashlib.sha256(raw).hexdigest()[:16]}"


def require_unique_ids(where: Path, files: list[Path], ids: list[str]) -> None:
    """DataError when two files would be one sample (``a.jpg`` and ``a.png``): their outputs would overwrite."""
    seen: dict[str, Path] = {}
    for path, sid in zip(files, ids, strict=True):
        if sid in seen:
            raise DataError(
                f"{where}: {seen[sid]} and {path} would both be sample {sid!r} (the run folder names its files "
                "after the sample); rename or remove one of them"
            )
        seen[sid] = path


def load_celeba(
    root: str | Path,
    size: int = 128,
    seed: int = 0,
    limit: int | None = None,
    occluder: Occluder | None = None,
    allow_partial: bool = False,
) -> Benchmark:
    """Load CelebA from ``root`` (img_align_celeba/ plus the Anno/Eval text files) at ``size`` px.

    ``limit`` caps each split, taking whole identities in a seeded order (so test probes keep their
    gallery mates); ``occluder`` synthesises the paired test set (default: the occlusion generator);
    ``allow_partial`` accepts annotation files and images that disagree (module docstring), loading only the
    images that all of them have.
    """
    root = Path(root)
    attr_names, tables = _read_annotations(root)
    files, found = _complete_files(root, tables, allow_partial)
    split, ids, glasses, attributes, points = _per_image(files, tables, attr_names)
    rank = _identity_rank(ids, seed)

    def faces(select: np.ndarray) -> FaceSet:
        index = np.flatnonzero(select)
        if limit is not None and len(index) > limit:
            index = np.sort(index[np.argsort(rank[ids[index]], kind="stable")][:limit])
        names = [files[i] for i in index]
        images, aligned = _load_images(root, names, size, None if points is None else points[index])
        return FaceSet(
            images=images,
            identities=ids[index],
            attributes=attributes[index],
            landmarks=aligned,
            ids=[sample_id(Path(f).stem) for f in names],
        )

    train_clean = faces((split == 0) & ~glasses)
    train_natural = faces((split == 0) & glasses)
    test_clean = faces((split == 2) & ~glasses)
    test_natural = faces((split == 2) & glasses)
    test_natural.occluders = ["natural/eyeglasses"] * len(test_natural)
    test_natural.families = ["eyeglasses"] * len(test_natural)
    if occluder is None:
        from bench.data.occluders import OcclusionGenerator

        occluder = OcclusionGenerator(size)
    bench = Benchmark(
        name="celeba",
        attribute_names=PAPER_ATTRIBUTES,
        train_clean=train_clean,
        train_natural=train_natural,
        test_paired=occlude(test_clean, occluder, np.random.default_rng(seed)),
        test_natural=test_natural,
        test_clean=test_clean,
    )
    bench.info = {
        "source": "celeba",
        "root": str(root),
        "size": size,
        "seed": seed,
        "limit": limit,
        "alignment": "5-point similarity (landmark file)" if points is not None else "fixed crop",
        "files": found,
        "counts": {key: len(value) for key, value in bench.splits().items()},
    }
    return bench


def _read_annotations(root: Path) -> tuple[list[str], dict[str, dict]]:
    """The attribute names and each annotation file's rows by image name (the landmark file only when there is
    one), checked in this order: the image folder exists, each file parses, the header names every attribute used."""
    if not (root / IMAGE_DIR).is_dir():
        raise DataError(f"{root / IMAGE_DIR}: not found. {_layout_hint(root)}")
    partition = _read_pairs(root / PARTITION_FILE, root, valid={0, 1, 2})
    identity = _read_pairs(root / IDENTITY_FILE, root)
    attr_names, attrs = _read_table(root / ATTR_FILE, root, values={-1, 0, 1})
    tables = {PARTITION_FILE: partition, IDENTITY_FILE: identity, ATTR_FILE: attrs}
    if (root / LANDMARK_FILE).is_file():
        tables[LANDMARK_FILE] = _read_table(root / LANDMARK_FILE, root, width=10)[1]
    missing = [name for name in (*PAPER_ATTRIBUTES, "Eyeglasses") if name not in attr_names]
    if missing:
        raise DataError(f"{root / ATTR_FILE}: the header lacks {missing}; it must name CelebA's 40 attributes")
    return attr_names, tables


def _per_image(
    files: list[str], tables: dict[str, dict], attr_names: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """For each of ``files``: its partition, identity, whether it wears glasses, the paper's attributes (float32
    0/1) and its five landmarks (float32 [N,5,2]; None without the landmark file)."""
    split = np.array([tables[PARTITION_FILE][f] for f in files])
    ids = np.array([tables[IDENTITY_FILE][f] for f in files], np.int64)
    table = np.array([tables[ATTR_FILE][f] for f in files]) == 1
    glasses = table[:, attr_names.index("Eyeglasses")]
    attributes = table[:, [attr_names.index(name) for name in PAPER_ATTRIBUTES]].astype(np.float32)
    landmarks = tables.get(LANDMARK_FILE)
    points = None if landmarks is None else np.array([landmarks[f] for f in files], np.float32).reshape(-1, 5, 2)
    return split, ids, glasses, attributes, points


def source_signature(root: Path) -> list:
    """What a cached copy of ``root`` depends on: name, size and mtime of the annotation files and of every
    image (one directory scan: about a second for CelebA's 202,599 files)."""
    out = []
    for name in (PARTITION_FILE, IDENTITY_FILE, ATTR_FILE, LANDMARK_FILE):
        path = root / name
        if path.is_file():
            st = path.stat()
            out.append([name, st.st_size, st.st_mtime_ns])
    images = root / IMAGE_DIR
    if images.is_dir():
        with os.scandir(images) as entries:
            stats = sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in entries if e.is_file())
        out.append([IMAGE_DIR, len(stats), hashlib.sha256(repr(stats).encode()).hexdigest()])
    return out


def occlude(clean: FaceSet, occluder: Occluder, rng: np.random.Generator) -> FaceSet:
    """``clean`` with one synthetic occlusion per face, ground truth and mask kept for evaluation."""
    size = clean.size
    images, masks = np.empty_like(clean.images), np.empty(clean.images.shape[:3], np.uint8)
    types, families = [], []
    for i in range(len(clean)):
        occ = occluder(clean.images[i], clean.landmarks[i], rng)
        if occ.image.shape != (size, size, 3) or occ.mask.shape != (size, size):
            raise ValueError(f"occluder returned {occ.image.shape}/{occ.mask.shape} for a {size}x{size} face")
        images[i], masks[i] = occ.image, occ.mask
        types.append(occ.type_name)
        families.append(occ.family)
    return FaceSet(
        images=images,
        identities=clean.identities,
        attributes=clean.attributes,
        landmarks=clean.landmarks,
        ids=list(clean.ids),
        clean=clean.images,
        masks=masks,
        occluders=types,
        families=families,
    )


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """Resize to ``size`` x ``size``: area averaging when shrinking (no aliasing), bilinear otherwise."""
    import cv2

    shrink = image.shape[0] > size or image.shape[1] > size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """A {0, 1} mask resized to ``size`` x ``size`` nearest-neighbour, so it stays {0, 1}."""
    import cv2

    return cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)


def centre_square(image: np.ndarray) -> np.ndarray:
    """The largest centred square of ``image`` (a face crop a little off square loses its edges, not its shape)."""
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return image[top : top + side, left : left + side]


def _load_images(
    root: Path, names: list[str], size: int, landmarks: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Check the headers (face size; the aligned size when cropping), then decode, align and resize ``names`` in
    parallel (OpenCV releases the GIL)."""
    from bench.data.imageio import read_header, require_face_size

    paths = [root / IMAGE_DIR / name for name in names]
    require_unique_ids(root / IMAGE_DIR, paths, [sample_id(p.stem) for p in paths])
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        headers = list(pool.map(read_header, paths))
        require_face_size(root / IMAGE_DIR, paths, headers)

        def one(k: int) -> tuple[np.ndarray, np.ndarray]:
            if landmarks is None:
                return _crop_fixed(paths[k], size, headers[k]), canonical_landmarks(size)
            return _align(paths[k], headers[k], landmarks[k], size)

        images = np.empty((len(names), size, size, 3), np.uint8)
        points = np.empty((len(names), 5, 2), np.float32)
        for k, (image, lm) in enumerate(pool.map(one, range(len(names)))):
            images[k], points[k] = image, lm
    return images, points


def _crop_fixed(path: Path, size: int, header: ImageHeader | None = None) -> np.ndarray:
    from bench.data.imageio import read_header, read_image

    header = header or read_header(path)
    x0, y0, x1, y1 = FIXED_CROP
    image, factor = read_image(path, size / (x1 - x0), header=header)  # a damaged file is named as such first
    if (header.width, header.height) != ALIGNED_SIZE:
        raise DataError(
            f"{path}: is {header.width}x{header.height}, not CelebA's aligned {ALIGNED_SIZE[0]}x{ALIGNED_SIZE[1]}; "
            f"use the original img_align_celeba files or add {LANDMARK_FILE}"
        )
    crop = image[round(y0 / factor) : round(y1 / factor), round(x0 / factor) : round(x1 / factor)]
    return resize(crop, size)


def _align(path: Path, header: ImageHeader, points: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Similarity transform of the five landmarks onto the template, then warp."""
    import cv2

    from bench.data.imageio import read_image

    matrix, _ = cv2.estimateAffinePartial2D(points, canonical_landmarks(size), method=cv2.LMEDS)
    if matrix is None:
        raise DataError(f"{path}: its landmarks {points.tolist()} in {LANDMARK_FILE} are degenerate")
    image, factor = read_image(path, float(np.hypot(*matrix[:, 0])), header=header)
    warp = matrix.copy()
    warp[:, :2] *= factor  # decoded pixel -> original pixel -> template
    image = cv2.warpAffine(image, warp, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return image, (points @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


def _identity_rank(ids: np.ndarray, seed: int) -> np.ndarray:
    """Rank of each identity in one seeded shuffle, shared by all splits (indexable by identity)."""
    unique = np.unique(ids)
    rank = np.zeros(int(unique.max()) + 1 if len(unique) else 0, np.int64)
    rank[np.random.default_rng(seed).permutation(unique)] = np.arange(len(unique))
    return rank


def _layout_hint(root: Path) -> str:
    found = sorted(p.name for p in root.iterdir())[:12] if root.is_dir() else "nothing (folder missing)"
    return (
        f"A CelebA root holds {IMAGE_DIR}/ (from Img/img_align_celeba.zip), {ATTR_FILE}, {IDENTITY_FILE} "
        f"(from Anno/), {PARTITION_FILE} (from Eval/) and optionally {LANDMARK_FILE}; {root} has: {found}"
    )


def _lines(path: Path, root: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"{path}: not found. {_layout_hint(root)}")
    with open(path, encoding="utf-8-sig", errors="replace") as f:  # -sig: a byte-order mark is not a file name
        return f.read().splitlines()


def _ints(path: Path, number: int, tokens: list[str]) -> list[int]:
    try:
        return [int(t) for t in tokens]
    except ValueError:
        raise DataError(f"{path}, line {number}: expected integers after the file name, got {tokens[:12]}") from None


def _read_pairs(path: Path, root: Path, valid: set[int] | None = None) -> dict[str, int]:
    """``<file> <int>`` per line (identity and partition files)."""
    out = {}
    for number, line in enumerate(_lines(path, root), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise DataError(f"{path}, line {number}: expected '<file> <integer>', got {line[:80]!r}")
        value = _ints(path, number, fields[1:])[0]
        if valid is not None and value not in valid:
            raise DataError(f"{path}, line {number}: value {value} is not one of {sorted(valid)}")
        if fields[0] in out:
            raise DataError(f"{path}, line {number}: {fields[0]} is listed twice; keep one line per image")
        out[fields[0]] = value
    if not out:
        raise DataError(f"{path}: is empty")
    return out


def _read_table(
    path: Path, root: Path, values: set[int] | None = None, width: int | None = None
) -> tuple[list[str], dict[str, list[int]]]:
    """CelebA's annotation layout: a count line, a header of column names, ``<file> <int>*`` rows."""
    lines = _lines(path, root)
    if len(lines) < 2 or not lines[0].strip().isdigit():
        raise DataError(f"{path}, line 1: expected the row count, then a header line of column names")
    header = lines[1].split()
    if width is not None and len(header) != width:
        raise DataError(f"{path}, line 2: expected a header of {width} column names, got {len(header)}")
    rows = {}
    for number, line in enumerate(lines[2:], 3):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != len(header) + 1:
            raise DataError(
                f"{path}, line {number}: expected {len(header) + 1} fields (file name + {len(header)} values "
                f"as in the header), got {len(fields)}: {line[:80]!r}"
            )
        row = _ints(path, number, fields[1:])
        if values is not None and not set(row) <= values:
            raise DataError(f"{path}, line {number}: values must be in {sorted(values)}, got {sorted(set(row))}")
        if fields[0] in rows:
            raise DataError(f"{path}, line {number}: {fields[0]} is listed twice; keep one line per image")
        rows[fields[0]] = row
    if len(rows) != int(lines[0]):
        raise DataError(f"{path}: line 1 announces {int(lines[0])} rows but the file has {len(rows)} (truncated?)")
    return header, rows


def _complete_files(root: Path, tables: dict[str, dict], allow_partial: bool) -> tuple[list[str], dict[str, int]]:
    """The images that every annotation file lists and img_align_celeba/ holds, in the partition file's order,
    and what each source has. A disagreement is a DataError naming the first source that lacks images (the
    annotation files before the folder), unless ``allow_partial``."""
    from bench.data.imageio import IMAGE_SUFFIXES

    with os.scandir(root / IMAGE_DIR) as entries:  # hidden files and other kinds (Thumbs.db, notes) are no images
        present = {
            e.name
            for e in entries
            if e.name[:1] != "." and os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES and e.is_file()
        }
    sources = {name: set(table) for name, table in tables.items()} | {IMAGE_DIR: present}
    union, common = set().union(*sources.values()), set.intersection(*sources.values())
    found = {name: len(names) for name, names in sources.items()}
    counts = ", ".join(f"{name} {'holds' if name == IMAGE_DIR else 'lists'} {n:,}" for name, n in found.items())
    found |= {"in_all": len(common), "left_out": len(union) - len(common), "allow_partial": allow_partial}
    if len(common) < len(union) and not allow_partial:
        name, lacking = next((n, sorted(union - names)) for n, names in sources.items() if union - names)
        if name == IMAGE_DIR:
            fix = (
                "unpack the whole img_align_celeba.zip, or trim the annotation files to the images you have (as a "
                "subset such as the 3,000-image sample does)"
            )
        else:
            fix = f"the file is truncated or from another release: download it again from CelebA's {_origin(name)}"
        raise DataError(
            f"{root / name}: lacks {len(lacking):,} of the {len(union):,} images that the other CelebA files name, "
            f"e.g. {', '.join(lacking[:3])} ({counts}); {fix}"
            + (f", or pass --allow-partial to load only the {len(common):,} images that all have" if common else "")
        )
    if not common:
        raise DataError(
            f"{root}: no image is in {IMAGE_DIR}/ and in every annotation file ({counts}), so --allow-partial leaves "
            f"nothing to load; use the images and annotation files of one CelebA release. {_layout_hint(root)}"
        )
    return [f for f in tables[PARTITION_FILE] if f in common], found


def _origin(name: str) -> str:
    return "Eval/ folder" if name == PARTITION_FILE else "Anno/ folder"
