"""Synthetic occlusion generator: procedural RGBA occluder types placed by landmarks (OA-GAN's rules).

Each type is a family plus parameters (shape, colour, pattern) drawn once as an RGBA sprite at the
size the placement rule gives it, then cached premultiplied. Placement follows the authors'
``utils/util.process_image`` (docs/methods.md section 1), scaled by size/128: rotation uniform in +-15
degrees; glasses and masks 100 px wide (on the eyes / over the nose-mouth band); scarf and cup longest
side 64 in the bottom band; hand 120, phone 80 and every other family 70 anywhere. The mask is
alpha > 0.5. User RGBA PNGs from a folder become more types (family = sub-folder or file-name prefix).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from bench.data.faces import SKIN_TONES
from bench.data.imageio import read_image
from bench.data.types import Occlusion
from bench.errors import DataError

ROTATION_DEG = 15.0
_SS = 2  # sprite supersampling

_COLOURS = [
    (20, 20, 22),
    (240, 240, 240),
    (200, 40, 40),
    (40, 70, 170),
    (40, 130, 70),
    (230, 190, 40),
    (120, 70, 40),
    (150, 150, 158),
    (220, 110, 170),
    (100, 50, 140),
]
_SKINS = [tuple(int(c) for c in SKIN_TONES[i]) for i in (0, 2, 3, 4, 5, 6, 7, 1)]  # hands: the faces' palette


class Rule(NamedTuple):
    """Where and how large a family is placed; ``length`` is at 128 px (width for eyes/mouth rules)."""

    where: str  # "eyes" | "mouth" | "bottom" | "anywhere"
    length: float


def rule_for(family: str) -> Rule:
    """The official size/placement rule, chosen by keywords in the family name."""
    name = family.lower()
    if "glass" in name:
        return Rule("eyes", 100)
    if any(k in name for k in ("mask", "respirator", "n95")):
        return Rule("mouth", 100)
    if "scarf" in name or "cup" in name:
        return Rule("bottom", 64)
    if "hand" in name:
        return Rule("anywhere", 120)
    if "phone" in name:
        return Rule("anywhere", 80)
    return Rule("anywhere", 70)


class _Sketch:
    """An RGBA canvas addressed in unit coordinates (x right, y down), drawn supersampled."""

    def __init__(self, width: int, height: int):
        self.w, self.h = width * _SS, height * _SS
        self.rgb = np.zeros((self.h, self.w, 3), np.uint8)
        self.alpha = np.zeros((self.h, self.w), np.uint8)

    def _p(self, pts) -> list[np.ndarray]:
        return [np.round(np.asarray(pts, np.float64) * (self.w * 16, self.h * 16)).astype(np.int32)]

    def poly(self, pts, colour, alpha: int = 255) -> None:
        cv2.fillPoly(self.rgb, self._p(pts), _c(colour), cv2.LINE_AA, 4)
        cv2.fillPoly(self.alpha, self._p(pts), alpha, cv2.LINE_AA, 4)

    def ellipse(self, centre, axes, colour, alpha: int = 255, width: float = -1, arc=(0, 360)) -> None:
        c = tuple(int(v) for v in self._p([centre])[0][0])
        a = (max(1, int(axes[0] * self.w * 16)), max(1, int(axes[1] * self.h * 16)))
        t = -1 if width < 0 else max(1, int(width * self.w))
        cv2.ellipse(self.rgb, c, a, 0, arc[0], arc[1], _c(colour), t, cv2.LINE_AA, 4)
        cv2.ellipse(self.alpha, c, a, 0, arc[0], arc[1], alpha, t, cv2.LINE_AA, 4)

    def line(self, pts, colour, width: float, alpha: int = 255, paint_only: bool = False) -> None:
        t = max(1, int(width * self.w))
        cv2.polylines(self.rgb, self._p(pts), False, _c(colour), t, cv2.LINE_AA, 4)
        if not paint_only:
            cv2.polylines(self.alpha, self._p(pts), False, alpha, t, cv2.LINE_AA, 4)

    def pattern(self, kind: int, colour, rng: np.random.Generator) -> None:
        """Stripes, checks or dots painted over what is drawn (alpha unchanged)."""
        if kind == 1:
            for y in np.arange(0.05, 1, 0.14):
                self.line([(0, y), (1, y + 0.05)], colour, 0.03, paint_only=True)
        elif kind == 2:
            for v in np.arange(0.07, 1, 0.16):
                self.line([(0, v), (1, v)], colour, 0.02, paint_only=True)
                self.line([(v, 0), (v, 1)], colour, 0.02, paint_only=True)
        elif kind == 3:
            for x, y in rng.random((40, 2)):
                c = tuple(int(v) for v in self._p([(x, y)])[0][0])
                cv2.circle(self.rgb, c, int(0.025 * self.w * 16) + 8, _c(colour), -1, cv2.LINE_AA, 4)

    def sprite(self) -> np.ndarray:
        """Premultiplied float32 [h,w,4] (rgb*a, a in [0,1]) at the target size."""
        a = self.alpha.astype(np.float32) / 255
        pre = np.concatenate([self.rgb.astype(np.float32) * a[..., None], a[..., None]], 2)
        return cv2.resize(pre, (self.w // _SS, self.h // _SS), interpolation=cv2.INTER_AREA)


def _c(colour) -> tuple[float, ...]:
    return tuple(float(v) for v in colour)


def _shade(colour, k: float) -> tuple[float, ...]:
    return tuple(float(np.clip(v * k, 0, 255)) for v in colour)


def _lens(shape: int, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    if shape == 1:  # rectangle with soft corners
        c, s = np.sign(c) * np.abs(c) ** 0.3, np.sign(s) * np.abs(s) ** 0.3
    elif shape == 3:  # cat-eye / aviator: wider at the top
        c = c * (1 + 0.15 * (s < 0)) - 0.1 * (s > 0) * np.sign(cx - 0.5)
    return np.stack([cx + rx * c, cy + ry * s * (0.85 if shape == 2 else 1)], 1)


def _glasses(sk: _Sketch, p: Sequence[int], rng: np.random.Generator, sun: bool) -> None:
    shape, frame = p[0], _COLOURS[p[1]] if not sun else _COLOURS[(0, 6, 7, 5)[p[2]]]
    lens_colour = [(15, 15, 18), (70, 42, 22), (24, 54, 36), (30, 40, 90), (90, 30, 30)][p[1] % 5] if sun else None
    width = (0.02, 0.045)[p[2] % 2] if not sun else 0.035
    for side in (-1, 1):
        pts = _lens(shape, 0.5 + side * 0.24, 0.5, 0.17, 0.36)
        if sun:
            sk.poly(pts, lens_colour)
            sk.line(
                [(0.5 + side * 0.24 - 0.08, 0.35), (0.5 + side * 0.24 - 0.02, 0.2)],
                _shade(lens_colour, 3),
                0.02,
                255,
            )
        sk.line(np.concatenate([pts, pts[:1]]), frame, width)
        sk.line([(0.5 + side * 0.41, 0.35), (0.5 + side * 0.5, 0.3)], frame, width)
    sk.line([(0.43, 0.42), (0.5, 0.36), (0.57, 0.42)], frame, width)


def _sunglasses(sk, p, rng) -> None:
    _glasses(sk, p, rng, sun=True)


def _eyeglasses(sk, p, rng) -> None:
    _glasses(sk, p, rng, sun=False)


def _surgical(sk: _Sketch, p, rng) -> None:
    colour = [
        (150, 200, 225),
        (236, 236, 236),
        (30, 30, 34),
        (235, 170, 190),
        (120, 170, 130),
        (110, 140, 210),
        (250, 250, 210),
        (180, 180, 190),
        (200, 220, 240),
        (90, 90, 100),
    ][p[0]]
    sk.poly([(0.1, 0.15), (0.5, 0.05), (0.9, 0.15), (0.88, 0.8), (0.5, 0.97), (0.12, 0.8)], colour)
    for k in range(3 if p[1] else 2):
        y = 0.3 + 0.18 * k
        sk.line([(0.12, y), (0.88, y)], _shade(colour, 0.82), 0.012)
    if p[2]:
        for side in (-1, 1):
            sk.line(
                [
                    (0.5 + side * 0.4, 0.2),
                    (0.5 + side * 0.49, 0.12),
                    (0.5 + side * 0.49, 0.6),
                    (0.5 + side * 0.4, 0.7),
                ],
                _shade(colour, 0.9),
                0.012,
            )


def _n95(sk: _Sketch, p, rng) -> None:
    colour = [(240, 240, 236), (200, 200, 190), (60, 60, 64), (120, 160, 210)][p[0]]
    rx = (0.46, 0.42, 0.48, 0.4)[p[2]]
    sk.ellipse((0.5, 0.52), (rx, 0.45), colour)
    sk.line([(0.5, 0.08), (0.5, 0.97)], _shade(colour, 0.85), 0.012)
    if p[1]:
        sk.ellipse((0.66, 0.6), (0.09, 0.09), _shade(colour, 0.6))
        sk.ellipse((0.66, 0.6), (0.05, 0.05), _shade(colour, 0.45))


def _cloth(sk: _Sketch, p, rng) -> None:
    colour = _COLOURS[(p[0] + 2) % 10]
    sk.poly([(0.08, 0.2), (0.5, 0.06), (0.92, 0.2), (0.9, 0.7), (0.5, 0.96), (0.1, 0.7)], colour)
    pattern = (0, 1, 2, 3, 1, 2)[p[1]]  # the last two repeat stripes / checks in a contrasting colour
    sk.pattern(pattern, _shade(colour, 0.55) if p[1] < 4 else _COLOURS[(p[0] + 5) % 10], rng)


def _scarf(sk: _Sketch, p, rng) -> None:
    colour = _COLOURS[p[0] + 2]
    sk.poly([(0.0, 0.15), (0.5, 0.3 + 0.1 * p[2]), (1.0, 0.15), (1.0, 0.75), (0.5, 0.95), (0.0, 0.75)], colour)
    sk.pattern(p[1], _shade(colour, 0.55) if p[1] != 3 else (240, 240, 240), rng)
    sk.line([(0.05, 0.5), (0.5, 0.62), (0.95, 0.5)], _shade(colour, 0.75), 0.02, paint_only=True)


def _hand(sk: _Sketch, p, rng) -> None:
    skin, pose, sleeve = _SKINS[p[0]], p[1], p[2]
    sk.ellipse((0.5, 0.62), (0.26, 0.22), skin)  # palm
    angles = np.radians([-60, -25, -8, 10, 28])
    lengths = {
        0: (0.2, 0.3, 0.33, 0.3, 0.25),
        1: (0.12, 0.1, 0.1, 0.1, 0.09),
        2: (0.24, 0.36, 0.4, 0.36, 0.3),
        3: (0.15, 0.34, 0.36, 0.1, 0.08),
    }[pose]
    spread = 1.6 if pose == 2 else 1.0
    for k, (a, length) in enumerate(zip(angles, lengths, strict=True)):
        base = (0.5 + 0.2 * np.sin(a * 1.2) - (0.08 if k == 0 else 0), 0.5 if k else 0.62)
        tip = (base[0] + length * np.sin(a * spread), base[1] - length * np.cos(a * spread))
        sk.line([base, tip], skin, 0.1 if k else 0.11)
        sk.line([tip, tip], _shade(skin, 0.92), 0.1)
    sk.line([(0.4, 0.62), (0.55, 0.7)], _shade(skin, 0.8), 0.012, paint_only=True)
    if sleeve:
        sk.poly([(0.3, 0.78), (0.7, 0.78), (0.72, 1.0), (0.28, 1.0)], _COLOURS[(p[0] + p[1]) % 10])
    else:
        sk.poly([(0.36, 0.75), (0.64, 0.75), (0.62, 1.0), (0.38, 1.0)], skin)


def _cup(sk: _Sketch, p, rng) -> None:
    shape, colour, stripe = p[0], _COLOURS[p[1]], p[2]
    top, bottom = (0.18, 0.18, 0.22, 0.14)[shape], (0.18, 0.12, 0.2, 0.16)[shape]
    y0 = 0.3 if shape == 3 else 0.05
    sk.poly(
        [
            (0.5 - top - 0.1, y0),
            (0.5 + top + 0.1, y0),
            (0.5 + bottom + 0.08, 0.98),
            (0.5 - bottom - 0.08, 0.98),
        ],
        colour,
        150 if shape == 2 else 255,
    )
    if shape in (0, 3):  # handle
        sk.ellipse((0.5 + top + 0.2, y0 + 0.3), (0.12, 0.16), colour, width=0.06)
    if stripe:
        sk.line(
            [(0.5 - top - 0.08, 0.45), (0.5 + top + 0.08, 0.45)],
            _shade(colour, 0.5) if p[1] else (230,) * 3,
            0.08,
            paint_only=True,
        )
    sk.ellipse((0.5, y0 + 0.02), (top + 0.1, 0.04), _shade(colour, 0.7))


def _phone(sk: _Sketch, p, rng) -> None:
    body, screen, wide = _COLOURS[p[0]], p[1], p[2]
    x0 = 0.2 if wide else 0.27
    sk.poly(_rounded(x0, 0.0, 1 - x0, 1.0, 0.07), body)
    colour = [(12, 12, 16), (60, 110, 200), (230, 230, 235), (90, 170, 110)][screen]
    sk.poly(_rounded(x0 + 0.04, 0.07, 1 - x0 - 0.04, 0.9, 0.03), colour)
    if screen:
        for k in range(4):
            sk.line(
                [(x0 + 0.1, 0.2 + 0.15 * k), (1 - x0 - 0.1, 0.2 + 0.15 * k)],
                _shade(colour, 0.6),
                0.03,
                paint_only=True,
            )


def _rounded(x0: float, y0: float, x1: float, y1: float, r: float) -> np.ndarray:
    pts = []
    for cx, cy, a0 in (
        (x1 - r, y0 + r, -90),
        (x1 - r, y1 - r, 0),
        (x0 + r, y1 - r, 90),
        (x0 + r, y0 + r, 180),
    ):
        t = np.radians(np.linspace(a0, a0 + 90, 5))
        pts.append(np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1))
    return np.concatenate(pts)


def _microphone(sk: _Sketch, p, rng) -> None:
    head, body, shape = (
        [(160, 160, 168), (30, 30, 32), (200, 40, 40), (60, 80, 160)][p[0]],
        _COLOURS[(0, 7, 6, 3)[p[1]]],
        p[2],
    )
    sk.poly([(0.42, 0.35), (0.58, 0.35), (0.54, 1.0), (0.46, 1.0)], body)
    rh = (0.16, 0.2, 0.12)[shape]
    sk.ellipse((0.5, 0.2), (rh * 1.3, rh), head)
    for k in range(3):
        sk.line(
            [(0.5 - rh, 0.12 + 0.07 * k), (0.5 + rh, 0.12 + 0.07 * k)],
            _shade(head, 0.6),
            0.015,
            paint_only=True,
        )


def _hair(sk: _Sketch, p, rng) -> None:
    colour = [
        (28, 24, 24),
        (58, 40, 30),
        (98, 68, 44),
        (142, 102, 64),
        (204, 168, 112),
        (146, 62, 34),
        (190, 190, 192),
        (120, 40, 120),
    ][p[0]]
    n, curl = 6 + 3 * (p[1] % 4), 0.05 + 0.06 * (p[1] // 4)
    for _ in range(n):
        x = rng.uniform(0.1, 0.9)
        t = np.linspace(0, 1, 10)
        phase = rng.uniform(0, 2 * np.pi)
        pts = np.stack([x + curl * np.sin(6 * t + phase) + 0.15 * t * rng.uniform(-1, 1), t], 1)
        sk.line(pts, _shade(colour, rng.uniform(0.8, 1.2)), 0.03 + 0.02 * rng.random())


def _object(sk: _Sketch, p, rng) -> None:
    shape, colour = p[0], _COLOURS[p[1]]
    if shape == 0:  # ball
        sk.ellipse((0.5, 0.5), (0.48, 0.48), colour)
        sk.ellipse((0.38, 0.35), (0.1, 0.1), _shade(colour, 1.5))
    elif shape == 1:  # book
        sk.poly([(0.1, 0.0), (0.9, 0.0), (0.9, 1.0), (0.1, 1.0)], colour)
        sk.line([(0.18, 0.0), (0.18, 1.0)], _shade(colour, 0.6), 0.05)
    elif shape == 2:  # leaf
        sk.poly(
            np.concatenate([_arc_pts(0.5, 0.5, 0.35, 0.5, -90, 90), _arc_pts(0.5, 0.5, 0.35, 0.5, 90, 270)]),
            colour,
        )
        sk.line([(0.5, 0.0), (0.5, 1.0)], _shade(colour, 0.6), 0.02)
    elif shape == 3:  # star
        t = np.radians(np.arange(10) * 36 - 90)
        r = np.where(np.arange(10) % 2 == 0, 0.49, 0.2)
        sk.poly(np.stack([0.5 + r * np.cos(t), 0.5 + r * np.sin(t)], 1), colour)
    elif shape == 4:  # box
        sk.poly([(0.05, 0.25), (0.95, 0.25), (0.95, 1.0), (0.05, 1.0)], colour)
        sk.poly([(0.05, 0.25), (0.3, 0.0), (1.0, 0.0), (0.95, 0.25)], _shade(colour, 1.25))
    elif shape == 5:  # bottle
        sk.poly(_rounded(0.3, 0.35, 0.7, 1.0, 0.08), colour, 200)
        sk.poly([(0.44, 0.0), (0.56, 0.0), (0.56, 0.36), (0.44, 0.36)], _shade(colour, 0.7))
    elif shape == 6:  # apple
        sk.ellipse((0.5, 0.56), (0.44, 0.42), colour)
        sk.line([(0.5, 0.2), (0.56, 0.02)], (90, 60, 30), 0.04)
    else:  # card / badge with a pattern
        sk.poly(_rounded(0.0, 0.2, 1.0, 0.8, 0.06), colour)
        sk.pattern(1 + p[1] % 3, _shade(colour, 0.6), rng)


def _arc_pts(cx, cy, rx, ry, a0, a1) -> np.ndarray:
    t = np.radians(np.linspace(a0, a1, 10))
    return np.stack([cx + rx * np.cos(t) * np.sin(np.linspace(0, np.pi, 10)) ** 0.5, cy + ry * np.sin(t)], 1)


class _Family(NamedTuple):
    draw: Callable[[_Sketch, Sequence[int], np.random.Generator], None]
    grid: tuple[int, ...]  # parameter ranges: the family's types are their product
    aspect: float  # height / width of the sprite


BUILTIN_FAMILIES: dict[str, _Family] = {
    "eyeglasses": _Family(_eyeglasses, (4, 10, 2), 0.36),
    "sunglasses": _Family(_sunglasses, (4, 5, 4), 0.38),
    "surgical_mask": _Family(_surgical, (10, 2, 2), 0.7),
    "n95_respirator": _Family(_n95, (4, 2, 4), 0.8),
    "cloth_mask": _Family(_cloth, (8, 6), 0.7),
    "scarf": _Family(_scarf, (8, 4, 2), 0.55),
    "hand": _Family(_hand, (8, 4, 2), 1.25),
    "cup": _Family(_cup, (4, 10, 2), 1.2),
    "phone": _Family(_phone, (8, 4, 2), 1.8),
    "microphone": _Family(_microphone, (4, 4, 3), 2.4),
    "hair": _Family(_hair, (8, 8), 1.4),
    "object": _Family(_object, (8, 10), 1.0),
}


class _Type(NamedTuple):
    name: str
    family: str
    params: tuple[int, ...] | None  # built-in: grid index; user: None
    path: Path | None
    rgba: np.ndarray | None = None  # user: the decoded, cropped PNG (checked when the folder is loaded)


def _params(grid: tuple[int, ...], k: int) -> tuple[int, ...]:
    out = []
    for n in grid:
        out.append(k % n)
        k //= n
    return tuple(out)


def _family_of(path: Path, root: Path) -> str:
    if path.parent != root:
        return path.parent.name.lower()
    prefix = re.split(r"[\d]", path.stem, maxsplit=1)[0].strip("_- ")
    return (prefix or path.stem).lower()


def load_user_occluders(folder: str | Path) -> list[_Type]:
    """Every ``*.png`` under ``folder`` (recursively) as one type, each decoded and checked now, so a bad
    file stops the run before any work with one line naming it (not mid-run, when its sprite is drawn)."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"occluder folder not found: {root}; pass a folder of RGBA PNG occluders")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() == ".png")
    if not files:
        others = sorted(p.name for p in root.rglob("*") if p.is_file())
        has = f"it has {len(others)} other file(s), e.g. {others[:3]}" if others else "it is empty"
        raise FileNotFoundError(
            f"no .png occluders in {root} ({has}); put RGBA PNG occluders there or leave out --occluders"
        )
    types = []
    for f in files:
        family = _family_of(f, root)
        types.append(_Type(f"{family}/{f.stem}", family, None, f, _read_rgba(f)))
    return types


