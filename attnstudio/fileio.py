"""Writing files so that a crash or a full disk never damages what was there before."""
from __future__ import annotations

import os
import stat
import tempfile
import time
from pathlib import Path

from attnstudio.errors import FileReadError, FileWriteError

MAX_NAME_BYTES = 255  # the longest file name (one path component) common file systems take
STALE_TEMPORARY_S = 24 * 3600


def write_atomic(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` through a temporary file in the same folder and a rename.

    A symbolic link is written through (its target is replaced, the link stays). Temporary files that a
    crash left behind for the same target are removed first.
    """
    path = _writable_target(path)
    folder = path.parent if str(path.parent) else Path(".")
    prefix = _temporary_prefix(path)
    _remove_stale_temporaries(folder, prefix)
    try:
        handle, temporary = tempfile.mkstemp(prefix=f"{prefix}{os.getpid()}.", suffix=".tmp", dir=folder)
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


def check_writable(path: Path) -> None:
    """FileWriteError now if ``path`` clearly cannot be written (a folder, a missing or read-only folder)."""
    path = _writable_target(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileWriteError(f"cannot write {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise FileWriteError(f"cannot write {path}: permission denied")


def _writable_target(path: Path) -> Path:
    """The file a write to ``path`` replaces: a symlink's target; refuses folders and over-long names."""
    path = Path(path)
    if len(path.name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        raise FileWriteError(f"the file name {path.name[:40]}… is too long ({len(path.name)} characters; "
                             f"at most {MAX_NAME_BYTES})")
    try:
        if path.is_symlink():
            path = Path(os.path.realpath(path))
        if path.is_dir():
            raise FileWriteError(f"{path} is a folder; choose a file name")
    except OSError as error:
        raise FileWriteError(f"cannot write {path}: {error.strerror or error}") from None
    return path


def _temporary_prefix(path: Path) -> str:
    """".name." (the name cut so that the temporary's own name stays short enough for any file system)."""
    return f".{path.name[:100]}."


def _remove_stale_temporaries(folder: Path, prefix: str) -> None:
    """Delete ``prefix<pid>.<random>.tmp`` files whose writer is gone (a crash mid-write), or a day old."""
    try:
        candidates = [entry for entry in os.scandir(folder) if entry.name.startswith(prefix)
                      and entry.name.endswith(".tmp") and entry.is_file(follow_symlinks=False)]
    except OSError:
        return
    now = time.time()
    for entry in candidates:
        pid_text = entry.name[len(prefix):].split(".", 1)[0]
        try:
            stale = now - entry.stat(follow_symlinks=False).st_mtime > STALE_TEMPORARY_S or \
                (pid_text.isdigit() and not _process_alive(int(pid_text)))
            if stale:
                os.unlink(entry.path)
        except OSError:
            continue


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name != "posix":  # no cheap, harmless probe: rely on the age rule
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


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
        raise error(f"{path.name} is too large for a {what} "
                    f"({format_size(info.st_size)}; at most {format_size(limit)})")
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
