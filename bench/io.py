"""File I/O every part of the harness shares: atomic writes, hashes, PNG and JSON, and disk errors as one line.

Every file the harness writes goes through :func:`atomic_write_bytes` (temp file + fsync + rename), so a
kill, a full disk or a read-only folder never leaves a half-written file where a finished one is expected.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import FolderBusy


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give: mkstemp's 0600 would hide shared checkpoints


def atomic_write_bytes(path: Path, data: bytes, sync: bool = True) -> None:
    """``data`` into ``path`` through a temporary file renamed into place: a kill leaves the old file or the new
    one, never half of one. ``sync`` also flushes it to the disk first (survives a power loss)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def config_hash(config: Any) -> str:
    """A short, stable hash of a JSON-able description (sorted keys; paths and other objects as strings)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def write_png(path: Path, image: np.ndarray) -> str:
    """uint8 [H,W,3] or [H,W] -> PNG, atomically; returns the sha256 of the bytes written (the digest a metrics
    row records). Not fsynced: every PNG is recomputed from the run's inputs, and an fsync per image cost ~1 ms
    each, more than the metrics (the rows that claim them are fsynced)."""
    import cv2

    if image.ndim == 3:
        image = image[..., ::-1]  # RGB -> BGR for OpenCV
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image))
    if not ok:
        raise OSError(f"could not encode {path}")
    data = buf.tobytes()
    atomic_write_bytes(path, data, sync=False)
    return hashlib.sha256(data).hexdigest()


def read_png(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise OSError(f"cannot read image {path}: missing or corrupt; delete it and run again to recompute")
    return image[..., ::-1].copy() if image.ndim == 3 else image


def png_data_uri(path: Path) -> str | None:
    """A saved PNG inlined as a ``data:`` URI (self-contained HTML), or None when it does not exist."""
    if not path.exists():
        return None
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def read_json(path: Path) -> Any | None:
    """A JSON file's content, or None when it does not exist; a corrupt one is one clear error."""
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); restore or delete it") from exc


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n").encode())


def _json_default(obj: Any) -> Any:
    """numpy scalars as numbers; anything else (paths, devices) as its string."""
    return obj.item() if isinstance(obj, np.generic) else str(obj)


DISK_ERRORS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}


def disk_error_line(exc: OSError) -> str | None:
    """One line for an error of the output disk (full, read-only, no permission), or None for other errors."""
    cause = DISK_ERRORS.get(exc.errno or 0)
    if cause is None:
        return None
    where = exc.filename or "the output folder"
    return (
        f"cannot write {where}: {cause}; free space or choose another --output folder, then run the same "
        "command again (finished work is kept and resumed)"
    )


class FolderLock:
    """An exclusive advisory lock on ``folder/.lock`` (fcntl), released when the process ends however it ends,
    so two ``bench run`` never write one run folder or train one checkpoint at once."""

    def __init__(self, folder: Path, what: str) -> None:
        self.path = folder / ".lock"
        self.what = what
        self.file = None

    def __enter__(self) -> FolderLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip() or "?"
            self.file.close()
            raise FolderBusy(
                f"another bench run (pid {holder}) is using {self.what} {self.path.parent}; wait for it to finish, "
                "or pass another --output"
            ) from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(str(os.getpid()))
        self.file.flush()
        return self

    def __exit__(self, *exc) -> None:
        if self.file is not None:
            self.file.close()  # closing releases the lock
