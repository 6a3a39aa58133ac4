"""Procedural synthetic faces: identities, the paper's 10 attributes, exact landmarks, natural occlusions.

Faces are drawn with OpenCV on a supersampled canvas and area-downsampled, so any size reads well.
All geometry lives in a normalised face frame ((0,0) top-left, (1,1) bottom-right of the image) and is
mapped through the per-image pose before drawing: landmarks are exact, not detected. A natural
occlusion (glasses, sunglasses, face mask) is drawn onto a copy of the same canvas together with a
coverage layer, so the clean rendering and the exact mask exist for evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

from bench.data.types import PAPER_ATTRIBUTES

NATURAL_KINDS = ("eyeglasses", "sunglasses", "facemask")

SKIN_TONES = np.array(
    [
        (241, 206, 184),
        (233, 190, 160),
        (222, 172, 138),
        (203, 150, 112),
        (178, 124, 92),
        (148, 100, 72),
        (118, 80, 58),
        (92, 62, 46),
    ],
    np.float64,
)
_HAIR = np.array([(28, 24, 24), (58, 40, 30), (98, 68, 44), (142, 102, 64), (204, 168, 112), (146, 62, 34)], np.float64)
_IRIS = np.array([(58, 38, 24), (102, 66, 36), (70, 112, 162), (80, 120, 80), (110, 120, 132)], np.float64)
_LIPSTICK = np.array([(196, 24, 48), (214, 72, 120), (128, 24, 60), (224, 60, 60)], np.float64)
_SHADOW = np.array([(112, 72, 140), (60, 90, 150), (140, 90, 60), (70, 70, 80)], np.float64)
_CLOTHES = np.array([(40, 40, 48), (200, 200, 205), (60, 80, 140), (140, 40, 40), (50, 110, 70), (150, 120, 80)])
_FRAME = np.array([(20, 20, 20), (90, 55, 30), (200, 170, 90), (170, 170, 178), (150, 30, 40), (40, 60, 130)])
_SUNLENS = np.array([(18, 18, 22), (60, 38, 22), (24, 50, 34), (30, 40, 80)])
_FACEMASK = np.array([(150, 200, 225), (236, 236, 236), (30, 30, 34), (235, 170, 190), (120, 160, 120)])


@dataclass(frozen=True)
class Identity:
    """Fixed face parameters of one synthetic person (lengths in the normalised face frame)."""

    male: bool
    young: bool
    pale: bool
    shadow: bool  # 5 o'clock shadow
    goatee: bool
    mustache: bool
    sideburns: bool
    makeup: bool
    lipstick: bool
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    iris: tuple[float, float, float]
    lip_colour: tuple[float, float, float]  # natural lips
    lipstick_colour: tuple[float, float, float]  # used when ``lipstick``
    shadow_colour: tuple[float, float, float]
    clothes: tuple[float, float, float]
    hair_style: int
    face_w: float
    face_h: float
    jaw_taper: float
    eye_y: float
    eye_dx: float
    eye_size: float
    brow_arch: float
    brow_thick: float
    nose_y: float
    nose_w: float
    mouth_y: float
    mouth_w: float
    lip_thick: float

    @property
    def no_beard(self) -> bool:
        return not (self.shadow or self.goatee or self.mustache or self.sideburns)

    def attributes(self) -> np.ndarray:
        """The paper's 10 CelebA attributes, float32 {0,1}, in PAPER_ATTRIBUTES order."""
        values = {
            "5_o_Clock_Shadow": self.shadow,
            "Goatee": self.goatee,
            "Heavy_Makeup": self.makeup,
            "Male": self.male,
            "Mustache": self.mustache,
            "No_Beard": self.no_beard,
            "Pale_Skin": self.pale,
            "Sideburns": self.sideburns,
            "Wearing_Lipstick": self.lipstick,
            "Young": self.young,
        }
        return np.array([values[name] for name in PAPER_ATTRIBUTES], np.float32)


def _mix(a, b, t: float) -> tuple[float, float, float]:
    return tuple((1 - t) * float(x) + t * float(y) for x, y in zip(a, b, strict=True))


