"""Run records: one JSON file per run, validated against `record.schema.json`, written atomically.

A record is the unit of evidence: every number on the leaderboard is read back from one, and it
says how it was made (preset, seed, machine, versions, commit) so it can be rerun and cited.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import jsonschema

from nasrepro.errors import DataError

SCHEMA_PATH = Path(__file__).with_name("record.schema.json")
#: Fields that legitimately differ between two runs of the same seed (timing and provenance).
VOLATILE_KEYS = frozenset(
    {
        "created",
        "wall_seconds",
        "cost_seconds",
        "cumulative_cost",
        "device_hours",
        "evaluation_seconds",
        "method_overhead_seconds",
        "train_seconds",
        "latency_ms",
        "iqr_ms",
        "machine",
        "git_commit",
        "versions",
    }
)
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


@cache
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


def validate(record: dict[str, Any]) -> None:
    """Raise `jsonschema.ValidationError` if `record` breaks the schema."""
    jsonschema.validate(record, schema())


def versions() -> dict[str, str]:
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
    return datetime.now(UTC).isoformat(timespec="seconds")


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Have `write(tmp)` fill a temporary file, then rename it over `path`: readers see the old file
    or the new one, never a part.

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


_HISTORY = "__nasrepro_history__"


def dumps(record: dict[str, Any]) -> str:
    """Indented JSON with one line per history entry: readable, diffable, and a 500-query record
    stays around 80 kB instead of three times that."""
    head = json.dumps({**record, "history": _HISTORY}, indent=1, sort_keys=True, allow_nan=False)
    rows = [
        json.dumps(q, sort_keys=True, separators=(",", ":"), allow_nan=False)
        for q in record.get("history", [])
    ]
    body = "[\n  " + ",\n  ".join(rows) + "\n ]" if rows else "[]"
    return head.replace(json.dumps(_HISTORY), body, 1) + "\n"


def write_record(record: dict[str, Any], path: Path) -> Path:
    """Validate and atomically write one record."""
    validate(record)
    atomic_write_text(path, dumps(record))
    return path


def record_path(
    out_dir: Path,
    task: str,
    method: str,
    preset: str,
    seed: int,
    budget: int | None,
    kind: str = "search",
    tag: str = "",
) -> Path:
    """`out/runs/<task>/<method>/<preset>[-b<budget>][-<tag>]-s<seed>.json`."""
    parts = [preset] + ([f"b{budget}"] if budget else []) + ([tag] if tag else []) + [f"s{seed}"]
    name = "-".join(parts) + ".json"
    folder = out_dir / "runs" / task / (method if kind == "search" else f"evaluate-{method}")
    return folder / name


def read_record(path: Path) -> dict[str, Any]:
    """Load and validate one record; a broken file is one clear `DataError`."""
    try:
        record = json.loads(path.read_text())
        validate(record)
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(
            f"record {path} is unreadable or not JSON ({err}); delete it and rerun that seed"
        ) from None
    except jsonschema.ValidationError as err:
        raise DataError(f"record {path} does not match the record schema: {err.message}") from None
    return record


def iter_records(results_dir: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every record under `results_dir/runs`, in sorted path order (for reproducible outputs)."""
    for path in sorted((results_dir / "runs").rglob("*.json")):
        yield path, read_record(path)


def strip_volatile(value: Any) -> Any:
    """`value` without the keys in `VOLATILE_KEYS`, recursively: what must match across reruns."""
    if isinstance(value, dict):
        return {k: strip_volatile(v) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, list):
        return [strip_volatile(v) for v in value]
    return value
