"""A labelled PNG contact sheet of a benchmark, so a person can look at the data before trusting it."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from bench.data.types import Benchmark, FaceSet
from bench.io import atomic_write_bytes

_ROWS = ("clean", "synthetic occl.", "its mask", "natural occl.", "its mask")
_SHORT = {
    "5_o_Clock_Shadow": "stubble",
    "Heavy_Makeup": "makeup",
    "Pale_Skin": "pale",
    "Wearing_Lipstick": "lipstick",
}


def describe(names: tuple[str, ...], row: np.ndarray) -> list[str]:
    """Short attribute words for a label: sex and age first, then what is present."""
    on = {n for n, v in zip(names, row, strict=True) if v > 0.5}
    words = ["male" if "Male" in on else "female", "young" if "Young" in on else "old"]
    words += [_SHORT.get(n, n.lower()) for n in names if n in on and n not in ("Male", "Young", "No_Beard")]
    return [" ".join(words[:2]), " ".join(words[2:4]), " ".join(words[4:])]


def preview_grid(benchmark: Benchmark, path: str | Path, n: int = 8) -> Path:
    """Write rows (clean, synthetic occlusion, mask, natural occlusion, mask) for the first ``n`` samples."""
    paired, natural = benchmark.test_paired, benchmark.test_natural
    n = min(n, len(paired), len(natural))
    zoom = max(1, 128 // benchmark.image_size)
    cell, left, label = benchmark.image_size * zoom, 110, 78
    sheet = Image.new("RGB", (left + n * (cell + 4), 5 * (cell + 4) + label), "white")
    draw, font = ImageDraw.Draw(sheet), ImageFont.load_default(11)
    rows = [paired.clean, paired.images, _mask_rgb(paired), natural.images, _mask_rgb(natural)]
    for r, (title, images) in enumerate(zip(_ROWS, rows, strict=True)):
        y = r * (cell + 4)
        draw.text((4, y + cell // 2 - 6), title, fill="black", font=font)
        for c in range(n):
            tile = Image.fromarray(images[c]).resize((cell, cell), Image.NEAREST)
            sheet.paste(tile, (left + c * (cell + 4), y))
    y = 5 * (cell + 4)
    for c in range(n):
        lines = describe(benchmark.attribute_names, paired.attributes[c])
        lines += [f"S: {paired.occluders[c]}" if paired.occluders else "", f"N: {_natural_name(natural, c)}"]
        draw.multiline_text((left + c * (cell + 4), y + 2), "\n".join(lines), fill="black", font=font, spacing=1)
    path, buffer = Path(path), io.BytesIO()
    sheet.save(buffer, format="PNG")  # PNG whatever the name says, written atomically as every harness file
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _mask_rgb(faces: FaceSet) -> np.ndarray:
    if faces.masks is None:
        return np.full_like(faces.images, 128)
    return np.repeat(faces.masks[..., None] * 255, 3, axis=-1).astype(np.uint8)


def _natural_name(faces: FaceSet, i: int) -> str:
    return faces.occluders[i].removeprefix("natural/") if faces.occluders else "unknown"