def make_identity(seed: int, index: int) -> Identity:
    """Identity ``index`` of the population ``seed`` (independent of how many others are drawn)."""
    r = np.random.default_rng([seed, index, 0x1D])
    male, young, pale = r.random() < 0.5, r.random() < 0.7, r.random() < 0.14
    beard = r.random(4) < (0.3, 0.22, 0.25, 0.25)
    shadow, goatee, mustache, sideburns = (bool(b and male) for b in beard)
    makeup = bool(not male and r.random() < 0.5)
    lipstick = bool(not male and r.random() < (0.9 if makeup else 0.3))
    tone = (
        SKIN_TONES[r.integers(0, 3)] if pale else SKIN_TONES[r.integers(0, len(SKIN_TONES))] * r.uniform(0.96, 1.04, 3)
    )
    skin = _mix(tone, (250, 240, 236), 0.45 if pale else 0.0)
    hair = _HAIR[r.integers(0, len(_HAIR))]
    if not young:
        hair = _mix(hair, (196, 196, 198), r.uniform(0.55, 0.9))
    return Identity(
        male=bool(male),
        young=bool(young),
        pale=bool(pale),
        shadow=shadow,
        goatee=goatee,
        mustache=mustache,
        sideburns=sideburns,
        makeup=makeup,
        lipstick=lipstick,
        skin=tuple(float(v) for v in np.clip(skin, 0, 255)),
        hair=tuple(float(v) for v in hair),
        iris=tuple(_IRIS[r.integers(0, len(_IRIS))]),
        lip_colour=_mix(skin, (170, 70, 70), 0.38),
        lipstick_colour=tuple(float(v) for v in _LIPSTICK[r.integers(0, len(_LIPSTICK))]),
        shadow_colour=tuple(_SHADOW[r.integers(0, len(_SHADOW))]),
        clothes=tuple(float(v) for v in _CLOTHES[r.integers(0, len(_CLOTHES))] * r.uniform(0.8, 1.1)),
        hair_style=int(r.integers(0, 3)),
        face_w=float(r.uniform(0.25, 0.29) + 0.015 * male),
        face_h=float(r.uniform(0.35, 0.39)),
        jaw_taper=float(r.uniform(0.05, 0.18) if male else r.uniform(0.22, 0.36)),
        eye_y=float(r.uniform(0.44, 0.47)),
        eye_dx=float(r.uniform(0.105, 0.13)),
        eye_size=float(r.uniform(0.036, 0.046)),
        brow_arch=float(r.uniform(0.0, 0.012) if male else r.uniform(0.012, 0.026)),
        brow_thick=float(r.uniform(0.016, 0.024) if male else r.uniform(0.008, 0.014)),
        nose_y=float(r.uniform(0.585, 0.615)),
        nose_w=float(r.uniform(0.03, 0.045)),
        mouth_y=float(r.uniform(0.69, 0.72)),
        mouth_w=float(r.uniform(0.07, 0.09)),
        lip_thick=float(r.uniform(0.012, 0.02) * (0.8 if not young else 1.0)),
    )


def _background(rng: np.random.Generator) -> tuple[float, float, float]:
    """A muted colour: CelebA backgrounds are mostly low-saturation."""
    colour = 30 + 210 * rng.random(4)
    return tuple(float(v) for v in 0.45 * colour[:3] + 0.55 * colour[3])


