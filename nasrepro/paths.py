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
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        from nasrepro.errors import DataError

        raise DataError(
            f"cache folder {path}: cannot create it ({err.strerror or type(err).__name__}); set NASREPRO_CACHE "
            "to a writable folder"
        ) from None
    return path


def writable_dir(path: str | os.PathLike[str], flag: str = "--out") -> Path:
    """`path` as a folder this process can write (made if missing), or a `UsageError` line naming
    `flag`: checked before any work, so nothing measured or trained is lost to a bad path."""
    import tempfile

    from nasrepro.errors import UsageError

    if not str(path).strip():
        raise UsageError(f"{flag} is empty; give a folder (e.g. {flag} results)")
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        # a probe of its own: runs started together into one folder must not race on one name
        handle, probe = tempfile.mkstemp(prefix=".nasrepro-write-test-", dir=out)
        os.close(handle)
        os.unlink(probe)
    except OSError as err:
        raise UsageError(
            f"{flag} {path}: cannot write there ({err.strerror or type(err).__name__}); choose a writable folder"
        ) from None
    return out


def writable_file(path: str | os.PathLike[str], flag: str = "--out") -> Path:
    """`path` as a file this process can write: not a folder, in a writable folder (`writable_dir`)."""
    from nasrepro.errors import UsageError

    out = Path(path)
    if out.is_dir():
        raise UsageError(f"{flag} {path} is a folder; give the name of a file (in it or elsewhere)")
    writable_dir(out.parent, flag)
    return out