def _read_rgba(path: Path) -> np.ndarray:
    """The occluder's RGBA pixels cropped to its visible part (bench.data.imageio's checked decode)."""
    rgba, _ = read_image(path, alpha=True)
    ys, xs = np.nonzero(rgba[..., 3] > 0)
    if len(ys) == 0:
        raise DataError(f"{path}: occluder PNG is fully transparent (nothing to paste); draw on it or remove it")
    return rgba[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


class OcclusionGenerator:
    """``gen(clean, landmarks, rng) -> Occlusion`` with a uniformly drawn type; ``apply`` for a chosen one."""

    def __init__(self, size: int, user_dir: str | Path | None = None, families: Sequence[str] | None = None):
        self.size = size
        types = [
            _Type(f"{name}/{k:02d}", name, _params(fam.grid, k), None)
            for name, fam in BUILTIN_FAMILIES.items()
            for k in range(int(np.prod(fam.grid)))
        ]
        if user_dir is not None:
            types += load_user_occluders(user_dir)
        if families is not None:
            known = sorted({t.family for t in types})
            unknown = sorted(set(families) - set(known))
            if unknown:
                raise ValueError(f"unknown occluder families {unknown}; available: {', '.join(known)}")
            types = [t for t in types if t.family in set(families)]
        self._types = types
        self.types = [t.name for t in types]
        self.families = sorted({t.family for t in types})
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.types)

    def __call__(self, clean: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator) -> Occlusion:
        return self.apply(clean, landmarks, rng, int(rng.integers(len(self._types))))

    def family_of(self, type_index: int) -> str:
        return self._types[type_index].family

    def sprite(self, type_index: int) -> np.ndarray:
        """The type's premultiplied RGBA sprite (float32 [h,w,4]) at this generator's size, cached."""
        if type_index not in self._cache:
            self._cache[type_index] = self._make_sprite(self._types[type_index])
        return self._cache[type_index]

    def _make_sprite(self, t: _Type) -> np.ndarray:
        rule = rule_for(t.family)
        length = rule.length * self.size / 128
        if t.path is not None:
            rgba = t.rgba if t.rgba is not None else _read_rgba(t.path)
            h, w = rgba.shape[:2]
            k = length / (w if rule.where in ("eyes", "mouth") else max(h, w))
            size = (max(2, round(w * k)), max(2, round(h * k)))
            a = rgba[..., 3:].astype(np.float32) / 255
            pre = np.concatenate([rgba[..., :3].astype(np.float32) * a, a], 2)
            return cv2.resize(pre, size, interpolation=cv2.INTER_AREA)
        fam = BUILTIN_FAMILIES[t.family]
        width = length if rule.where in ("eyes", "mouth") or fam.aspect <= 1 else length / fam.aspect
        sketch = _Sketch(max(2, round(width)), max(2, round(width * fam.aspect)))
        fam.draw(sketch, t.params, np.random.default_rng([zlib.crc32(t.family.encode()), *t.params]))
        return sketch.sprite()

    def apply(self, clean: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator, type_index: int) -> Occlusion:
        """Occlude ``clean`` (uint8 [H,W,3]) with type ``type_index``, placed by ``landmarks`` ([5,2] x,y)."""
        t = self._types[type_index]
        sprite = _rotate(self.sprite(type_index), rng.uniform(-ROTATION_DEG, ROTATION_DEG))
        h, w = sprite.shape[:2]
        x0, y0 = _place(rule_for(t.family).where, landmarks, w, h, clean.shape[0], rng)
        image, mask = _composite(clean, sprite, x0, y0)
        return Occlusion(image, mask, t.name, t.family)