class Pose(NamedTuple):
    """Per-image jitter: pose, light, expression, background; drawn in a fixed order from one rng."""

    angle: float  # degrees, in-plane
    scale: float
    shift: tuple[float, float]
    light_dir: float
    light: float
    ambient: float
    smile: float
    mouth_open: float
    eye_open: float
    gaze: tuple[float, float]
    background: tuple[float, float, float]
    background2: tuple[float, float, float]
    style: int  # natural occluder style (shape/colour), used only when one is drawn

    @staticmethod
    def draw(rng: np.random.Generator) -> Pose:
        u = rng.random(17)
        return Pose(
            angle=float(-8 + 16 * u[0]),
            scale=float(0.95 + 0.1 * u[1]),
            shift=(float(-0.03 + 0.06 * u[2]), float(-0.025 + 0.05 * u[3])),
            light_dir=float(2 * np.pi * u[4]),
            light=float(0.3 * u[5]),
            ambient=float(0.9 + 0.16 * u[6]),
            smile=float(-0.2 + 1.2 * u[7]),
            mouth_open=float(u[8] * (u[9] < 0.3)),
            eye_open=float(0.1 if u[10] < 0.04 else 0.65 + 0.35 * u[11]),
            gaze=(float(-0.3 + 0.6 * u[12]), float(-0.2 + 0.4 * u[13])),
            background=_background(rng),
            background2=_background(rng),
            style=int(u[14] * 1000),
        )


class Rendered(NamedTuple):
    clean: np.ndarray  # uint8 [H,W,3]
    landmarks: np.ndarray  # float32 [5,2] (x, y) pixels, pixel centres at integers
    image: np.ndarray  # uint8 [H,W,3]: the occluded face (== clean when no natural occluder)
    mask: np.ndarray  # uint8 [H,W] 1 = occluded
    occluder: str  # "" or e.g. "natural/sunglasses/3"


class _Pen:
    """Draws normalised-frame shapes on a canvas through an affine map (pose x supersampled pixels).

    When ``cov`` is set every shape is also drawn in 255 on it: the coverage of a natural occluder. ``seen``
    collects what an occluder changes but does not hide (a clear lens's tint): composited, not in the mask.
    """

    SHIFT = 4

    def __init__(self, img: np.ndarray, affine: np.ndarray, scale: float, angle: float):
        self.img, self.affine, self.scale, self.angle = img, affine, scale, angle
        self.cov: np.ndarray | None = None
        self.seen: np.ndarray | None = None

    def _pts(self, pts) -> np.ndarray:
        p = np.asarray(pts, np.float64) @ self.affine[:, :2].T + self.affine[:, 2]
        return np.round(p * (1 << self.SHIFT)).astype(np.int32)

    def _width(self, w: float) -> int:
        return max(1, int(round(w * self.scale)))

    def poly(self, pts, colour, img: np.ndarray | None = None) -> None:
        p, colour = [self._pts(pts)], _colour(colour)
        cv2.fillPoly(self.img if img is None else img, p, colour, cv2.LINE_AA, self.SHIFT)
        if self.cov is not None and img is None:
            cv2.fillPoly(self.cov, p, 255, cv2.LINE_AA, self.SHIFT)

    def line(self, pts, colour, width: float) -> None:
        p, colour = [self._pts(pts)], _colour(colour)
        cv2.polylines(self.img, p, False, colour, self._width(width), cv2.LINE_AA, self.SHIFT)
        if self.cov is not None:
            cv2.polylines(self.cov, p, False, 255, self._width(width), cv2.LINE_AA, self.SHIFT)

    def ellipse(self, centre, axes, colour, angle: float = 0.0, arc=(0, 360), width: float = -1) -> None:
        (a, b, tx), (d, e, ty) = self.affine
        k = 1 << self.SHIFT
        c = (
            int(round((a * centre[0] + b * centre[1] + tx) * k)),
            int(round((d * centre[0] + e * centre[1] + ty) * k)),
        )
        a = tuple(max(1, int(round(v * self.scale * (1 << self.SHIFT)))) for v in axes)
        t = -1 if width < 0 else self._width(width)
        args = (c, a, self.angle + angle, arc[0], arc[1])
        cv2.ellipse(self.img, *args, _colour(colour), t, cv2.LINE_AA, self.SHIFT)
        if self.cov is not None:
            cv2.ellipse(self.cov, *args, 255, t, cv2.LINE_AA, self.SHIFT)


def _colour(c) -> tuple[float, ...] | float:
    if isinstance(c, (int, float)):
        return float(c)
    return c if isinstance(c, tuple) and isinstance(c[0], float) else tuple(float(v) for v in c)


