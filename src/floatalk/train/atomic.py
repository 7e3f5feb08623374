"""Atomic file replacement: write beside the target, fsync, rename over it, fsync the folder."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write"]


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable (POSIX); harmless where folders cannot be opened (Windows)."""
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


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Replace `path` by what ``write(file)`` writes, so that readers see the old or the new file.

    The data goes to ``.<name>.<random>.tmp`` in the same folder (same file system, so the rename is
    atomic), is flushed and fsynced, and is renamed over `path` with ``os.replace``. On any error,
    including KeyboardInterrupt, the temporary file is removed and `path` is untouched. A process
    killed outright can leave a ``.*.tmp`` file behind, never a partial `path`.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    # os.open honours the umask (mkstemp would make the file private to the user).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)
    return target
