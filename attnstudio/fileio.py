"""Writing files so that a crash or a full disk never damages what was there before."""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from attnstudio.errors import FileReadError, FileWriteError


def write_atomic(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    if path.is_dir():
        raise FileWriteError(f"{path} is a folder; choose a file name")
    folder = path.parent if str(path.parent) else Path(".")
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as error:
        raise FileWriteError(f"cannot write to {folder}: {error.strerror or error}") from None
    try:
        os.chmod(temporary, _file_mode(path))
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise FileWriteError(f"cannot write {path}: {error.strerror or error}") from None


def _file_mode(path: Path) -> int:
    """Keep an existing file's permissions; a new file gets the usual 0o666 less the umask."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def read_regular_file(path: Path, limit: int, what: str, error: type[Exception] = FileReadError) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes; else ``error`` with one clear sentence.

    Never blocks on a FIFO and never reads a device or a huge file whole.
    """
    try:
        info = os.stat(path)
    except OSError as problem:
        raise error(f"cannot read {path}: {problem.strerror or problem}") from None
    if stat.S_ISDIR(info.st_mode):
        raise error(f"{path} is a folder, not a {what}")
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{path} is not a regular file (a device, pipe or socket); choose a {what}")
    if info.st_size > limit:
        raise error(f"{path.name} is too large for a {what} ({format_size(info.st_size)}; at most {format_size(limit)})")
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as problem:
        raise error(f"cannot read {path}: {problem.strerror or problem}") from None
    with os.fdopen(descriptor, "rb") as stream:
        if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):  # replaced between the two looks
            raise error(f"{path} is not a regular file; choose a {what}")
        try:
            payload = stream.read(limit + 1)
        except OSError as problem:
            raise error(f"cannot read {path}: {problem.strerror or problem}") from None
    if len(payload) > limit:
        raise error(f"{path.name} is too large for a {what} (at most {format_size(limit)})")
    return payload


def format_size(count: int) -> str:
    """1536 -> "1.5 KiB"."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count} bytes"