def _arc(cx: float, cy: float, rx: float, ry: float, t0: float, t1: float, n: int = 12) -> np.ndarray:
    t = np.linspace(t0, t1, n)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


class FaceRenderer:
    """Renders identities at ``size`` px (``supersample`` x larger canvas, then area-downsampled)."""

    def __init__(self, size: int, supersample: int = 2):
        self.size, self.ss = size, supersample
        self.canvas = size * supersample
        s = self.canvas
        self._ramp = (np.arange(s, dtype=np.float64) / s)[:, None, None]
        self._stubble = np.random.default_rng(7).random((s, s)) < 0.5
        gy, gx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
        self._grid = (gx, gy)

    def render(self, ident: Identity, rng: np.random.Generator, natural: str | None = None) -> Rendered:
        """One image of ``ident`` with jitter from ``rng``; ``natural`` (NATURAL_KINDS) adds it."""
        pose = Pose.draw(rng)
        s = self.canvas
        rot = cv2.getRotationMatrix2D((0.0, 0.0), pose.angle, pose.scale)  # CCW for positive angles
        centre = np.array([0.5, 0.5])
        lin = rot[:, :2] * s
        offset = (centre + np.array(pose.shift)) * s - 0.5 - lin @ centre
        affine = np.concatenate([lin, offset[:, None]], 1)
        column = np.array(pose.background) * (1 - self._ramp) + np.array(pose.background2) * self._ramp
        img = np.broadcast_to(column.astype(np.uint8), (s, s, 3)).copy()
        pen = _Pen(img, affine, s * pose.scale, -pose.angle)
        landmarks = self._draw_face(pen, ident, pose)
        landmarks = (landmarks @ affine[:, :2].T + affine[:, 2] + 0.5) / self.ss - 0.5
        clean = self._finish(img, pose)
        if natural is None:
            return Rendered(clean, landmarks.astype(np.float32), clean, np.zeros(clean.shape[:2], np.uint8), "")
        pen.img, pen.cov, pen.seen = img.copy(), np.zeros((s, s), np.uint8), np.zeros((s, s), np.uint8)
        style = _NATURAL_DRAW[natural](pen, ident, pose.style)
        size = (self.size, self.size)
        mask, seen = (cv2.resize(layer, size, interpolation=cv2.INTER_AREA) >= 48 for layer in (pen.cov, pen.seen))
        occluded = np.where((mask | seen)[..., None], self._finish(pen.img, pose), clean)
        mask = mask.astype(np.uint8)
        return Rendered(clean, landmarks.astype(np.float32), occluded, mask, f"natural/{natural}/{style}")

    def _finish(self, img: np.ndarray, pose: Pose) -> np.ndarray:
        """Downsample and apply the per-image lighting gradient (same for clean and occluded)."""
        small = cv2.resize(img, (self.size, self.size), interpolation=cv2.INTER_AREA).astype(np.float32)
        gx, gy = self._grid
        gain = pose.ambient + pose.light * (gx * np.cos(pose.light_dir) + gy * np.sin(pose.light_dir))
        return np.clip(small * gain[..., None], 0, 255).astype(np.uint8)

    def _draw_face(self, pen: _Pen, f: Identity, pose: Pose) -> np.ndarray:
        cx, cy = 0.5, 0.5
        skin, hair = f.skin, f.hair
        dark_skin = _mix(skin, (60, 30, 20), 0.22)
        facial_hair = _mix(hair, (20, 16, 14), 0.35)
        long_hair = not f.male and f.hair_style != 2
        if long_hair:  # hair behind the head, down to the shoulders
            drop = 0.86 if f.hair_style == 0 else 0.7
            pen.poly(
                np.concatenate(
                    [
                        _arc(cx, cy - 0.03, f.face_w + 0.07, f.face_h + 0.07, np.pi, 2 * np.pi, 14),
                        [(cx + f.face_w + 0.1, drop), (cx - f.face_w - 0.1, drop)],
                    ]
                ),
                hair,
            )
        pen.poly([(cx - 0.09, 0.7), (cx + 0.09, 0.7), (cx + 0.1, 0.96), (cx - 0.1, 0.96)], dark_skin)  # neck
        pen.ellipse((cx, 1.1), (0.44 if f.male else 0.38, 0.22), f.clothes)
        for side in (-1, 1):  # ears
            pen.ellipse((cx + side * (f.face_w - 0.005), f.eye_y + 0.05), (0.03, 0.055), dark_skin)
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        lower = np.clip(np.sin(t), 0, None)
        outline = np.stack([np.cos(t) * (1 - f.jaw_taper * lower**2), np.sin(t)], 1)
        for k, (shrink, tone) in enumerate(((1.0, 0.0), (0.86, 0.05), (0.62, 0.1))):
            colour = _mix(skin, (255, 245, 235), tone) if k else skin
            pen.poly(np.array([cx, cy + 0.02 * k]) + outline * (f.face_w * shrink, f.face_h * shrink), colour)
        chin_y = cy + f.face_h
        if f.makeup:  # blush
            for side in (-1, 1):
                pen.ellipse(
                    (cx + side * (f.eye_dx + 0.03), f.nose_y + 0.01),
                    (0.045, 0.03),
                    _mix(skin, (230, 80, 110), 0.3),
                )
        self._draw_beard(pen, f, outline, chin_y, facial_hair)
        if not f.young:
            self._draw_wrinkles(pen, f, dark_skin)
        eyes = self._draw_eyes(pen, f, pose, hair)
        nose = (cx, f.nose_y)
        pen.line(
            [(cx - 0.012, f.eye_y + 0.03), (cx - f.nose_w * 0.4, f.nose_y - 0.02)],
            _mix(skin, (90, 50, 40), 0.15),
            0.008,
        )
        pen.ellipse((cx, f.nose_y - 0.004), (f.nose_w * 0.6, 0.014), _mix(skin, (255, 240, 230), 0.12))
        for side in (-1, 1):
            pen.ellipse(
                (cx + side * f.nose_w * 0.45, f.nose_y + 0.008),
                (f.nose_w * 0.3, 0.008),
                _mix(skin, (40, 20, 20), 0.55),
            )
        mouth = self._draw_mouth(pen, f, pose)
        if f.mustache:
            mw, my = f.mouth_w * 1.1, f.mouth_y - f.lip_thick
            pen.poly(
                [
                    (cx - mw, my + 0.01),
                    (cx - mw * 0.5, f.nose_y + 0.03),
                    (cx, f.nose_y + 0.028),
                    (cx + mw * 0.5, f.nose_y + 0.03),
                    (cx + mw, my + 0.01),
                    (cx, my - 0.004),
                ],
                facial_hair,
            )
        self._draw_hair(pen, f, hair)
        return np.array([eyes[0], eyes[1], nose, mouth[0], mouth[1]], np.float64)

    def _draw_beard(self, pen: _Pen, f: Identity, outline: np.ndarray, chin_y: float, colour) -> None:
        cx = 0.5
        if f.shadow:  # stubble: darkened, speckled lower face
            region = np.zeros(pen.img.shape[:2], np.uint8)
            jaw = outline[(outline[:, 1] > 0.35)] * (f.face_w, f.face_h) + (cx, 0.5)
            top = [
                (cx + f.face_w * 0.9, f.nose_y + 0.01),
                (cx + f.mouth_w * 1.2, f.nose_y + 0.03),
                (cx - f.mouth_w * 1.2, f.nose_y + 0.03),
                (cx - f.face_w * 0.9, f.nose_y + 0.01),
            ]
            pen.poly(np.concatenate([jaw, top]), 255, img=region)
            sel = region > 0
            img = pen.img
            img[sel] = (img[sel] * 0.86 + np.array([34, 34, 40]) * 0.14).astype(np.uint8)
            dots = sel & self._stubble
            img[dots] = (img[dots] * 0.8).astype(np.uint8)
        if f.goatee:
            pen.ellipse((cx, chin_y - 0.035), (0.05, 0.042), colour)
            pen.poly(
                [
                    (cx - f.mouth_w * 0.9, f.mouth_y + 0.01),
                    (cx + f.mouth_w * 0.9, f.mouth_y + 0.01),
                    (cx + 0.045, chin_y - 0.03),
                    (cx - 0.045, chin_y - 0.03),
                ],
                colour,
            )
        if f.sideburns:
            for side in (-1, 1):
                x = cx + side * f.face_w
                pen.poly(
                    [
                        (x + side * 0.01, f.eye_y - 0.09),
                        (x - side * 0.045, f.eye_y - 0.09),
                        (x - side * 0.05, f.eye_y + 0.15),
                        (x - side * 0.002, f.eye_y + 0.17),
                    ],
                    colour,
                )

    def _draw_wrinkles(self, pen: _Pen, f: Identity, colour) -> None:
        cx = 0.5
        for k in range(3):
            y = f.eye_y - 0.11 - 0.022 * k
            pen.line(_arc(cx, y + 0.03, 0.09, 0.03, 1.15 * np.pi, 1.85 * np.pi, 8), colour, 0.005)
        for side in (-1, 1):
            pen.line(
                [
                    (cx + side * (f.nose_w + 0.012), f.nose_y - 0.005),
                    (cx + side * (f.mouth_w + 0.025), f.mouth_y + 0.02),
                    (cx + side * (f.mouth_w + 0.02), f.mouth_y + 0.05),
                ],
                colour,
                0.006,
            )
            ex = cx + side * (f.eye_dx + f.eye_size + 0.015)
            for dy in (-0.01, 0.008):
                pen.line([(ex, f.eye_y), (ex + side * 0.02, f.eye_y + dy)], colour, 0.004)
            pen.line(
                _arc(cx + side * f.eye_dx, f.eye_y + 0.01, f.eye_size, 0.018, 0.2, np.pi - 0.2, 6),
                colour,
                0.004,
            )

    def _draw_eyes(self, pen: _Pen, f: Identity, pose: Pose, brow_colour) -> list[tuple[float, float]]:
        centres = []
        liner = (20, 14, 12) if f.makeup else _mix(f.skin, (40, 25, 20), 0.6)
        for side in (-1, 1):
            ex, ey = 0.5 + side * f.eye_dx, f.eye_y
            w, h = f.eye_size, f.eye_size * 0.48 * pose.eye_open
            if f.makeup:
                pen.ellipse((ex, ey - 0.008), (w * 1.25, f.eye_size * 0.75), f.shadow_colour, arc=(180, 360))
            pen.ellipse((ex, ey), (w, max(h, 0.002)), (236, 232, 228))
            if pose.eye_open > 0.3:
                r = min(w * 0.55, h * 1.05)
                ix, iy = ex + pose.gaze[0] * w * 0.4, ey + pose.gaze[1] * h * 0.3
                pen.ellipse((ix, iy), (r, r), f.iris)
                pen.ellipse((ix, iy), (r * 0.45, r * 0.45), (12, 10, 10))
                pen.ellipse((ix + r * 0.3, iy - r * 0.3), (r * 0.18, r * 0.18), (250, 250, 250))
            pen.line(
                _arc(ex, ey, w * 1.02, max(h, 0.002) * 1.02, np.pi * 1.0, np.pi * 2.0, 10),
                liner,
                0.007 if f.makeup else 0.005,
            )
            bx, by = ex + side * 0.004, ey - f.eye_size * 0.9 - 0.022
            arch = _arc(bx, by + f.brow_arch, w * 1.4, f.brow_arch + 0.004, np.pi * 1.08, np.pi * 1.92, 9)
            pen.poly(np.concatenate([arch, arch[::-1] + (0, f.brow_thick)]), _mix(brow_colour, (15, 10, 8), 0.3))
            centres.append((ex, ey))
        return centres

    def _draw_mouth(self, pen: _Pen, f: Identity, pose: Pose) -> list[tuple[float, float]]:
        cx, my, mw = 0.5, f.mouth_y, f.mouth_w * (1 + 0.12 * max(pose.smile, 0))
        lift = 0.018 * pose.smile
        left, right = (cx - mw, my - lift), (cx + mw, my - lift)
        gap = 0.028 * pose.mouth_open
        top = [
            left,
            (cx - mw * 0.5, my - f.lip_thick * 0.9),
            (cx, my - f.lip_thick * 0.7),
            (cx + mw * 0.5, my - f.lip_thick * 0.9),
            right,
        ]
        lower = [
            right,
            (cx + mw * 0.5, my + gap + f.lip_thick * 1.1),
            (cx, my + gap + f.lip_thick * 1.25),
            (cx - mw * 0.5, my + gap + f.lip_thick * 1.1),
            left,
        ]
        seam = [
            left,
            (cx - mw * 0.5, my + lift * 0.3),
            (cx, my + lift * 0.5),
            (cx + mw * 0.5, my + lift * 0.3),
            right,
        ]
        lips = f.lipstick_colour if f.lipstick else f.lip_colour
        pen.poly(top + lower, lips)
        if pose.mouth_open > 0.15:
            inner = [
                left,
                (cx, my - 0.002 + lift * 0.4),
                right,
                (cx + mw * 0.4, my + gap),
                (cx - mw * 0.4, my + gap),
            ]
            pen.poly(inner, (40, 14, 18))
            pen.poly(
                [
                    (cx - mw * 0.55, my),
                    (cx + mw * 0.55, my),
                    (cx + mw * 0.5, my + gap * 0.35),
                    (cx - mw * 0.5, my + gap * 0.35),
                ],
                (240, 236, 226),
            )
        else:
            pen.line(seam, _mix(lips, (30, 10, 10), 0.55), 0.005)
        return [left, right]

    def _draw_hair(self, pen: _Pen, f: Identity, hair) -> None:
        cx, cy, w, h = 0.5, 0.5, f.face_w, f.face_h
        if f.male:
            if f.hair_style == 2 and not f.young:  # receding: a thin band over the temples only
                for side in (-1, 1):
                    pen.poly(
                        _arc(cx + side * (w - 0.02), cy - 0.12, 0.05, 0.13, 0.5 * np.pi, 1.5 * np.pi, 8)[::side],
                        hair,
                    )
                return
            fringe = 0.5 * h if f.hair_style == 2 else 0.62 * h
            cap = _arc(
                cx,
                cy - 0.02,
                w + 0.025,
                h + 0.04 + 0.03 * (f.hair_style == 1),
                np.pi * 0.98,
                np.pi * 2.02,
                16,
            )
            front = [
                (cx + w + 0.005, cy - 0.05),
                (cx + w * 0.6, cy - fringe),
                (cx, cy - fringe - 0.02),
                (cx - w * 0.6, cy - fringe + 0.01 * f.hair_style),
                (cx - w - 0.005, cy - 0.05),
            ]
            pen.poly(np.concatenate([cap, front]), hair)
            return
        cap = _arc(cx, cy - 0.03, w + 0.05, h + 0.06, np.pi * 0.97, np.pi * 2.03, 16)
        part = 0.08 if f.hair_style == 1 else 0.0
        front = [
            (cx + w + 0.02, cy + 0.02),
            (cx + w * 0.85, cy - 0.55 * h),
            (cx + part, cy - 0.82 * h),
            (cx - w * 0.85, cy - 0.55 * h),
            (cx - w - 0.02, cy + 0.02),
        ]
        pen.poly(np.concatenate([cap, front]), hair)
        if f.hair_style == 2:  # bun
            pen.ellipse((cx, cy - h - 0.08), (0.09, 0.065), hair)
        else:  # side locks over the cheeks' edge
            drop = 0.8 if f.hair_style == 0 else 0.68
            for side in (-1, 1):
                x = cx + side * w
                pen.poly(
                    [
                        (x + side * 0.05, cy - 0.05),
                        (x - side * 0.02, cy - 0.1),
                        (x - side * 0.03, drop - 0.06),
                        (x + side * 0.04, drop),
                    ],
                    hair,
                )


