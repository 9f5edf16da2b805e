"""File output shared by checkpoints, dataset downloads and plots: atomic writes.

A file written with :func:`atomic_write` is either the complete new file or
the previous one, never half of either, whatever interrupts the write.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write"]


def _fsync_dir(directory: Path) -> None:
    """Make a rename inside ``directory`` durable (best effort: not every OS/fs allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _new_file_mode(path: Path) -> int:
    """Permissions for the replacement: the old file's, else ``0o666`` minus the umask."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        return 0o666 & ~_current_umask()


def _current_umask() -> int:
    """The process umask, read without changing it where Linux allows (no thread race)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0)  # elsewhere: set and restore at once
    os.umask(umask)
    return umask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Write ``path`` all at once or not at all.

    Yields a file object on a temporary file in the same directory (so the
    final rename never crosses file systems). When the ``with`` block ends
    normally the data is flushed and fsynced, the temporary file replaces
    ``path`` with :func:`os.replace`, and the directory is fsynced. If the
    block raises anything -- including ``KeyboardInterrupt`` -- the temporary
    file is removed and ``path`` keeps its previous contents.

    Missing parent directories are created.

    Parameters
    ----------
    path : str or os.PathLike
        The destination.
    mode : {"wb", "w"}
        Binary or text mode.

    Examples
    --------
    >>> import os, tempfile
    >>> from xpnet._io import atomic_write
    >>> path = os.path.join(tempfile.mkdtemp(), "notes.txt")
    >>> with atomic_write(path, "w") as f:
    ...     _ = f.write("hello")
    >>> open(path).read()
    'hello'
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"path {str(path)!r} is a directory; give a file name")
    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    file_mode = _new_file_mode(path)
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp")
    f: IO[Any] | None = None
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, file_mode)
        f = os.fdopen(fd, "wb") if mode == "wb" else os.fdopen(fd, "w", encoding="utf-8")
        yield f
        f.flush()
        os.fsync(f.fileno())
        f.close()
        os.replace(tmp, path)
    except BaseException:
        if f is None:
            with contextlib.suppress(OSError):
                os.close(fd)
        else:
            with contextlib.suppress(Exception):
                f.close()
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(parent)
