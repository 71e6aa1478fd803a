"""Atomic file replacement: readers see the old file or the new one, never a part.

Records, checkpoints, look-up tables and exported configs are all written this way, from every
layer (tasks, harness, methods, tracking), so it lives at the package top and imports nothing of
nasrepro: any module may use it without creating an import edge between layers.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Have `write(tmp)` fill a temporary file, then rename it over `path`.

    The temporary file sits in the same folder (rename is atomic on POSIX there), is flushed to disk
    before the rename, and is removed if anything fails, so the previous file survives. It gets the
    ordinary permissions of a new file (mkstemp would make it 0600).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` atomically (see `atomic_write`)."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