def _glasses(pen: _Pen, f: Identity, style: int, sun: bool) -> int:
    shape, colour = style % 3, _FRAME[(style // 3) % len(_FRAME)]
    lens = _SUNLENS[(style // 18) % len(_SUNLENS)]
    rx = f.eye_size * (1.85 if sun else 1.4)
    ry = rx * (0.8, 0.62, 0.72)[shape]
    width = 0.012 if sun else 0.007
    for side in (-1, 1):
        ex, ey = 0.5 + side * f.eye_dx, f.eye_y + 0.004
        if shape == 1:
            box = [(ex - rx, ey - ry), (ex + rx, ey - ry), (ex + rx * 0.9, ey + ry), (ex - rx * 0.9, ey + ry)]
        else:
            box = _arc(ex, ey, rx, ry, 0, 2 * np.pi, 20)
        if sun:
            pen.poly(box, lens)
            pen.line(
                [(ex - rx * 0.5, ey - ry * 0.4), (ex - rx * 0.1, ey - ry * 0.65)],
                _mix(lens, (255, 255, 255), 0.5),
                0.006,
            )
        else:  # clear lens: a faint tint changes the face behind it without hiding it (not in the mask, docs)
            region = np.zeros(pen.img.shape[:2], np.uint8)
            pen.poly(box, 255, img=region)
            sel = region > 0
            pen.img[sel] = (pen.img[sel] * 0.86 + np.array([215, 230, 245]) * 0.14).astype(np.uint8)
            pen.seen[sel] = 255
            pen.line([(ex - rx * 0.55, ey + ry * 0.1), (ex - rx * 0.1, ey - ry * 0.6)], (240, 244, 250), 0.005)
        pen.line(np.concatenate([box, box[:1]]), tuple(colour), width)
        pen.line(
            [(ex + side * rx, ey - ry * 0.5), (0.5 + side * (f.face_w + 0.01), f.eye_y + 0.01)],
            tuple(colour),
            width,
        )
    pen.line(_arc(0.5, f.eye_y + 0.01, f.eye_dx - rx, 0.012, np.pi * 1.1, np.pi * 1.9, 6), tuple(colour), width)
    return style % 72


def _facemask(pen: _Pen, f: Identity, style: int) -> int:
    colour = tuple(_FACEMASK[style % len(_FACEMASK)])
    n95 = (style // len(_FACEMASK)) % 2 == 1
    cx, top, bottom, w = 0.5, f.eye_y + 0.06, 0.5 + f.face_h + 0.025, f.face_w + 0.01
    if n95:
        pen.ellipse((cx, (top + bottom) / 2 + 0.01), (w * 0.92, (bottom - top) / 2 + 0.01), colour)
        pen.ellipse((cx + 0.05, f.mouth_y + 0.02), (0.022, 0.022), _mix(colour, (0, 0, 0), 0.3))
    else:
        pen.poly(
            [
                (cx - w * 0.95, top + 0.03),
                (cx, top - 0.008),
                (cx + w * 0.95, top + 0.03),
                (cx + w * 0.9, bottom - 0.06),
                (cx, bottom),
                (cx - w * 0.9, bottom - 0.06),
            ],
            colour,
        )
        pleat = _mix(colour, (0, 0, 0), 0.18)
        for k in range(3):
            y = top + (bottom - top) * (0.3 + 0.18 * k)
            pen.line([(cx - w * 0.85, y), (cx + w * 0.85, y)], pleat, 0.005)
    loop = _mix(colour, (255, 255, 255), 0.3)
    for side in (-1, 1):
        pen.line(
            [(cx + side * w * 0.92, top + 0.035), (cx + side * (f.face_w + 0.005), f.eye_y + 0.05)],
            loop,
            0.006,
        )
    return style % (2 * len(_FACEMASK))


_NATURAL_DRAW = {
    "eyeglasses": lambda pen, f, style: _glasses(pen, f, style, sun=False),
    "sunglasses": lambda pen, f, style: _glasses(pen, f, style, sun=True),
    "facemask": _facemask,
}
