"""The one checked decode of images from folders a user gives (CelebA, ``--natural-folder``, ``--occluders``).

A bad file there (empty, truncated, corrupt, not an image, or a header declaring a huge image) must stop the
run with one line that names the file and the fix, never a traceback, and must never make the harness
allocate gigabytes: the declared size is read from the header and checked against :data:`MAX_PIXELS` before
anything is decoded. PNG and JPEG headers are parsed here (a few microseconds; PIL's lazy ``Image.open``
costs ~130 us of GIL-holding Python per file, which would dominate loading CelebA's 200k faces on many
cores); other formats go through PIL's ``Image.open``, which also reads only the header.

RGB images are decoded with OpenCV as before (same pixels, so dataset fingerprints and the checkpoints keyed
by them stay valid; EXIF orientation applied; the GIL released for the loaders' threads); RGBA occluders
with PIL, which expands palette transparency. OpenCV's JPEG decoder returns a damaged image as if it were
whole and only prints libjpeg's warning ("Corrupt JPEG data: ...") to the process's stderr, naming no file:
:class:`_DecoderOutput` catches that text per decode, so the warning becomes a DataError naming the file.
A JPEG has no checksum: damage that still decodes to valid codes draws no warning and cannot be detected by
any decoder (PNGs are checked whole: their chunks carry CRCs).
"""

from __future__ import annotations

import os
import re
import struct
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, NamedTuple, TypeVar

import numpy as np

from bench.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")  # image names, not the test
# What the folder loaders read, found by the file's first bytes, whatever its name (a folder of extension-less GIFs
# is read): every format both OpenCV decodes and PIL reads the header of here. (format, offset, magic bytes)
MAGIC = (
    ("PNG", 0, b"\x89PNG\r\n\x1a\n"),
    ("JPEG", 0, b"\xff\xd8\xff"),
    ("GIF", 0, b"GIF87a"),
    ("GIF", 0, b"GIF89a"),
    ("BMP", 0, b"BM"),
    ("WEBP", 8, b"WEBP"),  # after RIFF and the size
    ("TIFF", 0, b"II*\x00"),
    ("TIFF", 0, b"MM\x00*"),
    ("JPEG2000", 0, b"\x00\x00\x00\x0cjP  \r\n\x87\n"),
    ("JPEG2000", 0, b"\xff\x4f\xff\x51"),  # a bare codestream
    ("AVIF", 4, b"ftypavi"),
    *(("PNM", 0, f"P{k}".encode()) for k in range(1, 7)),  # PBM, PGM, PPM (also checked for whitespace next)
)
SHOWN_SKIPPED = 3  # files named in the note on files that are not images
MAX_PIXELS = 50_000_000  # 50 megapixels: any face photo or occluder fits; a decompression bomb does not
# The smallest face a loader accepts, on the image's short side. 32 px is the smallest --image-size the harness
# runs at, and about the smallest face whose features are still apart on the template (eye to eye ~11 px, eyes to
# mouth ~12 px at 32 px); below it a file is an icon or a thumbnail, and scaled up to the 64-128 px the profiles
# use it would be almost all interpolation: a benchmark "face" that is no face.
MIN_FACE_SIDE = 32
FIX = "remove it or replace it with a good copy"
_PREFIX = 1 << 16  # header bytes parsed here; a JPEG whose frame header lies further is left to PIL
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (C4 DHT, C8 JPG and CC DAC share the range but are not frames)
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def sniff(path: Path) -> str | None:
    """The image format ``path``'s first bytes declare (:data:`MAGIC`), or None: not an image read here."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return None
    for name, offset, magic in MAGIC:
        if head[offset : offset + len(magic)] == magic:
            if name == "PNM" and head[2:3] not in (b" ", b"\t", b"\n", b"\r"):
                continue
            if name == "WEBP" and not head.startswith(b"RIFF"):
                continue
            return name
    return None


def image_name(path: Path) -> str:
    """A found image's name (what pairs it across folders and names its sample): the stem when the suffix is an
    image's (``a.jpg`` -> ``a``), else the whole file name (``a`` -> ``a``, ``img.001`` -> ``img.001``)."""
    return path.stem if path.suffix.lower() in IMAGE_SUFFIXES else path.name


