"""The one checked decode of images from folders a user gives (CelebA, ``--natural-folder``, ``--occluders``).

A bad file there (empty, truncated, corrupt, not an image, or a header declaring a huge image) must stop the
run with one line that names the file and the fix, never a traceback, and must never make the harness
allocate gigabytes: the declared size is read from the header and checked against :data:`MAX_PIXELS` before
anything is decoded. PNG and JPEG headers are parsed here (a few microseconds; PIL's lazy ``Image.open``
costs ~130 us of GIL-holding Python per file, which would dominate loading CelebA's 200k faces on many
cores); other formats go through PIL's ``Image.open``, which also reads only the header.

RGB images are decoded with OpenCV as before (same pixels, so dataset fingerprints and the checkpoints keyed
by them stay valid; EXIF orientation applied; the GIL released for the loaders' threads); RGBA occluders
with PIL, which expands palette transparency.
"""

from __future__ import annotations

import re
import struct
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np

from bench.data.celeba import DataError

MAX_PIXELS = 50_000_000  # 50 megapixels: any face photo or occluder fits; a decompression bomb does not
FIX = "remove it or replace it with a good copy"
_PREFIX = 1 << 16  # header bytes parsed here; a JPEG whose frame header lies further is left to PIL
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (C4 DHT, C8 JPG and CC DAC share the range but are not frames)
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class ImageHeader(NamedTuple):
    """What an image file declares about itself, read without decoding its pixels."""

    width: int
    height: int
    format: str  # PIL's name: "PNG", "JPEG", ...


def read_header(path: Path) -> ImageHeader:
    """The file's declared size and format; DataError (one line naming the file and the fix) when it is
    missing, empty, not an image, or declares more than :data:`MAX_PIXELS` pixels."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            prefix = f.read(_PREFIX)
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror or err}); check it exists and is readable") from None
    if not prefix:
        raise DataError(f"{path}: is empty (0 bytes), not an image; {FIX}")
    whole = len(prefix) < _PREFIX
    if prefix.startswith(_PNG_SIGNATURE):
        header = _png_header(path, prefix)
    elif prefix.startswith(b"\xff\xd8\xff"):
        header = _jpeg_header(path, prefix, whole)
    else:
        header = None
    header = header or _pil_header(path)
    if header.width <= 0 or header.height <= 0:
        raise DataError(f"{path}: declares an empty {header.width}x{header.height} image; {FIX}")
    if header.width * header.height > MAX_PIXELS:
        raise DataError(_too_large(path, header.width * header.height, f"{header.width}x{header.height}"))
    return header


def _png_header(path: Path, data: bytes) -> ImageHeader:
    """Width and height from the IHDR chunk, which the PNG standard puts first."""
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise DataError(f"{path}: has a truncated or corrupt image header (no PNG IHDR chunk); {FIX}")
    width, height = struct.unpack(">II", data[16:24])
    return ImageHeader(width, height, "PNG")


def _jpeg_header(path: Path, data: bytes, whole: bool) -> ImageHeader | None:
    """Width and height from the first start-of-frame segment; None when it lies beyond ``data`` (PIL then
    reads the file)."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            break  # not a marker where one must be
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            pos += 2
            continue
        if marker in (0xD9, 0xDA):
            break  # end of image or scan data before any frame header
        if marker in _JPEG_SOF:
            if pos + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return ImageHeader(width, height, "JPEG")
        pos += 2 + struct.unpack(">H", data[pos + 2 : pos + 4])[0]
    else:
        if not whole:
            return None  # the frame header lies beyond the prefix (a large EXIF or ICC block)
    raise DataError(f"{path}: has a truncated or corrupt image header (no JPEG frame header); {FIX}")


def _pil_header(path: Path) -> ImageHeader:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # PIL warns above ~89 Mpx; the stricter cap of read_header refuses those files with its own line.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:  # parses the header only
                return ImageHeader(*im.size, im.format or "?")
    except Image.DecompressionBombError as err:  # PIL's own cap (~179 Mpx), hit before the size is returned
        found = re.search(r"\((\d+) pixels\)", str(err))
        raise DataError(_too_large(path, int(found.group(1)) if found else None)) from None
    except UnidentifiedImageError:
        raise DataError(f"{path}: is not an image (its first bytes match no known image format); {FIX}") from None
    except Exception as err:  # a header parser failing on user data, whatever its exception type
        raise DataError(f"{path}: has a truncated or corrupt image header ({_reason(err)}); {FIX}") from None


def _too_large(path: Path, pixels: int | None, dims: str = "") -> str:
    size = f"{pixels / 1e6:.0f} megapixels" if pixels else "a huge size"
    cap = MAX_PIXELS // 1_000_000
    return (
        f"{path}: declares {dims + ' = ' if dims else ''}{size}, over the {cap}-megapixel limit on input images "
        f"(a corrupt header or a decompression bomb); {FIX} under {cap} megapixels"
    )


def read_image(
    path: Path, scale: float = 1.0, alpha: bool = False, header: ImageHeader | None = None
) -> tuple[np.ndarray, int]:
    """Decode ``path`` after checking its header: RGB uint8 [H,W,3], or with ``alpha`` RGBA [H,W,4] (a file
    without an alpha channel is refused). An image that will be shrunk by ``scale`` anyway is decoded at 1/2,
    1/4 or 1/8 size (libjpeg's DCT scaling; RGB only). Returns (image, original pixels per decoded pixel).

    Every failure is a DataError naming the file and the fix; ``header`` skips re-reading a header already
    read with :func:`read_header`.
    """
    path = Path(path)
    header = header or read_header(path)
    if alpha:
        return _read_rgba(path), 1
    return _read_rgb(path, header, scale)


def _read_rgb(path: Path, header: ImageHeader, scale: float) -> tuple[np.ndarray, int]:
    import cv2

    if header.format == "PNG":
        _verify_png(path)  # OpenCV would print a libpng warning and return None; PIL names what is wrong
    factor = next((f for f in (8, 4, 2) if scale * f <= 1.0), 1)
    flags = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4}
    flags[8] = cv2.IMREAD_REDUCED_COLOR_8
    try:
        image = cv2.imdecode(np.fromfile(path, np.uint8), flags[factor])
    except (OSError, cv2.error) as err:
        raise DataError(f"{path}: cannot be decoded ({_reason(err)}); {FIX}") from None
    if image is None:
        raise DataError(f"{path}: cannot be decoded as a {header.format} image (truncated or corrupt); {FIX}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), factor


def _verify_png(path: Path) -> None:
    """Walk the PNG's chunks and check their CRCs (cheap: nothing is inflated), so truncation is caught."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.verify()
    except Exception as err:  # PIL raises OSError, SyntaxError, struct.error... for a broken file
        raise DataError(f"{path}: is a truncated or corrupt PNG ({_reason(err)}); {FIX}") from None


def _read_rgba(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
            rgba = np.asarray(im.convert("RGBA")).copy() if has_alpha else None
    except Exception as err:  # a decoder failing on user data, whatever its exception type
        raise DataError(f"{path}: cannot be decoded: truncated or corrupt ({_reason(err)}); {FIX}") from None
    if rgba is None:
        raise DataError(
            f"{path}: image without alpha channel: an occluder needs transparency around its shape; "
            "save it as an RGBA PNG with a transparent background, or remove it"
        )
    return rgba


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[-1] if text else type(err).__name__