def _rotate(sprite: np.ndarray, angle: float) -> np.ndarray:
    """Rotate by ``angle`` degrees (counter-clockwise), expanding the canvas (PIL's expand=1)."""
    h, w = sprite.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    c, s = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(np.ceil(w * c + h * s)), int(np.ceil(w * s + h * c))
    m[:, 2] += (nw / 2 - w / 2, nh / 2 - h / 2)
    out = cv2.warpAffine(sprite, m, (nw, nh), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0, 0))
    return out


def _place(where: str, lm: np.ndarray, w: int, h: int, size: int, rng: np.random.Generator) -> tuple[int, int]:
    """Top-left corner of the rotated sprite (official rules, landmark-anchored, scaled by size/128)."""
    s = size / 128
    eyes, nose, mouth = lm[:2].mean(0), lm[2], lm[3:].mean(0)
    if where == "eyes":
        cx, cy = eyes[0] + rng.uniform(-3, 3) * s, eyes[1] + rng.uniform(-5, 2) * s
    elif where == "mouth":  # top edge between the eye line and the nose tip: covers nose, mouth and chin
        cx = (nose[0] + mouth[0]) / 2 + rng.uniform(-3, 3) * s
        top = nose[1] - rng.uniform(0.3, 0.7) * (nose[1] - eyes[1])
        return int(round(cx - w / 2)), int(round(top))
    elif where == "bottom":  # below the mouth; at least 20 px (at 128) and half the sprite inside
        cx = mouth[0] + rng.uniform(-0.2, 0.2) * size
        top = rng.uniform(mouth[1] - 0.25 * h, size - max(20 * s, 0.5 * h))
        return int(round(cx - w / 2)), int(round(top))
    else:
        return int(round(rng.uniform(min(0, size - w), max(0, size - w)))), int(
            round(rng.uniform(min(0, size - h), max(0, size - h)))
        )
    return int(round(cx - w / 2)), int(round(cy - h / 2))


def _composite(clean: np.ndarray, sprite: np.ndarray, x0: int, y0: int) -> tuple[np.ndarray, np.ndarray]:
    """Alpha-composite a premultiplied sprite at (x0, y0), clipped to the image; mask = alpha > 0.5.

    Pixels outside the mask keep the clean values (the faint alpha <= 0.5 fringe is dropped), so a
    mask-requiring method that keeps the unmasked input loses nothing it could not have restored.
    """
    H, W = clean.shape[:2]
    h, w = sprite.shape[:2]
    xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + w, W), min(y0 + h, H)
    image, mask = clean.copy(), np.zeros((H, W), np.uint8)
    if xa >= xb or ya >= yb:
        return image, mask
    part = sprite[ya - y0 : yb - y0, xa - x0 : xb - x0]
    alpha = part[..., 3:]
    region = clean[ya:yb, xa:xb].astype(np.float32)
    blended = np.clip(part[..., :3] + region * (1 - alpha) + 0.5, 0, 255).astype(np.uint8)
    inside = alpha[..., 0] > 0.5
    image[ya:yb, xa:xb][inside] = blended[inside]
    mask[ya:yb, xa:xb] = inside
    return image, mask