def find_images(folder: Path, recursive: bool = False) -> tuple[list[Path], list[Path]]:
    """The images in ``folder`` (below it too with ``recursive``), found by content, and the files skipped as not
    images, both sorted. A file named as an image (:data:`IMAGE_SUFFIXES`) is never skipped: if its bytes are
    not an image, reading it fails with a line naming it, as for any damaged file."""
    files = sorted(p for p in (folder.rglob("*") if recursive else folder.iterdir()) if p.is_file())
    images, skipped = [], []
    for path in files:
        (images if path.suffix.lower() in IMAGE_SUFFIXES or sniff(path) else skipped).append(path)
    return images, skipped


def skipped_note(folder: Path, skipped: Sequence[Path]) -> str | None:
    """One line naming the files of ``folder`` that were not read as images (the first few, the count)."""
    if not skipped:
        return None
    shown = ", ".join(str(p.relative_to(folder)) for p in skipped[:SHOWN_SKIPPED])
    more = f" and {len(skipped) - SHOWN_SKIPPED} more" if len(skipped) > SHOWN_SKIPPED else ""
    return f"{folder}: skipped {len(skipped)} file(s) that are not images by their content: {shown}{more}"


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
        declared = sniff(path)
        if declared:  # its first bytes say which format, the rest does not parse
            raise DataError(
                f"{path}: is a truncated or corrupt {declared} (its header does not parse); {FIX}"
            ) from None
        raise DataError(f"{path}: is not an image (its first bytes match no known image format); {FIX}") from None
    except Exception as err:  # a header parser failing on user data, whatever its exception type
        raise DataError(f"{path}: has a truncated or corrupt image header ({_reason(err)}); {FIX}") from None


def require_face_size(folder: Path, paths: Sequence[Path], headers: Sequence[ImageHeader]) -> None:
    """DataError unless every image is at least :data:`MIN_FACE_SIDE` px on its short side: one line naming the
    file, or for several the count and the first few."""
    small = [(p, h) for p, h in zip(paths, headers, strict=True) if min(h.width, h.height) < MIN_FACE_SIDE]
    if not small:
        return
    need = f"a face needs at least {MIN_FACE_SIDE} px on its short side"
    if len(small) == 1:
        path, h = small[0]
        raise DataError(
            f"{path}: is {h.width}x{h.height} pixels, too small for a face ({need}); remove it or replace it with "
            "a larger face crop"
        )
    shown = ", ".join(f"{p} ({h.width}x{h.height})" for p, h in small[:3])
    raise DataError(
        f"{folder}: {len(small):,} of its {len(paths):,} images are too small for a face ({need}), e.g. {shown}; "
        "remove them or replace them with larger face crops"
    )


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


def read_mask(path: Path) -> np.ndarray:
    """An occlusion mask file as uint8 {0, 1} [H,W], 1 = occluded: any 8-bit or 1-bit image, occluded above half
    of its full value (255, or 1 in a file that holds only 0 and 1: a mask saved as 0/1 in 8 bits); a colour
    file counts a pixel occluded when any channel is."""
    value = read_image(path)[0].max(axis=-1)
    full = 1 if value.max() <= 1 else 255
    return (value > full / 2).astype(np.uint8)


def _read_rgb(path: Path, header: ImageHeader, scale: float) -> tuple[np.ndarray, int]:
    import cv2

    if header.format == "PNG":
        _verify_png(path)  # OpenCV would print a libpng warning and return None; PIL names what is wrong
    factor = next((f for f in (8, 4, 2) if scale * f <= 1.0), 1)
    flags = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4}
    flags[8] = cv2.IMREAD_REDUCED_COLOR_8
    try:
        data = np.fromfile(path, np.uint8)
        image, said = _OUTPUT.run(lambda: cv2.imdecode(data, flags[factor]))
        if _DAMAGE.search(said):  # this decode's, or a concurrent one's: decode again alone to see whose
            image, said = _OUTPUT.run(lambda: cv2.imdecode(data, flags[factor]), alone=True)
    except (OSError, cv2.error) as err:
        raise DataError(f"{path}: cannot be decoded ({_reason(err)}); {FIX}") from None
    if image is None:
        raise DataError(f"{path}: cannot be decoded as a {header.format} image (truncated or corrupt); {FIX}")
    damage = _DAMAGE.search(said)
    if damage:
        raise DataError(
            f"{path}: is a truncated or corrupt {header.format} (its decoder reports "
            f"{damage.group().decode(errors='replace').strip()!r}: a broken copy or download); {FIX}"
        )
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), factor


