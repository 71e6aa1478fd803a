"""Run records on disk: one JSON file per run, validated against `record.schema.json`, written atomically.

A record is the unit of evidence: every number on the leaderboard is read back from one, and it
says how it was made (preset, seed, machine, versions, commit) so it can be rerun and cited. Its
fields are the typed `Record` (`nasrepro.tracking.record`); this module names, writes and reads
the files.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from nasrepro.atomic import atomic_write, atomic_write_text
from nasrepro.errors import DataError
from nasrepro.tracking.provenance import PACKAGES, git_commit, now, versions
from nasrepro.tracking.record import SCHEMA_PATH, InvalidRecord, Record, schema, validate, validate_fast

# Re-exported for the orchestration and harness modules that still import them from here
# (`atomic_write*` now live in `nasrepro.atomic`, provenance in `nasrepro.tracking.provenance`).
__all__ = [
    "PACKAGES",
    "SCHEMA_PATH",
    "VOLATILE_KEYS",
    "atomic_write",
    "atomic_write_text",
    "dumps",
    "git_commit",
    "iter_loaded",
    "iter_records",
    "load_record",
    "now",
    "read_record",
    "record_path",
    "schema",
    "strip_volatile",
    "validate",
    "versions",
    "write_record",
]

#: Fields that legitimately differ between two runs of the same seed (timing and provenance).
VOLATILE_KEYS = frozenset(
    {
        "created",
        "wall_seconds",
        "elapsed_seconds",
        "cost_seconds",
        "cumulative_cost",
        "device_hours",
        "evaluation_seconds",
        "charged_cost",  # a trained query is charged its own training time
        "method_overhead_seconds",
        "train_seconds",
        "latency_ms",
        "iqr_ms",
        "machine",
        "git_commit",
        "versions",
    }
)


_HISTORY = "__nasrepro_history__"


def dumps(record: Mapping[str, Any]) -> str:
    """Indented JSON with one line per history entry: readable, diffable, and a 500-query record
    stays around 80 kB instead of three times that."""
    head = json.dumps({**record, "history": _HISTORY}, indent=1, sort_keys=True, allow_nan=False)
    rows = [
        json.dumps(q, sort_keys=True, separators=(",", ":"), allow_nan=False)
        for q in record.get("history", [])
    ]
    body = "[\n  " + ",\n  ".join(rows) + "\n ]" if rows else "[]"
    return head.replace(json.dumps(_HISTORY), body, 1) + "\n"


def write_record(record: Record | Mapping[str, Any], path: Path) -> Path:
    """Validate and atomically write one record (a `Record` or its dict form); a record that breaks
    the schema raises `InvalidRecord` and leaves `path` untouched."""
    data = record.to_dict() if isinstance(record, Record) else record
    validate_fast(data)
    atomic_write_text(path, dumps(data))
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


def read_record(path: Path, *, fast: bool = False) -> dict[str, Any]:
    """Load and validate one record's JSON; a broken file is one clear `DataError` naming the field.

    `fast` checks the history through `history_representatives` (`validate_fast`): the same
    verdict as the full schema, about ten times quicker on a 500-query record (what the
    leaderboard uses to read ~2000 records)."""
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict):
            raise InvalidRecord(f"the file holds a JSON {type(record).__name__}, not a record object")
        (validate_fast if fast else validate)(record)
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(
            f"record {path} is unreadable or not JSON ({err}); delete it and rerun that seed"
        ) from None
    except InvalidRecord as err:
        raise DataError(
            f"record {path} does not match the record schema: {err}; move it out of the results (or "
            "delete it and rerun that seed)"
        ) from None
    return record


def load_record(path: Path) -> Record:
    """`read_record` as the typed `Record` (validated once)."""
    return Record.from_dict(read_record(path), check=False)


def iter_records(results_dir: Path, *, fast: bool = False) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every record under `results_dir/runs`, in sorted path order (for reproducible outputs)."""
    for path in sorted((results_dir / "runs").rglob("*.json")):
        yield path, read_record(path, fast=fast)


def iter_loaded(results_dir: Path, *, fast: bool = False) -> Iterator[tuple[Path, Record]]:
    """`iter_records` as typed `Record`s (what the leaderboard reads)."""
    for path, data in iter_records(results_dir, fast=fast):
        yield path, Record.from_dict(data, check=False)


def strip_volatile(value: Any) -> Any:
    """`value` without the keys in `VOLATILE_KEYS`, recursively: what must match across reruns."""
    if isinstance(value, dict):
        return {k: strip_volatile(v) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, list):
        return [strip_volatile(v) for v in value]
    return value
