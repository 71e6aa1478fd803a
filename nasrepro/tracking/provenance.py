"""Where a record came from: package versions, the git commit, the time it was written.

A number without its provenance cannot be rerun or cited, so every record carries these; they are
the "volatile" part of a record (they differ between two runs of the same seed).
"""

from __future__ import annotations

import contextlib
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

PACKAGES = (
    "nasrepro",
    "torch",
    "torchvision",
    "lightning",
    "torch_geometric",
    "numpy",
    "nas-bench-graph",
    "wandb",
)


def versions() -> dict[str, str]:
    """Python's and every installed package's version that can change a result."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def git_commit(repo: Path | None = None) -> str:
    """The commit the code ran from, with `+dirty` if the tree had local changes ("unknown" outside git)."""
    repo = repo or Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def now() -> str:
    """UTC time to the second, ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="seconds")
