"""Where datasets are read from and where derived caches are written.

Datasets come from `--data-dir`, else `NASREPRO_DATA`, else `~/.cache/nasrepro`. That folder may be
read-only (a shared copy), so anything derived from it -- PyG's processed tensors, converted
tables -- goes to a separate cache folder: `NASREPRO_CACHE`, else `~/.cache/nasrepro/cache`.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOME = Path("~/.cache/nasrepro")


def data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The dataset root: explicit argument, then `NASREPRO_DATA`, then `~/.cache/nasrepro`."""
    chosen = explicit or os.environ.get("NASREPRO_DATA") or DEFAULT_HOME
    return Path(chosen).expanduser().resolve()


def cache_dir(sub: str = "") -> Path:
    """A writable folder for derived files; created on demand."""
    root = Path(os.environ.get("NASREPRO_CACHE") or DEFAULT_HOME / "cache").expanduser()
    path = root / sub if sub else root
    path.mkdir(parents=True, exist_ok=True)
    return path
