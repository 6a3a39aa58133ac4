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
import threading
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import FolderBusy, RunError

MANIFEST, MANIFEST_COPY = "manifest.json", "manifest.copy.json"  # a run folder's manifest and its second copy
VGG_VARIABLE = "BENCH_VGG16_WEIGHTS"  # the VGG-16 weights file of the perceptual losses (bench.nn.vgg) and LPIPS
RUN_MARKERS = (MANIFEST, MANIFEST_COPY)  # a folder holding one of these is a run folder


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() gives: readable by whoever may read the folder (shared checkpoints)


def atomic_write_bytes(path: Path, data: bytes, sync: bool = True) -> None:
    """``data`` into ``path`` through a temporary file renamed into place: a kill leaves the old file or the new
    one, never half of one. ``sync`` also flushes it to the disk first (survives a power loss). The temporary
    name is unique to this process and thread (no two live writers share it; a stale one a killed process left
    is truncated), which costs ~90 us per PNG against ~160 us for ``tempfile.mkstemp``'s random names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        try:
            os.fchmod(fd, FILE_MODE)  # a stale file of another mode keeps its mode through O_TRUNC
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
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


def path_problem(path: Path) -> str | None:
    """Why nothing can be written at ``path`` (a symbolic-link loop, a dangling link, a file where a folder must
    be), or None: checked before any work, so the fault is one line, not a traceback halfway through."""
    try:
        os.stat(path)
        return None
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symbolic-link loop or lies under one"
        if exc.errno != errno.ENOTDIR:
            return exc.strerror
    for folder in (path, *path.parents):
        if os.path.lexists(folder):
            if folder.is_symlink() and not folder.exists():
                return f"{folder} is a symbolic link to {os.readlink(folder)}, which does not exist"
            if not folder.is_dir():
                return f"{folder} is a file, where a folder is needed"
            if not os.access(folder, os.W_OK):
                return f"cannot create anything in {folder} (not writable)"
            return None
    return None


def refuse_inside_run(path: Path, flag: str, allowed: Path | None = None) -> None:
    """Refuse an output path that lies in a run folder (itself or any parent holding a run manifest): writing
    there would overwrite finished rows, digests or predictions. ``allowed``: the one path the command itself
    writes into a run (the report's default ``RUN/report.html``)."""
    target = path.resolve()
    if allowed is not None and target == allowed.resolve():
        return
    for folder in (target, *target.parents):
        if any((folder / marker).is_file() for marker in RUN_MARKERS):
            raise RunError(
                f"{flag} {path}: lies inside run folder {folder}, whose finished files it would overwrite; "
                "choose a path outside it"
            )


def check_output_file(
    path: Path, flag: str, example: str, suffix: str | None = None, allowed: Path | None = None
) -> None:
    """The one check of a file path a user gives a command to write (report, preview, perf), before any work:
    writable, not a folder, ``suffix`` when the format needs one, outside every run folder but ``allowed``.
    ``example``: a file name the fix suggests."""
    problem = path_problem(path)
    if problem:
        raise RunError(f"{flag} {path}: {problem}; choose another path")
    if path.is_dir():
        raise RunError(f"{flag} {path}: is a folder, not a file; give a file name (e.g. {flag} {path / example})")
    if suffix is not None and path.suffix.lower() != suffix:
        raise RunError(f"{flag} {path}: give a file name ending in {suffix} (it is written as {suffix[1:].upper()})")
    refuse_inside_run(path, flag, allowed)


def check_weights_only(path: Path, name: str, fix: str) -> None:
    """A weights file checked before any work, with the real cause: a safetensors file, or a torch file (zip or
    legacy pickle) that loads weights-only, not some other file nor a pickle of objects. ``name`` is where it
    came from (an option or a variable), ``fix`` what to do instead."""
    import zipfile

    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt"):
                return
        except Exception as exc:
            raise RunError(f"{name}: not a safetensors file ({type(exc).__name__}); {fix}") from exc
    with open(path, "rb") as f:
        head = f.read(1)
    if not (zipfile.is_zipfile(path) or head == b"\x80"):  # torch.save's zip, or a legacy pickle (PROTO opcode)
        raise RunError(f"{name}: not a PyTorch weights file (neither torch.save's format nor a pickle); {fix}")
    import torch

    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RunError(
            f"{name}: a pickle of Python objects (loading it would run code), not a weights-only file; save the "
            f"network's state_dict ({type(exc).__name__}); {fix}"
        ) from exc


class FolderLock:
    """An exclusive advisory lock on ``folder/.lock`` (fcntl), released when the process ends however it ends,
    so two ``bench run`` never write one run folder or train one checkpoint at once."""

    def __init__(self, folder: Path, what: str) -> None:
        self.path = folder / ".lock"
        self.what = what
        self.file = None

    def __enter__(self) -> FolderLock:
        import fcntl

        folder = self.path.parent
        if os.path.lexists(folder) and not folder.is_dir():
            raise RunError(
                f"{folder} is a file, where the run keeps a {self.what}; move it away or choose another --output folder"
            )
        folder.mkdir(parents=True, exist_ok=True)
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
