"""Checks that a dataset's files are present and intact, with one clear error when they are not.

Every loader calls `require(...)` before reading, so a missing or truncated file is reported as
"what is missing, where, and how to get it" instead of a traceback from deep inside a parser.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from nasrepro.errors import DataError
from nasrepro.harness.task import DataStatus


@dataclass(frozen=True)
class ExpectedFile:
    """A file a dataset needs, with whatever we know to verify it."""

    relpath: str
    sha256: str | None = None
    size: int | None = None
    min_size: int | None = None


def sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def problems(
    root: Path, files: Sequence[ExpectedFile], verify_hash: bool = True
) -> tuple[list[str], list[str]]:
    """(missing, corrupt) relative paths under `root`."""
    missing, corrupt = [], []
    for f in files:
        path = root / f.relpath
        if not path.is_file():
            missing.append(f.relpath)
            continue
        size = path.stat().st_size
        if (f.size is not None and size != f.size) or (f.min_size is not None and size < f.min_size):
            corrupt.append(f"{f.relpath} (size {size} bytes)")
        elif verify_hash and f.sha256 and sha256(path) != f.sha256:
            corrupt.append(f"{f.relpath} (sha256 mismatch)")
    return missing, corrupt


def require(
    dataset: str, root: Path, files: Sequence[ExpectedFile], how_to_get: str, verify_hash: bool = True
) -> None:
    """Raise one `DataError` naming the dataset, the folder, what is wrong and how to fix it."""
    missing, corrupt = problems(root, files, verify_hash)
    if not missing and not corrupt:
        return
    parts = []
    if missing:
        parts.append(f"missing {', '.join(missing)}")
    if corrupt:
        parts.append(f"corrupt {', '.join(corrupt)}")
    raise DataError(f"{dataset} data in {root}: {'; '.join(parts)}. {how_to_get}")


def status(dataset: str, root: Path, files: Sequence[ExpectedFile], verify_hash: bool = True) -> DataStatus:
    """One `nasrepro data check` row."""
    missing, corrupt = problems(root, files, verify_hash)
    if corrupt:
        return DataStatus(dataset, "corrupt", str(root), "; ".join(corrupt))
    if missing:
        state = "missing" if len(missing) == len(files) else "corrupt"
        detail = "missing " + ", ".join(missing) if state == "corrupt" else "not downloaded"
        return DataStatus(dataset, state, str(root), detail)
    return DataStatus(dataset, "found", str(root), f"{len(files)} files verified")


def read_sha256sums(path: Path) -> Mapping[str, str]:
    """`sha256sum`-format lines -> {relative name: digest}."""
    out = {}
    for line in path.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            out[name.lstrip("*")] = digest
    return out