# libjpeg's warnings that mean damaged data, each matched exactly as jerror.h words it (JWRN_EXTRANEOUS_DATA,
# HIT_MARKER, HUFF_BAD_CODE, ARITH_BAD_CODE, MUST_RESYNC, BOGUS_ICC, JPEG_EOF, NOT_SEQUENTIAL, BOGUS_PROGRESSION):
# exactly, so that text another thread wrote into the middle of such a line is kept, not swallowed with it.
_DAMAGE = re.compile(
    rb"Corrupt JPEG data: (?:\d+ extraneous bytes before marker 0x[0-9a-f]{2}|premature end of data segment"
    rb"|bad Huffman code|bad arithmetic code|found marker 0x[0-9a-f]{2} instead of RST\d|bad ICC marker)"
    rb"|Premature end of JPEG file|Invalid SOS parameters for sequential JPEG"
    rb"|Inconsistent progression sequence for component \d+ coefficient \d+"
)
T = TypeVar("T")


class _DecoderOutput:
    """What the decoders write to file descriptor 2 while they run, per decode.

    While any decode runs, fd 2 points at a temporary file; each decode reads what was written during its own
    call. The loaders decode on several threads, so text seen during one decode may be another's: such a decode
    is repeated alone (``alone=True`` waits until no other decode runs, and holds new ones back). When the last
    decode ends, fd 2 is restored and whatever was captured, other than the damage lines turned into errors, is
    passed on to it (another thread's messages are delayed, never lost).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._running = 0
        self._waiting_alone = 0
        self._alone = False
        self._sink: IO[bytes] | None = None
        self._saved = -1
        self._consumed = 0  # bytes of the sink already passed on

    def run(self, decode: Callable[[], T], alone: bool = False) -> tuple[T, bytes]:
        """``decode()`` and the bytes written to fd 2 while it ran."""
        with self._cond:
            if alone:
                self._waiting_alone += 1
                self._cond.wait_for(lambda: self._running == 0)
                self._waiting_alone -= 1
                self._alone = True
            else:
                self._cond.wait_for(lambda: not self._alone and not self._waiting_alone)
            if self._running == 0:
                self._redirect()
            self._running += 1
            fd = self._sink.fileno()
        start = os.fstat(fd).st_size
        try:
            result = decode()
            return result, os.pread(fd, os.fstat(fd).st_size - start, start)
        finally:
            with self._cond:
                self._running -= 1
                self._alone = self._alone and not alone
                if self._running == 0:
                    self._restore()
                self._cond.notify_all()

    def _redirect(self) -> None:
        _flush_python_stderr()  # what Python buffered so far goes where it was meant to
        if self._sink is None:
            self._sink = tempfile.TemporaryFile(buffering=0)
        try:
            self._saved = os.dup(2)
        except OSError:  # no stderr at all (closed by a daemon): capture anyway, pass nothing on
            self._saved = -1
        os.dup2(self._sink.fileno(), 2)

    def _restore(self) -> None:
        _flush_python_stderr()
        if self._saved < 0:
            os.close(2)
        else:
            os.dup2(self._saved, 2)
            os.close(self._saved)
        # Read on from where the last restore stopped, never truncate: a write another thread began before fd 2
        # was restored may still land in the sink after this read, and is then passed on by the next restore.
        fd = self._sink.fileno()
        end = os.fstat(fd).st_size
        text = _DAMAGE.sub(b"", os.pread(fd, end - self._consumed, self._consumed))
        self._consumed = end
        rest = b"\n".join(line for line in text.split(b"\n") if line.strip())  # the damage lines' own ends go too
        if rest and self._saved >= 0:
            os.write(2, rest + b"\n")


def _flush_python_stderr() -> None:
    if sys.stderr is not None:
        sys.stderr.flush()


_OUTPUT = _DecoderOutput()


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
